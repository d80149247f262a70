"""The upstreams that have a name (`evalkit ls upstreams`, `--upstream NAME`, config.json's `upstream`).

Its own module, apart from `load_upstream`, so that the checkpoint reader and the
methods that load a teacher can use it without an import cycle.
"""

from __future__ import annotations

from evalkit.core.registry import Registry

UPSTREAMS = Registry("upstream")
"""name -> a factory `f(**config) -> Upstream` (lazy "module:attr" entries allowed)."""

UPSTREAMS.register("fbank", "upstreams.baselines:FbankUpstream")
UPSTREAMS.register("fbank_context", "upstreams.baselines:FbankContextUpstream")
UPSTREAMS.register("random_transformer", "upstreams.encoder:random_transformer")
UPSTREAMS.register("encoder", "upstreams.encoder:SSLEncoder")
# the ceiling, not a model: frames made from the synthetic suite's records (ground truth)
UPSTREAMS.register("oracle", "upstreams.oracle:OracleUpstream")
