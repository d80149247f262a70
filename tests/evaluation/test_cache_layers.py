"""`evalkit eval --cache-layers`: a cache of some hidden states only (a Base model's every layer is ~1 MB per
second of audio). The weighted sum sees those layers; results record them and the leaderboard keeps them
apart from all-layer results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.core.errors import ConfigError
from evalkit.evaluation.cache_size import cache_bytes, cache_layers
from evalkit.evaluation.features import extract
from evalkit.leaderboard import collect
from upstreams.checkpoint import write_checkpoint
from upstreams.encoder import random_transformer
from upstreams.load import load_upstream


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random evalkit checkpoint: 5 hidden states (the front-end's and 4 transformer layers')."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    model = random_transformer(0)
    write_checkpoint(folder, model.state_dict(), {"upstream": "encoder", "config": model.config})
    return folder


@pytest.mark.parametrize(
    "spec, layers",
    [
        ("all", None),
        ("0,2,4", [0, 2, 4]),
        ("every:2", [0, 2, 4]),
        ("every:3", [0, 3, 4]),
        ("0,1,2,3,4", None),
    ],
)
def test_the_spec_names_the_layers(spec, layers):
    assert cache_layers(spec, 5) == layers


@pytest.mark.parametrize(
    "spec, message",
    [
        ("0,7", "layer 7 does not exist; this upstream has 5 hidden states (0..4)"),
        ("2,0", "give each layer once, in increasing order"),
        ("every:0", "give all, layer indices"),
        ("last", "give all, layer indices"),
    ],
)
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cache_layers(spec, 5)


def test_a_subset_cache_holds_those_layers_and_its_size_is_estimated(checkpoint, smoke_suite, tmp_path):
    upstream = load_upstream(str(checkpoint))
    assert upstream.num_layers == 5
    manifest = smoke_suite / "ks" / "train.jsonl"
    every = extract(upstream, manifest, tmp_path / "cache", progress=False)
    some = extract(upstream, manifest, tmp_path / "cache", progress=False, layers=[0, 4])
    assert some.folder != every.folder and some.num_layers == 2 and some.layers == [0, 4]
    assert every.layers == [0, 1, 2, 3, 4]
    utt = every.ids[0]
    assert (some.get(utt) == every.get(utt)[[0, 4]]).all()
    assert cache_bytes(upstream, manifest, layers=[0, 4]) * 5 == cache_bytes(upstream, manifest) * 2


def test_results_record_the_layers_and_the_board_keeps_them_apart(checkpoint, smoke_suite, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["eval", "--upstream", str(checkpoint), "--data", str(smoke_suite), "--output", str(out)]
    base += ["--tasks", "ks,qbe", "--steps", "2", "--protocol", "quick"]
    assert main([*base, "--name", "all"]) == 0
    assert main([*base, "--name", "some", "--cache-layers", "every:2"]) == 0
    ks = json.loads((out / "some" / "ks.json").read_text())
    assert ks["cache_layers"] == [0, 2, 4] and len(ks["layer_weights"]) == 3
    assert "cache_layers" not in json.loads((out / "all" / "ks.json").read_text())
    qbe = json.loads((out / "some" / "qbe.json").read_text())
    assert qbe["layer"] in (0, 2, 4) and set(qbe["dev_by_layer"]) == {"0", "2", "4"}  # the upstream's indices
    # the same results folder with other layers is a result made otherwise, not a resume
    assert main([*base, "--name", "some"]) == 2
    assert "cached layers [0, 2, 4] there, 'all' now" in capsys.readouterr().err
    suites, _ = collect(out)
    folders = {sid: {e.path.parent.name for e in s.entries.values()} for sid, s in suites.items()}
    subset = next(sid for sid in folders if sid.endswith("-layers0_2_4"))
    assert folders == {subset.removesuffix("-layers0_2_4"): {"all"}, subset: {"some"}}


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--cache-layers", "9"), "layer 9 does not exist"),
        (("--cache-layers", "0,x"), "give all, layer indices"),
        (("--cache-layers", "0,2", "--no-cache"), "but --no-cache keeps none"),
    ],
)
def test_bad_cache_layers_exit_2_before_any_work(checkpoint, smoke_suite, tmp_path, capsys, extra, message):
    args = [
        "eval",
        "--upstream",
        str(checkpoint),
        "--data",
        str(smoke_suite),
        "--output",
        str(tmp_path / "out"),
    ]
    assert main([*args, "--tasks", "ks", "--steps", "2", "--protocol", "quick", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("*.json"))
