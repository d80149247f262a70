"""Downstream heads: shapes, padding invariance, CTC decoding, PIT, AM-softmax, stats pooling, DTW."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.evaluation.decoders import cosine_score, greedy_decode
from evalkit.evaluation.dtw import dtw_scores, subsequence_dtw_cost
from evalkit.evaluation.heads import HEADS, PaddedLSTM, masked_stats, reverse_valid
from evalkit.evaluation.losses import AMSoftmaxLoss, pit_bce_loss

D = 12
SMALL_ECAPA = dict(
    channels=[16, 16, 16, 16, 48], attention_channels=8, se_channels=8, res2net_scale=4, embed_dim=10
)

# (registry name, kwargs, kind of output)
HEAD_CASES = [
    ("mean_pool_linear", dict(n_classes=5, hidden=16), "utt"),
    ("mean_pool_linear", dict(n_classes=[3, 4, 2], hidden=16), "slots"),
    ("bilstm_pool", dict(n_classes=5, hidden=8), "utt"),
    ("bilstm_pool", dict(n_classes=[3, 4], hidden=8), "slots"),
    ("linear_ctc", dict(vocab_size=7), "ctc"),
    ("bilstm_ctc", dict(vocab_size=7, proj=16, hidden=8), "ctc"),
    ("conv_ctc", dict(vocab_size=7, channels=16), "ctc"),
    ("xvector", dict(channels=16, stats_channels=24, embed_dim=10), "utt"),
    ("ecapa", SMALL_ECAPA, "utt"),
    ("ecapa_classifier", dict(n_classes=4, **SMALL_ECAPA), "utt"),
    ("lstm_diarizer", dict(hidden=8), "frames"),
    ("lstm_diarizer", dict(hidden=8, bidirectional=True, n_speakers=3), "frames"),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(HEAD_CASES)]


def _build(name: str, kwargs: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return HEADS.get(name)(input_dim=D, **kwargs)


def _batch(lens: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features whose padding holds garbage, not zeros: heads must mask it themselves."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lens), max(lens), D, generator=g)
    return x, torch.tensor(lens)


def _frames(out, kind: str):
    """The per-frame tensor of a head's output ([B, T, ...])."""
    return out[0] if kind == "ctc" else out


@pytest.mark.parametrize("name,kwargs,kind", HEAD_CASES, ids=IDS)
def test_output_shapes(name, kwargs, kind):
    head = _build(name, kwargs).eval()
    x, lens = _batch([20, 13, 7])
    with torch.no_grad():
        out = head(x, lens)
    if kind == "slots":
        assert [o.shape for o in out] == [(3, n) for n in kwargs["n_classes"]]
    elif kind == "utt":
        width = kwargs.get("n_classes", kwargs.get("embed_dim"))
        assert out.shape == (3, width)
    elif kind == "ctc":
        log_probs, out_lens = out
        assert log_probs.shape == (3, 20, kwargs["vocab_size"])
        assert torch.equal(out_lens, lens)
        assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 20), atol=1e-5)
    else:
        assert out.shape == (3, 20, kwargs.get("n_speakers", 2))


@pytest.mark.parametrize("name,kwargs,kind", HEAD_CASES, ids=IDS)
def test_padding_invariance(name, kwargs, kind):
    """An utterance alone and padded in a batch (with garbage padding) give the same output."""
    head = _build(name, kwargs)
    head.train()
    with torch.no_grad():  # move BatchNorm running stats off their init so eval mode is non-trivial
        head(*_batch([20, 16, 9], seed=1))
    head.eval()
    x, lens = _batch([20, 13, 5])
    with torch.no_grad():
        batched = head(x, lens)
        for b, n in enumerate(lens.tolist()):
            alone = head(x[b : b + 1, :n].clone(), lens[b : b + 1])
            if kind == "slots":
                for got, want in zip(batched, alone):
                    torch.testing.assert_close(got[b : b + 1], want, atol=1e-5, rtol=1e-4)
            elif kind == "utt":
                torch.testing.assert_close(batched[b : b + 1], alone, atol=1e-5, rtol=1e-4)
            else:
                got, want = _frames(batched, kind), _frames(alone, kind)
                torch.testing.assert_close(got[b : b + 1, :n], want, atol=1e-5, rtol=1e-4)


