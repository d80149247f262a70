"""The unlabeled corpus of pre-training and its batches, planned by seconds of audio.

An epoch's plan is a function of (seed, epoch) alone: one random crop per
utterance, similar lengths batched together up to a budget of padded audio,
batches shuffled. So a resumed run replays the same batches from its saved
position (epoch, batch index), and each torchrun process takes a disjoint shard.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from evalkit.core.audio import SAMPLE_RATE, load_audio
from evalkit.core.batching import pack_by_padded_length
from evalkit.core.config import SerialisableConfig, rule
from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import audio_path, read_manifest
from upstreams.objective import Batch, PretrainData


@dataclass
class DataConfig(SerialisableConfig):
    # longer utterances are cropped at random, anew every epoch
    crop_seconds: float = field(default=8.0, metadata=rule(above=0))
    # padded audio per batch, per process (× processes × accumulate per step)
    batch_seconds: float = field(default=64.0, metadata=rule(above=0))
    min_seconds: float = field(default=1.0, metadata=rule(min=0))  # shorter utterances are dropped
    # DataLoader processes reading audio; 0 reads it in the training process
    workers: int = field(default=0, metadata=rule(min=0))


def read_data(folder: Path, min_seconds: float) -> PretrainData:
    """A suite folder (its pretrain/train.jsonl), a folder with train.jsonl, or a .jsonl manifest."""
    for manifest in (folder / "pretrain" / "train.jsonl", folder / "train.jsonl", folder):
        if manifest.is_file():
            records = [r for r in read_manifest(manifest) if float(r["duration"]) >= min_seconds]
            if not records:
                raise EvalkitError(
                    f"{manifest}: no utterance is at least data.min_seconds = {min_seconds} s long."
                )
            return PretrainData(manifest, records)
    raise EvalkitError(
        f"{folder}: no pretrain/train.jsonl or train.jsonl there. Pass --data a suite made by "
        "`evalkit synth` or a folder holding a train.jsonl manifest."
    )


@dataclass(frozen=True)
class Crop:
    index: int  # record
    offset: int  # first sample
    samples: int


def plan_epoch(data: PretrainData, cfg: DataConfig, seed: int, epoch: int) -> list[list[Crop]]:
    """The epoch's batches, a function of (seed, epoch) alone so that a resumed run replays them.

    Each utterance gives one random crop of at most `crop_seconds`; crops are
    sorted by length with ±5% jitter (batch membership changes between epochs)
    and packed while the batch's padded audio stays within `batch_seconds`.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    limit = int(cfg.crop_seconds * SAMPLE_RATE)
    crops = []
    for i, rec in enumerate(data.records):
        n = int(float(rec["duration"]) * SAMPLE_RATE)
        length = min(n, limit)
        crops.append((length * rng.uniform(0.95, 1.05), Crop(i, rng.randrange(n - length + 1), length)))
    crops.sort(key=lambda pair: pair[0])
    batches = pack_by_padded_length(
        [c for _, c in crops], lambda c: c.samples, cfg.batch_seconds * SAMPLE_RATE
    )
    rng.shuffle(batches)
    return batches


def load_crops(data: PretrainData, crops: list[Crop]) -> Batch:
    """One training batch: each crop cut from its utterance, zero-padded (whole files: core.audio.load_batch)."""
    wavs, offsets = [], []
    for c in crops:
        audio = load_audio(audio_path(data.manifest, data.records[c.index]))
        start = max(0, min(c.offset, audio.shape[0] - c.samples))  # the manifest's duration may round up
        wavs.append(torch.from_numpy(audio[start : start + c.samples]))
        offsets.append(start)
    lens = torch.tensor([w.shape[0] for w in wavs])
    padded = torch.zeros(len(wavs), int(lens.max()))
    for i, w in enumerate(wavs):
        padded[i, : w.shape[0]] = w
    return Batch(padded, lens, [str(data.records[c.index]["id"]) for c in crops], torch.tensor(offsets))


class EpochBatches(torch.utils.data.Dataset):
    def __init__(self, data: PretrainData, batches: list[list[Crop]]) -> None:
        self.data, self.batches = data, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:
        return load_crops(self.data, self.batches[i])


def batch_stream(
    data: PretrainData, cfg: DataConfig, seed: int, rank: int, world: int, epoch: int, index: int
) -> Iterator[tuple[int, int, Batch]]:
    """This process's batches from position (epoch, index) on, forever: (epoch, next index, batch).

    Each process takes every world-th batch of the epoch (a disjoint shard);
    the epoch is cut to a multiple of world so that all take the same number of steps.
    """
    while True:
        batches = plan_epoch(data, cfg, seed, epoch)
        mine = batches[rank : len(batches) // world * world : world]
        if not mine:
            raise EvalkitError(
                f"{data.manifest}: {len(batches)} batch(es) per epoch cannot feed {world} processes; "
                "lower data.batch_seconds or use fewer processes."
            )
        dataset = EpochBatches(data, mine[index:])
        loader = (
            torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=cfg.workers)
            if cfg.workers
            else (dataset[i] for i in range(len(dataset)))
        )
        for batch in loader:
            index += 1
            yield epoch, index, batch
        epoch, index = epoch + 1, 0
