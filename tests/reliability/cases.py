"""The bad-input table: every hostile or broken input a user can hand evalkit, with its expected outcome.

Each row is a `Case`: an id, a category, a setup that writes the bad input under the case's own
folder and returns the command line, and what must happen - `error` (exit 2, the message names the
file or key) or `warning` (exit 0 with a warning: a malformed result file in a leaderboard build, a
test label unseen in training, an unfinished checkpoint). `test_bad_inputs.py` runs each row in
process and checks, for every row, that no exception escapes `evalkit.cli.main` and that results
written before the bad run are byte-identical after it.

Setups copy the session's smoke suite (never synthesise) and reuse the helpers of the one-by-one
tests (tests/evaluation/test_bad_*.py, tests/upstreams/test_bad_checkpoints.py,
tests/leaderboard/*): those tests stay; this table is the one place that enumerates the cases.
Strings in `says` may name `{tmp}`, `{data}`, `{out}`, `{suite}` or any name a setup put in
`World.names`; they are filled in after the setup ran.

Why one module: the issue asks for one table that enumerates every bad input with its outcome; the
rows are short and most of the length is the rows themselves, grouped by category below.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from evalkit.core.audio import save_wav

TESTS = Path(__file__).resolve().parents[1]


def _helpers(rel: str):
    """A module of another test folder, loaded from its file (its folder goes on sys.path for its own
    sibling imports, as pytest's rootdir-relative import does)."""
    path = TESTS / rel
    name = f"_reused_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BM = _helpers("evaluation/test_bad_manifests.py")  # make_corpus, write_task, edit_manifest, write_sparse_wav
BS = _helpers("evaluation/test_bad_settings.py")  # GOOD task, write_task(**changes)
BC = _helpers("upstreams/test_bad_checkpoints.py")  # checkpoint, hf_checkpoint, damage functions
LD = _helpers("leaderboard/leaderboard_data.py")  # write_task (result files), ks_samples, sf_samples
BR = _helpers("leaderboard/test_bad_results.py")  # MALFORMED, RAW

RECIPE = "bestrq-tiny"  # the quickest recipe to read: no k-means, no teacher


@dataclass(frozen=True)
class Shared:
    """Made once per module, read by every case, written by none (the cache only grows)."""

    suite: Path  # the session's smoke suite
    results: Path  # OUTPUT of `evalkit eval --upstream fbank --tasks ks --steps 2 --protocol quick`
    cache: Path  # feature cache shared by the evaluation cases


class World:
    """One case's folder; what a setup needs is made on first use."""

    def __init__(self, tmp: Path, shared: Shared) -> None:
        self.tmp, self.shared = tmp, shared
        self.protected: list[Path] = []  # files (or folders) that must be byte-identical after the run
        self.names: dict[str, str] = {}

    def protect(self, *paths: Path) -> None:
        self.protected.extend(paths)

    @cached_property
    def out(self) -> Path:
        """An --output holding the earlier fbank/ks result, which no bad run may touch."""
        out = self.tmp / "out"
        shutil.copytree(self.shared.results / "fbank", out / "fbank")
        self.protect(out / "fbank" / "ks.json", out / "fbank" / "ks.samples.jsonl")
        return out

    @cached_property
    def data(self) -> Path:
        """DATA with the suite's ks (a link, read only) and `bad`, a copy of it to break. The test
        manifest is tagged with this case so its features are its own in the shared cache (audio
        changed under an unchanged manifest is not re-read: features.py)."""
        data = self.tmp / "data"
        data.mkdir()
        shutil.copy(self.shared.suite / "suite.json", data)
        (data / "ks").symlink_to(self.shared.suite / "ks")
        shutil.copytree(self.shared.suite / "ks", data / "bad")
        BM.edit_manifest(self.tmp, lambda records: records[0].update(case=self.tmp.name))
        return data

    @cached_property
    def tasks(self) -> Path:
        """--include-path with `tiny`: a good two-step classification task on DATA/bad."""
        BM.write_task(self.tmp / "tasks", "tiny", "bad")
        return self.tmp / "tasks"

    def eval(self, *extra: str, tasks: str = "ks,tiny", upstream: str = "fbank", data: Path | None = None):
        """`evalkit eval` as the cases run it: the earlier ks result is checked and kept; `tiny` (on
        DATA/bad) and `tiny_ks` (a task case's file, on the suite's ks) come from tmp/tasks."""
        include = ["--include-path", str(self.tmp / "tasks")] if "tiny" in tasks else []
        if "tiny" in tasks.split(","):
            self.tasks  # noqa: B018 - written on first use
        return [
            "eval",
            "--upstream",
            upstream,
            "--tasks",
            tasks,
            *include,
            "--data",
            str(data or self.data),
            "--output",
            str(self.out),
            "--cache",
            str(self.shared.cache),
            "--protocol",
            "quick",
            "--steps",
            "2",
            *extra,
        ]

    def fill(self, text: str) -> str:
        return text.format(
            tmp=self.tmp, data=self.tmp / "data", out=self.tmp / "out", suite=self.shared.suite, **self.names
        )


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    setup: Callable[[World], list[str]]
    says: tuple[str, ...]  # fragments of the message (stderr; and stdout for validate and warnings)
    outcome: str = "error"  # "error": exit 2; "warning": exit 0 and the warning
    xfail: str | None = None  # why it fails today: strict, so the row turns red once fixed


CASES: list[Case] = []


def case(id: str, category: str, setup, *says: str, outcome: str = "error", xfail: str | None = None) -> None:
    CASES.append(Case(id, category, setup, says, outcome, xfail))


# --- audio: a record of the test split of DATA/bad, damaged ------------------------------------------


def _test_wav(w: World, i: int = 3) -> Path:
    record = json.loads((w.data / "bad" / "test.jsonl").read_text().splitlines()[i])
    path = w.data / "bad" / record["path"]
    w.names["wav"], w.names["id"] = str(path), record["id"]
    return path


def _audio(damage: Callable[[Path], None]):
    def setup(w: World) -> list[str]:
        damage(_test_wav(w))
        return w.eval()

    return setup


def _float_wav(value: float):
    def write(path: Path) -> None:
        x = 0.1 * np.random.default_rng(0).standard_normal(16_000).astype(np.float32)
        x[100:110] = value
        sf.write(path, x, 16_000, subtype="FLOAT")

    return write


def _write_text(path: Path) -> None:
    path.write_text("this is a note, not audio\n" * 20)


def _relabel_duration(seconds: float, write_seconds: float | None = None):
    """The audio lasts `write_seconds`; the manifest says `seconds`."""

    def setup(w: World) -> list[str]:
        path = _test_wav(w)
        if write_seconds is not None:
            save_wav(path, np.zeros(int(write_seconds * 16_000), np.float32))
        BM.edit_manifest(w.tmp, lambda rs: rs[3].update(duration=seconds))
        return w.eval()

    return setup


def _over_long(w: World) -> list[str]:
    BM.write_sparse_wav(_test_wav(w), seconds=3601)
    BM.edit_manifest(w.tmp, lambda rs: rs[3].update(duration=3601.0))
    return w.eval()


def _dangling_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("nowhere.wav"))


def _to_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


AUDIO = {
    "missing": (lambda p: p.unlink(), ("{data}/bad/test.jsonl", "missing audio")),
    "dangling-symlink": (_dangling_link, ("{data}/bad/test.jsonl", "missing audio")),
    "a-folder": (_to_folder, ("{data}/bad/test.jsonl", "missing audio")),
    "text-as-wav": (_write_text, ("{wav}", "not a supported audio format")),
    "empty-file": (lambda p: p.write_bytes(b""), ("{wav}", "empty")),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:2000]), ("{wav}", "truncated")),
    "random-bytes": (lambda p: p.write_bytes(random.Random(0).randbytes(8000)), ("{wav}", "unreadable")),
    "riff-then-garbage": (lambda p: p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk" * 50), ("{wav}",)),
    "nan-samples": (_float_wav(float("nan")), ("{wav}", "NaN")),
    "inf-samples": (_float_wav(float("inf")), ("{wav}", "Inf")),
    "zero-samples": (lambda p: sf.write(p, np.zeros(0, np.float32), 16_000), ("{wav}", "0.00 s")),
    "implausible-rate": (
        lambda p: sf.write(p, np.zeros(100, np.float32), 100),
        ("{wav}", "implausible sample rate"),
    ),
}
for name, (damage, says) in AUDIO.items():
    case(f"audio-{name}", "audio", _audio(damage), *says)
