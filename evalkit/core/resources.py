"""Folders that ship inside the evalkit package as data: the task definitions and the recipes.

In the repository they are the top-level folders `tasks/` and `configs/`; setup.cfg installs them
as `evalkit.tasks` and `evalkit.configs` (`package_dir`), so no generic `tasks` or `configs`
package lands in site-packages, and they are found the same way from any folder, installed
with `pip install .` or `pip install -e .`.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from evalkit.core.errors import ConfigError
from evalkit.core.registry import suggest


def tasks_dir() -> Path:
    """The folder of the built-in tasks (one sub-folder per task)."""
    return Path(str(files("evalkit.tasks")))


def pretrain_recipes_dir() -> Path:
    """The folder of the shipped pre-training recipes, `<method>-<size>.yaml`."""
    return Path(str(files("evalkit.configs"))) / "pretrain"


def pretrain_recipes() -> list[str]:
    """Names of the shipped pre-training recipes (`hubert-tiny`, ...)."""
    return sorted(p.stem for p in pretrain_recipes_dir().glob("*.yaml"))


def pretrain_recipe(spec: str | os.PathLike) -> Path:
    """A recipe file: `spec` itself when it is a file, else the shipped recipe of that name."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = pretrain_recipes_dir() / f"{path.name}.yaml"
    if path.parent == Path(".") and path.suffix == "" and shipped.is_file():
        return shipped
    names = pretrain_recipes()
    raise ConfigError(
        f"{spec}: no such recipe file, nor a shipped recipe of that name.{suggest(path.stem, names)} "
        f"Shipped recipes: {', '.join(names)}."
    )
