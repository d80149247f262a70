"""Run profiles of `evalkit run` (`--profile smoke|default|full`): which suite, which recipe size, which budget.

Not to be confused with a suite profile (`evalkit synth --profile`, `evalkit.synth.suite.SUITE_PROFILES`),
the size of the synthetic suite, which a run profile names in `suite`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunProfile:
    suite: str  # suite profile (evalkit.synth.suite.SUITE_PROFILES)
    size: str  # pre-training config size: tiny | small
    max_steps: int | None = None  # cap on pre-training steps (smoke)
    eval_steps: int | None = None  # downstream steps for every task (None: each task's budget)
    protocol: str = "superb"  # evalkit.evaluation.protocols.PROTOCOLS
    seeds: tuple[int, ...] | None = None  # head seeds of every trained task (None: the task's own seed)
    # reference rows evaluated beside the models (evalkit.pipeline.plan.BASELINES names them all)
    baselines: tuple[str, ...] = ("oracle", "fbank", "fbank_context")


RUN_PROFILES = {
    "smoke": RunProfile("smoke", "tiny", max_steps=12, eval_steps=8, protocol="quick"),
    # eval_steps: 400 for every task (their own budgets on this suite are 400-1,500 steps), to keep the run
    # within 45 min on 2 cores (37 min from a fresh clone, 2026-12-07); at 400 steps ASR and SF are short of
    # their ceilings (the oracle's WER 39%, slot-type F1 0.32)
    # smoke and default train one head seed each: their time budgets
    # no FBANK-with-context row: its evaluation was the costliest of the run (1,376 s of 1 core against
    # 260-380 s for a tiny upstream, 2026-12-07), and the main job's question is answered by FBANK and the twins
    "default": RunProfile("default", "tiny", eval_steps=400, protocol="quick", baselines=("oracle", "fbank")),
    # three head seeds: the board shows mean ± sd and its significance tests count the seeds' spread
    "full": RunProfile("default", "small", seeds=(0, 1, 2)),
}
