"""Layer 5: decisions on embeddings, always with the thresholds of the model that made them:
verify (same person?), identify (who is this?), open-set rejection, cluster (who looks alike?)."""
