"""What a run pre-trains and in which order: the upstreams, the recipes they use and the runs they build on.

A recipe names a run it builds on one way only, as `${work}/<recipe name>` (`upstreams.work`):
each entry's dependencies are read from those references, and `resolved_config` replaces each by
the folder of the entry that runs that recipe here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from evalkit.core.errors import EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.core.registry import suggest
from evalkit.core.resources import pretrain_recipes_dir
from evalkit.core.results import result_path
from evalkit.evaluation.evaluate import resolve_tasks
from upstreams.checkpoint import is_finished
from upstreams.work import WORK, referenced_run

CONFIGS = pretrain_recipes_dir()

# name (the folder its run and results are kept under) -> the recipe it runs, configs/pretrain/<recipe>-<size>.yaml
RECIPES = {
    "hubert-iter1": "hubert",
    "hubert": "hubert-iter2",
    "wav2vec2": "wav2vec2",
    "bestrq": "bestrq",
    "summarymixing": "summarymixing",
    "distilhubert": "distilhubert",
}

# Where the pipeline builds on another of its runs than the one a recipe names: DistilHuBERT's recipes
# distil `${work}/hubert-<size>` (HuBERT iteration 1, what `evalkit pretrain hubert-<size>` leaves);
# the pipeline distils the HuBERT it publishes, iteration 2.
INSTEAD: dict[str, dict[str, str]] = {"distilhubert": {"hubert": "hubert"}}

PUBLISHED = ("hubert", "wav2vec2", "bestrq", "summarymixing", "distilhubert")


# The suite's ceiling (the oracle, a reference row of the board) and its floor (FBANK), and FBANK with context
BASELINES = ("oracle", "fbank", "fbank_context")


def _references(node: object) -> list[tuple[str, str]]:
    """Every `${work}/<recipe name>[/...]` value in a parsed recipe, as (recipe name, rest)."""
    if isinstance(node, dict):
        return [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    ref = referenced_run(node)
    return [ref] if ref else []


def _recipe_of(referenced: str, size: str, src: Path) -> str:
    """`hubert` for `${work}/hubert-tiny` in a tiny recipe: a run builds on runs of its own size."""
    if not referenced.endswith(f"-{size}"):
        raise EvalkitError(
            f"{src}: {WORK}/{referenced} is not a recipe of size {size!r}; a pipeline run builds only on "
            f"runs of its own size ({WORK}/<recipe>-{size})."
        )
    return referenced[: -len(size) - 1]


def _builds_on(name: str) -> dict[str, str]:
    """{recipe that `name`'s recipes (any size) reference: the entry whose run stands for it here}."""
    stem = RECIPES[name]
    runs = {recipe: entry for entry, recipe in RECIPES.items()}
    found: dict[str, str] = {}
    for src in sorted(CONFIGS.glob(f"{stem}-*.yaml")):
        size = src.stem[len(stem) + 1 :]
        if "-" in size:  # another recipe's file: hubert-iter2-tiny.yaml is not a size of hubert
            continue
        for referenced, _ in _references(yaml.safe_load(src.read_text())):
            recipe = _recipe_of(referenced, size, src)
            entry = INSTEAD.get(name, {}).get(recipe) or runs.get(recipe)
            if entry is None:
                raise EvalkitError(
                    f"{src}: builds on {WORK}/{referenced}, a run of recipe {recipe!r}, which the pipeline "
                    f"does not pre-train (it runs {', '.join(sorted(runs))})."
                )
            found[recipe] = entry
    return found


# name -> (its recipe, {recipe it builds on: the entry whose run it uses}); read from the recipes
UPSTREAM_PLAN: dict[str, tuple[str, dict[str, str]]] = {
    name: (recipe, _builds_on(name)) for name, recipe in RECIPES.items()
}


def _resolve(node: object, size: str, src: Path, folders: dict[str, Path]) -> object:
    """`node` with every `${work}/<recipe>-<size>` replaced by the folder of that recipe's run here."""
    if isinstance(node, dict):
        return {key: _resolve(value, size, src, folders) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, size, src, folders) for value in node]
    ref = referenced_run(node)
    if ref is None:
        return node
    referenced, rest = ref
    return str(folders[_recipe_of(referenced, size, src)]) + rest


def resolved_config(name: str, size: str, upstream_dir: Path, out: Path) -> Path:
    """The recipe for `name` at `size`, with paths to the upstreams it builds on filled in."""
    stem, builds_on = UPSTREAM_PLAN[name]
    src = CONFIGS / f"{stem}-{size}.yaml"
    if not src.is_file():
        raise EvalkitError(f"{src}: pre-training recipe missing for {name!r} at size {size!r}.")
    folders = {recipe: upstream_dir / entry for recipe, entry in builds_on.items()}
    cfg = _resolve(yaml.safe_load(src.read_text()), size, src, folders)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{size}.yaml"
    atomic_write_text(
        path, f"# resolved from {src.name} by evalkit run\n" + yaml.safe_dump(cfg, sort_keys=False)
    )
    return path


def check_only(only: list[str] | None, baselines: tuple[str, ...] = BASELINES) -> set[str] | None:
    """`--only`'s names as a set (None: everything); `baselines` are those the run profile evaluates."""
    if only is None:
        return None
    known = (*PUBLISHED, *baselines)
    if not only:
        raise EvalkitError(f"--only names no upstream. Choose from {', '.join(known)}.")
    for name in only:
        if name not in known:
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
    return all(result_path(opts.output, spec, t.name).exists() for t in resolve_tasks("all"))
