"""Upstream encoders and their pre-training objectives, one module per method.

The contract is `upstreams.base`; named upstreams are in `upstreams.registry`, the
checkpoint folder format in `upstreams.checkpoint`, `load_upstream(spec)` in
`upstreams.load`, and the pre-training methods in `upstreams.methods`.
"""
