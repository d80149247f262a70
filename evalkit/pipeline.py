"""`evalkit run`: the whole pipeline, resumable stage by stage.

    synthesise the suite -> pre-train the five upstreams -> make their random-init twins
    -> evaluate them and the baselines on the ten tasks -> build the leaderboard

Every stage is skipped when its outputs exist (a finished pre-training has
`pretraining.finished` in its config.json; an evaluation has its result
file), so a killed run re-run with the same command resumes where it stopped.
Stage wall times go to WORKDIR/stages.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from evalkit.errors import EvalkitError
from evalkit.manifest import atomic_write_text

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "pretrain"

# name -> (config stem, what it needs from an earlier upstream: {config key path: upstream name})
UPSTREAM_PLAN: dict[str, tuple[str, dict[str, str]]] = {
    "hubert-iter1": ("hubert", {}),
    "hubert": ("hubert-iter2", {"objective.targets.path": "hubert-iter1"}),
    "wav2vec2": ("wav2vec2", {}),
    "bestrq": ("bestrq", {}),
    "summarymixing": ("summarymixing", {}),
    "distilhubert": ("distilhubert", {"objective.teacher": "hubert"}),
}
PUBLISHED = ("hubert", "wav2vec2", "bestrq", "summarymixing", "distilhubert")
BASELINES = ("fbank", "fbank_context")


@dataclass(frozen=True)
class RunProfile:
    suite: str  # synth profile
    size: str  # pre-training config size: tiny | small
    max_steps: int | None = None  # cap on pre-training steps (smoke)
    eval_steps: int | None = None  # cap on downstream steps (smoke)
    sweep: bool = True  # False: reference head only, one learning rate (smoke)


PROFILES = {
    "smoke": RunProfile("smoke", "tiny", max_steps=12, eval_steps=8, sweep=False),
    "default": RunProfile("default", "tiny"),
    "full": RunProfile("default", "small"),
}


def _set(cfg: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def resolved_config(name: str, size: str, upstream_dir: Path, out: Path) -> Path:
    """The recipe for `name` at `size`, with paths to the upstreams it builds on filled in."""
    stem, needs = UPSTREAM_PLAN[name]
    src = CONFIGS / f"{stem}-{size}.yaml"
    if not src.is_file():
        raise EvalkitError(f"{src}: pre-training recipe missing for {name!r} at size {size!r}.")
    cfg = yaml.safe_load(src.read_text())
    for key, dep in needs.items():
        _set(cfg, key, str(upstream_dir / dep))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{size}.yaml"
    atomic_write_text(path, f"# resolved from {src.name} by evalkit run\n" + yaml.safe_dump(cfg, sort_keys=False))
    return path


def _finished(folder: Path) -> bool:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return False
    return bool(json.loads(cfg.read_text()).get("pretraining", {}).get("finished"))


def make_random_twin(trained: Path, out: Path, seed: int = 0) -> Path:
    """The same architecture as `trained` with random weights: the control every SSL method needs."""
    import torch
    from safetensors.torch import save_file

    from upstreams import UPSTREAMS

    if (out / "model.safetensors").is_file():
        return out
    cfg = json.loads((trained / "config.json").read_text())
    torch.manual_seed(seed)
    model = UPSTREAMS.get(cfg["upstream"])(**cfg.get("config", {}))
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    twin = {"upstream": cfg["upstream"], "config": cfg.get("config", {}),
            "pretraining": {"method": "random-init", "twin_of": trained.name}}
    atomic_write_text(out / "config.json", json.dumps(twin, indent=1))
    return out


class Stages:
    """Records the wall time of each stage in WORKDIR/stages.json (kept across resumes)."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "stages.json"
        self.times = json.loads(self.path.read_text()) if self.path.exists() else {}

    def run(self, name: str, fn, log):
        t0 = time.time()
        result = fn()
        took = time.time() - t0
        if took > 1 or name not in self.times:
            self.times[name] = round(took, 1)
        atomic_write_text(self.path, json.dumps(self.times, indent=1))
        log(f"== {name}: {took:.0f} s")
        return result


def run_pipeline(profile: str = "default", workdir: str | Path = "work", jobs: int | None = None,
                 log=print) -> Path:
    """Run (or resume) the whole pipeline; returns the leaderboard folder."""
    if profile not in PROFILES:
        from evalkit.registry import suggest

        raise EvalkitError(f"Unknown run profile {profile!r}.{suggest(profile, PROFILES)} Choose from "
                           f"{', '.join(PROFILES)}.")
    p = PROFILES[profile]
    work = Path(workdir) / profile
    suite, upstream_dir, results = work / "suite", work / "upstreams", work / "results"
    stages = Stages(work)

    from evalkit.synth.suite import build_suite

    stages.run("synth", lambda: build_suite(suite, p.suite, seed=0, jobs=jobs), log)

    from evalkit.pretrain import pretrain

    for name in UPSTREAM_PLAN:
        out = upstream_dir / name
        if _finished(out):
            log(f"[pretrain] {name}: done ({out})")
            continue
        cfg = resolved_config(name, p.size, upstream_dir, work / "configs")
        resume = (out / "train_state").exists()
        stages.run(f"pretrain {name}", lambda cfg=cfg, out=out, resume=resume: pretrain(
            cfg, data=suite, out=out, max_steps=p.max_steps, resume=resume), log)

    twins = {f"{name}-random": make_random_twin(upstream_dir / name, upstream_dir / f"{name}-random")
             for name in PUBLISHED}

    from evalkit.evaluate import EvalOptions, resolve_tasks, run_eval

    tasks = resolve_tasks("all")
    opts = EvalOptions(data=suite, output=results, cache=work / "cache", steps=p.eval_steps, sweep=p.sweep)
    specs = [*BASELINES, *(str(upstream_dir / n) for n in PUBLISHED), *(str(t) for t in twins.values())]
    for spec in specs:
        stages.run(f"eval {Path(spec).name}", lambda spec=spec: run_eval(spec, tasks, opts, log=log), log)

    from evalkit.leaderboard.build import build_leaderboard

    board = work / "leaderboard"
    stages.run("leaderboard", lambda: build_leaderboard(results, board), log)
    return board
