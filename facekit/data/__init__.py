"""Layer 4: datasets: folders of people (:mod:`.folders`), the sample set, and LFW's files and
pair lists (:mod:`.lfw`)."""
