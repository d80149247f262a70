"""The pre-training methods (`evalkit ls methods`, a recipe's `method:`), read by the pre-training loop.

Nothing under upstreams/ imports this module: its lazy entries point at the method
modules, and those load their teachers through `upstreams.load`.
"""

from __future__ import annotations

from evalkit.core.registry import Registry

METHODS = Registry("method")
"""Pre-training method -> its `upstreams.objective.Objective` class (`evalkit pretrain`'s `method:`)."""

METHODS.register("hubert", "upstreams.hubert:HuBERT")
METHODS.register("wav2vec2", "upstreams.wav2vec2:Wav2Vec2")
METHODS.register("bestrq", "upstreams.bestrq:BestRQ")
METHODS.register("distilhubert", "upstreams.distilhubert:DistilHuBERT")
