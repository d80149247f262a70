"""QbE's MTWV weight (QUESST's beta, trials per query-document pair) and the QbE run on perfect features."""

import numpy as np
import pytest
import torch

from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import write_manifest
from evalkit.evaluation.kinds.qbe import QbE
from evalkit.evaluation.task import load_task
from evalkit.metrics.detection import QUESST_BETA, mtwv, twv_beta


def test_beta_follows_the_nist_and_quesst_settings():
    # NIST STD 2006: C/V = 0.1, P_target = 1e-4
    assert twv_beta(1e-4, c_miss=1.0, c_fa=0.1) == pytest.approx(999.9)
    # QUESST's score-TWV-Cnxe.sh: P_target = 0.0008, C_fa = 1, C_miss = 100, handed to the scorer as the
    # effective prior C_miss·P / (C_miss·P + C_fa·(1 - P)) = 0.0741289 (bc, scale=7), i.e. 1 / (1 + beta)
    assert QUESST_BETA == pytest.approx(12.49)
    assert 1 / (1 + QUESST_BETA) == pytest.approx(0.0741289, abs=1e-7)
    for bad in ((0.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.01, 0.0, 1.0), (0.01, 1.0, -1.0)):
        with pytest.raises(EvalkitError, match="p_target"):
            twv_beta(*bad)


def test_qbe_task_scores_with_quesst_beta():
    metric = load_task("qbe").primary_metric.build()
    assert metric.name == "mtwv" and metric.params["beta"] == pytest.approx(QUESST_BETA)


def test_one_false_alarm_among_documents_is_worth_a_term_under_quesst_beta():
    # 20 documents. Term A occurs in d0, d1 (18 non-target documents), term B in d2 (19).
    # A: hits 0.9, 0.8, a false alarm on d3 at 0.6; B: its hit at 0.5; everything else 0.1.
    terms, scores, labels = [], [], []
    for term, hits, fa in (("A", {0: 0.9, 1: 0.8}, {3: 0.6}), ("B", {2: 0.5}, {})):
        for d in range(20):
            terms.append(term)
            scores.append(hits.get(d, fa.get(d, 0.1)))
            labels.append(int(d in hits))
    # θ = 0.8: A found, B missed                   -> 1 - (0 + 1) / 2                      = 0.5
    # θ = 0.5: both found, A's one false alarm     -> 1 - (beta/18 + 0) / 2              = 1 - beta/36
    assert mtwv(terms, scores, labels) == pytest.approx(1 - QUESST_BETA / 36)  # 0.653
    assert mtwv(terms, scores, labels, beta=999.9) == pytest.approx(0.5)


class _Feats:
    num_layers = 2

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def get(self, utt_id: str) -> torch.Tensor:
        return torch.from_numpy(self.arrays[utt_id])


def test_qbe_finds_every_term_with_perfect_phone_features(tmp_path):
    """Layer 0 is one fixed vector per phone (each talker says a phone for 2-5 frames), layer 1 noise:
    the run picks layer 0 on dev and detects every term on test with no false alarm."""
    rng = np.random.default_rng(0)
    phones = rng.normal(size=(20, 16))
    terms = {f"t{k}": rng.choice(20, size=5, replace=False) for k in range(4)}

    def said(seq):
        layer0 = np.concatenate([np.repeat(phones[p][None], rng.integers(2, 6), 0) for p in seq])
        return np.stack([layer0, rng.normal(size=layer0.shape)]).astype(np.float32)

    arrays = {}
    for split in ("dev", "test"):
        recs = []
        for term, seq in terms.items():
            arrays[f"{split}-q-{term}"] = said(seq)
            recs.append({"id": f"{split}-q-{term}", "role": "query", "term": term})
        for j in range(12):
            filler = [p for p in rng.permutation(20) if p not in terms[f"t{j % 4}"]][:10]
            seq, occ = filler, []
            if j < 8:  # documents 0-7 say term j % 4 between filler phones
                seq, occ = filler[:5] + list(terms[f"t{j % 4}"]) + filler[5:], [{"term": f"t{j % 4}"}]
            arrays[f"{split}-d{j}"] = said(seq)
            recs.append({"id": f"{split}-d{j}", "role": "document", "occurrences": occ})
        for r in recs:
            r.update(path="x.wav", duration=1.0, speaker="s")
        write_manifest(tmp_path / "qbe" / f"{split}.jsonl", recs)
    feats = _Feats(arrays)
    result, rows = QbE(load_task("qbe"), tmp_path).run({"dev": feats, "test": feats}, log=lambda *_: None)
    assert result.layer == 0
    assert result.metrics["test"]["mtwv"] == pytest.approx(1.0)
    assert result.dev_by_layer["1"] < 0.5
    assert sum(r["label"] for r in rows) == 8 and len(rows) == 4 * 12


def _qbe_corpus(tmp_path, scope: str) -> QbE:
    """Two English queries that each occur once in the 4 English documents; QUESST's scope adds a Basque
    query that occurs in one of 4 Basque documents (ids only: nothing outside English is searched)."""
    records = [
        {"id": f"q{i}", "path": "x.wav", "duration": 1.0, "speaker": "", "role": "query", "term": f"q{i}"}
        for i in (1, 2)
    ] + [
        {
            "id": f"d{j}",
            "path": "x.wav",
            "duration": 1.0,
            "speaker": "",
            "role": "document",
            "occurrences": [{"term": f"q{j}", "start": 0.1, "end": 0.4}] if j in (1, 2) else [],
        }
        for j in (1, 2, 3, 4)
    ]
    scope_file = {
        "queries": ["q1", "q2", "q3"],
        "documents": [f"d{j}" for j in (1, 2, 3, 4)] + [f"b{j}" for j in (1, 2, 3, 4)],
        "occurrences": {"q1": ["d1"], "q2": ["d2"], "q3": ["b1"]},
    }
    for split in ("dev", "test"):
        write_manifest(tmp_path / "quesst14" / f"{split}.jsonl", records)
        (tmp_path / "quesst14" / f"{split}_scope.json").write_text(__import__("json").dumps(scope_file))
    task = load_task("qbe_superb")
    task.labels = {**task.labels, "scope": scope}
    return QbE(task, tmp_path)