case("audio-duration-understated", "audio", _relabel_duration(1.0, 6.0), "{id}", "6.00 s", "evalkit prepare")
case("audio-duration-overstated", "audio", _relabel_duration(30.0), "{id}", "30.00 s", "Fix the manifest")
case("audio-over-an-hour", "audio", _over_long, "{id}", "3600 s", "Split it")


def _hf_short_clip(w: World) -> list[str]:
    folder = BC.hf_checkpoint(w.tmp / "hf")
    save_wav(_test_wav(w), 0.1 * np.ones(20, np.float32))  # 1.25 ms: under the tiny CNN's 40 samples
    BM.edit_manifest(w.tmp, lambda rs: rs[3].update(duration=0.00125))
    return w.eval(tasks="tiny", upstream=f"hf:{folder}")


case("audio-shorter-than-an-hf-frame", "audio", _hf_short_clip, "{id}", "Drop")


# --- manifests: DATA/bad/<split>.jsonl, one record or the whole file broken --------------------------


def _record(split: str, i: int, change: Callable[[dict], None]):
    def setup(w: World) -> list[str]:
        w.data  # noqa: B018 - made before it is edited
        BM.edit_manifest(w.tmp, lambda rs: change(rs[i]), split=split)
        return w.eval()

    return setup


def _set(key, value):
    return lambda r: r.update({key: value})


def _drop(key):
    return lambda r: r.pop(key)


def _manifest_bytes(split: str, make: Callable[[bytes], bytes]):
    def setup(w: World) -> list[str]:
        path = w.data / "bad" / f"{split}.jsonl"
        path.write_bytes(make(path.read_bytes()))
        return w.eval()

    return setup


def _line(i: int, new: bytes):
    def make(data: bytes) -> bytes:
        lines = data.splitlines(keepends=True)
        lines[i] = new
        return b"".join(lines)

    return make


def _manifest_gone(split: str, replace: Callable[[Path], None]):
    def setup(w: World) -> list[str]:
        path = w.data / "bad" / f"{split}.jsonl"
        path.unlink()
        replace(path)
        return w.eval()

    return setup


RECORD_VALUES = [
    ("id", 5),
    ("id", None),
    ("id", ""),
    ("id", ["a"]),
    ("path", ["a.wav"]),
    ("path", None),
    ("path", 3),
    ("path", ""),
    ("duration", "1.0"),
    ("duration", None),
    ("duration", True),
    ("duration", -1),
    ("duration", [1.0]),
    ("duration", {"s": 1}),
]
for i, (key, value) in enumerate(RECORD_VALUES):
    kind = type(value).__name__ if value != "" else "empty"
    split = ("train", "dev", "test")[i % 3]  # each split's reader sees some
    case(
        f"manifest-{key}-{kind}-{split}",
        "manifest",
        _record(split, 2, _set(key, value)),
        f"{{data}}/bad/{split}.jsonl:3",
        repr(key),
    )
for key in ("id", "path", "duration", "speaker"):
    case(
        f"manifest-lacks-{key}",
        "manifest",
        _record("dev", 1, _drop(key)),
        "{data}/bad/dev.jsonl:2",
        key,
    )
for literal in (b"NaN", b"Infinity"):
    case(
        f"manifest-duration-{literal.decode()}",
        "manifest",
        _manifest_bytes(
            "test",
            _line(1, b'{"id": "x", "path": "wav/x.wav", "duration": ' + literal + b', "speaker": ""}\n'),
        ),
        "{data}/bad/test.jsonl:2",
        "'duration'",
    )
RAW_LINES = {
    "truncated-json": (b'{"id": "x", "path": "wav/x.wav", "dur\n', "not valid JSON"),
    "json-array": (b'["x", "wav/x.wav", 1.0]\n', "expected a JSON object"),
    "json-string": (b'"x"\n', "expected a JSON object"),
    "latin-1": (
        '{"id": "x", "path": "wav/x.wav", "duration": 1, "speaker": "Jos\xe9"}\n'.encode("latin-1"),
        "UTF-8",
    ),
    "bom-mid-file": (
        '\ufeff{"id": "x", "path": "wav/x.wav", "duration": 1, "speaker": ""}\n'.encode(),
        "JSON",
    ),
}
for name, (raw, says) in RAW_LINES.items():
    case(
        f"manifest-line-{name}",
        "manifest",
        _manifest_bytes("train", _line(4, raw)),
        "{data}/bad/train.jsonl:5",
        says,
    )


def _duplicate_id(w: World) -> list[str]:
    w.data  # noqa: B018 - made before it is edited

    def dup(rs):
        rs[4]["id"] = rs[1]["id"]

    BM.edit_manifest(w.tmp, dup, split="dev")
    return w.eval()


def _oracle_without(key: str):
    """The oracle upstream reads each record's ground truth: a record without it, on DATA/bad."""

    def setup(w: World) -> list[str]:
        w.data  # noqa: B018 - made before it is edited
        BM.edit_manifest(w.tmp, lambda rs: rs[2].pop(key))
        return w.eval(tasks="tiny", upstream="oracle")

    return setup


for key in ("alignment", "voice"):
    case(
        f"manifest-oracle-record-lacks-{key}", "manifest", _oracle_without(key), "{data}/bad/test.jsonl", key
    )
case("manifest-duplicate-id", "manifest", _duplicate_id, "{data}/bad/dev.jsonl:5", "duplicate id")
case(
    "manifest-utf16",
    "manifest",
    _manifest_bytes("test", lambda data: data.decode().encode("utf-16")),
    "{data}/bad/test.jsonl:1",
    "UTF-8",
)
case(
    "manifest-random-bytes",
    "manifest",
    _manifest_bytes("dev", lambda _: random.Random(1).randbytes(3000)),
    "{data}/bad/dev.jsonl",
)
case(
    "manifest-empty",
    "manifest",
    _manifest_bytes("test", lambda _: b""),
    "{data}/bad/test.jsonl",
    "no records",
)
case(
    "manifest-missing",
    "manifest",
    _manifest_gone("test", lambda p: None),
    "{data}/bad/test.jsonl",
    "not found",
)
case(
    "manifest-a-folder",
    "manifest",
    _manifest_gone("dev", lambda p: p.mkdir()),
    "{data}/bad/dev.jsonl",
    "not found",
)
case(
    "manifest-path-climbs-out",
    "manifest",
    _record("test", 2, _set("path", "../../secret.wav")),
    "{data}/bad/test.jsonl:3",
    "'../../secret.wav'",
    "absolute path",
)
case(
    "manifest-train-record-lacks-its-label",
    "manifest",
    _record("train", 2, _drop("label")),
    "{data}/bad/train.jsonl",
    "label",
)
case(
    "manifest-test-record-lacks-its-label",
    "manifest",
    _record("test", 2, _drop("label")),
    "{data}/bad/test.jsonl",
    "label",
)
case(
    "manifest-label-is-a-list",
    "manifest",
    _record("train", 2, _set("label", ["up", "down"])),
    "{data}/bad/train.jsonl",
    "label",
)


def _unseen_label(w: World) -> list[str]:
    w.data  # noqa: B018 - made before it is edited
    BM.edit_manifest(w.tmp, lambda rs: rs[2].update(label="zebra"))
    return w.eval()


case(
    "manifest-test-label-never-in-training",
    "manifest",
    _unseen_label,
    "warning",
    "zebra",
    outcome="warning",
)


# --- task YAMLs: tasks/tiny_ks/task.yaml, evaluated beside the finished ks ----------------------------


def _task_eval(w: World) -> list[str]:
    return w.eval(tasks="ks,tiny_ks", data=w.shared.suite)


def _task(**changes):
    def setup(w: World) -> list[str]:
        BS.write_task(w.tmp, **changes)
        return _task_eval(w)

    return setup


