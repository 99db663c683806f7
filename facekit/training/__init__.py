"""Layer 5: training an embedding: the triplet loss, its sampler and its trainer (notebook 03)."""
