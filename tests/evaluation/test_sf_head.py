"""SF's self-attention CTC head (`attention_ctc`): output shapes, padding invariance, frame
repetition for slow upstreams, bad sizes, and that it learns a tiny slot-filling-like CTC problem
(symbols plus B-/E- tags around a marked span) from scratch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from evalkit.core.errors import ConfigError
from evalkit.evaluation.decoders import greedy_decode
from evalkit.evaluation.heads import HEADS

D, V = 12, 9
CONFIGS = {
    "lstm-sa": dict(hidden=16, lstm_layers=1, attention_layers=2, attention_heads=4),
    "conv-sa": dict(hidden=16, conv_layers=2, lstm_layers=0, attention_layers=2, attention_heads=2),
    "lstm-only": dict(hidden=8, lstm_layers=2, attention_layers=0),
}


def _head(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return HEADS.get("attention_ctc")(input_dim=D, vocab_size=V, **kwargs).eval()


@pytest.mark.parametrize("kwargs", CONFIGS.values(), ids=CONFIGS.keys())
def test_shapes_and_padding_invariance(kwargs):
    """Log-probabilities per frame that sum to one, and padding (holding garbage) changes nothing."""
    head = _head(**kwargs)
    lens = [23, 40, 7]
    x = torch.randn(len(lens), max(lens), D, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        log_probs, out_lens = head(x, torch.tensor(lens))
        assert log_probs.shape == (3, 40, V) and out_lens.tolist() == lens
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 40))
        for b, n in enumerate(lens):
            alone, _ = head(x[b : b + 1, :n], torch.tensor([n]))
            torch.testing.assert_close(log_probs[b, :n], alone[0], atol=1e-5, rtol=1e-4)
        # guard: a valid frame does move the output (of its own utterance only)
        x[1, 3] += 1.0
        moved, _ = head(x, torch.tensor(lens))
    assert not torch.allclose(moved[1, :40], log_probs[1, :40])
    torch.testing.assert_close(moved[0, :23], log_probs[0, :23])


def test_upsample_repeats_frames():
    plain, doubled = _head(**CONFIGS["lstm-sa"]), _head(**CONFIGS["lstm-sa"], upsample=2)
    x, lens = torch.randn(2, 10, D), torch.tensor([10, 6])
    with torch.no_grad():
        log_probs, out_lens = doubled(x, lens)
        want, _ = plain(x.repeat_interleave(2, dim=1), lens * 2)
    assert log_probs.shape == (2, 20, V) and out_lens.tolist() == [20, 12]
    torch.testing.assert_close(log_probs[0], want[0])
    torch.testing.assert_close(log_probs[1, :12], want[1, :12])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(hidden=18, attention_heads=4), "multiple of attention_heads"),
        (dict(hidden=15, attention_heads=5), "even"),
        (dict(lstm_layers=-1), ">= 0"),
        (dict(lstm_layers=0, conv_layers=0, attention_layers=2), "order of frames"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_bad_sizes(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HEADS.get("attention_ctc")(input_dim=D, vocab_size=V, **kwargs)


def _problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Utterances of 5-8 segments, each 2-4 frames of one symbol (1-6, a noisy one-hot), a run of
    2-3 segments marked by feature 7. The target is the symbols, with 7 (B-) before the marked run
    and 8 (E-) after it: the tags have no frame of their own, as SF's slot tags."""
    g = torch.Generator().manual_seed(seed)
    feats, targets = [], []
    for _ in range(n):
        segs = int(torch.randint(5, 9, (1,), generator=g))
        start = int(torch.randint(0, segs - 2, (1,), generator=g))
        stop = start + int(torch.randint(2, 4, (1,), generator=g))
        frames, target, prev = [], [], 0
        for s in range(segs):
            sym = prev
            while sym == prev:
                sym = int(torch.randint(1, 7, (1,), generator=g))
            prev = sym
            target += [7] * (s == start) + [sym] + [8] * (s == min(stop, segs) - 1)
            for _ in range(int(torch.randint(2, 5, (1,), generator=g))):
                frame = torch.zeros(D)
                frame[sym], frame[7] = 1.0, float(start <= s < stop)
                frames.append(frame)
        feats.append(torch.stack(frames) + 0.1 * torch.randn(len(frames), D, generator=g))
        targets.append(target)
    lens = torch.tensor([len(f) for f in feats])
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lens, targets


def _exact(head: torch.nn.Module, x, lens, targets) -> float:
    head.eval()
    with torch.no_grad():
        hyps = greedy_decode(*head(x, lens))
    return sum(h == t for h, t in zip(hyps, targets)) / len(targets)


def test_learns_symbols_and_tags():
    """From scratch, 250 Adam steps: held-out utterances decode exactly (symbols and both tags)."""
    torch.manual_seed(0)
    head = HEADS.get("attention_ctc")(
        input_dim=D, vocab_size=V, hidden=32, lstm_layers=1, attention_layers=1, dropout=0.0
    )
    x, lens, targets = _problem(256, seed=1)
    dev = _problem(64, seed=2)
    assert _exact(head, *dev) == 0.0  # untrained: nothing right
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for step in range(250):
        head.train()
        idx = torch.arange(step * 16, step * 16 + 16) % len(targets)
        n = lens[idx]
        lp, out_lens = head(x[idx, : int(n.max())], n)
        tgt = [torch.tensor(targets[i]) for i in idx.tolist()]
        loss = F.ctc_loss(
            lp.transpose(0, 1),
            torch.cat(tgt),
            out_lens,
            torch.tensor([len(t) for t in tgt]),
            zero_infinity=True,
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert _exact(head, *dev) >= 0.85  # 0.94 measured; a per-frame linear head (no context) gets 0
