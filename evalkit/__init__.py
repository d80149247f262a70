"""evalkit: evaluate and pre-train self-supervised speech encoders, SUPERB-style."""

__version__ = "0.1.0"
