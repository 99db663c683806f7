"""Layer 7: photo archives: the local indexing engine (:mod:`.scan`), the Ray Data engine
(:mod:`.ray`) and album organisation (:mod:`.organise`)."""
