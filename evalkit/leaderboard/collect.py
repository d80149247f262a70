"""Gather result files into suites, refusing (by name) anything malformed or inconsistent.

A leaderboard must never count a number silently: every file that is not a
well-formed result, every duplicate of an upstream x task, and every result
whose task version (or primary metric) disagrees with the rest of its
column is reported in a warning that names the file, and left out.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.core.errors import ConfigError
from evalkit.core.results import read_result, samples_path

SUPERB_ORDER = ("pr", "ks", "ic", "sid", "er", "asr", "qbe", "sf", "asv", "sd")


@dataclass
class Entry:
    """One result file (upstream x task) that passed every check."""

    path: Path
    data: dict
    name: str  # the path relative to the results folder: what tables and the page show
    alias: str | None = None  # the spec this checkpoint was first seen under in the suite (see `collect`)

    @property
    def upstream(self) -> str:
        return self.alias or self.data["upstream"]

    @property
    def task(self) -> str:
        return self.data["task"]

    @property
    def primary(self) -> str:
        return self.data["primary_metric"]

    @property
    def value(self) -> float:
        return float(self.data["metrics"]["test"][self.primary])

    @property
    def seeds(self) -> list[str]:
        """The head seeds a result averages over (its `seeds` block); empty for a one-seed result."""
        return list(self.data.get("seeds") or {})

    def seed_values(self) -> dict[str, float]:
        """{seed: its primary test value} of a several-seed result ({} for one seed)."""
        return {
            s: float(r["metrics"]["test"][self.primary]) for s, r in (self.data.get("seeds") or {}).items()
        }

    @property
    def sd(self) -> float | None:
        """The sample standard deviation over head seeds of the primary test value (None: one seed)."""
        values = list(self.seed_values().values())
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def higher_is_better(self) -> bool:
        return bool(self.data["higher_is_better"])

    @property
    def samples(self) -> Path:
        return samples_path(self.path)


@dataclass
class Suite:
    """The results of one suite (synthetic profile + seed, or one corpus set), keyed (upstream, task)."""

    id: str
    label: str
    reference_name: str
    seed: int | None
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)

    @property
    def upstreams(self) -> list[str]:
        return sorted({u for u, _ in self.entries})

    @property
    def tasks(self) -> list[str]:
        """In SUPERB's order (variants such as `er_superb_fold1` beside their task), others after by name."""

        def key(t: str):
            base = t.split("_superb", 1)[0]
            return (SUPERB_ORDER.index(base) if base in SUPERB_ORDER else len(SUPERB_ORDER), t)

        return sorted({t for _, t in self.entries}, key=key)

    def column(self, task: str) -> dict[str, Entry]:
        return {u: e for (u, t), e in self.entries.items() if t == task}


def budget_gap(e: Entry) -> tuple[int, int] | None:
    """(steps trained, the profile's budget) when a result was trained off its suite profile's budget
    (e.g. with `--steps`); None when on budget or when there is nothing to compare."""
    profile = (e.data.get("suite") or {}).get("profile")
    budget = (
        (e.data["task_config"].get("steps") or {})
        if isinstance(e.data["task_config"].get("steps"), dict)
        else {}
    )
    head = (e.data.get("heads") or {}).get(e.data.get("head"), {})
    steps = head.get("steps") if isinstance(head, dict) else None
    if profile in budget and isinstance(steps, int) and steps != budget[profile]:
        return steps, budget[profile]
    return None


def check_result(path: Path) -> dict:
    """A result file as the leaderboard relies on it (`evalkit.core.results.ResultRecord`, the schema
    `evalkit eval` and `evalkit validate` check too); raises ConfigError naming the file and the key."""
    return read_result(path)


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def drop_non_finite(path: Path, data: dict) -> list[str]:
    """Remove NaN/inf metric values other than the primary test value (which `check_result` requires
    finite) from `data`, so that the score and the tables treat them as missing; a warning for each."""
    warnings = []
    for split in ("test", "dev"):
        block = data["metrics"].get(split) or {}
        for name, value in list(block.items()):
            if value is not None and not math.isfinite(value):
                del block[name]
                warnings.append(
                    f"{path}: metrics.{split}.{name} is {value}; left out of the tables and the score "
                    "(as if not measured). Re-run the evaluation to measure it."
                )
    intervals = (data.get("ci95") or {}).get("test") or {}
    for name, ci in list(intervals.items()):
        if ci is not None and not (isinstance(ci, list) and all(_finite(x) for x in ci)):
            del intervals[name]
            warnings.append(f"{path}: ci95.test.{name} is {ci!r:.40}, not finite numbers; not shown.")
    return warnings


