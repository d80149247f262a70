"""Shared fixtures: one smoke suite per test session, made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see evalkit/cli.py main()


@pytest.fixture(scope="session")
def smoke_suite(tmp_path_factory) -> Path:
    """The `smoke` synthetic suite (all eleven corpora), built once per session."""
    from evalkit.synth.suite import build_suite

    out = tmp_path_factory.mktemp("suite")
    build_suite(out, "smoke", seed=0, jobs=min(2, os.cpu_count() or 1), progress=False)
    return out
