"""Layer 6: persistence. The per-face row schema (:mod:`.records`), the SQLite face store (:mod:`.db`,
:mod:`.schema`, :mod:`.photo_cache`), enrolment and exchange (:mod:`.enrol`), the FAISS gallery index
(:mod:`.index`, :mod:`.ivf`, :mod:`.search`) and its saved file (:mod:`.index_file`), and the files
derived from a store: how they are written and cleaned up (:mod:`.derived`) and how forget reaches
them (:mod:`.forget`); switching a store to another model re-embeds from its photos (:mod:`.switch`)."""