def test_padding_content_matters_without_masking():
    """Guard for the invariance test: changing a valid frame does change the output."""
    head = _build("xvector", dict(channels=16, stats_channels=24, embed_dim=10)).eval()
    x, lens = _batch([10, 6])
    with torch.no_grad():
        before = head(x, lens)
        x[1, 5] += 1.0
        after = head(x, lens)
    assert torch.allclose(before[0], after[0])
    assert not torch.allclose(before[1], after[1])


def test_registry_and_bad_sizes():
    assert {
        "mean_pool_linear",
        "bilstm_pool",
        "bilstm_ctc",
        "linear_ctc",
        "conv_ctc",
        "xvector",
        "ecapa",
        "ecapa_classifier",
        "lstm_diarizer",
    } <= set(HEADS.names())
    with pytest.raises(EvalkitError, match="Did you mean"):
        HEADS.get("mean_pool_linaer")
    with pytest.raises(ConfigError, match="n_classes"):
        HEADS.get("mean_pool_linear")(input_dim=D, n_classes=[3, 0])
    with pytest.raises(ConfigError, match="channels"):
        HEADS.get("ecapa")(input_dim=D, channels=[16, 16, 16, 16])


def test_greedy_decode_hand_worked():
    # frame argmaxes: utt 0 = 1 1 0 1 2 2 0 0 | pad, utt 1 = 0 3 3 3 (then padding frames that must be ignored)
    paths = [[1, 1, 0, 1, 2, 2, 0, 0], [0, 3, 3, 3, 2, 2, 1, 1]]
    log_probs = torch.log(F.one_hot(torch.tensor(paths), 4).float() * 0.97 + 0.01)
    assert greedy_decode(log_probs, torch.tensor([8, 4])) == [[1, 1, 2], [3]]
    assert greedy_decode(log_probs, torch.tensor([8, 0])) == [[1, 1, 2], []]
    # another blank id: 0 becomes a label, 2 the blank
    assert greedy_decode(log_probs, torch.tensor([8, 8]), blank=2) == [[1, 0, 1, 0], [0, 3, 1]]


def test_masked_stats_ignore_padding():
    x, lens = _batch([9, 4])
    stats = masked_stats(x, lens)
    valid = x[1, :4]
    want = torch.cat([valid.mean(0), valid.std(0, unbiased=False)])
    torch.testing.assert_close(stats[1], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        stats[0], torch.cat([x[0].mean(0), x[0].std(0, unbiased=False)]), atol=1e-5, rtol=1e-5
    )


def test_xvector_pooling_ignores_padding_in_training_too():
    """BatchNorm statistics come from valid frames only, so even train-mode output ignores padding."""
    head = _build("xvector", dict(channels=16, stats_channels=24, embed_dim=10)).train()
    x, lens = _batch([12, 6])
    with torch.no_grad():
        a = head(x, lens)
        x[1, 6:] = 100.0
        b = head(x, lens)
    torch.testing.assert_close(a, b)


def _masked_bce(logits, labels, lens):
    valid = (torch.arange(logits.shape[1])[None, :] < lens[:, None])[..., None].expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits[valid], labels[valid])


def test_pit_bce_equals_plain_bce_in_order():
    g = torch.Generator().manual_seed(0)
    lens = torch.tensor([10, 7])
    labels = (torch.rand(2, 10, 2, generator=g) > 0.5).float()
    logits = 4 * (labels - 0.5) + 0.3 * torch.randn(2, 10, 2, generator=g)
    loss, perms = pit_bce_loss(logits, labels, lens)
    assert perms.tolist() == [[0, 1], [0, 1]]
    torch.testing.assert_close(loss, _masked_bce(logits, labels, lens))


