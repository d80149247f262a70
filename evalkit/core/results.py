"""Result files: one JSON per upstream × task, plus a samples file beside it.

A number must always be traceable to how it was made, so the file carries
the resolved task config and version, the LR grid and choice, the learned
layer weights, the upstream's fingerprint, package versions and git hash,
sample counts and wall time. The leaderboard is built only from these files.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from evalkit.core.errors import ConfigError
from evalkit.core.io import atomic_write_text, read_json_object

SCHEMA_VERSION = 1
REQUIRED = (
    "task",
    "upstream",
    "metrics",
    "primary_metric",
    "higher_is_better",
    "task_version",
    "task_config",
)


def upstream_tag(spec: str) -> str:
    """A file-name-safe name for an upstream spec (`hf:/x/hubert` -> `hf-hubert`)."""
    prefix = ""
    if ":" in spec and not Path(spec).exists():
        prefix, _, spec = spec.partition(":")
        prefix += "-"
    name = Path(spec.rstrip("/")).name or spec
    return re.sub(r"[^A-Za-z0-9._+-]", "_", prefix + name)


def result_path(output: Path, spec: str, task: str) -> Path:
    return Path(output) / upstream_tag(spec) / f"{task}.json"


def samples_path(result: Path) -> Path:
    return result.with_name(result.stem + ".samples.jsonl")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("evalkit", "torch", "torchaudio", "numpy", "scikit-learn", "speechbrain", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_hash(dirty: bool = False) -> str | None:
    """The commit of this evalkit checkout (None outside git); `dirty`: "-dirty" appended when
    tracked files have uncommitted changes."""
    commit = _git("rev-parse", "HEAD") or None
    if commit and dirty and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return commit


def write_result(path: Path, result: dict[str, Any], samples: list[dict]) -> None:
    """Samples first, then the result: a result file never points at missing samples."""
    atomic_write_text(samples_path(path), "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    atomic_write_text(
        path, json.dumps({"schema_version": SCHEMA_VERSION, **result}, indent=1, ensure_ascii=False) + "\n"
    )


def read_result(path: Path) -> dict:
    """Load and check a result file; errors name the file and the missing key."""
    data = read_json_object(path, "result")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"{path}: result lacks key(s) {', '.join(missing)}.")
    test = data["metrics"].get("test", {}) if isinstance(data["metrics"], dict) else {}
    if data["primary_metric"] not in test:
        raise ConfigError(f"{path}: primary metric {data['primary_metric']!r} has no test value.")
    return data
