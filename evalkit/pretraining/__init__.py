"""Pre-training: the one loop every method (upstreams/<method>.py) trains with, and its data."""
