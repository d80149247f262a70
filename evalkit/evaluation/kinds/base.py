"""What every task kind provides: its data, its hooks for the trainer, and its run.

A task YAML is data; its `kind` picks one of these classes, which knows how
to turn manifest records into targets, a head's output into a loss and into
predictions, and predictions into metrics and samples. The trainer
(`evalkit/evaluation/trainer.py`) is the same loop for all of them. A kind
also owns its run (`TaskKind.run`): which splits it needs and how features
become the result's body; the default trains heads, and QbE overrides it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from evalkit.core.errors import ConfigError
from evalkit.core.manifest import read_manifest
from evalkit.core.results import HeadResult, Result
from evalkit.evaluation.protocols import PROTOCOLS
from evalkit.evaluation.seeds import SeedRun, SeedStore, over_seeds
from evalkit.evaluation.trainer import extend_grid, intra_op_threads, predict_split, select, train
from evalkit.metrics import Metric

if TYPE_CHECKING:
    from evalkit.evaluation.task import TaskConfig


CHOSEN_ON_TEST = "chosen on test, as SUPERB reports it; not evalkit's result (chosen on dev)"


@dataclass(frozen=True)
class RunSettings:
    """How a trained kind runs: `evalkit eval`'s options, resolved per task by the kind itself."""

    protocol: str = "sweep"  # which (head, learning rate) runs train: see PROTOCOLS
    lr_grid: list[float] | None = None  # None: the task's
    steps: int | None = None  # None: the task's budget for the suite's profile
    suite_profile: str | None = None
    train_threads: int | None = None  # torch intra-op threads while training (None: unchanged)
    bf16: bool = False
    progress: bool = True
    seeds: tuple[int, ...] | None = None  # head seeds (None: the task's `seed`)
    # which learning rates the head seeds after the first train (protocols.SEED_RATES)
    seed_rates: str = "grid"
    # the upstream's hidden states the features hold, by index (None: all of them; `--cache-layers`),
    # and how many it has
    layers: tuple[int, ...] | None = None
    upstream_layers: int | None = None
    device: str = "cpu"  # where heads train and predict (a torch device)
    # DataLoader workers that read the cached training batches ahead of the step (0: read in the loop)
    loader_workers: int = 0


def head_seeds(task: TaskConfig, s: RunSettings) -> list[int]:
    """The head seeds a trained run trains with under `s`, in the order the result lists them."""
    return sorted(s.seeds) if s.seeds else [task.seed]


