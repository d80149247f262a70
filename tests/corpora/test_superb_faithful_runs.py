"""Every faithful `*_superb` task (s3prl's recipe) runs end to end on the miniature corpora of the preparer
tests: prepared as `evalkit prepare` does, evaluated as `evalkit eval` does with `--steps` overridden (the
recipes' 30k-200k steps are for a GPU), writing a result that records the recipe."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.corpora import prepare

HERE = Path(__file__).resolve().parent

# corpus preparer -> (its test module's builder, keyword arguments of the builder, the faithful tasks it feeds)
CORPORA = {
    "librispeech": ("test_prepare_librispeech", {}, ["pr_superb", "asr_superb"]),
    "speech_commands": ("test_prepare_speech_commands", {}, ["ks_superb"]),
    "fluent_speech_commands": ("test_prepare_fluent_speech_commands", {}, ["ic_superb"]),
    # long enough for the recipes' 8 s training crops (and ASV's 2 s minimum) to act
    "voxceleb1_sid": ("test_prepare_voxceleb1", {"more_speakers": True, "seconds": 8.5}, ["sid_superb"]),
    "voxceleb1_asv": ("test_prepare_voxceleb1", {"more_speakers": True, "seconds": 2.5}, ["asv_superb"]),
    "iemocap": ("test_prepare_iemocap", {}, [f"er_superb_fold{k}" for k in range(1, 6)]),
    "quesst14": ("test_prepare_quesst14", {}, ["qbe_superb"]),
    "snips": ("test_prepare_snips", {}, ["sf_superb"]),
    "libri2mix": ("test_prepare_libri2mix", {}, ["sd_superb"]),
}


def _module(module: str):
    spec = importlib.util.spec_from_file_location(f"_faithful_{module}", HERE / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_faithful_tasks_run_on_miniature_corpora(corpus, tmp_path, audio, text):
    module, kwargs, tasks = CORPORA[corpus]
    mod = _module(module)
    src = mod.build(tmp_path / "src", audio, text, **kwargs)
    data = tmp_path / "data"
    # IEMOCAP is prepared with s3prl's meta files, LibriSpeech with its g2p lexicons (their test modules make
    # miniature ones), as the faithful tasks' files say
    options = {
        "iemocap": lambda: {"s3prl_meta": mod.write_s3prl_meta(src, tmp_path / "meta")},
        "librispeech": lambda: {"g2p_lexicon": mod.write_g2p_lexicons(tmp_path / "lexicons")},
    }.get(corpus, dict)()
    prepare(corpus, src, data / corpus, **options)
    out = tmp_path / "results"
    argv = [
        "eval",
        "--upstream",
        "fbank",
        "--tasks",
        ",".join(tasks),
        "--data",
        str(data),
        "--output",
        str(out),
    ]
    assert main([*argv, "--steps", "2"]) == 0
    for task in tasks:
        (result,) = (out / "fbank").glob(f"{task}.json")
        data_ = json.loads(result.read_text())
        assert data_["task_config"]["recipe"] == "s3prl"
        if task == "qbe_superb":  # nothing trains: the best dev layer is tested
            assert data_["head"] == "dtw" and data_["layer"] is not None
            continue
        assert data_["heads"][data_["head"]]["steps"] == 2
        assert data_["lr_grid"] == data_["task_config"]["lr_grid"]  # s3prl's one rate
        extra = data_["heads"][data_["head"]].get("selected_on_test")
        if task in ("asv_superb", "sd_superb"):  # SUPERB's test-selected number, labelled, beside the result
            assert "chosen on test" in extra["note"] and data_["primary_metric"] in extra
        else:
            assert extra is None