def suite_of(data: dict) -> tuple[str, str, str, int | None]:
    """(id, label, reference name, seed) of the suite a result was measured on."""
    suite = data.get("suite") or {}
    profile, seed = suite.get("profile"), suite.get("seed")
    # suites stamped before versioning are version 1 and keep their old ids
    version = (
        f"-v{suite['version']}" if isinstance(suite.get("version"), int) and suite["version"] > 1 else ""
    )
    # `--protocol quick` results (one head, one learning rate) are only comparable among themselves
    quick = data.get("protocol") == "quick"
    tag, note = ("-quick", ", quick protocol (reference head, one learning rate)") if quick else ("", "")
    # a cache of some layers (`--cache-layers`) changes what the weighted sum sees: never beside all-layer
    # results, and never scored against SUPERB's reference points
    subset = ""
    if isinstance(layers := data.get("cache_layers"), list) and layers:
        subset = "-layers" + "_".join(map(str, layers))
        note += f", cached layers {','.join(map(str, layers))} only"
    tag += subset
    if profile:
        sid = f"synthetic-{profile}{version}" + (f"-seed{seed}" if seed is not None else "") + tag
        label = (
            f"synthetic suite{' ' + version[1:] if version else ''}, profile {profile}"
            + (f", seed {seed}" if seed is not None else "")
            + note
        )
        return sid, label, f"synthetic-{profile}{version}{tag}", seed
    name = suite.get("name") or "unknown"
    # Real corpora: tasks on s3prl's recipes (the faithful `*_superb` tasks) and tasks on evalkit's budget
    # (`*_superb_budget`) are scored apart; only the first may ever show the official SUPERB score
    if faithful(data):
        return f"corpus-{name}{tag}", f"corpora in {name!r}, s3prl's recipes{note}", f"superb{subset}", None
    return (
        f"corpus-{name}-budget{tag}",
        f"corpora in {name!r}, evalkit budget{note}",
        f"superb{subset}",
        None,
    )


def faithful(data: dict) -> bool:
    """Whether a result was trained on s3prl's recipe (its task's `recipe: s3prl`)."""
    return (data.get("task_config") or {}).get("recipe") == "s3prl"


PADDING_DEVIATION = (
    "features of a GroupNorm `hf:` checkpoint computed padding-exact (evalkit's default), where s3prl's experts "
    "normalise over the padded batch: re-run `evalkit eval` with --hf-padding s3prl for numbers to set beside "
    "the public leaderboard"
)


def deviations(data: dict) -> list[str]:
    """How a faithful result still differs from s3prl's recipe: its task's `deviations`, and features that
    s3prl's expert would have computed otherwise (a GroupNorm `hf:` checkpoint not run with --hf-padding s3prl;
    results made before the upstream recorded `group_norm` count as GroupNorm, the cautious reading)."""
    found = (data.get("task_config") or {}).get("deviations") or []
    out = [str(d) for d in found] if isinstance(found, list) else [str(found)]
    info = data.get("upstream_info") or {}
    if faithful(data) and info.get("padding") == "exact" and info.get("group_norm", True):
        out.append(PADDING_DEVIATION)
    return out