def test_pit_bce_finds_the_permutation():
    g = torch.Generator().manual_seed(1)
    lens = torch.tensor([12, 8, 10])
    labels = (torch.rand(3, 12, 3, generator=g) > 0.5).float()
    true_perms = [(0, 1, 2), (2, 0, 1), (1, 2, 0)]
    # logits predict the speakers in a per-utterance shuffled order
    logits = torch.stack([4 * (labels[b][:, list(p)] - 0.5) for b, p in enumerate(true_perms)])
    logits[1, 8:] = -50.0 * labels[1, 8:, :].flip(-1)  # garbage in padding must not matter
    loss, perms = pit_bce_loss(logits, labels, lens)
    assert [tuple(p) for p in perms.tolist()] == true_perms
    reordered = torch.stack([labels[b][:, perms[b]] for b in range(3)])
    torch.testing.assert_close(loss, _masked_bce(logits, reordered, lens))
    # the chosen order costs less than the given order (the true perms are not all identity)
    assert loss < _masked_bce(logits, labels, lens)
    # brute-force check: per utterance, no permutation beats the chosen one
    for b in range(3):
        n = lens[b]
        costs = {
            p: F.binary_cross_entropy_with_logits(logits[b, :n], labels[b, :n][:, list(p)]).item()
            for p in itertools.permutations(range(3))
        }
        assert min(costs, key=costs.get) == tuple(perms[b].tolist())


