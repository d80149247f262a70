"""Classification accuracy: an item is right only if every one of its labels is (IC's slots)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.metrics.stats import Stats, corpus_value, mean_of_items


def _as_label(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        x = x.tolist()
    return tuple(_as_label(v) for v in x) if isinstance(x, list | tuple) else x


def accuracy_item(ref: Any, hyp: Any) -> Stats:
    """(1,) if right else (0,); tuples and lists compare whole (IC: right only if every slot is)."""
    return (int(_as_label(ref) == _as_label(hyp)),)


def accuracy(refs: Sequence[Any], hyps: Sequence[Any]) -> float:
    return corpus_value(accuracy_item, mean_of_items, refs, hyps)
