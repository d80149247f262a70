"""YAML recipes shipped with evalkit: pre-training (`configs/pretrain/`)."""
