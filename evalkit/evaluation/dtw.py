"""Subsequence DTW for query-by-example (SUPERB QbE): no training, just alignment costs.

Two alignments: evalkit's (below) and s3prl's (`s3prl_costs`, what SUPERB's
QbE numbers come from).

A spoken query is searched for inside each document: the alignment may start
and end anywhere in the document, takes steps (1,0), (0,1) and (1,1) (query
frame, document frame), and frame distance is cosine distance (1 - cos).
Among the alignments ending at a document frame, the one with the least total
cost is kept; its cost divided by its path length (cells visited) is the
normalised cost, and the document's cost is the least normalised cost over
end frames. Path length rather than query length, because a document that says
the query more slowly needs more cells to cover it; dividing by the query
length would charge it for that.

Plain numpy (numba is not installed): one step per query frame, vectorised over
documents and over the document axis. The horizontal step makes each row a
running minimum: D[i, j] = S[j] + min_{k<=j}(B[k] - S[k-1]), with S the
cumulative row cost and B[k] the best entry into row i at column k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.core.errors import EvalkitError

_CHUNK_ELEMENTS = 1 << 22  # distance-matrix entries per block of documents (~32 MB of float64)


def _unit_frames(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise EvalkitError(
            f"QbE {what}: expected a non-empty [frames, dim] feature array, got shape {x.shape}"
        )
    if dim is not None and x.shape[1] != dim:
        raise EvalkitError(
            f"QbE {what}: feature dim {x.shape[1]} differs from the queries' {dim}; "
            "take queries and documents from the same upstream layer"
        )
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _align(query: np.ndarray, docs: np.ndarray, doc_lens: np.ndarray) -> np.ndarray:
    """Normalised costs [N] of one unit-norm query [Tq, D] in padded unit-norm docs [N, T, D].

    Padding sits to the right of each document and every step looks left, so
    it never touches a valid column; it is only excluded from the end frames.
    """
    n, t = docs.shape[:2]
    dist = np.clip(1.0 - np.einsum("qd,ntd->qnt", query, docs), 0.0, 2.0)
    cols = np.arange(t)
    cost = np.zeros((n, t))
    length = np.zeros((n, t), dtype=np.int64)
    for i in range(len(query)):
        if i == 0:  # free start: every column may open a path
            enter, enter_len = np.zeros((n, t)), np.zeros((n, t), dtype=np.int64)
        else:
            diag = np.concatenate([np.full((n, 1), np.inf), cost[:, :-1]], axis=1)
            diag_len = np.concatenate([np.zeros((n, 1), dtype=np.int64), length[:, :-1]], axis=1)
            vertical = cost <= diag
            enter = np.where(vertical, cost, diag)
            enter_len = np.where(vertical, length, diag_len)
        row = dist[i]
        total = np.cumsum(row, axis=1)
        before = np.concatenate([np.zeros((n, 1)), total[:, :-1]], axis=1)
        vals = enter - before
        best = np.minimum.accumulate(vals, axis=1)
        # the entry column behind each running minimum: the last k whose value set it
        start = np.maximum.accumulate(np.where(vals == best, cols, 0), axis=1)
        cost = total + best
        length = np.take_along_axis(enter_len, start, axis=1) + (cols - start + 1)
    normalised = np.where(cols[None, :] < doc_lens[:, None], cost / length, np.inf)
    return normalised.min(axis=1)


def _costs(queries: Sequence[np.ndarray], docs: Sequence[np.ndarray]) -> np.ndarray:
    if not queries or not docs:
        raise EvalkitError("QbE: need at least one query and one document")
    dim = _unit_frames(queries[0], "query 0").shape[1]
    qs = [_unit_frames(q, f"query {i}", dim) for i, q in enumerate(queries)]
    ds = [_unit_frames(d, f"document {j}", dim) for j, d in enumerate(docs)]
    blocks = _blocks(ds, max(len(q) for q in qs), dim)
    out = np.empty((len(qs), len(ds)))
    for qi, q in enumerate(qs):
        for idx, block, lens in blocks:
            out[qi, idx] = _align(q, block, lens)
    return out


def _blocks(ds: list[np.ndarray], longest_query: int, dim: int) -> list[tuple]:
    """Documents padded once into blocks of similar length, (indices, [N, T, D] block, lengths), each
    block's distance matrices for the longest query within `_CHUNK_ELEMENTS`."""
    order = np.argsort([len(d) for d in ds], kind="stable")
    blocks = []
    lo = 0
    while lo < len(order):
        hi = lo + 1
        while hi < len(order) and longest_query * (hi + 1 - lo) * len(ds[order[hi]]) <= _CHUNK_ELEMENTS:
            hi += 1
        idx = order[lo:hi]
        lens = np.array([len(ds[j]) for j in idx])
        block = np.zeros((len(idx), lens.max(), dim))
        for b, j in enumerate(idx):
            block[b, : lens[b]] = ds[j]
        blocks.append((idx, block, lens))
        lo = hi
    return blocks


