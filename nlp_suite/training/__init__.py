"""Training loop, checkpoints and the model registry."""
