"""What a run pre-trains and in which order: the upstreams, the recipes they use and the runs they build on."""

from __future__ import annotations

from pathlib import Path

import yaml

from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.core.resources import pretrain_recipes_dir
from upstreams.checkpoint import is_finished

CONFIGS = pretrain_recipes_dir()


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
    atomic_write_text(
        path, f"# resolved from {src.name} by evalkit run\n" + yaml.safe_dump(cfg, sort_keys=False)
    )
    return path


def check_only(only: list[str] | None) -> set[str] | None:
    if only is None:
        return None
    known = (*PUBLISHED, *BASELINES)
    if not only:
        raise EvalkitError(f"--only names no upstream. Choose from {', '.join(known)}.")
    for name in only:
        if name not in known:
            from evalkit.core.registry import suggest

            raise EvalkitError(
                f"--only: unknown upstream {name!r}.{suggest(name, known)} Choose from {', '.join(known)}."
            )
    return set(only)


def has_work(name: str, upstream_dir: Path, twins: dict[str, list[str]], opts) -> bool:
    """Whether an evaluation of `name`, or of the twin it owns, is missing (so its checkpoint is needed)."""
    if not evaluated(str(upstream_dir / name), opts):
        return True
    twin = upstream_dir / f"{name}-random"
    return name in twins and not (twin / "model.safetensors").is_file() and not evaluated(str(twin), opts)


def with_dependencies(names: set[str], upstream_dir: Path) -> set[str]:
    """`names` and the unfinished pre-trainings they build on (HuBERT iteration 1 for iteration 2, ...)."""
    wanted, todo = set(), [n for n in names if n in UPSTREAM_PLAN]
    while todo:
        name = todo.pop()
        wanted.add(name)
        todo += [
            d
            for d in UPSTREAM_PLAN[name][1].values()
            if d not in wanted and not is_finished(upstream_dir / d)
        ]
    return wanted


def evaluated(spec: str, opts) -> bool:
    """Whether `spec` already has a result for every task (its evaluation job would only skip)."""
    from evalkit.core.results import result_path
    from evalkit.evaluation.evaluate import resolve_tasks

    return all(result_path(opts.output, spec, t.name).exists() for t in resolve_tasks("all"))
