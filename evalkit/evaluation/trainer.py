"""The downstream trainer: every head of a task, at every learning rate of its grid, in one pass.

Each (head, learning rate) pair is a `Run` with its own featurizer and head.
One optimizer holds a parameter group per run, and every batch of (cached)
features feeds every run, so an LR sweep costs little more than one run: the
expensive part, reading or computing upstream features, happens once per
batch. Dev is scored every `eval_every` steps; each run keeps its best state,
each head picks its best learning rate on dev, and only that state sees test.

What a step is comes from the task: batches of `batch_seconds` of padded audio,
or of `batch.utterances` utterances with `batch.accumulate` of them per
optimiser step (s3prl's recipes); AdamW or Adam; a warm-up + cosine schedule or
a constant rate; the gradient-norm clip; SpecAugment on the featurizer's output.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from evalkit.core.audio import SAMPLE_RATE, Crop, load_audio
from evalkit.core.batching import pack_by_padded_length
from evalkit.core.errors import ConfigError
from evalkit.core.manifest import audio_path
from evalkit.core.progress import progress_bar
from evalkit.evaluation.features import CachedFeatures
from evalkit.evaluation.featurizer import WeightedLayerSum
from evalkit.evaluation.heads import HEADS
from evalkit.evaluation.specaug import Augmentation, draw
from evalkit.metrics import Metric

if TYPE_CHECKING:
    from evalkit.evaluation.kinds.base import TaskKind
    from evalkit.evaluation.task import BatchConfig, TaskConfig


@dataclass
class Run:
    head_name: str
    lr: float
    featurizer: WeightedLayerSum
    head: nn.Module
    criterion: nn.Module | None
    best_dev: float | None = None
    best_step: int = 0
    best_state: dict | None = None
    dev_curve: list[tuple[int, float]] = field(default_factory=list)
    test_curve: list[tuple[int, float]] = field(default_factory=list)  # task.report_selected_on_test only

    def modules(self) -> nn.ModuleList:
        return nn.ModuleList([m for m in (self.featurizer, self.head, self.criterion) if m is not None])

    def forward(self, hidden: torch.Tensor, lens: torch.Tensor, augment: Augmentation | None = None) -> Any:
        x = self.featurizer(hidden)
        return self.head(x if augment is None else augment(x), lens)


def make_batches(
    ids: list[str], durations: dict[str, float], batch_seconds: float, rng: random.Random
) -> list[list[str]]:
    """Batches of similar-length utterances whose padded length sums to at most `batch_seconds`."""
    batches = pack_by_padded_length(
        sorted(ids, key=lambda i: durations[i]), durations.__getitem__, batch_seconds
    )
    if len(batches) > 1 and len(batches[-1]) == 1:  # BatchNorm in training needs two utterances
        last = batches.pop()
        batches[-1] += last
    rng.shuffle(batches)
    return batches


def utterance_batches(
    ids: list[str],
    durations: dict[str, float],
    spec: BatchConfig,
    rng: random.Random,
    classes: dict[str, Any] | None = None,
) -> list[list[str]]:
    """One epoch of batches of `spec.utterances` utterances, as s3prl's recipes batch.

    With `classes` ({id: class}), `len(ids)` draws with replacement, each utterance weighted by
    1 / its class's count (s3prl's KS: a WeightedRandomSampler); with `spec.bucketing`, neighbours
    in duration order, the batches shuffled (s3prl's length buckets); else a random order.
    """
    if classes is not None:
        counts = Counter(classes[i] for i in ids)
        order = rng.choices(ids, weights=[1 / counts[classes[i]] for i in ids], k=len(ids))
    elif spec.bucketing:
        order = sorted(ids, key=lambda i: durations[i])
    else:
        order = rng.sample(ids, len(ids))
    n = spec.utterances
    batches = [order[k : k + n] for k in range(0, len(order), n)]
    if len(batches) > 1 and len(batches[-1]) == 1:  # BatchNorm in training needs two utterances
        batches[-2] += batches.pop()
    if spec.bucketing:
        rng.shuffle(batches)
    return batches


def training_records(kind: TaskKind, progress: bool = False) -> list[dict]:
    """The train split's records a run trains on: all of them, less those under the task's
    `crop.min_seconds` (s3prl's ASV drops training utterances under 2 s). Where the task's audio
    filter removes silence, the length is what the filter leaves, as s3prl measures it after its
    sox effects: every long enough training file is read once for that."""
    records = kind.records("train")
    crop, audio = kind.task.crop, kind.task.audio
    if crop is None or not crop.min_seconds:
        return records
    kept = [r for r in records if r["duration"] >= crop.min_seconds]
    if audio is not None and audio.remove_silence:
        manifest = kind.manifest("train")
        bar = progress_bar(kept, desc=f"{kind.task.name} silence", disable=not progress, leave=False)
        kept = [
            r
            for r in bar
            if len(audio(load_audio(audio_path(manifest, r)))) >= crop.min_seconds * SAMPLE_RATE
        ]
    if not kept:
        raise ConfigError(
            f"{kind.task.source or kind.task.name}: crop.min_seconds = {crop.min_seconds:g} leaves no training "
            f"utterance in {kind.manifest('train')}; lower it."
        )
    return kept


def training_batches(
    task: TaskConfig, ids: list[str], durations: dict[str, float], targets: dict[str, Any], rng: random.Random
) -> Iterator[list[str]]:
    """Training batches without end, epoch after epoch, as the task's `batch` and `sampler` say."""
    while True:
        if task.batch is None:
            epoch = make_batches(ids, durations, task.batch_seconds, rng)
        else:
            classes = {i: repr(targets[i]) for i in ids} if task.sampler == "balanced" else None
            epoch = utterance_batches(ids, durations, task.batch, rng, classes)
        while epoch:
            yield epoch.pop()


def make_optimizer(
    task: TaskConfig, params: list[dict], steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The task's optimiser over parameter groups (each with its `lr`) and its schedule over `steps`
    steps (None: the rate stays constant, as in s3prl's SUPERB recipes)."""
    spec = task.optimizer
    kind = torch.optim.Adam if spec.get("name", "adamw") == "adam" else torch.optim.AdamW
    opt = kind(params, weight_decay=float(spec.get("weight_decay", 0.0)))
    if task.schedule == "constant":
        return opt, None
    warmup = max(1, steps // 20)
    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))),
    )


def build_runs(
    kind: TaskKind,
    num_layers: int,
    hidden_size: int,
    lr_grid: list[float],
    heads=None,
    seed: int | None = None,
) -> list[Run]:
    """A run per (head, learning rate); `heads` defaults to all the task's heads, `seed` to the task's."""
    runs = []
    task = kind.task
    seed = task.seed if seed is None else seed
    for h in task.heads if heads is None else heads:
        for lr in lr_grid:
            torch.manual_seed(seed)  # every LR starts from the same initial head
            feat = WeightedLayerSum(
                num_layers,
                layer=None if (layer := task.featurizer.get("layer")) is None else kind.layer_position(layer),
                layer_norm=bool(task.featurizer.get("layer_norm", False)),
            )
            head = HEADS.get(h.type)(hidden_size, **{**kind.head_args(), **h.args})
            runs.append(Run(h.name, lr, feat, head, kind.criterion(head)))
    return runs


@torch.no_grad()
def predict_split(
    kind: TaskKind, features, split: str, run: Run, batch_seconds: float, bf16: bool = False
) -> dict:
    recs = kind.records(split)
    durations = {r["id"]: r["duration"] for r in recs}
    run.modules().eval()
    preds: dict[str, Any] = {}
    device = torch.device(kind.settings.device)
    for batch in make_batches(list(durations), durations, batch_seconds, random.Random(0)):
        hidden, lens = to_device(features.batch(batch), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = run.forward(hidden, lens)
        preds.update(zip(batch, kind.predict(out, lens)))
    run.modules().train()
    return preds


def primary_value(metrics: list[Metric]) -> tuple[float, bool]:
    """The primary metric's value and direction, from scored metrics."""
    m = next(m for m in metrics if m.primary)
    return m.compute(), m.higher_is_better


def train(
    kind: TaskKind,
    features: dict,
    lr_grid: list[float],
    *,
    steps: int,
    eval_every: int,
    bf16: bool = False,
    progress: bool = True,
    log=print,
    heads=None,
    seed: int | None = None,
) -> list[Run]:
    """Train every (head, lr) run on `features["train"]`, keeping each run's best dev state.

    `heads` (default: all of the task's) limits which head specs train; `seed` (default: the task's)
    draws the heads' initial weights and the batch order.
    """
    task = kind.task
    seed = task.seed if seed is None else seed
    train_feats = features["train"]
    runs = build_runs(kind, train_feats.num_layers, train_feats.hidden_size, lr_grid, heads, seed)
    device = torch.device(kind.settings.device)
    for r in runs:
        r.modules().to(device)
    groups = [{"params": list(r.modules().parameters()), "lr": r.lr} for r in runs]
    opt, sched = make_optimizer(task, groups, steps)
    recs = {r["id"]: r for r in training_records(kind, progress)}
    targets = {i: kind.target(r) for i, r in recs.items()}
    durations = {i: r["duration"] for i, r in recs.items()}
    rng = random.Random(seed)
    torch.manual_seed(seed)
    batches = training_batches(task, list(recs), durations, targets, rng)
    accumulate = task.batch.accumulate if task.batch is not None else 1
    # s3prl's random training crops (the features are computed on the fly for them): their own RNG
    crop = None if task.crop is None else Crop(task.crop.seconds, random.Random(seed), task.audio)

    # features computed on the fly (random crops, --no-cache) run the upstream: in this process, never ahead
    workers = kind.settings.loader_workers if crop is None and isinstance(train_feats, CachedFeatures) else 0
    ahead = prefetched(train_feats, batches, steps * accumulate, workers, device) if workers else None

    def micro_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
        for _ in range(accumulate):  # loaded one at a time: an accumulated step holds one in memory
            if ahead is not None:
                batch, feats = next(ahead)
            else:
                batch = next(batches)
                feats = train_feats.batch(batch) if crop is None else train_feats.batch(batch, crop=crop)
            hidden, lens = to_device(feats, device)
            yield hidden, lens, [targets[i] for i in batch]

    bar = progress_bar(range(steps), desc=f"{task.name} train", disable=not progress, leave=False)
    t0 = time.time()
    for step in bar:
        total = train_step(
            kind,
            runs,
            opt,
            micro_batches(),
            bf16,
            accumulate=accumulate,
            clip=task.gradient_clipping,
            specaug=task.specaug,
        )
        if sched is not None:
            sched.step()
        bar.set_postfix(loss=f"{total:.3f}")
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            score_dev(kind, features, runs, step + 1, bf16)
            best = ", ".join(f"{r.head_name}@{r.lr:g}={r.dev_curve[-1][1]:.4f}" for r in runs)
            log(
                f"[{task.name}] step {step + 1}/{steps} loss {total:.3f} dev {best} ({time.time() - t0:.0f} s)"
            )
    for r in runs:
        if r.best_state is not None:
            r.modules().load_state_dict(r.best_state)
    return runs


class _BatchReader(torch.utils.data.Dataset):
    """The features of a fixed sequence of training batches, one item a batch (read in DataLoader workers:
    cached features are memory-mapped shards, which pickle as their paths)."""

    def __init__(self, features, batches: list[list[str]]) -> None:
        self.features, self.batches = features, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features.batch(self.batches[k])


def prefetched(
    features, batches: Iterator[list[str]], count: int, workers: int, device: torch.device
) -> Iterator[tuple[list[str], tuple[torch.Tensor, torch.Tensor]]]:
    """The next `count` training batches' (ids, features), read ahead by `workers` DataLoader processes
    (into pinned memory for a GPU) while the heads train. The batch order is drawn here first, from the
    same generator, so the run is the one a run reading in the loop makes."""
    order = [next(batches) for _ in range(count)]
    loader = torch.utils.data.DataLoader(
        _BatchReader(features, order),
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4,
    )
    return zip(order, loader)


def score_dev(kind: TaskKind, features: dict, runs: list[Run], step: int, bf16: bool) -> None:
    """Every run's dev value after `step` steps, added to its curve; a new best keeps the run's state.
    With the task's `report_selected_on_test`, its test value too (`Run.test_curve`, kept apart: what
    SUPERB's selection on test would report)."""
    seconds = kind.task.batch_seconds
    for r in runs:
        dev_preds = predict_split(kind, features["dev"], "dev", r, seconds, bf16)
        value, higher = primary_value(kind.score("dev", dev_preds)[0])
        r.dev_curve.append((step, value))
        if r.best_dev is None or (value > r.best_dev if higher else value < r.best_dev):
            r.best_dev, r.best_step = value, step
            r.best_state = copy.deepcopy(r.modules().state_dict())
        if kind.task.report_selected_on_test:
            test_preds = predict_split(kind, features["test"], "test", r, seconds, bf16)
            r.test_curve.append((step, primary_value(kind.score("test", test_preds)[0])[0]))


def to_device(
    batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of features and frame counts on the device the heads train on (copied while the GPU works)."""
    hidden, lens = batch
    if device.type == "cpu":
        return hidden, lens
    return hidden.pin_memory().to(device, non_blocking=True), lens.to(device, non_blocking=True)


def train_step(
    kind: TaskKind,
    runs: list[Run],
    opt: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, list]],
    bf16: bool,
    *,
    accumulate: int = 1,
    clip: float = 5.0,
    specaug=None,
) -> float:
    """One optimisation step of every run on `accumulate` batches of (features, frame counts, targets),
    each batch's loss divided by `accumulate` (as s3prl's gradient accumulation); each run's gradient
    norm clipped to `clip`; with `specaug` (a SpecAugConfig), every run's featurizer output augmented
    with the same random choices. Returns the runs' mean loss."""
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for hidden, lens, targets in batches:
        augment = None if specaug is None else draw(specaug, lens, hidden.shape[2], hidden.shape[3])
        with torch.autocast(hidden.device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = [kind.loss(r.forward(hidden, lens, augment), targets, lens, r.criterion) for r in runs]
        loss = sum(losses) / accumulate if accumulate > 1 else sum(losses)
        loss.backward()
        total += loss.item()
    for r in runs:
        torch.nn.utils.clip_grad_norm_(r.modules().parameters(), clip)
    opt.step()
    return total / len(runs)


def select(runs: list[Run], higher_is_better: bool) -> dict[str, Run]:
    """The best-on-dev run of each head (ties: the smaller learning rate)."""
    best: dict[str, Run] = {}
    for r in sorted(runs, key=lambda r: r.lr):
        cur = best.get(r.head_name)
        if cur is None or (r.best_dev > cur.best_dev if higher_is_better else r.best_dev < cur.best_dev):
            best[r.head_name] = r
    return best


GRID_EXTENSIONS = 2
"""At most this many learning rates are added beyond an edge of a head's grid (`extend_grid`)."""
LR_RANGE = (1e-6, 1e-1)
"""Learning rates `extend_grid` never goes beyond."""


def extend_grid(
    runs: list[Run], grid: list[float], higher_is_better: bool, train_more: Callable[[str, float], list[Run]]
) -> list[Run]:
    """Runs of rates beyond the grid's edges where the grid cannot show the optimum.

    When a head's best dev value is at the lowest or highest rate of a grid of two or more, and
    strictly better there than at the rate next to it (not a tie), the optimum may lie beyond:
    `train_more(head, rate)` trains the next rate in that direction (one more step of the grid's own
    spacing at that edge), up to `GRID_EXTENSIONS` rates per head and within `LR_RANGE`. Returns
    `runs` with the new runs added; each head's selection then sees them all.
    """
    rates = sorted(set(grid))
    if len(rates) < 2:
        return runs
    step = {"up": rates[-1] / rates[-2], "down": rates[0] / rates[1]}

    def beats(a: float, b: float) -> bool:
        return a > b if higher_is_better else a < b

    runs, added = list(runs), dict.fromkeys({r.head_name for r in runs}, 0)
    while True:
        todo = []
        for head in sorted(added):
            mine = sorted((r for r in runs if r.head_name == head), key=lambda r: r.lr)
            best = select(mine, higher_is_better)[head]
            if best is mine[-1] and beats(best.best_dev, mine[-2].best_dev):
                lr = best.lr * step["up"]
            elif best is mine[0] and beats(best.best_dev, mine[1].best_dev):
                lr = best.lr * step["down"]
            else:
                continue
            if added[head] < GRID_EXTENSIONS and LR_RANGE[0] <= lr <= LR_RANGE[1]:
                todo.append((head, lr))
        if not todo:
            return runs
        for head, lr in todo:
            added[head] += 1
            runs += train_more(head, lr)


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `n` (None: unchanged) inside the block."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
