"""evalkit's benchmarks: one module per question, run by `python -m bench` (see bench/__main__.py)."""