def _task_text(text: str | bytes, parent: str | None = None):
    """tasks/tiny_ks/task.yaml; `parent` goes to parents/parent.yaml (outside --include-path)."""

    def setup(w: World) -> list[str]:
        folder = w.tmp / "tasks" / "tiny_ks"
        folder.mkdir(parents=True)
        (folder / "task.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
        if parent is not None:
            (w.tmp / "parents").mkdir()
            (w.tmp / "parents" / "parent.yaml").write_text(parent)
        return _task_eval(w)

    return setup


def _task_without(key: str):
    spec = {k: v for k, v in BS.GOOD.items() if k != key}
    return _task_text(yaml.safe_dump(spec))


# key, value, what the message must name besides task.yaml (default: the key; a tuple: all it must name),
# why it fails today
TASK_VALUES = [
    ("steps", -5),
    ("steps", 0),
    ("steps", "abc"),
    ("steps", 1.5),
    ("steps", True),
    ("steps", None),
    ("steps", [2]),
    ("steps", {"smoke": 0}),
    ("steps", {}),
    ("steps", {"smoke": "x"}),
    ("eval_every", -3),
    ("eval_every", 0),
    ("eval_every", "x"),
    ("eval_every", 1.5),
    ("eval_every", True),
    ("batch_seconds", 0),
    ("batch_seconds", -1),
    ("batch_seconds", "x"),
    ("batch_seconds", float("nan")),
    ("batch_seconds", float("inf")),
    ("batch_seconds", True),
    ("lr_grid", []),
    ("lr_grid", [-0.1]),
    ("lr_grid", [0]),
    ("lr_grid", "0.1"),
    ("lr_grid", 0.001),
    ("lr_grid", [float("nan")]),
    ("lr_grid", ["x"]),
    ("lr_grid", [True]),
    ("optimizer", "adamw"),
    ("optimizer", ["adamw"]),
    ("optimizer", {"name": "sgdx"}, "sgdx"),
    ("optimizer", {"name": "adamw", "weight_decya": 0.1}, "weight_decay"),
    ("optimizer", {"name": "adamw", "weight_decay": -1}, "weight_decay"),
    ("optimizer", {"name": "adamw", "weight_decay": "x"}, "weight_decay"),
    ("version", "1"),
    ("version", 1.5),
    ("kind", "clasification", "classification"),
    ("kind", ["classification"]),
    ("seed", "x"),
    ("corpus", "nosuch", ("'nosuch'", "task 'tiny_ks'", "--data")),  # names the task, not its file
    ("corpus", "../outside", "climbs out"),
    ("corpus", 5),
    ("splits", ["train", "dev", "test"]),
    ("splits", {"train": "train", "dev": "dev", "test": "nosuch"}, ("splits.test", "'nosuch'")),
    ("labels", ["label"]),
    ("labels", {"keys": ["nolabel"]}, "nolabel"),
    ("featurizer", {"layer_nrom": True}, ("layer_nrom", "layer_norm")),
    ("featurizer", {"layer": 99}, ("featurizer.layer 99", "out of range")),
    ("description", ["a", "b"]),
    ("name", 5),
]


def _value_id(value) -> str:
    if isinstance(value, float) and value != value:
        return "nan"
    text = json.dumps(value) if not isinstance(value, str) else value
    return "".join(c if c.isalnum() or c in "._" else "-" for c in text).strip("-") or "empty"


for key, value, says, why in (row + (None,) * (4 - len(row)) for row in TASK_VALUES):
    case(
        f"task-{key}-{type(value).__name__}-{_value_id(value)}",
        "task",
        _task(**{key: value}),
        *(says if isinstance(says, tuple) else ("task.yaml", says or key)),
        xfail=why,
    )

LINEAR = {"name": "linear", "type": "mean_pool_linear"}
HEADS = {
    "args-typo": ([{**LINEAR, "args": {"hiden": 64}}], "hidden"),
    "args-a-list": ([{**LINEAR, "args": [64]}], "args"),
    "args-value-of-the-wrong-type": ([{**LINEAR, "args": {"hidden": "big"}}], "hidden"),
    "unknown-type": ([{"name": "linear", "type": "mean_pool_linaer"}], "mean_pool_linear"),
    "empty": ([], "heads"),
    "a-mapping": ({"linear": LINEAR}, "heads"),
    "entry-lacks-type": ([{"name": "linear"}], "type"),
    "entry-extra-key": ([{**LINEAR, "lr": 0.1}], "lr"),
    "entry-a-string": (["linear"], "head"),
    "null": (None, "heads"),
}
HEADS_XFAIL: dict[str, str] = {}
for name, (heads, says) in HEADS.items():
    case(f"task-heads-{name}", "task", _task(heads=heads), "task.yaml", says, xfail=HEADS_XFAIL.get(name))

METRICS = {
    "none-primary": ([{"name": "accuracy"}], "primary"),
    "two-primary": (
        [{"name": "accuracy", "primary": True}, {"name": "accuracy", "primary": True}],
        "primary",
    ),
    "unknown": ([{"name": "acuracy", "primary": True}], "accuracy"),
    "unknown-option": ([{"name": "accuracy", "primary": True, "collar": 0.25}], "collar"),
    "empty": ([], "primary"),
    "a-string": ("accuracy", "metrics"),
    "entry-a-number": ([5], "metric"),
    "primary-a-string": ([{"name": "accuracy", "primary": "yes"}], "primary"),
}
METRICS_XFAIL: dict[str, str] = {}
for name, (metrics, says) in METRICS.items():
    case(
        f"task-metrics-{name}",
        "task",
        _task(metrics=metrics),
        "task.yaml",
        says,
        xfail=METRICS_XFAIL.get(name),
    )

GOOD_YAML = yaml.safe_dump(BS.GOOD)
TASK_FILES = {
    "unknown-key": (GOOD_YAML + "stesp: 3\n", ("task.yaml", "stesp", "steps")),
    "a-list": ("- name: tiny_ks\n", ("task.yaml", "mapping")),
    "not-yaml": ("name: [tiny_ks\n", ("task.yaml",)),
    "not-utf8": (GOOD_YAML.encode() + "description: caf\xe9\n".encode("latin-1"), ("task.yaml", "UTF-8")),
    "empty": ("", ("task.yaml", "missing required")),
    "python-tag": (GOOD_YAML + "seed: !!python/object/apply:os.system ['true']\n", ("task.yaml",)),
    "tab-indented": (GOOD_YAML + "labels:\n\tkeys: [label]\n", ("task.yaml",)),
}
for name, (text, says) in TASK_FILES.items():
    case(f"task-file-{name}", "task", _task_text(text), *says)
for key in ("name", "version", "kind", "corpus", "heads", "metrics"):
    case(f"task-lacks-{key}", "task", _task_without(key), "task.yaml", key)
PARENT = "include: ../../parents/parent.yaml\n"
INCLUDES = {
    "missing-parent": ("include: nosuch.yaml\nname: tiny_ks\n", None, ("nosuch.yaml",)),
    "cycle": (PARENT, "include: ../tasks/tiny_ks/task.yaml\n", ("include cycle",)),
    "parent-a-list": (PARENT + "name: tiny_ks\n", "- a\n- b\n", ("parent.yaml", "mapping")),
    "parent-bad-steps": (PARENT, yaml.safe_dump({**BS.GOOD, "steps": -1}), ("parent.yaml", "steps")),
    "include-a-list": ("include: [../../parents/parent.yaml]\nname: tiny_ks\n", GOOD_YAML, ("include",)),
}
INCLUDE_XFAIL: dict[str, str] = {}
for name, (text, parent, says) in INCLUDES.items():
    case(f"task-include-{name}", "task", _task_text(text, parent), *says, xfail=INCLUDE_XFAIL.get(name))


# --- pre-training recipes: configs/pretrain/*.yaml shape, one value wrong ----------------------------


def _recipe_dict() -> dict:
    from evalkit.core.resources import pretrain_recipe

    return yaml.safe_load(pretrain_recipe(RECIPE).read_text())


def _pretrain(w: World, recipe: Path, *extra: str) -> list[str]:
    w.names["recipe"] = str(recipe)
    out = w.tmp / "pt"
    return [
        "pretrain",
        str(recipe),
        "--data",
        str(w.shared.suite),
        "--out",
        str(out),
        "--max-steps",
        "1",
        *extra,
    ]


def _recipe(change: Callable[[dict], None]):
    def setup(w: World) -> list[str]:
        spec = _recipe_dict()
        change(spec)
        path = w.tmp / "recipe.yaml"
        path.write_text(yaml.safe_dump(spec))
        return _pretrain(w, path)

    return setup


def _recipe_text(text: str | bytes):
    def setup(w: World) -> list[str]:
        path = w.tmp / "recipe.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return _pretrain(w, path)

    return setup


def _at(key: str, value):
    """Set `a.b.c` in a recipe; value DROP removes the key."""

    def change(spec: dict) -> None:
        *parents, last = key.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        if value is DROP:
            node.pop(last, None)
        else:
            node[last] = value

    return change


DROP = object()
# key (a.b.c), value (DROP: removed), what the message must name besides the file, why it fails today
RECIPE_VALUES = [
    ("optimm", {"lr": 1.0}, "optimm"),
    ("method", "bestrqq", "bestrqq"),
    ("method", ["bestrq"], "method"),
    ("method", DROP, "method"),
    ("encoder", ["fbank"], "encoder"),
    ("encoder.decoder", {}, "decoder"),
    ("encoder.frontend.chanels", 64, "chanels"),
    ("encoder.frontend.kind", "mfcc", "mfcc"),
    ("encoder.encoder.kind", "lstm", "lstm"),
    ("encoder.encoder.dim", "big", "dim"),
    ("encoder.encoder.heads", 0, "heads"),
    ("encoder.encoder.dim", 130, "dim"),
    ("objective", ["codebook_size"], "objective"),
    ("objective.codebok_size", 512, "codebok_size"),
    ("objective.mask_prob", "x", "mask_prob"),
    ("objective.mask_prob", 1.5, "mask_prob"),
    ("data", [1], "data"),
    ("data.crop_secs", 6.0, "crop_secs"),
    ("data.batch_seconds", 0, "batch_seconds"),
    ("data.crop_seconds", -1.0, "crop_seconds"),
    ("optim.lr", "5e-4", "5.0e-4"),
    ("optim.lr", -1.0, "optim.lr"),
    ("optim.lr", float("nan"), "optim.lr"),
    ("optim.max_steps", 0, "max_steps"),
    ("optim.schedule", "step", "schedule"),
    ("optim.betas", "x", "betas"),
    ("optim.betas", [0.9], "betas must be two numbers"),
    ("optim.accumulate", 0, "accumulate"),
    ("optim.warmup_steps", -1, "warmup_steps"),
    ("optim.min_lr_ratio", 2.0, "min_lr_ratio must be <= 1"),
    ("optim.clip_grad", float("inf"), "clip_grad"),
    ("train.bf16", "yes", "bf16"),
    ("train.checkpoint_every", 0, "checkpoint_every"),
    ("train.log_every", -1, "log_every"),
    ("train.seed", "x", "seed"),
]
for key, value, says, why in (row + (None,) * (4 - len(row)) for row in RECIPE_VALUES):
    case(
        f"recipe-{key}-{'dropped' if value is DROP else _value_id(value)}",
        "recipe",
        _recipe(_at(key, value)),
        "{recipe}",
        says,
        xfail=why,
    )
RECIPE_FILES = {
    "not-yaml": ("method: [bestrq\n", ("{recipe}",)),
    "not-utf8": (b"method: bestrq\n# caf\xe9\n", ("{recipe}", "UTF-8")),
    "empty": ("", ("{recipe}",)),
    "a-list": ("- bestrq\n", ("{recipe}", "mapping")),
    "python-tag": ("method: !!python/object/apply:os.system ['true']\n", ("{recipe}",)),
}
for name, (text, says) in RECIPE_FILES.items():
    case(f"recipe-file-{name}", "recipe", _recipe_text(text), *says)


# --- CLI values ----------------------------------------------------------------------------------


def _a_file(w: World, name: str = "afile") -> Path:
    path = w.tmp / name
    path.write_text("a file, not a folder\n")
    w.protect(path)
    w.names["file"] = str(path)
    return path


EVAL_FLAGS = {
    "steps-not-a-number": (["--steps", "abc"], "--steps"),
    "steps-0": (["--steps", "0"], "--steps"),
    "steps-negative": (["--steps", "-1"], "--steps"),
    "lr-grid-nan": (["--lr-grid", "nan"], "--lr-grid"),
    "lr-grid-inf": (["--lr-grid", "inf"], "--lr-grid"),
    "lr-grid-negative": (["--lr-grid=-1"], "--lr-grid"),
    "lr-grid-zero": (["--lr-grid", "0"], "--lr-grid"),
    "lr-grid-text": (["--lr-grid", "fast"], "--lr-grid"),
    "lr-grid-empty": (["--lr-grid", ""], "--lr-grid"),
    "lr-grid-only-commas": (["--lr-grid", ",,"], "--lr-grid"),
    "protocol-unknown": (["--protocol", "fastest"], "--protocol"),
    "train-threads-negative": (["--train-threads", "-2"], "--train-threads"),
    "name-climbs": (["--name", "../x"], "--name"),
    "name-empty": (["--name", ""], "--name"),
    "name-with-slash": (["--name", "a/b"], "--name"),
    "seeds-empty": (["--seeds", ""], "--seeds"),
    "seeds-only-a-comma": (["--seeds", ","], "--seeds"),
    "seeds-text": (["--seeds", "a"], "--seeds"),
    "seeds-fraction": (["--seeds", "1.5"], "--seeds"),
    "seeds-negative": (["--seeds=-1"], "--seeds"),
    "seeds-twice-the-same": (["--seeds", "0,0"], "--seeds"),
}
for name, (flags, says) in EVAL_FLAGS.items():
    case(f"cli-eval-{name}", "cli", lambda w, f=flags: w.eval(*f), says)

EVAL_TASKS = {
    "only-a-comma": (",", "names no task"),
    "empty": ("", "names no task"),
    "unknown": ("kss", "'kss'"),
    "one-unknown": ("ks,nosuch", "'nosuch'"),
}
for name, (spec, says) in EVAL_TASKS.items():
    case(f"cli-eval-tasks-{name}", "cli", lambda w, s=spec: w.eval(tasks=s, data=w.shared.suite), says)


def _eval_upstream(spec: Callable[[World], str], *extra: str):
    return lambda w: w.eval(*extra, tasks="ks,tiny", upstream=spec(w))


case("cli-eval-upstream-unknown", "cli", _eval_upstream(lambda w: "fbnak"), "fbnak", "fbank")
case(
    "cli-eval-upstream-missing-folder",
    "cli",
    _eval_upstream(lambda w: str(w.tmp / "nosuch")),
    "{tmp}/nosuch",
    "no such checkpoint folder",
)
case("cli-eval-upstream-s3prl-unknown", "cli", _eval_upstream(lambda w: "s3prl:nosuch"), "s3prl")
case("cli-eval-upstream-hf-missing", "cli", _eval_upstream(lambda w: f"hf:{w.tmp}/nosuch"), "{tmp}/nosuch")
case("cli-eval-upstream-a-file", "cli", _eval_upstream(lambda w: str(_a_file(w))), "{file}")


def _eval_data(make: Callable[[World], Path]):
    def setup(w: World) -> list[str]:
        w.names["bad_data"] = str(make(w))
        return w.eval(tasks="ks,tiny", data=Path(w.names["bad_data"]))

    return setup


def _tasks_then(w: World, path: Path) -> Path:
    w.tasks  # noqa: B018 - the task folder exists
    return path


case(
    "cli-eval-data-missing",
    "cli",
    _eval_data(lambda w: _tasks_then(w, w.tmp / "nosuch")),
    "--data",
    "{bad_data}",
)
case("cli-eval-data-a-file", "cli", _eval_data(lambda w: _tasks_then(w, _a_file(w))), "{bad_data}")
case(
    "cli-eval-data-without-the-corpus",
    "cli",
    _eval_data(lambda w: _tasks_then(w, w.tmp)),
    "{tmp}/bad",
)


def _corrupt_suite_stamp(w: World) -> Path:
    (w.data / "suite.json").write_text("{not json")
    return w.data


case("cli-eval-data-corrupt-suite-json", "cli", _eval_data(_corrupt_suite_stamp), "{data}/suite.json")


def _output(make: Callable[[World], Path], option: str = "--output"):
    def setup(w: World) -> list[str]:
        w.data, w.tasks  # noqa: B018 - made first
        bad = make(w)
        argv = w.eval(tasks="tiny")
        argv[argv.index(option) + 1] = str(bad)
        return argv

    return setup


case("cli-eval-output-a-file", "cli", _output(_a_file), "--output", "{file}", "not a folder")
case("cli-eval-output-under-a-file", "cli", _output(lambda w: _a_file(w) / "sub"), "--output", "{file}")
case(
    "cli-eval-cache-under-a-file",
    "cli",
    _output(lambda w: _a_file(w) / "cache", "--cache"),
    "--cache",
    "{file}",
)


def _include(make: Callable[[World], Path]):
    def setup(w: World) -> list[str]:
        w.names["inc"] = str(make(w))
        return w.eval(tasks="ks", data=w.shared.suite) + ["--include-path", w.names["inc"]]

    return setup


case("cli-eval-include-path-missing", "cli", _include(lambda w: w.tmp / "nosuch"), "{inc}", "--include-path")
case("cli-eval-include-path-a-file", "cli", _include(_a_file), "{inc}", "--include-path")
case(
    "cli-eval-no-upstream",
    "cli",
    lambda w: ["eval", "--tasks", "ks", "--data", "x", "--output", "y"],
    "--upstream",
)


def _run(*flags: str, workdir: Callable[[World], Path] | None = None):
    """`evalkit run --profile smoke` on a work folder that holds an earlier result (protected)."""

    def setup(w: World) -> list[str]:
        if workdir is not None:
            work = workdir(w)
        else:
            work = w.tmp / "work"
            shutil.copytree(w.shared.results / "fbank", work / "smoke" / "results" / "fbank")
            w.protect(work / "smoke" / "results" / "fbank" / "ks.json")
        return ["run", "--profile", "smoke", "--workdir", str(work), *flags]

    return setup


case("cli-run-profile-unknown", "cli", _run("--profile", "smok"), "smok", "smoke")
case("cli-run-only-unknown", "cli", _run("--only", "hubret"), "hubret", "hubert")
case(
    "cli-run-from-published-missing",
    "cli",
    lambda w: _run("--from-published", str(w.tmp / "pub"))(w),
    "{tmp}/pub",
)
case(
    "cli-run-from-published-empty",
    "cli",
    lambda w: _run("--from-published", str(w.tmp))(w),
    "{tmp}",
    "published",
)
case("cli-run-jobs-not-a-number", "cli", _run("--jobs", "abc"), "--jobs")
case("cli-run-workdir-a-file", "cli", _run(workdir=_a_file), "--workdir", "{file}")
case("cli-run-workers-negative", "cli", _run("--workers", "-1"), "--workers")
case("cli-run-workers-0", "cli", _run("--workers", "0"), "--workers")
case("cli-run-jobs-negative", "cli", _run("--jobs", "-1"), "--jobs")
case("cli-run-jobs-0", "cli", _run("--jobs", "0"), "--jobs")


def _synth(*flags: str, out: Callable[[World], Path] | None = None):
    def setup(w: World) -> list[str]:
        folder = out(w) if out else w.tmp / "suite"
        return ["synth", "--profile", "smoke", "--corpora", "ks", "--out", str(folder), *flags]

    return setup


def _other_suite(w: World) -> Path:
    folder = w.tmp / "suite"
    folder.mkdir()
    (folder / "suite.json").write_text(json.dumps({"profile": "default", "seed": 0, "version": 1}))
    w.protect(folder / "suite.json")
    return folder


def _corrupt_stamp(w: World) -> Path:
    folder = w.tmp / "suite"
    folder.mkdir()
    (folder / "suite.json").write_text("{not json")
    w.protect(folder / "suite.json")
    w.names["stamp"] = str(folder / "suite.json")
    return folder


case("cli-synth-profile-unknown", "cli", _synth("--profile", "smok"), "smok", "smoke")
case("cli-synth-no-out", "cli", lambda w: ["synth", "--profile", "smoke"], "--out")
case("cli-synth-corpora-unknown", "cli", _synth("--corpora", "kss"), "'kss'")
case("cli-synth-corpora-only-a-comma", "cli", _synth("--corpora", ","), "--corpora")
case("cli-synth-seed-not-a-number", "cli", _synth("--seed", "abc"), "--seed")
case("cli-synth-jobs-negative", "cli", _synth("--jobs", "-1"), "--jobs")
case("cli-synth-jobs-0", "cli", _synth("--jobs", "0"), "--jobs")
case("cli-synth-out-a-file", "cli", _synth(out=_a_file), "--out", "{file}")
case(
    "cli-synth-out-of-another-profile", "cli", _synth(out=_other_suite), "profile='default'", "another --out"
)
case("cli-synth-out-under-a-file", "cli", _synth(out=lambda w: _a_file(w) / "suite"), "--out", "{file}")
case("cli-synth-out-with-a-corrupt-stamp", "cli", _synth(out=_corrupt_stamp), "{stamp}", "new --out")
case(
    "cli-synth-report-missing",
    "cli",
    lambda w: ["synth", "--report", str(w.tmp / "nosuch")],
    "--report {tmp}/nosuch",
    "no such folder",
)
case(
    "cli-synth-report-empty",
    "cli",
    lambda w: ["synth", "--report", str(w.tmp)],
    "--report {tmp}",
    "ks/train.jsonl",
)


def _pretrain_cli(*flags: str, recipe: str = RECIPE, data: Callable[[World], Path] | None = None):
    def setup(w: World) -> list[str]:
        folder = data(w) if data else w.shared.suite
        return [
            "pretrain",
            recipe,
            "--data",
            str(folder),
            "--out",
            str(w.tmp / "pt"),
            "--max-steps",
            "1",
            *flags,
        ]

    return setup


def _bad_pretrain_manifest(w: World) -> Path:
    (w.tmp / "train.jsonl").write_text('{"id": 5, "path": "a.wav", "duration": 1, "speaker": ""}\n')
    return w.tmp


case("cli-pretrain-recipe-missing", "cli", _pretrain_cli(recipe="/nonexistent/recipe.yaml"), "recipe.yaml")
case("cli-pretrain-recipe-typo", "cli", _pretrain_cli(recipe="bestrq-tiyn"), "bestrq-tiny")
case("cli-pretrain-max-steps-0", "cli", _pretrain_cli("--max-steps", "0"), "--max-steps")
case("cli-pretrain-max-steps-negative", "cli", _pretrain_cli("--max-steps", "-3"), "--max-steps")
case("cli-pretrain-max-steps-not-a-number", "cli", _pretrain_cli("--max-steps", "x"), "--max-steps")
case("cli-pretrain-data-missing", "cli", _pretrain_cli(data=lambda w: w.tmp / "nosuch"), "{tmp}/nosuch")
case("cli-pretrain-data-empty", "cli", _pretrain_cli(data=lambda w: w.tmp), "{tmp}", "train.jsonl")
case(
    "cli-pretrain-data-bad-manifest",
    "cli",
    _pretrain_cli(data=_bad_pretrain_manifest),
    "{tmp}/train.jsonl:1",
    "'id'",
)
case(
    "cli-pretrain-resume-nothing",
    "cli",
    lambda w: ["pretrain", RECIPE, "--out", str(w.tmp / "pt"), "--resume"],
    "--resume",
)


def _pretrain_out_a_file(w: World) -> list[str]:
    argv = _pretrain_cli()(w)
    argv[argv.index("--out") + 1] = str(_a_file(w))
    return argv


case("cli-pretrain-out-a-file", "cli", _pretrain_out_a_file, "--out", "{file}")


def _pretrain_out_under_a_file(w: World) -> list[str]:
    argv = _pretrain_cli()(w)
    argv[argv.index("--out") + 1] = str(_a_file(w) / "run")
    return argv


case("cli-pretrain-out-under-a-file", "cli", _pretrain_out_under_a_file, "--out", "{file}")


def _board(w: World) -> Path:
    """--results with two good result files (fbank and `good` on KS), protected."""
    root = w.tmp / "results"
    paths = [LD.write_task(root, "fbank", "ks", LD.ks_samples(150), params=0)]
    paths.append(LD.write_task(root, "good", "ks", LD.ks_samples(10)))
    w.protect(*paths, *(p.with_name("ks.samples.jsonl") for p in paths))
    return root


def _build(w: World, *flags: str, results: Path | None = None, out: Path | None = None) -> list[str]:
    results = results if results is not None else _board(w)
    out = out if out is not None else w.tmp / "board"
    return [
        "leaderboard",
        "build",
        "--results",
        str(results),
        "--out",
        str(out),
        "--bootstrap",
        "50",
        "--no-plots",
        *flags,
    ]


def _empty(w: World) -> Path:
    (w.tmp / "empty").mkdir()
    return w.tmp / "empty"


def _built(w: World) -> Path:
    """A board built before the bad build: it must survive the refused one byte for byte."""
    from evalkit.cli import main

    root = _board(w)
    assert main(_build(w, results=root)) == 0
    w.protect(w.tmp / "board")
    return root


case(
    "cli-leaderboard-results-missing",
    "cli",
    lambda w: _build(w, results=w.tmp / "nosuch"),
    "--results",
    "{tmp}/nosuch",
)
case("cli-leaderboard-results-a-file", "cli", lambda w: _build(w, results=_a_file(w)), "--results", "{file}")
case(
    "cli-leaderboard-results-empty", "cli", lambda w: _build(w, results=_empty(w)), "--results", "{tmp}/empty"
)
case(
    "cli-leaderboard-bootstrap-0",
    "cli",
    lambda w: _build(w, "--bootstrap", "0", results=_built(w)),
    "--bootstrap",
)
case(
    "cli-leaderboard-bootstrap-negative",
    "cli",
    lambda w: _build(w, "--bootstrap", "-5", results=_built(w)),
    "--bootstrap",
)
case(
    "cli-leaderboard-bootstrap-not-a-number", "cli", lambda w: _build(w, "--bootstrap", "many"), "--bootstrap"
)


def _out_with_notes(w: World) -> list[str]:
    out = w.tmp / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    w.protect(out / "notes.txt")
    return _build(w, out=out)


case("cli-leaderboard-out-holds-other-files", "cli", _out_with_notes, "notes.txt", "--out")
case(
    "cli-leaderboard-out-is-the-results",
    "cli",
    lambda w: _build(w, results=_built(w), out=w.tmp / "results"),
    "--out",
)
case(
    "cli-leaderboard-out-a-file",
    "cli",
    lambda w: _build(w, results=_built(w), out=_a_file(w)),
    "--out",
    "{file}",
)
case(
    "cli-leaderboard-references-missing",
    "cli",
    lambda w: _build(w, "--references", str(w.tmp / "nosuch"), results=_built(w)),
    "--references",
    "{tmp}/nosuch",
)


def _bad_references(w: World) -> list[str]:
    refs = w.tmp / "refs"
    refs.mkdir()
    (refs / "synthetic-smoke.json").write_text("{not json")
    w.names["ref"] = str(refs / "synthetic-smoke.json")
    return _build(w, "--references", str(refs), results=_built(w))


case("cli-leaderboard-references-corrupt", "cli", _bad_references, "{ref}")
case(
    "cli-leaderboard-references-of-nothing",
    "cli",
    lambda w: ["leaderboard", "references", "--results", str(w.tmp), "--out", str(w.tmp / "r.json")],
    "--results",
)
case(
    "cli-leaderboard-action-unknown",
    "cli",
    lambda w: ["leaderboard", "bulid", "--results", "r", "--out", "o"],
    "bulid",
)


def _prepare(corpus: str, *flags: str, src: Callable[[World], Path] | None = None):
    def setup(w: World) -> list[str]:
        folder = src(w) if src else w.tmp
        return ["prepare", corpus, str(folder), str(w.tmp / "prepared"), *flags]

    return setup


case("cli-prepare-corpus-unknown", "cli", _prepare("speech_comands"), "speech_comands")
case(
    "cli-prepare-src-missing",
    "cli",
    _prepare("speech_commands", src=lambda w: w.tmp / "nosuch"),
    "{tmp}/nosuch",
)
case("cli-prepare-src-empty", "cli", _prepare("speech_commands"), "{tmp}")
case(
    "cli-prepare-opt-without-value",
    "cli",
    _prepare("speech_commands", "--opt", "dev_ratio"),
    "--opt",
    "KEY=VALUE",
)
case("cli-prepare-opt-without-key", "cli", _prepare("speech_commands", "--opt", "=0.1"), "--opt")
case("cli-prepare-opt-unknown", "cli", _prepare("speech_commands", "--opt", "dev_raito=0.1"), "dev_raito")


def _export(make: Callable[[World], Path], *flags: str, out: Callable[[World], Path] | None = None):
    def setup(w: World) -> list[str]:
        w.names["ckpt"] = str(make(w))
        return ["export", *flags, w.names["ckpt"], str(out(w) if out else w.tmp / "exported")]

    return setup


case("cli-export-checkpoint-missing", "cli", _export(lambda w: w.tmp / "nosuch"), "{ckpt}")
case("cli-export-not-a-checkpoint", "cli", _export(lambda w: w.tmp), "{ckpt}/config.json")
case("cli-export-format-unknown", "cli", _export(lambda w: w.tmp, "--format", "onnx"), "--format")
case(
    "cli-export-model-type-unknown", "cli", _export(lambda w: w.tmp, "--model-type", "wavlm"), "--model-type"
)
case(
    "cli-export-truncated-weights",
    "cli",
    _export(lambda w: _damaged(w, BC.truncate)),
    "{ckpt}/model.safetensors",
    "not a readable safetensors file",
)


def _cnn_checkpoint(w: World) -> Path:
    """An exportable checkpoint (transformers has the waveform CNN front-end, not fbank)."""
    return BC.checkpoint(w.tmp / "ckpt", frontend={"kind": "cnn", "channels": 32})


case("cli-export-out-a-file", "cli", _export(_cnn_checkpoint, out=_a_file), "{file}", "not a folder")
case(
    "cli-export-out-under-a-file", "cli", _export(_cnn_checkpoint, out=lambda w: _a_file(w) / "hf"), "{file}"
)
case("cli-ls-unknown", "cli", lambda w: ["ls", "taks"], "taks")
case(
    "cli-ls-include-path-missing",
    "cli",
    lambda w: ["ls", "tasks", "--include-path", str(w.tmp / "x")],
    "{tmp}/x",
)
case(
    "cli-ls-include-path-a-file",
    "cli",
    lambda w: ["ls", "tasks", "--include-path", str(_a_file(w))],
    "{file}",
)
case("cli-no-command", "cli", lambda w: [], "command")
case("cli-command-unknown", "cli", lambda w: ["evaluate"], "evaluate")


# --- evalkit checkpoint folders (config.json + model.safetensors) ------------------------------------


def _damaged(w: World, damage: Callable[[Path], None]) -> Path:
    ckpt = BC.checkpoint(w.tmp / "ckpt")
    damage(ckpt / "model.safetensors")
    return ckpt


def _ckpt(make: Callable[[World], Path]):
    def setup(w: World) -> list[str]:
        w.names["ckpt"] = str(make(w))
        return w.eval(tasks="ks", upstream=w.names["ckpt"], data=w.shared.suite)

    return setup


def _config(text: bytes | dict):
    def make(w: World) -> Path:
        ckpt = BC.checkpoint(w.tmp / "ckpt")
        (ckpt / "config.json").write_bytes(text if isinstance(text, bytes) else json.dumps(text).encode())
        return ckpt

    return make


def _other_architecture(w: World) -> Path:
    ckpt = BC.checkpoint(w.tmp / "ckpt")
    other = BC.checkpoint(w.tmp / "other", encoder={"dim": 64})
    shutil.copy(other / "model.safetensors", ckpt / "model.safetensors")
    return ckpt


def _replace(name: str, how: Callable[[Path], None]):
    def make(w: World) -> Path:
        ckpt = BC.checkpoint(w.tmp / "ckpt")
        (ckpt / name).unlink()
        how(ckpt / name)
        return ckpt

    return make


def _pretraining(value):
    def make(w: World) -> Path:
        ckpt = BC.checkpoint(w.tmp / "ckpt")
        config = json.loads((ckpt / "config.json").read_text())
        config["pretraining"] = value
        (ckpt / "config.json").write_text(json.dumps(config))
        return ckpt

    return make


WEIGHTS = "{ckpt}/model.safetensors"
CONFIG = "{ckpt}/config.json"
CHECKPOINTS = {
    "truncated-weights": (lambda w: _damaged(w, BC.truncate), (WEIGHTS, "not a readable safetensors file")),
    "random-bytes-weights": (
        lambda w: _damaged(w, BC.random_bytes),
        (WEIGHTS, "not a readable safetensors file"),
    ),
    "empty-weights": (lambda w: _damaged(w, lambda p: p.write_bytes(b"")), (WEIGHTS,)),
    "integer-weights": (lambda w: _damaged(w, BC.as_integers), (WEIGHTS, "int64")),
    "wrong-shape": (lambda w: _damaged(w, BC.one_wrong_shape), (WEIGHTS, "[3, 3]")),
    "other-architecture": (_other_architecture, (WEIGHTS, "shape")),
    "weights-missing": (_replace("model.safetensors", lambda p: None), (WEIGHTS, "missing")),
    "weights-a-folder": (_replace("model.safetensors", lambda p: p.mkdir()), (WEIGHTS,)),
    "config-missing": (_replace("config.json", lambda p: None), (CONFIG, "missing")),
    "config-a-folder": (_replace("config.json", lambda p: p.mkdir()), (CONFIG,)),
    "config-not-json": (_config(b"{upstream: encoder"), (CONFIG, "not valid JSON")),
    "config-latin-1": (
        _config(b'{"upstream": "encoder", "config": {"caf\xe9": 1}}'),
        (CONFIG, "not valid JSON"),
    ),
    "config-a-list": (_config(b"[1, 2]"), (CONFIG, "JSON object")),
    "config-settings-a-list": (_config({"upstream": "encoder", "config": [1, 2]}), (CONFIG, "'config'")),
    "config-unknown-setting": (
        _config({"upstream": "encoder", "config": {"no_such_setting": 1}}),
        (CONFIG, "no_such_setting"),
    ),
    "config-lacks-upstream": (_config({"config": {}}), (CONFIG, "'upstream'")),
    "config-unknown-upstream": (_config({"upstream": "encodr", "config": {}}), ("encodr",)),
    "config-pretraining-a-list": (_pretraining(["bestrq"]), (CONFIG, "pretraining")),
    "config-pretraining-a-string": (_pretraining("bestrq"), (CONFIG, "pretraining")),
}
for name, (make, says) in CHECKPOINTS.items():
    case(f"checkpoint-{name}", "checkpoint", _ckpt(make), *says)
case(
    "checkpoint-unfinished-pretraining",
    "checkpoint",
    _ckpt(_pretraining({"method": "bestrq", "steps": 3, "finished": False})),
    "warning",
    "unfinished",
    outcome="warning",
)


# --- hf: folders ------------------------------------------------------------------------------------


def _hf(make: Callable[[World], Path]):
    def setup(w: World) -> list[str]:
        w.names["hf"] = str(make(w))
        return w.eval(tasks="ks", upstream=f"hf:{w.names['hf']}", data=w.shared.suite)

    return setup


def _hf_damaged(damage: Callable[[Path], None], name: str = "model.safetensors"):
    def make(w: World) -> Path:
        folder = BC.hf_checkpoint(w.tmp / "hf")
        damage(folder / name)
        return folder

    return make


def _hf_other_size(w: World) -> Path:
    folder = BC.hf_checkpoint(w.tmp / "hf")
    other = BC.hf_checkpoint(w.tmp / "other", hidden_size=64, intermediate_size=128)
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    return folder


def _hf_pickle(make_pickle: Callable[[World, Path, dict], None]):
    def make(w: World) -> Path:
        from safetensors.torch import load_file

        folder = BC.hf_checkpoint(w.tmp / "hf")
        state = load_file(folder / "model.safetensors")
        (folder / "model.safetensors").unlink()
        make_pickle(w, folder / "pytorch_model.bin", state)
        return folder

    return make


def _malicious(w: World, path: Path, state: dict) -> None:
    BC.malicious_pickle(path, w.tmp / "MARKER", state)


def _hf_without_some_weights(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(path)
    save_file(
        {k: v for k, v in weights.items() if "encoder.layers.1." not in k}, path, metadata={"format": "pt"}
    )


def _write_json(value) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())


HF_CONFIG = "{hf}/config.json"
PREP = "{hf}/preprocessor_config.json"
HF = {
    "missing": (lambda w: w.tmp / "nosuch", ("{tmp}/nosuch",)),
    "a-file": (_a_file, ("{file}",)),
    "no-config": (_hf_damaged(lambda p: p.unlink(), "config.json"), ("{hf}", "config.json")),
    "config-not-json": (_hf_damaged(_write_json(b"{not json"), "config.json"), (HF_CONFIG, "not valid JSON")),
    "config-latin-1": (
        _hf_damaged(_write_json(b'{"model_type": "wav2vec2", "name": "caf\xe9"}'), "config.json"),
        (HF_CONFIG, "not valid JSON"),
    ),
    "config-a-list": (_hf_damaged(_write_json([1, 2]), "config.json"), (HF_CONFIG, "JSON object")),
    "config-unknown-model-type": (
        _hf_damaged(_write_json({"model_type": "wav2vec3"}), "config.json"),
        (HF_CONFIG, "'wav2vec3'"),
    ),
    "config-lacks-model-type": (
        _hf_damaged(_write_json({"hidden_size": 32}), "config.json"),
        (HF_CONFIG, "model_type"),
    ),
    "config-bad-value": (
        _hf_damaged(
            _write_json({**BC.HF_TINY, "model_type": "wav2vec2", "hidden_size": "big"}), "config.json"
        ),
        (HF_CONFIG, "hidden_size"),
    ),
    "truncated-weights": (_hf_damaged(BC.truncate), ("{hf}", "not a readable safetensors file")),
    "random-bytes-weights": (_hf_damaged(BC.random_bytes), ("{hf}", "not a readable safetensors file")),
    "empty-weights": (_hf_damaged(lambda p: p.write_bytes(b"")), ("{hf}/model.safetensors",)),
    "integer-weights": (_hf_damaged(BC.as_integers), ("{hf}", "I64 (not a float type)")),
    "wrong-shape": (_hf_damaged(BC.one_wrong_shape), ("{hf}", "[3, 3]")),
    "other-size": (_hf_other_size, ("{hf}", "shape")),
    "missing-weights": (_hf_damaged(_hf_without_some_weights), ("{hf}", "randomly initialised")),
    "no-weights": (_hf_damaged(lambda p: p.unlink()), ("{hf}", "model.safetensors")),
    "pickle-that-runs-code": (_hf_pickle(_malicious), ("{hf}/pytorch_model.bin", "only weights")),
    "pickle-of-random-bytes": (
        _hf_pickle(lambda w, p, s: BC.random_bytes(p)),
        ("{hf}/pytorch_model.bin",),
    ),
    "preprocessor-8khz": (
        _hf_damaged(_write_json({"sampling_rate": 8000}), "preprocessor_config.json"),
        (PREP, "sampling_rate"),
    ),
    "preprocessor-not-json": (
        _hf_damaged(_write_json(b"{nope"), "preprocessor_config.json"),
        (PREP, "not valid JSON"),
    ),
    "preprocessor-a-list": (_hf_damaged(_write_json([1]), "preprocessor_config.json"), (PREP, "JSON object")),
    "preprocessor-normalize-a-string": (
        _hf_damaged(_write_json({"do_normalize": "yes"}), "preprocessor_config.json"),
        (PREP, "do_normalize"),
    ),
}
for name, (make, says) in HF.items():
    case(f"hf-{name}", "hf", _hf(make), *says)


# --- result files: evalkit eval's resume check, and leaderboard build --------------------------------


def _resume(edit: Callable[[dict], None] | bytes, *extra: str):
    """The earlier ks.json replaced (the bad file itself must be left as it is)."""

    def setup(w: World) -> list[str]:
        path = w.out / "fbank" / "ks.json"
        if isinstance(edit, bytes):
            path.write_bytes(edit)
        else:
            data = json.loads(path.read_text())
            edit(data)
            path.write_text(json.dumps(data))
        w.names["result"] = str(path)
        return w.eval(*extra, tasks="ks", data=w.shared.suite)

    return setup


def _key(key: str, value):
    def edit(data: dict) -> None:
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        if value is DROP:
            del node[last]
        else:
            node[last] = value

    return edit


RESUME = {
    "latin-1": (b'{"task": "ks", "note": "caf\xe9"}\n', ("{result}", "--overwrite")),
    "truncated": (b'{"task": "ks", ', ("{result}", "--overwrite")),
    "empty": (b"", ("{result}", "--overwrite")),
    "a-json-array": (b"[1, 2]", ("{result}", "--overwrite")),
    "lacks-metrics": (_key("metrics", DROP), ("{result}", "metrics")),
    "primary-without-test-value": (_key("metrics.test", {}), ("{result}", "accuracy")),
    "primary-metric-a-list": (_key("primary_metric", ["accuracy"]), ("{result}", "primary_metric")),
    "upstream-info-a-list": (_key("upstream_info", ["fbank"]), ("{result}", "upstream_info")),
    "heads-a-list": (_key("heads", ["linear"]), ("{result}", "heads")),
    "head-entry-a-string": (_key("heads.linear", "mean_pool_linear"), ("{result}", "heads")),
    "other-weights": (
        _key("upstream_info.fingerprint", "0" * 16),
        ("{result}", "fingerprint", "--name", "--overwrite"),
    ),
    "other-task-version": (_key("task_version", 0), ("{result}", "task version", "--overwrite")),
    "other-protocol": (_key("protocol", "sweep"), ("{result}", "protocol", "--overwrite")),
}
for name, (edit, says) in RESUME.items():
    case(f"results-resume-{name}", "results", _resume(edit), *says)
case(
    "results-resume-other-steps",
    "results",
    _resume(lambda d: None, "--steps", "3"),
    "{result}",
    "steps",
    "--name",
)
case(
    "results-resume-other-lr-grid",
    "results",
    _resume(lambda d: None, "--lr-grid", "0.5"),
    "{result}",
    "learning rates",
    "--overwrite",
)


def _bad_result(make: Callable[[Path], Path]):
    """A malformed result beside two good ones: skipped by name with a warning, the rest built."""

    def setup(w: World) -> list[str]:
        root = _board(w)
        bad = make(root)
        w.names["bad"] = str(bad)
        w.protect(bad)
        return _build(w, results=root)

    return setup


def _malformed(edit: Callable[[dict], None]):
    def make(root: Path) -> Path:
        bad = LD.write_task(root, "bad", "ks", LD.ks_samples(5))
        data = json.loads(bad.read_text())
        edit(data)
        bad.write_text(json.dumps(data))
        return bad

    return make


def _raw(raw: bytes):
    def make(root: Path) -> Path:
        bad = root / "bad" / "ks.json"
        bad.parent.mkdir()
        bad.write_bytes(raw)
        return bad

    return make


for name, (edit, key) in BR.MALFORMED.items():
    case(
        f"results-board-{name.replace(' ', '-').replace('.', '-')}",
        "results",
        _bad_result(_malformed(edit)),
        "warning: skipped {bad}",
        key,
        outcome="warning",
    )
for name, raw in BR.RAW.items():
    case(
        f"results-board-raw-{name.replace(' ', '-')}",
        "results",
        _bad_result(_raw(raw)),
        "warning: skipped {bad}",
        outcome="warning",
    )


def _no_samples(root: Path) -> Path:
    bad = LD.write_task(root, "weak", "ks", LD.ks_samples(70))
    samples = bad.with_name("ks.samples.jsonl")
    samples.unlink()
    return samples


def _sf_nan(root: Path) -> Path:
    LD.write_task(root, "fbank", "sf", LD.sf_samples(1, 0.9), params=0)
    bad = LD.write_task(root, "m", "sf", LD.sf_samples(3, 0.2))
    _key("metrics.test.slot_value_cer", float("nan"))(data := json.loads(bad.read_text()))
    bad.write_text(json.dumps(data))
    return bad


def _duplicate(root: Path) -> Path:
    return LD.write_task(root, "good", "ks", LD.ks_samples(12), folder="good-copy")


def _old_version(root: Path) -> Path:
    LD.write_task(root, "third", "ks", LD.ks_samples(20))
    return LD.write_task(root, "old", "ks", LD.ks_samples(20), version=0)


def _other_fingerprint(root: Path) -> Path:
    return LD.write_task(root, "good", "asr", LD.asr_samples(2, 0.1), fingerprint="another-model")


BOARD_WARNINGS = {
    "samples-file-missing": (_no_samples, ("warning: {bad}", "significance")),
    "non-finite-scored-metric": (_sf_nan, ("warning: {bad}", "metrics.test.slot_value_cer")),
    "duplicate-upstream-x-task": (_duplicate, ("skipped", "a second result", "'good'")),
    "task-version-disagrees": (_old_version, ("warning: skipped {bad}", "version")),
    "fingerprint-disagrees": (_other_fingerprint, ("fingerprint", "one name, one model")),
}
for name, (make, says) in BOARD_WARNINGS.items():
    case(f"results-board-{name}", "results", _bad_result(make), *says, outcome="warning")


# --- evalkit validate --------------------------------------------------------------------------------


def _validate(make: Callable[[World], Path]):
    def setup(w: World) -> list[str]:
        w.names["path"] = str(make(w))
        return ["validate", w.names["path"]]

    return setup


def _task_file(**changes) -> Callable[[World], Path]:
    def make(w: World) -> Path:
        BS.write_task(w.tmp, **changes)
        return w.tmp / "tasks" / "tiny_ks" / "task.yaml"

    return make


def _result_file(edit: Callable[[dict], None]) -> Callable[[World], Path]:
    def make(w: World) -> Path:
        path = w.out / "fbank" / "ks.json"
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        return path

    return make


def _recipe_file(change: Callable[[dict], None]) -> Callable[[World], Path]:
    def make(w: World) -> Path:
        spec = _recipe_dict()
        change(spec)
        path = w.tmp / "recipe.yaml"
        path.write_text(yaml.safe_dump(spec))
        return path

    return make


def _suite_with(change: Callable[[list[dict]], None], split: str = "dev") -> Callable[[World], Path]:
    def make(w: World) -> Path:
        w.data  # noqa: B018 - made before it is edited
        BM.edit_manifest(w.tmp, change, split=split)
        return w.data / "bad"

    return make


def _damaged_audio(damage: Callable[[Path], None]) -> Callable[[World], Path]:
    def make(w: World) -> Path:
        damage(_test_wav(w))
        return w.data / "bad" / "test.jsonl"

    return make


def _latin1_dev(w: World) -> Path:
    _manifest_bytes("dev", _line(1, b'{"id": "caf\xe9"}\n'))(w)
    return w.data / "bad"


def _validate_duration(w: World) -> Path:
    save_wav(_test_wav(w), np.zeros(6 * 16_000, np.float32))
    BM.edit_manifest(w.tmp, lambda rs: rs[3].update(duration=1.0))
    return w.data / "bad" / "test.jsonl"


def _validate_over_long(w: World) -> Path:
    _over_long(w)
    return w.data / "bad" / "test.jsonl"


case("validate-missing-path", "validate", _validate(lambda w: w.tmp / "nosuch"), "{path}", "no such file")
case("validate-unknown-suffix", "validate", _validate(_a_file), "{path}", "don't know")
case("validate-empty-folder", "validate", _validate(lambda w: w.tmp), "{path}", "no manifests")
case(
    "validate-missing-audio",
    "validate",
    _validate(_damaged_audio(lambda p: p.unlink())),
    "{path}",
    "missing audio",
)
case(
    "validate-manifest-bad-record",
    "validate",
    _validate(_suite_with(lambda rs: rs[1].update(duration="1.0"))),
    "{data}/bad/dev.jsonl:2",
    "'duration'",
)
case(
    "validate-manifest-not-utf8",
    "validate",
    _validate(_latin1_dev),
    "{data}/bad/dev.jsonl:2",
    "UTF-8",
)
VALIDATE_AUDIO = {
    "nan-audio": (_float_wav(float("nan")), ("{wav}", "NaN")),
    "text-as-wav": (_write_text, ("{wav}",)),
    "empty-audio-file": (lambda p: p.write_bytes(b""), ("{wav}",)),
    "truncated-audio": (lambda p: p.write_bytes(p.read_bytes()[:2000]), ("{wav}", "truncated")),
}
for name, (damage, says) in VALIDATE_AUDIO.items():
    case(f"validate-{name}", "validate", _validate(_damaged_audio(damage)), *says)
case("validate-duration-mismatch", "validate", _validate(_validate_duration), "{id}")
case("validate-over-an-hour", "validate", _validate(_validate_over_long), "{id}", "3600")
VALIDATE_TASKS = {
    "steps-negative": ({"steps": -5}, "steps"),
    "lr-grid-nan": ({"lr_grid": [float("nan")]}, "lr_grid"),
    "optimizer-unknown": ({"optimizer": {"name": "sgdx"}}, "sgdx"),
    "head-args-typo": ({"heads": [{**LINEAR, "args": {"hiden": 64}}]}, "hidden"),
    "eval-every-zero": ({"eval_every": 0}, "eval_every"),
    "batch-seconds-text": ({"batch_seconds": "x"}, "batch_seconds"),
}
for name, (changes, says) in VALIDATE_TASKS.items():
    case(f"validate-task-{name}", "validate", _validate(_task_file(**changes)), "{path}", says)
VALIDATE_RESULTS = {
    "lacks-task": (_key("task", DROP), "task"),
    "primary-without-test-value": (_key("metrics.test", {}), "accuracy"),
    "primary-a-string": (_key("metrics.test.accuracy", "0.9"), "accuracy"),
    "primary-nan": (_key("metrics.test.accuracy", float("nan")), "accuracy"),
    "primary-metric-a-list": (_key("primary_metric", ["accuracy"]), "primary_metric"),
    "higher-is-better-a-string": (_key("higher_is_better", "yes"), "higher_is_better"),
}
for name, (edit, says) in VALIDATE_RESULTS.items():
    case(f"validate-result-{name}", "validate", _validate(_result_file(edit)), "{path}", says)
for key, value, says in [
    ("optim.lr", "5e-4", "5.0e-4"),
    ("method", "bestrqq", "bestrqq"),
    ("optim.max_steps", 0, "max_steps"),
]:
    case(
        f"validate-recipe-{key}-{_value_id(value)}",
        "validate",
        _validate(_recipe_file(_at(key, value))),
        "{path}",
        says,
    )
