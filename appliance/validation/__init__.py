"""Validation gates: what a model version must pass before it may serve."""
