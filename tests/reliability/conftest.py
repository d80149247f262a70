"""Hypothesis reads `__file__` of every module in sys.modules (to collect constants of local code).

speechbrain puts redirect and lazy modules there for optional integrations (k2, flair, spacy,
numba, ...), and reading an attribute of one whose dependency is missing raises ImportError instead
of AttributeError, which crashes every property test that runs after the ECAPA heads have imported
speechbrain. Those modules cannot be imported anyway, so they are dropped from sys.modules first.
"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _no_unimportable_lazy_modules() -> None:
    for name, module in list(sys.modules.items()):
        try:
            getattr(module, "__file__", None)
        except Exception:  # noqa: BLE001 - whatever an unimportable stand-in raises
            del sys.modules[name]
