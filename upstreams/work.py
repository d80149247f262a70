"""How a recipe names a run it builds on: `${work}/<recipe name>`, the one way to do so.

HuBERT iteration 2 clusters a layer of iteration 1, DistilHuBERT distils a
teacher; their recipes write that run's folder as `${work}/<recipe name>`
(`${work}/hubert-small`: the run of hubert-small.yaml). `${work}` is the folder
that holds the runs, $EVALKIT_WORK if set, else `exp`, where `evalkit pretrain`
writes `<recipe name>/` by default; so `evalkit pretrain hubert-small` followed
by `evalkit pretrain hubert-iter2-small` works as is. `evalkit run` reads the
same references to order its pre-trainings, and replaces each by the folder of
its own run of that recipe (evalkit/pipeline/plan.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from evalkit.core.errors import ConfigError, EvalkitError

WORK = "${work}"


def work_dir() -> str:
    """The folder that holds the runs: $EVALKIT_WORK, or `exp` (as written: it goes into setup reports)."""
    return os.environ.get("EVALKIT_WORK", "exp")


def resolve_work(path: str, key: str) -> str:
    """A recipe path with `${work}` replaced by $EVALKIT_WORK, or by `exp` (`evalkit pretrain`'s default)."""
    if "${" in path.replace(WORK, ""):
        raise ConfigError(f"{key} = {path!r}: the only placeholder a recipe path may hold is {WORK}.")
    return path.replace(WORK, work_dir())


def checked_run_folder(path: str, key: str) -> str:
    """`resolve_work(path)`, refusing a `${work}` folder that does not exist with what to run first."""
    resolved = resolve_work(path, key)
    if WORK in path and not Path(resolved).is_dir():
        raise EvalkitError(
            f"{key} = {path!r} -> {resolved!r}: no such folder. Pre-train the recipe it names first (by "
            f"default into exp/<recipe name>), or set EVALKIT_WORK to the folder that holds that run."
        )
    return resolved


def referenced_run(value: object) -> tuple[str, str] | None:
    """(recipe name, the rest of the path) when `value` is `${work}/<recipe name>[/...]`, else None."""
    if not isinstance(value, str) or not value.startswith(WORK + "/"):
        return None
    name, sep, rest = value[len(WORK) + 1 :].partition("/")
    return name, sep + rest
