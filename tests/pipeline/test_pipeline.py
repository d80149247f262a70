"""`evalkit run`: the job scheduler (order, failures, resume) and the whole pipeline on the smoke suite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from evalkit.core.errors import EvalkitError
from evalkit.pipeline import plan as pipeline_plan
from evalkit.pipeline import profiles as pipeline_profiles
from evalkit.pipeline import publish as pipeline_publish
from evalkit.pipeline import run as pipeline_run
from evalkit.pipeline import scheduler as pipeline_scheduler
from evalkit.pipeline import twins as pipeline_twins
from evalkit.pipeline.scheduler import Job, Stages, run_jobs


def _jobs(tmp: Path) -> list[Job]:
    a, b, c = tmp / "a", tmp / "b", tmp / "c"
    # b copies a and c copies b: either fails with FileNotFoundError if run before what it needs
    return [
        Job("c", shutil.copyfile, (b, c), ("b",)),
        Job("b", shutil.copyfile, (a, b), ("a",)),
        Job("a", Path.write_text, (a, "x")),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_jobs_run_after_what_they_need(tmp_path, workers):
    jobs = _jobs(tmp_path)
    if workers == 1:  # in-process mode runs in list order: give it a valid order
        jobs = jobs[::-1]
    run_jobs(jobs, workers, Stages(tmp_path), log=lambda *_: None)
    assert (tmp_path / "c").read_text() == "x"
    assert set(json.loads((tmp_path / "stages.json").read_text())) == {"a", "b", "c"}


def test_a_failed_job_stops_its_dependants_and_keeps_finished_work(tmp_path):
    jobs = [
        Job("ok", Path.write_text, (tmp_path / "ok", "x")),
        Job("bad", shutil.copyfile, (tmp_path / "missing", tmp_path / "bad")),
        Job("after-bad", Path.write_text, (tmp_path / "after", "x"), ("bad",)),
    ]
    with pytest.raises(FileNotFoundError):
        run_jobs(jobs, 2, Stages(tmp_path), log=lambda *_: None)
    assert (tmp_path / "ok").read_text() == "x"
    assert not (tmp_path / "after").exists()
    assert "ok" in json.loads((tmp_path / "stages.json").read_text())


def _interrupt_soon(seconds: float) -> None:
    """A job that makes the scheduler's process see Ctrl-C while the other job still runs."""
    time.sleep(seconds)
    os.kill(os.getppid(), signal.SIGUSR1)


def test_an_interrupted_pool_stops_its_running_jobs_at_once(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM (both a KeyboardInterrupt in the scheduler) ends the running jobs instead of waiting
    for them: a long evaluation must not keep a stopped run alive."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    jobs = [Job("long", time.sleep, (60,)), Job("stop", _interrupt_soon, (2,))]
    t0 = time.time()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_jobs(jobs, 2, Stages(tmp_path), log=lambda *_: None)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert time.time() - t0 < 30  # not the 60 s of the running job
    assert not (tmp_path / "stages.json").exists()  # neither job finished


def test_an_interrupted_invocation_keeps_its_wall_time_and_stages(tmp_path, monkeypatch):
    """The invocations' wall times add up to what a run cost, also when one of them was stopped."""

    def stopped(p, work, workdir, jobs, workers, selected, stages, log, *rest):
        stages.record("synth", 1.5, log)
        time.sleep(0.2)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_run, "_run_stages", stopped)
    with pytest.raises(KeyboardInterrupt):
        pipeline_run.run_pipeline("smoke", tmp_path, log=lambda *_: None)
    (record,) = json.loads((tmp_path / "smoke" / "run.json").read_text())["invocations"]
    assert (
        record["interrupted"] == "interrupted" and record["stages"] == ["synth"] and record["wall_s"] >= 0.2
    )
    readme_dir = tmp_path / "pub"
    (readme_dir / "board").mkdir(parents=True)
    (readme_dir / "board" / "leaderboard.md").write_text("| Upstream | Score |\n")
    (readme_dir / "stages.json").write_text("{}")
    again = {**record, "started": "T2", "stages": ["eval fbank"], "wall_s": 100.0}
    del again["interrupted"]
    run = {"invocations": [record, again]}
    readme = pipeline_publish.published_readme(readme_dir, "smoke", run, 2)
    assert f"{record['wall_s']:.0f} | synth (interrupted) |" in readme
    total = record["wall_s"] + 100.0
    assert f"| all 2 invocations | | {total:.0f} ({total / 3600:.2f} h) | |" in readme


