"""Training, evaluation and the model registry. Builds on ``features``."""
