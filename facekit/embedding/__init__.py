"""Layer 3: aligned crops to unit vectors. :class:`~facekit.embedding.embedder.Embedder` runs any
registered model through its backend module (one file per model family: :mod:`.facenet`, ...)."""
