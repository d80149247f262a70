"""s3prl upstreams as evalkit upstreams (`--upstream s3prl:NAME`), an optional dependency.

Any name of s3prl's hub (`s3prl.nn.S3PRLUpstream.available_names()`: `hubert`,
`wavlm_base_plus`, the `fbank` / `mfcc` baselines, ...) is wrapped in our
contract: all hidden states, the number of valid frames of each utterance,
and `frame_rate` from s3prl's downsample rate. The valid lengths are s3prl's
own, ceil(samples / downsample rate), so an s3prl upstream evaluated here
sees exactly the frames it sees in s3prl; frames beyond them are zeroed, as
for every evalkit upstream. (For the Kaldi baselines that count exceeds the
frames Kaldi computes by up to two; s3prl fills them with zeros in a padded
batch and with the last frame for the longest utterance, as it does in s3prl.)

Compatibility shims (s3prl 0.4.18 predates torchaudio 2.9), applied before
s3prl is imported and only where torchaudio lacks the name:

* `torchaudio.set_audio_backend` / `get_audio_backend` were removed in 2.9;
  s3prl calls the setter at import time (byol_s, the data loaders). Backends
  no longer exist, so the shim does nothing.
* `torchaudio.sox_effects` was removed in 2.9; s3prl's hub imports it (for
  the `mos_prediction` upstream) whatever upstream is asked for. The shim is
  a module whose `apply_effects_tensor` raises an error saying so, so that
  every other upstream imports and runs.

Not shimmed: torch >= 2.6 loads checkpoints with `weights_only=True`; s3prl's
converted checkpoints are plain dicts of tensors and primitives and should
load, but a checkpoint that pickles other objects fails (nothing in it runs),
and the error names the file and says that evalkit loads only weights.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import types

import torch
import torchaudio

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.errors import EvalkitError
from evalkit.core.registry import suggest
from upstreams.base import Upstream, padding_mask
from upstreams.checkpoint import refused_pickle

INSTALL_HINT = "pip install s3prl"
# What to do with a trusted s3prl checkpoint that torch.load(weights_only=True) refuses.
RESAVE_ADVICE = (
    "load it in a trusted environment and save it again holding only tensors and plain values "
    "(torch.save of its state dicts and config as dicts), in s3prl's cache where this file is."
)


def apply_torchaudio_shims() -> None:
    """Give torchaudio >= 2.9 the names s3prl imports or calls at import time; idempotent."""
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = _set_audio_backend
    if not hasattr(torchaudio, "get_audio_backend"):
        torchaudio.get_audio_backend = _get_audio_backend
    if "torchaudio.sox_effects" not in sys.modules:
        try:
            importlib.import_module("torchaudio.sox_effects")  # present before torchaudio 2.9
        except ImportError:
            module = types.ModuleType("torchaudio.sox_effects", "evalkit shim: removed in torchaudio 2.9")
            module.apply_effects_tensor = _apply_effects_tensor
            module.apply_effects_file = _apply_effects_tensor
            sys.modules["torchaudio.sox_effects"] = module
            torchaudio.sox_effects = module


def _set_audio_backend(backend: str | None = None) -> None:
    """torchaudio >= 2.9 has no audio backends to choose: nothing to do."""


def _get_audio_backend() -> None:
    return None


def _apply_effects_tensor(*args, **kwargs):
    raise EvalkitError(
        "torchaudio.sox_effects was removed in torchaudio 2.9, and this s3prl upstream applies sox effects "
        "(s3prl's mos_prediction does). Use an environment with torchaudio < 2.9 for it."
    )


def import_s3prl_upstream() -> type:
    """s3prl's `S3PRLUpstream` class, after the shims; a clear error when s3prl is missing or broken."""
    apply_torchaudio_shims()
    try:
        from s3prl.nn import S3PRLUpstream  # deferred: optional dependency, imported after the shims
    except ImportError as e:
        if (e.name or "").split(".")[0] == "s3prl":
            raise EvalkitError(
                f"--upstream s3prl:NAME needs s3prl, which is not installed: {INSTALL_HINT} (with its "
                "dependencies, e.g. omegaconf). It is an optional dependency of evalkit."
            ) from None
        raise EvalkitError(
            f"s3prl is installed but could not be imported: {e}. Reinstall it with its dependencies "
            f"({INSTALL_HINT})."
        ) from None
    return S3PRLUpstream