def result_files(results_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Every *.json under the folder, skipping hidden folders (feature caches) and `exclude`."""
    root = Path(results_dir)
    out = []
    for p in sorted(root.rglob("*.json")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if (
            exclude is not None
            and Path(exclude).resolve() != root.resolve()
            and Path(exclude).resolve() in p.resolve().parents
        ):
            continue
        out.append(p)
    return out


def collect(results_dir: Path, exclude: Path | None = None) -> tuple[dict[str, Suite], list[str]]:
    """Read and check every result under `results_dir`; returns suites by id and the warnings."""
    warnings: list[str] = []
    suites, candidates = _read_candidates(results_dir, exclude, warnings)
    candidates = _same_upstream(candidates, warnings)
    columns: dict[tuple[str, str], Counter] = {}
    for (sid, _, task), entries in candidates.items():
        for e in entries:
            columns.setdefault((sid, task), Counter())[_column_key(e)] += 1
    for (sid, upstream, task), entries in sorted(candidates.items()):
        keep = _agreeing(entries, task, columns[(sid, task)], warnings)
        if len(keep) > 1:
            names = ", ".join(str(e.path) for e in keep[1:])
            warnings.append(
                f"skipped {names}: a second result for upstream {upstream!r} x task {task!r} "
                f"(kept {keep[0].path}); remove the duplicate."
            )
        if keep:
            suites[sid].entries[(upstream, task)] = keep[0]
    return {k: s for k, s in suites.items() if s.entries}, warnings


def _read_candidates(
    results_dir: Path, exclude: Path | None, warnings: list[str]
) -> tuple[dict[str, Suite], dict[tuple[str, str, str], list[Entry]]]:
    """Every well-formed result, by (suite id, upstream, task), and the (empty) suites they belong to."""
    suites: dict[str, Suite] = {}
    candidates: dict[tuple[str, str, str], list[Entry]] = {}
    first_spec: dict[tuple[str, str, str], str] = {}
    for path in result_files(results_dir, exclude):
        try:
            data = check_result(path)
        except ConfigError as e:
            why = str(e).removeprefix(f"{path}: ")
            warnings.append(f"skipped {path}: {why} Fix or remove the file (or re-run its evaluation).")
            continue
        warnings += drop_non_finite(path, data)
        sid, label, ref, seed = suite_of(data)
        suites.setdefault(sid, Suite(sid, label, ref, seed))
        entry = Entry(path, data, path.relative_to(Path(results_dir)).as_posix())
        # One checkpoint evaluated from two folders (a work folder seeded from a published run, where a
        # deterministic random-init twin is re-made elsewhere) is one upstream: same folder name, same weights
        if (identity := _checkpoint_identity(data)) is not None:
            entry.alias = first_spec.setdefault((sid, *identity), data["upstream"])
        candidates.setdefault((sid, entry.upstream, data["task"]), []).append(entry)
    return suites, candidates


def _agreeing(entries: list[Entry], task: str, counts: Counter, warnings: list[str]) -> list[Entry]:
    """The entries that measure what their column measures; a warning for each of the others."""
    # the column's majority (ties: the newest task version) defines what the column measures
    want = max(counts, key=lambda k: (counts[k], str(k[0])))
    keep = []
    for e in entries:
        if _column_key(e) != want:
            warnings.append(
                f"skipped {e.path}: task {task!r} version {e.data['task_version']!r} with primary metric "
                f"{e.primary!r} disagrees with the {counts[want]} other result(s) of this suite "
                f"(version {want[0]!r}, {want[1]!r}); re-run it with the current task."
            )
        else:
            keep.append(e)
    return keep


def _column_key(e: Entry) -> tuple:
    return (e.data["task_version"], e.primary, e.higher_is_better)


def _same_upstream(candidates: dict, warnings: list[str]) -> dict:
    """One name, one model: within a suite, results of an upstream whose fingerprint differs from
    the upstream's majority fingerprint come from another checkpoint under the same name."""
    prints: dict[tuple[str, str], Counter] = {}
    for (sid, upstream, _), entries in candidates.items():
        for e in entries:
            prints.setdefault((sid, upstream), Counter())[_fingerprint(e)] += 1
    out = {}
    for key, entries in candidates.items():
        counts = prints[(key[0], key[1])]
        want = max(counts, key=lambda k: (counts[k], str(k)))
        keep = []
        for e in entries:
            if _fingerprint(e) == want:
                keep.append(e)
            else:
                warnings.append(
                    f"skipped {e.path}: upstream {e.upstream!r} has fingerprint {_fingerprint(e)!r} "
                    f"here but {want!r} in {counts[want]} other result(s); one name, one model - "
                    "rename one of them or re-run."
                )
        if keep:  # an upstream x task whose only results came from another checkpoint has no column entry
            out[key] = keep
    return out


def _fingerprint(e: Entry) -> str | None:
    return (e.data.get("upstream_info") or {}).get("fingerprint")


def _checkpoint_identity(data: dict) -> tuple[str, str] | None:
    """(folder name, weights fingerprint) of a result whose upstream is a checkpoint folder, else None."""
    info = data.get("upstream_info") or {}
    checkpoint, fingerprint = info.get("checkpoint"), info.get("fingerprint")
    if not checkpoint or not fingerprint or str(checkpoint) != data["upstream"]:
        return None
    return Path(str(checkpoint)).name, str(fingerprint)