def test_unknown_dependency_is_named(tmp_path):
    with pytest.raises(Exception, match="needs unknown job"):
        run_jobs([Job("x", print, (), ("nope",))], 1, Stages(tmp_path))


def test_recipes_differing_only_in_training_settings_share_one_twin(tmp_path, monkeypatch):
    def recipe(name: str, **encoder) -> None:
        spec = {"kind": "transformer", "dim": 8, "layers": 2, **encoder}
        (tmp_path / f"{name}-x.yaml").write_text(
            json.dumps({"encoder": {"frontend": {"kind": "fbank"}, "encoder": spec}})
        )

    recipe("hubert-iter2", dropout=0.0)  # the published HuBERT is iteration 2
    recipe("wav2vec2", dropout=0.05, layerdrop=0.1, attention_dropout=0.1)  # same model once in eval mode
    recipe("bestrq", dropout=0.0, layers=3)  # a different model
    recipe("summarymixing", kind="summarymixing")
    monkeypatch.setattr(pipeline_twins, "CONFIGS", tmp_path)
    assert pipeline_twins.shared_twins("x") == {
        "hubert": ["hubert", "wav2vec2"],
        "bestrq": ["bestrq"],
        "summarymixing": ["summarymixing"],
        "distilhubert": ["distilhubert"],
    }


def test_only_names_known_upstreams_and_brings_unfinished_dependencies(tmp_path):
    from evalkit.core.errors import EvalkitError

    with pytest.raises(EvalkitError, match=r"unknown upstream 'bestrg'.*bestrq"):
        pipeline_plan.check_only(["bestrg"])
    profiles = pipeline_profiles.RUN_PROFILES
    default = profiles["default"].baselines  # a row the profile does not evaluate is not offered
    assert "fbank_context" not in default and pipeline_plan.check_only(["fbank"], default) == {"fbank"}
    with pytest.raises(EvalkitError, match=r"unknown upstream 'fbank_context'. .*Choose from .*fbank\b"):
        pipeline_plan.check_only(["fbank_context"], default)
    assert all(set(p.baselines) <= set(pipeline_plan.BASELINES) for p in profiles.values())
    assert pipeline_plan.with_dependencies({"distilhubert"}, tmp_path) == {
        "distilhubert",
        "hubert",
        "hubert-iter1",
    }
    done = tmp_path / "hubert"
    done.mkdir()
    (done / "config.json").write_text(json.dumps({"pretraining": {"finished": True}}))
    assert pipeline_plan.with_dependencies({"distilhubert", "fbank"}, tmp_path) == {"distilhubert"}


def test_seeding_from_a_published_folder_leaves_out_what_is_redone(tmp_path):
    from evalkit.core.errors import EvalkitError

    pub, work = tmp_path / "pub", tmp_path / "work" / "full"
    for name in ("hubert", "bestrq"):
        (pub / "results" / name).mkdir(parents=True)
        (pub / "results" / name / "pr.json").write_text("{}")
    (pub / "stages.json").write_text(json.dumps({"synth": 158}))
    (pub / "run.json").write_text(json.dumps({"invocations": [{"evalkit_commit": "abc"}], "published": {}}))
    with pytest.raises(EvalkitError, match="not a published leaderboard"):
        pipeline_publish.seed_from_published(tmp_path / "nowhere", work, skip=set(), log=lambda *_: None)
    pipeline_publish.seed_from_published(pub, work, skip={"bestrq"}, log=lambda *_: None)
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*.json")) == [
        "results/hubert/pr.json",
        "run.json",
        "stages.json",
    ]
    assert json.loads((work / "run.json").read_text()) == {"invocations": [{"evalkit_commit": "abc"}]}
    (work / "results" / "hubert" / "pr.json").write_text('{"redone": 1}')
    pipeline_publish.seed_from_published(
        pub, work, skip=set(), log=lambda *_: None
    )  # a resume: nothing is copied again
    assert (work / "results" / "hubert" / "pr.json").read_text() == '{"redone": 1}'
    assert not (work / "results" / "bestrq").exists()