class S3PRLAdapter(Upstream):
    """A frozen s3prl `S3PRLUpstream` under the evalkit contract.

    Frozen: no gradients, and the wrapped upstream stays in eval mode (no
    dropout) even when a parent module calls `.train()`.
    """

    def __init__(self, upstream: torch.nn.Module, name: str) -> None:
        super().__init__()
        self.upstream = upstream.eval()
        self.upstream.requires_grad_(False)
        self.name = name
        self.checkpoint = f"s3prl:{name}"
        # The feature cache's fingerprint reads `config`: baselines without weights
        # (fbank vs fbank_no_cmvn) differ only by name.
        self.config = {"s3prl": name, "s3prl_version": _s3prl_version()}
        rates = list(upstream.downsample_rates)
        sizes = list(upstream.hidden_sizes)
        if len(set(rates)) != 1 or len(set(sizes)) != 1:
            raise EvalkitError(
                f"s3prl:{name}: its layers have different downsample rates {rates} or sizes {sizes}; "
                "evalkit's weighted layer sum needs one frame rate and one hidden size."
            )
        self.downsample_rate = int(rates[0])
        self.frame_rate = SAMPLE_RATE / self.downsample_rate
        self.num_layers = int(upstream.num_layers)
        self.hidden_size = int(sizes[0])

    def train(self, mode: bool = True) -> S3PRLAdapter:
        super().train(mode)
        self.upstream.eval()
        return self

    def frames_for(self, wav_lens: torch.Tensor) -> torch.Tensor:
        """s3prl's valid frames: ceil(samples / downsample rate)."""
        return torch.div(wav_lens.long() - 1, self.downsample_rate, rounding_mode="floor") + 1

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        if wavs.dim() != 2:
            raise EvalkitError(f"s3prl:{self.name}: expected wavs of shape [B, S], got {list(wavs.shape)}.")
        wav_lens = wav_lens.to(device=wavs.device, dtype=torch.long)
        with torch.no_grad():
            hidden, all_lens = self.upstream(wavs.float(), wav_lens)
        lens = all_lens[0].to(wavs.device).long()
        valid = padding_mask(lens, hidden[0].shape[1])[..., None]
        return [h.float().masked_fill(~valid, 0.0) for h in hidden], lens


def _s3prl_version() -> str:
    import s3prl  # deferred: optional dependency

    return str(getattr(s3prl, "__version__", "unknown"))


def load_s3prl_upstream(name: str) -> S3PRLAdapter:
    """The `s3prl:NAME` upstream. Pre-trained names download their checkpoint through s3prl."""
    S3PRLUpstream = import_s3prl_upstream()
    names = S3PRLUpstream.available_names()
    if name not in names:
        raise EvalkitError(
            f"s3prl:{name}: s3prl has no upstream {name!r}.{suggest(name, names)} "
            "See s3prl.nn.S3PRLUpstream.available_names() for the full list."
        )
    try:
        upstream = S3PRLUpstream(name)
    except pickle.UnpicklingError as e:
        raise refused_pickle(e, f"s3prl:{name}'s checkpoint", RESAVE_ADVICE) from None
    except Exception as e:  # s3prl raises anything from downloads and checkpoint loading
        raise EvalkitError(
            f"s3prl:{name}: s3prl could not build this upstream ({type(e).__name__}: {e})."
        ) from e
    return S3PRLAdapter(upstream, name)
