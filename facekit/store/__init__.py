"""Layer 6: persistence. The per-face row schema (:mod:`.records`), the SQLite face store
(:mod:`.db`), enrolment and exchange (:mod:`.enrol`), the FAISS gallery index and its saved file."""
