"""Runs a frozen upstream over a manifest's utterances, batched by padded seconds of audio; `OnTheFlyFeatures` is s3prl's recompute-every-step path (`--no-cache`)."""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from evalkit.core.audio import MAX_SECONDS, SAMPLE_RATE, AudioFilter, Crop, audio_info, load_batch
from evalkit.core.batching import pack_by_padded_length
from evalkit.core.errors import AudioError, ConfigError, EvalkitError
from evalkit.core.manifest import audio_path, read_manifest


class OnTheFlyFeatures:
    """The `--no-cache` path: runs the upstream at every call, as s3prl does.

    Same interface as CachedFeatures. `lengths` are estimated from the
    manifest durations (exact ones need a forward pass); `batch` returns the
    true frame counts. The upstream is put in eval mode on `device`.
    """

    def __init__(
        self,
        upstream: nn.Module,
        manifest_path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        autocast: bool = False,
        layers: Sequence[int] | None = None,
        audio: AudioFilter | None = None,
    ) -> None:
        """`layers`: the hidden states to keep, by index (None: all), as a `--cache-layers` cache keeps
        them, so that a split computed on the fly matches the cached splits beside it; `audio`: the
        filter every utterance's audio goes through (a `crop` given to `batch` replaces it)."""
        self.manifest_path = Path(manifest_path)
        self._utts = {u.id: u for u in utterances_of(manifest_path, read_manifest(manifest_path))}
        self._runner = UpstreamRunner(upstream, device, autocast, None, math.inf, layers, audio)
        self._runner.check_audio(manifest_path, list(self._utts.values()))
        self.upstream = upstream.to(device).eval()
        self.ids = list(self._utts)
        self.num_layers, self.hidden_size = self._runner.num_layers, self._runner.hidden_size
        self.frame_rate = self._runner.frame_rate
        self.lengths = dict(zip(self.ids, self._runner.estimate_frames(list(self._utts.values()))))

    def get(self, utt_id: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One utterance's hidden states, [L, T, D]."""
        hidden, lens = self.batch([utt_id], dtype)
        return hidden[:, 0, : int(lens[0])].contiguous()

    def layer(self, utt_id: str, position: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One hidden state of one utterance, [T, D] (the upstream runs on the whole utterance)."""
        return self.get(utt_id, dtype)[position]

    def batch(
        self, ids: Sequence[str], dtype: torch.dtype = torch.float32, crop: Crop | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[L, B, T, D] zero beyond each length, and frame counts [B] (int64), freshly computed; with
        `crop`, of each utterance's audio as the crop reads it (s3prl's random training crops: the
        upstream runs on the crop, which a cache of whole utterances cannot give a Transformer)."""
        missing = [u for u in ids if u not in self._utts]
        if missing:
            raise EvalkitError(f"{self.manifest_path}: utterance(s) {missing[:5]} are not in this manifest.")
        # no_grad, not inference_mode: the featurizer's weights need autograd through these tensors.
        with torch.no_grad():
            hidden, lens = self._runner.forward([self._utts[u] for u in ids], crop)
        t = int(lens.max()) if len(lens) else 0
        stacked = torch.stack([h[:, :t] for h in hidden]).to(dtype)
        valid = torch.arange(t, device=lens.device)[None, :] < lens[:, None]
        return stacked.masked_fill(~valid[None, :, :, None], 0).cpu(), lens.cpu()


@dataclasses.dataclass(frozen=True)
class Utterance:
    id: str
    path: Path
    duration: float
    position: int  # in the manifest, to break ties when sorting by duration
    # the manifest record, for an upstream that reads records (`record_keys`, upstreams/base.py)
    record: dict | None = dataclasses.field(default=None, compare=False, repr=False)


def utterances_of(manifest_path: str | os.PathLike, records: list[dict]) -> list[Utterance]:
    utts = []
    for i, rec in enumerate(records):
        duration = rec["duration"]
        if isinstance(duration, bool) or not isinstance(duration, int | float) or not duration >= 0:
            raise ConfigError(
                f"{manifest_path}: record {rec['id']!r} has duration {duration!r}; expected seconds >= 0. "
                "Re-create the manifest."
            )
        utts.append(Utterance(str(rec["id"]), audio_path(manifest_path, rec), float(duration), i, rec))
    return utts


DURATION_TOLERANCE_S = 0.5
DURATION_TOLERANCE_FRACTION = 0.1
"""A manifest's duration may differ from its audio's by max(0.5 s, 10% of the duration): rounding and
resampling, not a mislabelled file."""


def duration_tolerance(duration: float) -> float:
    return max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_FRACTION * duration)


def check_lengths(manifest_path: str | os.PathLike, utts: Sequence[Utterance]) -> list[float]:
    """Each utterance's real duration (s) from its audio header, after refusing lengths that cannot be run.

    Extraction batches by the manifest's durations, so one that understates its audio (a 20-minute
    file labelled 1 s) packs a batch many times the budget and can exhaust memory. Refused here,
    before any extraction work: audio over MAX_SECONDS, and durations more than
    `duration_tolerance` away from the audio's.
    """
    real = [audio_info(u.path).duration for u in utts]
    too_long = [(u, r) for u, r in zip(utts, real) if r > MAX_SECONDS]
    if too_long:
        u, r = too_long[0]
        raise AudioError(
            f"{manifest_path}: record {u.id!r}: {u.path} lasts {r:.1f} s, over the limit of {MAX_SECONDS:g} s "
            f"for one utterance{_and_more(too_long)}. Split it into shorter segments (a record each) or drop "
            "it from the manifest."
        )
    wrong = [(u, r) for u, r in zip(utts, real) if abs(r - u.duration) > duration_tolerance(u.duration)]
    if wrong:
        u, r = wrong[0]
        raise AudioError(
            f"{manifest_path}: record {u.id!r} says duration {u.duration:.2f} s but its audio {u.path} lasts "
            f"{r:.2f} s{_and_more(wrong)}. Extraction batches by the manifest's durations, so a wrong one can "
            "exhaust memory. Fix the manifest (each duration within max(0.5 s, 10%) of its audio's) or re-run "
            "`evalkit prepare` (or `evalkit synth`) for this corpus."
        )
    return real


def _and_more(bad: list) -> str:
    if len(bad) == 1:
        return ""
    return f" ({len(bad) - 1} more record(s) too: {', '.join(repr(u.id) for u, _ in bad[1:4])}{', ...' if len(bad) > 4 else ''})"


class UpstreamRunner:
    """Runs the upstream on lists of utterances, batched by padded seconds of audio."""

    def __init__(
        self,
        upstream: nn.Module,
        device: str | torch.device,
        autocast: bool,
        storage: torch.dtype | None,
        batch_seconds: float,
        layers: Sequence[int] | None = None,
        audio: AudioFilter | None = None,
    ) -> None:
        """`layers`: the hidden states kept, by index (None: all of them); `audio`: what every utterance's
        audio goes through first (None: nothing)."""
        self.audio = None if audio is None or audio.name is None else Crop(math.inf, random.Random(0), audio)
        self.upstream, self.device, self.autocast = upstream, torch.device(device), autocast
        self.batch_seconds = batch_seconds
        self.storage = storage  # the dtype features are stored in (None: returned as computed)
        missing = [a for a in ("frame_rate", "num_layers", "hidden_size") if not hasattr(upstream, a)]
        if missing:
            raise EvalkitError(
                f"upstream {type(upstream).__name__} lacks {', '.join(missing)}; the upstream contract "
                "(upstreams/base.py) requires them."
            )
        self.frame_rate = float(upstream.frame_rate)
        self.upstream_layers, self.hidden_size = int(upstream.num_layers), int(upstream.hidden_size)
        self.layers = list(layers) if layers is not None else None
        self.num_layers = len(self.layers) if self.layers is not None else self.upstream_layers  # kept
        # the manifest keys the upstream reads from each record; () for one that reads audio alone
        self.record_keys = tuple(getattr(upstream, "record_keys", ()) or ())

    def check_audio(self, manifest_path: str | os.PathLike, utts: Sequence[Utterance]) -> None:
        """Refuse, before any work on them, utterances whose audio cannot be run as the manifest says.

        Besides `check_lengths`: a clip the upstream turns into no frame at all (shorter than its
        receptive field, e.g. under 25 ms for wav2vec 2.0's CNN) would give a head nothing to pool.
        """
        self.check_records(manifest_path, utts)
        real = check_lengths(manifest_path, utts)
        frames_for = getattr(self.upstream, "frames_for", None)
        if not callable(frames_for) or not utts:
            return
        samples = torch.tensor([round(r * SAMPLE_RATE) for r in real], dtype=torch.int64)
        empty = [(u, r) for u, r, n in zip(utts, real, frames_for(samples).tolist()) if n <= 0]
        if empty:
            u, r = empty[0]
            raise AudioError(
                f"{manifest_path}: record {u.id!r} ({u.path}, {r:.3f} s) is too short for upstream "
                f"{type(self.upstream).__name__} to give one frame{_and_more(empty)}. Drop such clips from "
                "the manifest, or pad their audio with silence."
            )

    def check_records(self, manifest_path: str | os.PathLike, utts: Sequence[Utterance]) -> None:
        """Refuse records that lack a key the upstream reads (e.g. the oracle on a real corpus)."""
        for key in self.record_keys:
            lacking = [u for u in utts if u.record is None or key not in u.record]
            if lacking:
                raise EvalkitError(
                    f"{manifest_path}: record {lacking[0].id!r} lacks key {key!r}"
                    f"{_and_more([(u, None) for u in lacking])}, which upstream "
                    f"{type(self.upstream).__name__} reads from every record "
                    f"({', '.join(self.record_keys)}). It needs the ground truth that `evalkit synth` "
                    "records (suite version smoke 2 / default 3 or later): synthesise the suite anew into "
                    "a new folder; a real corpus has no such records."
                )

    def estimate_frames(self, utts: Sequence[Utterance]) -> list[int]:
        """Frame counts from the manifest durations (by `frames_for` where the upstream has it)."""
        frames_for = getattr(self.upstream, "frames_for", None)
        if not callable(frames_for):
            return [int(u.duration * self.frame_rate) for u in utts]
        samples = torch.tensor([round(u.duration * SAMPLE_RATE) for u in utts], dtype=torch.int64)
        return frames_for(samples).clamp(min=0).tolist()

    def forward(
        self, utts: Sequence[Utterance], crop: Crop | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One batch through the upstream (the caller picks no_grad or inference_mode); with `crop`, each
        utterance's audio as the crop reads it."""
        wavs, lens = load_batch([u.path for u in utts], crop=crop or self.audio)
        wavs, lens = wavs.to(self.device), lens.to(self.device)
        extra = {"records": [u.record for u in utts]} if self.record_keys else {}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            hidden, frames = self.upstream(wavs, lens, **extra)
        hidden = list(hidden)
        shapes = {tuple(h.shape[::2]) for h in hidden}
        if len(hidden) != self.upstream_layers or shapes != {(len(utts), self.hidden_size)}:
            raise EvalkitError(
                f"upstream {type(self.upstream).__name__} returned {len(hidden)} hidden states of shapes "
                f"{sorted(shapes)} ([B, D]) but declares num_layers={self.upstream_layers}, "
                f"hidden_size={self.hidden_size}. Fix its attributes or its forward."
            )
        frames = frames.to(torch.int64)
        if int(frames.max()) > hidden[0].shape[1] or int(frames.min()) < 0:
            raise EvalkitError(
                f"upstream {type(self.upstream).__name__} returned frame counts {frames.tolist()} outside "
                f"[0, {hidden[0].shape[1]}] (the hidden states' length)."
            )
        if self.layers is not None:
            hidden = [hidden[i] for i in self.layers]
        return hidden, frames

    def run(self, utts: list[Utterance], bar: tqdm) -> list[np.ndarray]:
        """Each utterance's [n, L, D] frames in the storage dtype, in the order given."""
        out: list[np.ndarray] = []
        for batch in pack_by_padded_length(utts, lambda u: u.duration, self.batch_seconds):
            with torch.inference_mode():
                hidden, frames = self.forward(batch)
                stacked = torch.stack([h.to(self.storage) for h in hidden], dim=2).cpu()
            if self.storage == torch.bfloat16:
                stacked = stacked.view(torch.uint16)
            for i, n in enumerate(frames.tolist()):
                out.append(stacked[i, :n].numpy())
            bar.update(sum(u.duration for u in batch))
        return out

    @contextmanager
    def active(self) -> Iterator[None]:
        """Eval mode on the target device for the duration; the caller's state afterwards."""
        was_training = self.upstream.training
        first = next(self.upstream.parameters(), None)
        home = first.device if first is not None else None
        self.upstream.to(self.device).eval()
        try:
            yield
        finally:
            self.upstream.train(was_training)
            if home is not None and home != self.device:
                self.upstream.to(home)
