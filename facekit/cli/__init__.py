"""Layer 9: the ``facekit`` command (:mod:`.main`)."""