@pytest.mark.slow
def test_smoke_pipeline_runs_and_resumes_without_redoing_work(smoke_suite, tmp_path, monkeypatch):
    """The whole pipeline on the smoke suite, shortened further; a second run redoes nothing."""
    monkeypatch.setitem(
        pipeline_profiles.RUN_PROFILES,
        "smoke",
        pipeline_profiles.RunProfile("smoke", "tiny", max_steps=2, eval_steps=2, protocol="quick"),
    )
    shutil.copytree(smoke_suite, tmp_path / "smoke" / "suite")
    board = pipeline_run.run_pipeline("smoke", tmp_path, workers=2, log=lambda *_: None)
    assert (board / "index.html").is_file() and (board / "leaderboard.md").is_file()
    results = tmp_path / "smoke" / "results"
    files = sorted(results.glob("*/*.json"))
    twins = pipeline_twins.shared_twins("tiny")
    # HuBERT, wav2vec 2.0 and BEST-RQ share the tiny Transformer, hence one twin
    assert twins == {
        "hubert": ["hubert", "wav2vec2", "bestrq"],
        "summarymixing": ["summarymixing"],
        "distilhubert": ["distilhubert"],
    }
    assert len(files) == 11 * 10  # oracle, fbank, fbank_context, five upstreams and three random twins
    for owner, names in twins.items():
        twin = json.loads((results / f"{owner}-random" / "ks.json").read_text())
        assert twin["upstream_info"]["pretraining"] == {"method": "random-init", "twin_of": ", ".join(names)}
        for name in names:
            res = json.loads((results / name / "ks.json").read_text())
            assert res["upstream_info"]["pretraining"]["method"] != "random-init"
            assert twin["upstream_info"]["parameters"] == res["upstream_info"]["parameters"]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    weights = tmp_path / "smoke" / "upstreams" / "hubert" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    first_times = json.loads((tmp_path / "smoke" / "stages.json").read_text())
    total = first_times["total (last invocation)"]
    lines: list[str] = []
    slow_check = pipeline_run.build_suite  # checking a big finished suite takes seconds: it must not count
    monkeypatch.setattr(
        pipeline_run, "build_suite", lambda *a, **k: (time.sleep(1.2), slow_check(*a, **k))[1]
    )
    pipeline_run.run_pipeline("smoke", tmp_path, workers=2, log=lines.append)
    assert not any(line.startswith("[plan]") for line in lines)  # nothing left to do: no job planned
    # and the total stays the one of the run that did the work
    again = json.loads((tmp_path / "smoke" / "stages.json").read_text())
    assert again["total (last invocation)"] == total
    assert again["synth"] == first_times["synth"]  # checking a finished suite is not a synthesis time
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert weights.stat().st_mtime_ns == before
    assert any("hubert: done" in line for line in lines)
    # --publish: the result files (no checkpoints, no caches) and stage times, and a board built from them
    pub = tmp_path / "pub"
    board = pipeline_publish.publish(tmp_path, pub, "smoke", log=lines.append)
    copied = sorted(p.relative_to(pub / "results") for p in (pub / "results").rglob("*") if p.is_file())
    assert copied == sorted(
        p.relative_to(results) for p in results.rglob("*.json*") if ".cache" not in p.parts
    )
    assert len(copied) == 2 * len(files) and (board / "index.html").is_file()
    assert (pub / "stages.json").read_text() == (tmp_path / "smoke" / "stages.json").read_text()
    run = json.loads((pub / "run.json").read_text())
    assert run["profile"] == "smoke" and run["cpus"] == os.cpu_count()
    # which invocation made what, and how long it took; the second, with nothing to do, left no record
    [made] = run["invocations"]
    assert "pretrain hubert" in made["stages"] and "eval fbank" in made["stages"] and made["wall_s"] > 0
    readme = (pub / "README.md").read_text()
    assert "--publish pub" in readme and "| pretrain hubert |" in readme and "| fbank |" in readme
    # redo one upstream in a work folder started from the published one: only its stages run
    redo = tmp_path / "redo"
    shutil.copytree(smoke_suite, redo / "smoke" / "suite")
    lines = []
    pipeline_run.run_pipeline("smoke", redo, workers=2, only=["bestrq"], from_published=pub, log=lines.append)
    assert [line for line in lines if line.startswith("[plan]")] == [
        "[plan] pretrain bestrq",
        "[plan] eval bestrq",
    ]
    assert sorted(
        p.relative_to(redo / "smoke" / "results") for p in (redo / "smoke" / "results").glob("*/*.json")
    ) == sorted(p.relative_to(results) for p in files)
    assert sorted(p.name for p in (redo / "smoke" / "upstreams").iterdir()) == ["bestrq"]
    first, again = json.loads((redo / "smoke" / "run.json").read_text())["invocations"]
    assert first == made and again["stages"] == ["pretrain bestrq", "eval bestrq"]


