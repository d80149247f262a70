"""The asv_superb and er_superb_fold{k} tasks read what the VoxCeleb1 and IEMOCAP preparers write."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from evalkit.corpora import prepare
from evalkit.evaluation.task import KINDS, load_task

HERE = Path(__file__).resolve().parent


def _sibling(module: str):
    """A sibling test module (tests/ is not a package), for its corpus builder."""
    spec = importlib.util.spec_from_file_location(f"_superb_{module}", HERE / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def iemocap_data(tmp_path_factory) -> Path:
    """A miniature IEMOCAP prepared once under DATA/iemocap, as `evalkit prepare iemocap` would."""
    helpers = _sibling("conftest")
    src = _sibling("test_prepare_iemocap").build(
        tmp_path_factory.mktemp("iemocap_src"), helpers.write_audio, helpers.write_text
    )
    data = tmp_path_factory.mktemp("data")
    meta = _sibling("test_prepare_iemocap").write_s3prl_meta(src, tmp_path_factory.mktemp("meta"))
    prepare("iemocap", src, data / "iemocap", s3prl_meta=meta)
    return data


def test_asv_superb_reads_train_dev_test_and_both_trial_lists(tmp_path, audio, text):
    src = _sibling("test_prepare_voxceleb1").build(tmp_path / "src", audio, text, more_speakers=True)
    task = load_task("asv_superb")
    assert (task.name, task.corpus, task.kind) == ("asv_superb", "voxceleb1_asv", "verification")
    prepare("voxceleb1_asv", src, tmp_path / "data" / task.corpus)
    recipe = KINDS.get(task.kind)(task, tmp_path / "data")
    assert len(recipe.speakers) == 4  # train speakers only: the 2 dev speakers are held out
    dev, test = recipe.trials("dev"), recipe.trials("test")
    assert dev and {label for label, _, _ in dev} == {0, 1}
    assert [label for label, _, _ in test] == [1, 0]


@pytest.mark.parametrize("fold", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("variant", ["superb", "superb_budget"])
def test_er_superb_folds_read_nested_corpus_folders(iemocap_data, fold, variant):
    data = iemocap_data
    task = load_task(f"er_{variant}_fold{fold}")
    assert (task.name, task.corpus, task.kind) == (
        f"er_{variant}_fold{fold}",
        f"iemocap/fold{fold}",
        "classification",
    )
    heads = load_task("er").heads
    assert task.labels == load_task("er").labels
    assert task.heads == (heads[:1] if variant == "superb" else heads)  # s3prl trains one head
    recipe = KINDS.get(task.kind)(task, data)
    assert recipe.folder == data / "iemocap" / f"fold{fold}"
    assert {r["fold"] for r in recipe.records("test")} == {fold}
    assert fold not in {r["fold"] for r in recipe.records("train") + recipe.records("dev")}
    assert recipe.classes == [["angry", "happy", "neutral", "sad"]]
