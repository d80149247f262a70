"""`evalkit eval --loader-workers N`: cached training batches read ahead by DataLoader workers (into pinned
memory on a GPU) while the heads train. The batch order is drawn in the training process, so the run is
the one made reading in the loop: the same dev curves and test numbers."""

from __future__ import annotations

import json

from evalkit.cli import main
from evalkit.evaluation import trainer


def _result(folder):
    data = json.loads(next(folder.rglob("ks.json")).read_text())
    head = data["heads"]["linear"]
    return data["metrics"], head["dev_curves"], head["lr_grid"]


def test_batches_read_ahead_train_the_same_heads(smoke_suite, tmp_path, monkeypatch):
    calls = []
    real = trainer.prefetched

    def counted(*args, **kwargs):
        calls.append(args[3])  # the workers asked for
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "prefetched", counted)
    common = ["--tasks", "ks", "--steps", "6", "--data", str(smoke_suite), "--cache", str(tmp_path / "cache")]
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}"
        assert (
            main(
                [
                    "eval",
                    "--upstream",
                    "random_transformer",
                    *common,
                    "--output",
                    str(out),
                    "--loader-workers",
                    workers,
                ]
            )
            == 0
        )
    assert calls and set(calls) == {2}  # the loader was used, with two workers, only when asked
    assert _result(tmp_path / "w0") == _result(tmp_path / "w2")


def test_loader_workers_are_a_count(smoke_suite, tmp_path, capsys):
    code = main(["eval", "--upstream", "random_transformer", "--tasks", "ks", "--data", str(smoke_suite), "--output",
                 str(tmp_path), "--loader-workers", "-1"])  # fmt: skip
    assert code == 2
    assert "--loader-workers must be >= 0; got -1" in capsys.readouterr().err