def test_published_readme_lists_each_invocation_and_what_it_ran(tmp_path):
    """A leaderboard finished by a second invocation (a recipe changed, its stages redone) says which commit
    made what; records written before stages were kept show '?' rather than a guess."""
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "leaderboard.md").write_text(
        "| Upstream | Score |\n|---|---:|\n| hubert | 208.4 |\n"
    )
    (tmp_path / "stages.json").write_text(
        json.dumps({"pretrain wav2vec2": 400.2, "total (last invocation)": 1237.5})
    )
    run = {
        "cpus": 2,
        "machine": "x86_64",
        "python": "3.11",
        "torch": "2.11",
        "invocations": [
            {"evalkit_commit": "aaa", "started": "T1"},
            {"evalkit_commit": "bbb", "started": "T2", "stages": ["pretrain wav2vec2"], "wall_s": 1237.5},
        ],
    }
    readme = pipeline_publish.published_readme(tmp_path, "full", run, 200)
    assert "| T1 | aaa | ? | not recorded |" in readme
    assert "| T2 | bbb | 1238 | pretrain wav2vec2 |" in readme
    assert "evalkit commit aaa, bbb" in readme and "| hubert | 208.4 |" in readme
    assert "| pretrain wav2vec2 | 400 | 6.7 |" in readme
    single = pipeline_publish.published_readme(
        tmp_path, "full", {**run, "invocations": run["invocations"][1:]}, 200
    )
    assert "## Invocations" not in single


def test_publish_records_the_commit_as_it_was_before_copying(tmp_path, monkeypatch):
    """Publishing into the checkout dirties it; the recorded commit must be the one before that."""
    work = tmp_path / "full"
    (work / "leaderboard").mkdir(parents=True)
    (work / "leaderboard" / "index.html").write_text("<html></html>")
    published = Path(__file__).resolve().parents[2] / "leaderboard" / "results" / "fbank"
    shutil.copytree(
        published,
        work / "results" / "fbank",
        ignore=lambda _, names: [n for n in names if not n.startswith("pr.")],
    )
    (work / "stages.json").write_text("{}")
    dest = tmp_path / "pub"
    monkeypatch.setattr(
        pipeline_publish,
        "git_hash",
        lambda dirty=False: "abc-dirty" if (dest / "results").exists() else "abc",
    )
    pipeline_publish.publish(tmp_path, dest, "full", log=lambda *_: None)
    assert json.loads((dest / "run.json").read_text())["published"]["evalkit_commit"] == "abc"


