"""An evaluation of several head seeds keeps each finished seed on disk (`.<task>.seed<k>.partial.json`), so a
run stopped while training a later seed resumes there: the result is the uninterrupted run's."""

from __future__ import annotations

import json

import pytest

from evalkit.evaluation.evaluate import EvalOptions, resolve_tasks, run_eval
from evalkit.evaluation.kinds.base import TaskKind


def _opts(smoke_suite, out, cache, steps=4):
    return EvalOptions(
        data=smoke_suite,
        output=out,
        cache=cache,
        steps=steps,
        seeds=[0, 1, 2],
        seed_rates="chosen",
        progress=False,
    )


def _body(path):
    data = json.loads(path.read_text())
    return {k: data[k] for k in ("metrics", "metrics_sd", "ci95", "seeds", "lr", "heads")}


@pytest.mark.parametrize("task", ["ks", "asv"])
def test_a_stopped_run_resumes_at_the_seed_it_was_training(smoke_suite, tmp_path, monkeypatch, task):
    tasks = resolve_tasks(task)
    run_eval("random_transformer", tasks, _opts(smoke_suite, tmp_path / "whole", tmp_path / "cache"))
    whole = next((tmp_path / "whole").rglob(f"{task}.json"))

    real = TaskKind._train_and_test
    trained = []

    def stop_at_seed_two(self, *args, **kwargs):
        seed = args[6]
        if seed == 2 and not trained.count("resumed"):
            raise KeyboardInterrupt  # Ctrl-C, SIGTERM or a lost node while seed 2 trains
        trained.append(seed)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TaskKind, "_train_and_test", stop_at_seed_two)
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        run_eval("random_transformer", tasks, _opts(smoke_suite, out, tmp_path / "cache"))
    kept = sorted(p.name for p in out.rglob(".*.partial.json"))
    assert kept == [f".{task}.seed0.partial.json", f".{task}.seed1.partial.json"] and trained == [0, 1]

    trained.append("resumed")
    lines = []
    run_eval("random_transformer", tasks, _opts(smoke_suite, out, tmp_path / "cache"), log=lines.append)
    assert trained[-1] == 2 and trained.count(0) == 1 and trained.count(1) == 1  # only seed 2 trained again
    assert any("head seed 0: finished before" in line for line in lines)
    assert _body(next(out.rglob(f"{task}.json"))) == _body(whole)
    assert not list(out.rglob(".*.partial.json"))  # gone once the result is written


def test_a_seed_kept_from_another_making_is_trained_again(smoke_suite, tmp_path, monkeypatch):
    tasks = resolve_tasks("ks")
    out = tmp_path / "r"
    real = TaskKind._train_and_test

    def stop(self, *args, **kwargs):
        if args[6] == 1:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TaskKind, "_train_and_test", stop)
    with pytest.raises(KeyboardInterrupt):
        run_eval("random_transformer", tasks, _opts(smoke_suite, out, tmp_path / "cache"))
    monkeypatch.setattr(TaskKind, "_train_and_test", real)
    lines = []
    run_eval(
        "random_transformer", tasks, _opts(smoke_suite, out, tmp_path / "cache", steps=6), log=lines.append
    )
    assert not any("finished before" in line for line in lines)  # 6 steps, not the 4 the kept seed trained
    assert json.loads(next(out.rglob("ks.json")).read_text())["heads"]["linear"]["steps"] == 6