def training_plan(task: TaskConfig, s: RunSettings) -> tuple[list[float], list, int, int]:
    """(learning-rate grid, head specs, steps, eval_every) that a trained run follows under `s`.

    A function of the task and the settings alone, so an existing result can be checked against
    what a run would do now without building the kind.
    """
    if s.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {s.protocol!r}: choose from {', '.join(PROTOCOLS)}.")
    grid = s.lr_grid or task.lr_grid
    head_specs = task.heads if s.protocol == "sweep" else task.heads[:1]
    if s.protocol == "quick":
        grid = [sorted(grid)[len(grid) // 2]]
    steps, every = task.budget(s.suite_profile)
    if s.steps is not None:
        steps, every = s.steps, max(1, min(every, s.steps // 2 or 1))
    return grid, head_specs, steps, every


class TaskKind:
    """Base class: data access, the hooks each kind fills in, and the trained run.

    `frame_rate` is the upstream's (Hz), for kinds whose targets are per frame;
    `settings` say how the run trains.
    """

    splits: tuple[str, ...] = ("train", "dev", "test")  # the splits its run reads
    trains: bool = True  # whether its run trains heads (by `training_plan`)

    def __init__(
        self,
        task: TaskConfig,
        data: Path,
        *,
        frame_rate: float | None = None,
        settings: RunSettings | None = None,
    ) -> None:
        self.task = task
        self.data = Path(data)
        self.frame_rate = frame_rate
        self.settings = settings or RunSettings()
        corpus = task.corpus
        if not isinstance(corpus, str) or Path(corpus).is_absolute() or ".." in Path(corpus).parts:
            raise ConfigError(
                f"{task.source or task.name}: corpus {corpus!r} of task {task.name!r} climbs out of --data "
                f"{self.data} (or is not a folder name). A corpus is a folder under --data, e.g. `corpus: ks`; "
                "fix the task's `corpus:`."
            )
        self.folder = self.data / corpus
        if not self.folder.is_dir():
            raise ConfigError(
                f"{self.folder}: corpus folder {task.corpus!r} of task {task.name!r} not found under --data {self.data}. "
                "Point --data at a suite made by `evalkit synth` or at prepared corpora."
            )
        self._records: dict[str, list[dict]] = {}

    def manifest(self, split: str) -> Path:
        return self.folder / f"{self.task.splits[split]}.jsonl"

    def records(self, split: str) -> list[dict]:
        if split not in self._records:
            manifest = self.manifest(split)
            if not manifest.is_file() and self.task.splits[split] != split:
                raise ConfigError(
                    f"{self.task.source or self.task.name}: splits.{split} = {self.task.splits[split]!r}, but "
                    f"{self.folder} has no {manifest.name} (it has "
                    f"{', '.join(sorted(p.stem for p in self.folder.glob('*.jsonl'))) or 'no manifests'}). "
                    "Prepare the corpus as the task file's comments say, or fix the task's `splits:`."
                )
            self._records[split] = read_manifest(manifest)
        return self._records[split]

    # --- hooks -------------------------------------------------------------------------------

    def data_warnings(self) -> list[str]:
        """What about the splits' data deserves a warning before training (e.g. a test label that the
        train split never has); nothing by default."""
        return []

    def head_args(self) -> dict[str, Any]:
        """Sizes the head needs from the data (classes, vocabulary)."""
        return {}

    def criterion(self, head: nn.Module) -> nn.Module | None:
        """A loss module with parameters of its own (AM-softmax), trained with the head."""
        return None

    def target(self, record: dict) -> Any:
        """One utterance's training target (computed once)."""
        raise NotImplementedError

    def loss(self, out: Any, targets: list, lens: torch.Tensor, criterion: nn.Module | None) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, out: Any, lens: torch.Tensor) -> list:
        """Per-utterance predictions from a head's output, as `score` takes them (labels, strings, SD's frame
        probabilities); `score` turns them into the JSON-able sample rows."""
        raise NotImplementedError

    def tune(self, preds: dict[str, Any]) -> dict:
        """Fit post-processing settings on dev predictions (SD's threshold and median filter).

        Called once per selected run, before its dev and test scoring; returns what it chose
        (recorded in the result, and passed to `score`), {} when the kind has nothing to tune.
        """
        return {}

    def selected_on_test(self, preds: dict[str, Any]) -> dict | None:
        """What SUPERB's own selection on test would report (SD: the best threshold and median filter
        read off the test set), as a labelled extra beside the dev-selected number; None by default."""
        return None

    def score(
        self, split: str, preds: dict[str, Any], postprocess: dict | None = None
    ) -> tuple[list[Metric], list[dict]]:
        """Metric objects (updated) and per-item sample rows for a split's predictions.

        `postprocess`: what `tune` chose (None: the kind's defaults).
        """
        raise NotImplementedError

    def metrics(self) -> list[Metric]:
        return [m.build() for m in self.task.metrics]

    def layer_position(self, layer: int) -> int:
        """Where the upstream's hidden state `layer` (negative: from the last) is in the features this run
        reads: itself, or its place among the layers a `--cache-layers` cache keeps."""
        layers = self.settings.layers
        return layer if layers is None else layers.index(layer % (self.settings.upstream_layers or 1))

    def upstream_layer(self, position: int) -> int:
        """The upstream's hidden state at `position` of the features this run reads."""
        return position if self.settings.layers is None else self.settings.layers[position]

    # --- the run -----------------------------------------------------------------------------

    def run(self, features: dict, log=print, store: SeedStore | None = None) -> tuple[Result, list[dict]]:
        """Features of `splits` -> what the task measured and the reference head's sample rows.

        Trains every (head, learning rate) run the protocol asks for, picks each head's best
        on dev, tunes post-processing on dev, and scores dev and test; with several head seeds,
        all of that once per seed, and the result holds their mean and each seed's numbers.
        With `store`, each finished seed of several is kept on disk and a seed found there (made
        the same way) is not trained again: an interrupted run resumes at the seed it was training.
        """
        for warning in self.data_warnings():
            log(f"warning: {warning}")
        grid, head_specs, steps, every = training_plan(self.task, self.settings)
        seeds = head_seeds(self.task, self.settings)
        store = store if len(seeds) > 1 else None  # one seed has nothing to resume: its result is the file
        runs = []
        # --no-cache runs the upstream inside every step: it gets all threads, as in s3prl
        with intra_op_threads(self.settings.train_threads):
            for k, seed in enumerate(seeds):
                rates = None  # the whole grid
                if k and self.settings.seed_rates == "chosen":
                    rates = {name: head.lr for name, head in runs[0].result.heads.items()}
                if len(seeds) > 1:
                    at = (
                        ""
                        if rates is None
                        else f", at the rates seed {seeds[0]} chose: "
                        + ", ".join(f"{name} {lr:g}" for name, lr in rates.items())
                    )
                    log(f"[{self.task.name}] head seed {seed} ({k + 1} of {len(seeds)}){at}")
                kept = store.load(seed, self.metrics) if store is not None else None
                if kept is not None:
                    log(f"[{self.task.name}] head seed {seed}: finished before, read from {store.path(seed)}")
                    runs.append(kept)
                    continue
                runs.append(self._train_and_test(features, grid, head_specs, steps, every, log, seed, rates))
                if store is not None:
                    store.save(runs[-1])
        if len(runs) == 1:
            return runs[0].result, runs[0].samples
        return over_seeds(runs), [
            {"head": row["head"], "seed": run.seed, **row} for run in runs for row in run.samples
        ]

    def _train_and_test(
        self,
        feats: dict,
        grid: list[float],
        head_specs: list,
        steps: int,
        every: int,
        log,
        seed: int,
        rates: dict[str, float] | None = None,
    ) -> SeedRun:
        """One head seed: every head at every rate of `grid` (extended where the best is at an edge),
        or with `rates` ({head: rate}) each head at its one rate, as an earlier seed chose it."""
        higher = self.task.primary_metric.build().higher_is_better

        def fit(lrs: list[float], specs: list, progress: bool) -> list:
            return train(
                self,
                feats,
                lrs,
                steps=steps,
                eval_every=every,
                bf16=self.settings.bf16,
                progress=progress,
                log=log,
                heads=specs,
                seed=seed,
            )

        def train_more(head: str, lr: float) -> list:
            log(
                f"[{self.task.name}] {head}: the best learning rate is at the edge of the grid; also trying {lr:g}"
            )
            return fit([lr], [h for h in head_specs if h.name == head], False)

        if rates is None:
            runs = extend_grid(fit(grid, head_specs, self.settings.progress), grid, higher, train_more)
        else:
            runs = [run for h in head_specs for run in fit([rates[h.name]], [h], self.settings.progress)]
        return self._test(feats, grid, runs, select(runs, higher), steps, seed)

    def _test(
        self, feats: dict, grid: list[float], runs: list, chosen: dict, steps: int, seed: int
    ) -> SeedRun:
        """Each head's chosen run: post-processing tuned on dev, then dev and test scored."""
        task, bf16 = self.task, self.settings.bf16
        primary = task.primary_metric
        higher = primary.build().higher_is_better
        heads: dict[str, HeadResult] = {}
        scored: dict[str, list[Metric]] = {}
        samples: list[dict] = []
        for k, (name, run) in enumerate(chosen.items()):
            dev_preds = predict_split(self, feats["dev"], "dev", run, task.batch_seconds, bf16)
            postprocess = self.tune(dev_preds)  # chosen on dev, before test is seen
            dev_metrics, _ = self.score("dev", dev_preds, postprocess)
            test_preds = predict_split(self, feats["test"], "test", run, task.batch_seconds, bf16)
            test_metrics, rows = self.score("test", test_preds, postprocess)
            on_test = self.selected_on_test(test_preds) if postprocess else None
            if run.test_curve:  # the checkpoint SUPERB's selection on test would have kept
                better = max if higher else min
                step, value = better(run.test_curve, key=lambda point: point[1])
                on_test = {"note": CHOSEN_ON_TEST, primary.name: value, "step": step}
            dev, _ = metric_block(dev_metrics, ci=False)
            test, ci = metric_block(test_metrics, ci=True)
            scored[name] = test_metrics
            heads[name] = HeadResult(
                type=next(h.type for h in task.heads if h.name == name),
                metrics={"dev": dev, "test": test},
                ci95={"test": ci},
                lr=run.lr,
                lr_grid={f"{r.lr:g}": r.best_dev for r in runs if r.head_name == name},
                best_step=run.best_step,
                dev_curves={f"{r.lr:g}": r.dev_curve for r in runs if r.head_name == name},
                layer_weights=run.featurizer.layer_weights(),
                head_parameters=sum(p.numel() for p in run.head.parameters()),
                steps=steps,
                postprocess=postprocess or None,
                selected_on_test=on_test,
            )
            if k == 0:  # the first head is the task's reference (SUPERB) head
                samples = [{"head": name, **row} for row in rows]
        first = next(iter(heads))
        ref = heads[first]
        result = Result(
            metrics=ref.metrics,
            ci95=ref.ci95,
            primary_metric=primary.name,
            higher_is_better=higher,
            head=first,
            lr=ref.lr,
            lr_grid=grid,  # as planned; each head's lr_grid also has the rates extend_grid added
            layer_weights=ref.layer_weights,
            postprocess=ref.postprocess,
            heads=heads,
        )
        return SeedRun(seed, result, samples, scored)


def metric_block(metrics: list[Metric], ci: bool) -> tuple[dict, dict]:
    """{name: value} and, with `ci`, {name: [low, high] or None} (95 % bootstrap) of scored metrics."""
    values = {m.name: m.compute() for m in metrics}
    cis = {}
    if ci:
        for m in metrics:
            low, high = m.confidence_interval()
            cis[m.name] = None if math.isnan(low) else [low, high]
    return values, cis


def pad_targets(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.zeros(len(seqs), max(1, int(lens.max()) if len(seqs) else 1), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lens
