"""Evaluation: a frozen upstream's features, task kinds, heads and their trainer, result files."""
