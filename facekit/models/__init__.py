"""Layer 1: what a model *is*: the registry of embedding models (dimension, input, backend,
alignment) and the thresholds calibrated for each. Data only: nothing here runs a network."""
