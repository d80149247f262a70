"""A grid whose best rate is at an edge, not by a tie, is extended in that direction (issue 20).

60 of the 90 published results came from two-point grids where every pick was an edge: the grid could
not show where the optimum was. `extend_grid` trains the next rate beyond such an edge, with the grid's
own spacing, up to GRID_EXTENSIONS rates per head and within LR_RANGE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from evalkit.evaluation.trainer import GRID_EXTENSIONS, extend_grid


@dataclass
class FakeRun:
    head_name: str
    lr: float
    best_dev: float


def curve(optimum: float, head: str = "linear"):
    """A dev accuracy that peaks at `optimum` and falls with the distance in log-rate."""
    return lambda lr: FakeRun(head, lr, 1.0 - abs(math.log10(lr / optimum)) / 10)


def run_grid(grid, dev, higher=True):
    tried = []

    def train_more(head, lr):
        tried.append(lr)
        return [dev(lr)]

    runs = extend_grid([dev(lr) for lr in grid], grid, higher, train_more)
    return sorted(r.lr for r in runs), tried


def test_an_edge_optimum_is_followed_with_the_grids_spacing_up_to_the_cap():
    rates, tried = run_grid([1e-4, 1e-3], curve(1.0e-1))
    assert tried == pytest.approx([1e-2, 1e-1]) and len(tried) == GRID_EXTENSIONS
    assert rates == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])


def test_extension_stops_once_the_optimum_is_bracketed():
    rates, tried = run_grid([1e-4, 1e-3], curve(1.0e-2))
    assert tried == pytest.approx([1e-2, 1e-1])  # 1e-2 is better, at the new edge: 1e-1 is tried, worse
    _, inside = run_grid([1e-4, 1e-3, 1e-2], curve(1.0e-3))
    assert inside == []  # the best is inside the grid: nothing added


def test_the_lower_edge_and_an_error_rate_metric():
    def wer(lr):
        return FakeRun("linear", lr, abs(math.log10(lr / 1e-5)))  # lower is better, optimum at 1e-5

    _, tried = run_grid([1e-4, 4e-4], wer, higher=False)
    assert tried == pytest.approx([2.5e-5, 6.25e-6])


def test_a_tie_at_the_edge_a_single_rate_and_the_range_add_nothing():
    flat = lambda lr: FakeRun("linear", lr, 0.5)  # noqa: E731
    assert run_grid([1e-4, 1e-3], flat)[1] == []  # tied: the grid shows no direction
    assert run_grid([1e-3], curve(1.0))[1] == []  # one rate (the quick protocol): nothing to compare
    assert run_grid([1e-2, 5e-2], curve(10.0))[1] == []  # the next rate, 0.25, is past LR_RANGE


def test_each_head_is_extended_on_its_own():
    grid = [1e-4, 1e-3]
    heads = {"a": curve(1.0e-1, "a"), "b": curve(1.0e-5, "b"), "c": lambda lr: FakeRun("c", lr, 0.5)}
    runs = [heads[h](lr) for h in heads for lr in grid]
    tried = []

    def train_more(head, lr):
        tried.append((head, lr))
        return [heads[head](lr)]

    extend_grid(runs, grid, True, train_more)
    exponents = sorted((head, round(math.log10(lr))) for head, lr in tried)
    assert exponents == [("a", -2), ("a", -1), ("b", -6), ("b", -5)]  # c's flat curve ties: nothing