@pytest.mark.parametrize(("scope", "expected"), [("language", 1.0), ("quesst", 2 / 3)])
def test_quesst_scope_counts_the_queries_never_searched(tmp_path, scope, expected):
    """The issue's case: perfect English detections give MTWV 1.0 over the English subset; QUESST's scorer
    over all queries, the Basque query's trials at the default score -10, gives 0.667 (its one
    occurrence is missed at every threshold above -10)."""
    kind = _qbe_corpus(tmp_path, scope)
    scores = {
        (q, d): (3.0 if q[1:] == d[1:] else -0.5) for q in ("q1", "q2") for d in ("d1", "d2", "d3", "d4")
    }
    metrics, rows = kind.score_pairs("test", scores)
    assert next(m for m in metrics if m.primary).compute() == pytest.approx(expected)
    assert len(rows) == 8  # sample rows: the searched pairs only
    if scope == "quesst":
        assert len(next(m for m in metrics if m.primary).stats) == 3 * 8


def test_s3prl_alignment_is_dtw_pythons_asymmetric_subsequence():
    """s3prl's scores (before its per-query z-norm) against dtw-python, the package s3prl calls."""
    dtw = pytest.importorskip("dtw")
    from scipy.spatial.distance import cdist

    from evalkit.evaluation.dtw import s3prl_costs

    rng = np.random.default_rng(0)
    queries = [rng.normal(size=(n, 8)) for n in (3, 7, 12)]
    docs = [rng.normal(size=(n, 8)) for n in (20, 9, 40, 13, 5)]
    ours = s3prl_costs(queries, docs)
    for i, q in enumerate(queries):
        for j, d in enumerate(docs):
            if len(q) < 5:  # too short: s3prl scores 0
                assert ours[i, j] == 0
                continue
            dist = np.exp(cdist(q, d, "cosine")) - 1
            low, high = dist.min(1)[:, None], dist.max(1)[:, None]
            dist = (dist - low) / np.clip(high - low, 1e-9, np.inf)
            ref = dtw.dtw(
                x=dist, step_pattern="asymmetric", open_begin=True, open_end=True, distance_only=False
            )
            assert ours[i, j] == pytest.approx(-ref.normalizedDistance, abs=1e-12)


class _RandomLayers:
    """Features of the Features protocol with random frames, for QbE's reading pattern."""

    def __init__(self, lengths: dict[str, int], num_layers: int = 3, dim: int = 6) -> None:
        rng = np.random.default_rng(0)
        self.lengths = lengths
        self.num_layers = num_layers
        self.data = {
            u: torch.from_numpy(rng.normal(size=(num_layers, n, dim)).astype(np.float32))
            for u, n in lengths.items()
        }

    def get(self, utt_id, dtype=torch.float32):
        return self.data[utt_id].to(dtype)

    def layer(self, utt_id, position, dtype=torch.float32):
        return self.data[utt_id][position].to(dtype)


@pytest.mark.parametrize("alignment", ["evalkit", "s3prl"])
def test_qbe_reads_a_split_in_blocks_and_scores_as_at_once(tmp_path, monkeypatch, alignment):
    """Statistics accumulated utterance by utterance and documents aligned a block at a time give the
    scores of the whole split standardised and aligned at once, and layers scored in one pass over the
    split (features computed on the fly) those scored one at a time (a cache)."""
    import evalkit.evaluation.kinds.qbe as qbe
    from evalkit.evaluation.dtw import dtw_scores, s3prl_costs

    kind = _qbe_corpus(tmp_path, "language")
    kind.alignment = alignment
    lengths = {"q1": 12, "q2": 9, "d1": 40, "d2": 25, "d3": 31, "d4": 18}
    feats = _RandomLayers(lengths)
    monkeypatch.setattr(qbe, "CHUNK_FRAMES", 30)  # four documents, three blocks
    both = kind.layer_scores("test", feats, [0, 1])
    np.testing.assert_array_equal(both[0], kind.layer_scores("test", feats, [0])[0])
    blocks = kind.pair_scores("test", both[1])
    queries, docs = ["q1", "q2"], ["d1", "d2", "d3", "d4"]
    frames = np.concatenate([feats.layer(u, 1).double().numpy() for u in queries + docs])
    mean, std = frames.mean(0), frames.std(0, ddof=1 if alignment == "s3prl" else 0)
    qs = [(feats.layer(u, 1).double().numpy() - mean) / std for u in queries]
    ds = [(feats.layer(u, 1).double().numpy() - mean) / std for u in docs]
    raw = s3prl_costs(qs, ds) if alignment == "s3prl" else dtw_scores(qs, ds)
    z = (raw - raw.mean(1, keepdims=True)) / raw.std(1, keepdims=True)
    for i, q in enumerate(queries):
        for j, d in enumerate(docs):
            assert blocks[(q, d)] == pytest.approx(z[i, j], abs=1e-9)
