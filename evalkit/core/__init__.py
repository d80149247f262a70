"""The ground floor: what every other part of evalkit (and `upstreams`) stands on.

Errors, the registry, serialisable configs, atomic file I/O, audio, the manifest and
result-file schemas, batching by seconds of audio. Nothing here imports anything of the
project above it (tests/test_architecture.py checks it).
"""
