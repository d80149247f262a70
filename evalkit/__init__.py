"""evalkit: evaluate and pre-train self-supervised speech encoders, SUPERB-style."""

__version__ = "0.1.0"

SAMPLE_RATE = 16_000
"""Every waveform inside evalkit is 16 kHz mono float32."""