def test_a_checkpoint_is_needed_only_while_an_evaluation_that_uses_it_is_missing(tmp_path):
    """A work folder seeded with results (--from-published) must not pre-train what nothing will use."""
    from types import SimpleNamespace

    from evalkit.core.results import result_path
    from evalkit.evaluation.evaluate import resolve_tasks

    upstreams, opts = tmp_path / "upstreams", SimpleNamespace(output=tmp_path / "results")
    twins = {"hubert": ["hubert", "bestrq"]}
    for spec in ("hubert", "hubert-random", "bestrq"):
        for task in resolve_tasks("all"):
            path = result_path(opts.output, str(upstreams / spec), task.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
    assert not pipeline_plan.has_work("hubert", upstreams, twins, opts)
    assert not pipeline_plan.has_work("bestrq", upstreams, twins, opts)
    result_path(opts.output, str(upstreams / "hubert-random"), "pr").unlink()
    assert pipeline_plan.has_work("hubert", upstreams, twins, opts)  # its twin is made from its checkpoint
    (upstreams / "hubert-random").mkdir(parents=True)
    (upstreams / "hubert-random" / "model.safetensors").write_bytes(b"")
    assert not pipeline_plan.has_work("hubert", upstreams, twins, opts)  # the twin exists: evaluate it alone
    result_path(opts.output, str(upstreams / "bestrq"), "asr").unlink()
    assert pipeline_plan.has_work("bestrq", upstreams, twins, opts)


def test_the_twins_are_evaluated_last_so_that_the_workers_end_together(tmp_path):
    """Longest jobs first: the baselines, the pre-trained upstreams, then the twins (the shortest, one head
    seed in `full`); a twin still waits for its own checkpoint's twin job."""
    p = pipeline_profiles.RUN_PROFILES["full"]
    opts = pipeline_run.eval_options(p, tmp_path, tmp_path, "cpu")
    twins = pipeline_twins.shared_twins(p.size)
    jobs = pipeline_run._eval_jobs(
        p.baselines,
        list(pipeline_plan.PUBLISHED),
        None,
        tmp_path / "upstreams",
        twins,
        opts,
        pipeline_run.twin_options(p, opts),
        set(),
    )
    names = [j.name for j in jobs]
    first_twin = next(i for i, n in enumerate(names) if n.startswith("twin "))
    assert names[:2] == ["eval oracle", "eval fbank"]
    assert {n for n in names[2:first_twin]} == {f"eval {u}" for u in pipeline_plan.PUBLISHED}
    assert all(
        n.startswith(("twin ", "eval ")) and (n.startswith("twin ") or n.endswith("-random"))
        for n in names[first_twin:]
    )
    for job in jobs[first_twin:]:
        if job.name.endswith("-random"):
            assert job.needs == (f"twin {job.name[5:-7]}",)


submitit = pytest.importorskip("submitit")


def test_jobs_run_through_submitit_in_dependency_order(tmp_path):
    """`evalkit run --executor submitit-local`: each job a submitit job (a subprocess here, a Slurm job on a
    cluster), after what it needs; each stage's time recorded as with the local pool."""
    executor = pipeline_scheduler.cluster_executor("submitit-local", tmp_path / "submitit")
    run_jobs(_jobs(tmp_path), 2, Stages(tmp_path), log=lambda *_: None, executor=executor)
    assert (tmp_path / "c").read_text() == "x"
    assert set(json.loads((tmp_path / "stages.json").read_text())) == {"a", "b", "c"}
    job_folders = [d for d in (tmp_path / "submitit").iterdir() if d.name.isdigit()]
    assert len(job_folders) == 3  # one folder (logs, result) per job, named by its job id


def test_a_failed_submitit_job_stops_its_dependants_and_keeps_finished_work(tmp_path):
    executor = pipeline_scheduler.cluster_executor("submitit-local", tmp_path / "submitit")
    jobs = [
        Job("ok", Path.write_text, (tmp_path / "ok", "x")),
        Job("bad", shutil.copyfile, (tmp_path / "missing", tmp_path / "bad")),
        Job("after-bad", Path.write_text, (tmp_path / "after", "x"), ("bad",)),
    ]
    with pytest.raises(Exception, match="missing"):
        run_jobs(jobs, 2, Stages(tmp_path), log=lambda *_: None, executor=executor)
    assert (tmp_path / "ok").read_text() == "x" and not (tmp_path / "after").exists()


def test_slurm_without_slurm_and_unknown_executors_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_scheduler.shutil, "which", lambda name: None)
    with pytest.raises(EvalkitError, match="no `sbatch` on this machine's PATH"):
        pipeline_scheduler.cluster_executor("slurm", tmp_path)
    with pytest.raises(EvalkitError, match="--executor 'ray': choose local, submitit-local, slurm"):
        pipeline_scheduler.cluster_executor("ray", tmp_path)
    assert pipeline_scheduler.cluster_executor("local", tmp_path) is None


@pytest.mark.slow
def test_the_pipeline_runs_through_submitits_local_executor(smoke_suite, tmp_path, monkeypatch):
    """`evalkit run --executor submitit-local`, as on a cluster but with subprocesses: BEST-RQ's pre-training
    and evaluation as two submitit jobs, the second after the first; a re-run resumes with nothing to do."""
    monkeypatch.setitem(
        pipeline_profiles.RUN_PROFILES,
        "smoke",
        pipeline_profiles.RunProfile("smoke", "tiny", max_steps=2, eval_steps=2, protocol="quick"),
    )
    shutil.copytree(smoke_suite, tmp_path / "smoke" / "suite")
    lines: list[str] = []
    run = dict(only=["bestrq"], executor="submitit-local", log=lines.append)
    pipeline_run.run_pipeline("smoke", tmp_path, **run)
    assert [line.split(":")[0] for line in lines if line.startswith("[submitted]")] == [
        "[submitted] pretrain bestrq",
        "[submitted] eval bestrq",
    ]
    assert len(list((tmp_path / "smoke" / "results" / "bestrq").glob("*.json"))) == 10
    jobs = [d for d in (tmp_path / "smoke" / "submitit").iterdir() if d.name.isdigit()]
    assert len(jobs) == 2
    lines.clear()
    pipeline_run.run_pipeline("smoke", tmp_path, **run)
    assert not any(line.startswith(("[plan]", "[submitted]")) for line in lines)
