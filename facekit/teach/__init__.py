"""Layer 8: what only the notebooks need: plots, widgets, the cascade trace, baselines and the LFW
evaluation harness (:mod:`.lfw`)."""