def subsequence_dtw_cost(query: np.ndarray, doc: np.ndarray) -> float:
    """Normalised subsequence-DTW cost of `query` [Tq, D] inside `doc` [Td, D] (lower = better match)."""
    return float(_costs([query], [doc])[0, 0])


def dtw_scores(queries: Sequence[np.ndarray], docs: Sequence[np.ndarray]) -> np.ndarray:
    """Detection scores [Q, N] = -normalised cost: higher means the query more likely occurs there."""
    return -_costs(queries, docs)


# --- s3prl's alignment (downstream/quesst14_dtw/expert.py:98-122, :189-206) ----------------------

S3PRL_DISTANCES = ("cosine_exp", "cosine")


def asymmetric_subsequence_cost(dist: np.ndarray) -> float:
    """dtw-python's `dtw(dist, step_pattern="asymmetric", open_begin=True, open_end=True)
    .normalizedDistance` on one [Tq, Td] local-cost matrix (the reference `s3prl_costs` is tested
    against): every query frame is matched to one document frame, each next one 0, 1 or 2 document
    frames further, starting and ending anywhere in the document; the least total cost divided by
    the query's frames."""
    dist = np.asarray(dist, dtype=np.float64)
    return float(_asymmetric(dist[None], np.array([dist.shape[1]]))[0])


def _asymmetric(dist: np.ndarray, doc_lens: np.ndarray) -> np.ndarray:
    """`asymmetric_subsequence_cost` of each padded [N, Tq, T] matrix; padding (right of each document's
    frames) is never a predecessor of a valid frame, and only excluded from the end frames."""
    n, tq, t = dist.shape
    cost = dist[:, 0].copy()
    inf = np.full((n, 2), np.inf)
    for i in range(1, tq):
        shifted = np.concatenate([inf, cost], axis=1)  # [N, T + 2]: column j + 2 is cost[j]
        cost = dist[:, i] + np.minimum(cost, np.minimum(shifted[:, 1:-1], shifted[:, :-2]))
    cost = np.where(np.arange(t)[None, :] < doc_lens[:, None], cost, np.inf)
    return cost.min(axis=1) / tq


def s3prl_costs(
    queries: Sequence[np.ndarray],
    docs: Sequence[np.ndarray],
    distance: str = "cosine_exp",
    minmax_rows: bool = True,
    min_query_frames: int = 5,
) -> np.ndarray:
    """Scores [Q, N] as s3prl's quesst14_dtw makes them before its per-query z-norm: the negative
    `asymmetric_subsequence_cost` on the cosine distance (`cosine`) or exp(cosine distance) - 1
    (`cosine_exp`), each query frame's row min-max scaled over the document's frames
    (`minmax_rows`); a query shorter than `min_query_frames` scores 0 on every document (s3prl: "Do
    not consider too short queries"). Vectorised over blocks of documents."""
    if distance not in S3PRL_DISTANCES:
        raise EvalkitError(f"QbE distance {distance!r}: choose from {', '.join(S3PRL_DISTANCES)}.")
    if not queries or not docs:
        raise EvalkitError("QbE: need at least one query and one document")
    dim = _unit_frames(queries[0], "query 0").shape[1]
    qs = [_unit_frames(q, f"query {i}", dim) for i, q in enumerate(queries)]
    ds = [_unit_frames(d, f"document {j}", dim) for j, d in enumerate(docs)]
    out = np.zeros((len(qs), len(ds)))
    blocks = _blocks(ds, max(len(q) for q in qs), dim)
    for qi, q in enumerate(qs):
        if len(q) < min_query_frames:
            continue
        for idx, block, lens in blocks:
            dist = np.clip(1.0 - np.einsum("qd,ntd->nqt", q, block), 0.0, 2.0)
            if distance == "cosine_exp":
                dist = np.exp(dist) - 1.0
            if minmax_rows:
                valid = (np.arange(block.shape[1])[None, :] < lens[:, None])[:, None, :]
                low = np.where(valid, dist, np.inf).min(axis=2, keepdims=True)
                high = np.where(valid, dist, -np.inf).max(axis=2, keepdims=True)
                dist = (dist - low) / np.clip(high - low, 1e-9, np.inf)
            out[qi, idx] = -_asymmetric(dist, lens)
    return out