def test_am_softmax_learns_separable_data():
    torch.manual_seed(0)
    centres = torch.randn(4, 8) * 3
    labels = torch.arange(4).repeat_interleave(16)
    emb = centres[labels] + 0.3 * torch.randn(64, 8)
    crit = AMSoftmaxLoss(8, 4, margin=0.2, scale=30)
    opt = torch.optim.SGD(crit.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss, logits = crit(emb, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert (logits.argmax(-1) == labels).float().mean() > 0.95
    # logits carry no margin: they are scale * cosine
    cos = F.normalize(emb, dim=-1) @ F.normalize(crit.weight, dim=-1).T
    torch.testing.assert_close(crit(emb, labels)[1], 30 * cos)
    # the margin makes the loss larger than plain scaled-cosine cross-entropy
    assert crit(emb, labels)[0] > F.cross_entropy(30 * cos, labels)


def test_cosine_score():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    torch.testing.assert_close(cosine_score(a, b), torch.tensor([0.0, 1.0, -1.0]))


# --- DTW -------------------------------------------------------------------------------------


def _brute_force_dtw(query: np.ndarray, doc: np.ndarray) -> float:
    """Enumerate every alignment; per end column keep the least-cost one, divide by its length."""
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    dn = doc / np.linalg.norm(doc, axis=1, keepdims=True)
    dist = 1.0 - qn @ dn.T
    tq, td = dist.shape
    best: dict[int, tuple[float, int]] = {}

    def walk(i, j, cost, length):
        cost, length = cost + dist[i, j], length + 1
        if i == tq - 1 and (j not in best or cost < best[j][0]):
            best[j] = (cost, length)
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            if i + di < tq and j + dj < td:
                walk(i + di, j + dj, cost, length)

    for start in range(td):
        walk(0, start, 0.0, 0)
    return min(cost / length for cost, length in best.values())


@pytest.mark.parametrize("tq,td,seed", [(1, 4, 0), (2, 3, 1), (3, 4, 2), (3, 5, 3), (4, 4, 4), (4, 6, 5)])
def test_dtw_matches_brute_force(tq, td, seed):
    rng = np.random.default_rng(seed)
    query, doc = rng.normal(size=(tq, 3)), rng.normal(size=(td, 3))
    assert subsequence_dtw_cost(query, doc) == pytest.approx(_brute_force_dtw(query, doc), abs=1e-9)


def test_dtw_scores_batch_matches_pairs():
    rng = np.random.default_rng(7)
    queries = [rng.normal(size=(n, 3)) for n in (2, 3, 4)]
    docs = [rng.normal(size=(n, 3)) for n in (6, 3, 5, 4)]  # unsorted lengths exercise the padded blocks
    scores = dtw_scores(queries, docs)
    assert scores.shape == (3, 4)
    for qi, q in enumerate(queries):
        for di, d in enumerate(docs):
            assert scores[qi, di] == pytest.approx(-_brute_force_dtw(q, d), abs=1e-9)


def test_dtw_finds_the_document_a_query_was_cut_from():
    rng = np.random.default_rng(0)
    # smooth random trajectories, so neighbouring frames resemble each other as in speech
    docs = [np.cumsum(rng.normal(size=(n, 16)), axis=0) for n in (60, 45, 80, 50, 70)]
    cut = docs[2][30:50]
    slow = np.repeat(cut, 2, axis=0)  # the same words said twice as slowly
    noisy = cut + 0.5 * rng.normal(size=cut.shape)
    scores = dtw_scores([cut, slow, noisy], docs)
    assert (scores.argmax(axis=1) == 2).all()
    assert scores[0, 2] == pytest.approx(0.0, abs=1e-9)  # exact copy: zero cost


def test_dtw_rejects_bad_input():
    with pytest.raises(EvalkitError, match="same upstream layer"):
        dtw_scores([np.ones((3, 4))], [np.ones((5, 3))])
    with pytest.raises(EvalkitError, match="non-empty"):
        subsequence_dtw_cost(np.ones((0, 4)), np.ones((5, 4)))


def test_reverse_valid_keeps_padding_in_place():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_valid(x, torch.tensor([3, 5]))
    assert out[0, :, 0].tolist() == [2, 1, 0, 3, 4]
    assert out[1, :, 0].tolist() == [9, 8, 7, 6, 5]


@pytest.mark.parametrize("bidirectional,num_layers", [(True, 2), (False, 2), (True, 1)])
def test_padded_lstm_matches_torch_packed_sequence(bidirectional, num_layers):
    """The reference: nn.LSTM on a PackedSequence, with the same weights."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    ours = PaddedLSTM(6, 5, num_layers=num_layers, bidirectional=bidirectional)
    ref = torch.nn.LSTM(6, 5, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    with torch.no_grad():
        for i in range(num_layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ours.fwd[i], f"{name}_l0").copy_(getattr(ref, f"{name}_l{i}"))
                if bidirectional:
                    getattr(ours.bwd[i], f"{name}_l0").copy_(getattr(ref, f"{name}_l{i}_reverse"))
    x, lens = torch.randn(3, 9, 6), torch.tensor([9, 4, 1])
    x[1, 4:] = 100.0  # garbage in the padding must not leak into valid frames
    x[2, 1:] = -50.0
    packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
    expected, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=9)
    got = ours(x, lens)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("linear_ctc", dict(vocab_size=7)),
        ("bilstm_ctc", dict(vocab_size=7, proj=16, hidden=8)),
        ("conv_ctc", dict(vocab_size=7, channels=16)),
    ],
)
def test_ctc_heads_repeat_frames_for_slow_upstreams(name, kwargs):
    plain, doubled = _build(name, kwargs).eval(), _build(name, {**kwargs, "upsample": 2}).eval()
    x, lens = _batch([10, 6])
    with torch.no_grad():
        log_probs, out_lens = doubled(x, lens)
        want = plain(x.repeat_interleave(2, dim=1), lens * 2)[0]
    assert log_probs.shape == (2, 20, 7) and out_lens.tolist() == [20, 12]
    torch.testing.assert_close(log_probs, want)
    # 15 labels cannot fit in 10 frames; in 20 repeated ones they can
    target = torch.arange(1, 16).repeat(1, 1) % 6 + 1

    def loss(lp, n):
        return F.ctc_loss(lp[:1].transpose(0, 1), target, n[:1], torch.tensor([15]), reduction="sum")

    with torch.no_grad():
        assert math.isinf(float(loss(plain(x, lens)[0], lens)))
        assert math.isfinite(float(loss(log_probs, out_lens)))


def test_ctc_recipe_repeats_frames_up_to_min_frame_rate():
    from evalkit.evaluation.kinds.ctc import CTC

    recipe = CTC.__new__(CTC)  # only the rate arithmetic: no data needed
    recipe.min_frame_rate = 50.0
    for rate, k in [(25.0, 2), (50.0, 1), (100.0, 1), (20.0, 3), (49.0, 2)]:
        recipe.frame_rate = rate
        assert recipe.upsample() == k
    recipe.min_frame_rate = 0.0
    recipe.frame_rate = 25.0
    assert recipe.upsample() == 1
