"""Batching by seconds of audio: the one packing rule that extraction, head training and pre-training share.

A batch's cost is its padded size, the longest item times the number of items, so items
are packed in the order given (callers sort them by length first) and a batch closes when
the next item would push its padded size over the budget. What differs between the callers
stays with them: head training merges a trailing single-utterance batch into the one before
(BatchNorm needs two) and shuffles; pre-training jitters crop lengths and counts samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def pack_by_padded_length(items: Sequence[T], length: Callable[[T], float], budget: float) -> list[list[T]]:
    """Consecutive runs of `items` whose longest `length` times their count stays within `budget`.

    An item longer than the budget on its own gets a batch of its own; no item is dropped.
    """
    batches: list[list[T]] = []
    current: list[T] = []
    longest = 0.0
    for item in items:
        n = length(item)
        longest_if = max(longest, n)
        if current and longest_if * (len(current) + 1) > budget:
            batches.append(current)
            current, longest_if = [], n
        current.append(item)
        longest = longest_if
    if current:
        batches.append(current)
    return batches
