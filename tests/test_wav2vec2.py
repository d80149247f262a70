"""wav2vec 2.0: Gumbel quantizer, distractor sampling, contrastive + diversity loss, learning."""

from __future__ import annotations

import math

import pytest
import torch

from evalkit.errors import ConfigError
from upstreams.base import padding_mask
from upstreams.modules import compute_span_mask
from upstreams.objective import Batch
from upstreams.wav2vec2 import (
    GumbelQuantizer,
    Wav2Vec2,
    contrastive_loss,
    perplexity,
    sample_distractors,
)


def tiny_encoder(kind: str = "transformer") -> dict:
    return {
        "frontend": {"kind": "fbank", "channels": 32},
        "encoder": {"kind": kind, "dim": 32, "layers": 2, "heads": 4, "ffn_dim": 64, "dropout": 0.0,
                    "attention_dropout": 0.0, "input_dropout": 0.0, "layerdrop": 0.0,
                    "pos_conv_kernel": 8, "pos_conv_groups": 4},
    }


TINY_OBJECTIVE = dict(codebook_groups=2, codebook_entries=16, codebook_dim=32, final_dim=32, num_negatives=10)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def test_quantizer_shapes_and_hard_one_hot_per_group():
    quantizer = GumbelQuantizer(in_dim=12, groups=3, entries=7, dim=9)
    x = torch.randn(20, 12)
    for training in (True, False):
        quantizer.train(training)
        out = quantizer(x, temperature=2.0)
        assert out.vectors.shape == (20, 9)
        assert out.codes.shape == (20, 3)
        # Each group's third of the vector is exactly the chosen codebook entry: a hard one-hot choice.
        expected = torch.cat([quantizer.codebook[g, out.codes[:, g]] for g in range(3)], dim=1)
        torch.testing.assert_close(out.vectors, expected)
    quantizer.eval()
    logits = quantizer.logits(x).view(20, 3, 7)
    assert torch.equal(quantizer(x, 2.0).codes, logits.argmax(-1))


def test_straight_through_gradient_reaches_the_logits():
    quantizer = GumbelQuantizer(in_dim=8, groups=2, entries=5, dim=6)
    x = torch.randn(30, 8, requires_grad=True)
    out = quantizer(x, temperature=1.0)
    (out.vectors * torch.randn_like(out.vectors)).sum().backward()
    assert quantizer.logits.weight.grad is not None and quantizer.logits.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert quantizer.codebook.grad.abs().sum() > 0


def test_perplexity_is_codebook_size_when_uniform_and_groups_when_collapsed():
    groups, entries = 2, 320
    assert perplexity(torch.full((groups, entries), 1.0 / entries)).item() == pytest.approx(groups * entries)
    collapsed = torch.zeros(groups, entries)
    collapsed[:, 3] = 1.0
    assert perplexity(collapsed).item() == pytest.approx(groups)
    probs = torch.tensor([[0.5, 0.25, 0.25]])
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert perplexity(probs).item() == pytest.approx(math.exp(entropy))


def test_distractors_come_from_other_masked_frames_of_the_same_utterance():
    lens = torch.tensor([120, 45, 80, 7])  # padded batch: rows 1-3 have padding
    total = 120
    mask = compute_span_mask(lens, 0.65, 10, min_masks=2, max_len=total, generator=torch.Generator().manual_seed(1))
    mask[3] = False
    mask[3, 2] = True  # an utterance whose only masked frame has no distractor
    distractors = sample_distractors(mask, 50, generator=torch.Generator().manual_seed(2))
    positives = mask.flatten().nonzero()[:, 0]
    assert distractors.shape == (len(positives), 50)
    valid = padding_mask(lens, total).flatten()
    for positive, row in zip(positives.tolist(), distractors):
        if positive // total == 3:
            assert (row == -1).all()
            continue
        assert (row >= 0).all()
        assert (row != positive).all()
        assert (row // total == positive // total).all(), "distractor from another utterance"
        assert valid[row].all(), "distractor in padding"
        assert mask.flatten()[row].all(), "distractor is not a masked frame"
    # Uniform over the others: every other masked frame of a row gets drawn about equally often.
    many = sample_distractors(mask, 4000, generator=torch.Generator().manual_seed(3))
    first = many[0]
    counts = torch.bincount(first, minlength=mask.numel())[mask.flatten()]
    others = counts[1:][: int(mask[0].sum()) - 1]
    assert counts[0] == 0
    expected = 4000 / len(others)
    assert others.min() > 0.5 * expected and others.max() < 1.5 * expected


def test_contrastive_loss_against_a_direct_computation():
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 1:5] = True
    mask[1, :3] = True
    n = int(mask.sum())
    predictions, targets = torch.randn(n, 5), torch.randn(n, 5)
    codes = torch.arange(n)[:, None].repeat(1, 2)
    codes[2] = codes[0]  # frame 2 shares frame 0's code: dropped from frame 0's distractors
    distractors = sample_distractors(mask, 3, generator=torch.Generator().manual_seed(0))
    got = contrastive_loss(predictions, targets, codes, mask, distractors, temperature=0.1)

    order = {p: i for i, p in enumerate(mask.flatten().nonzero()[:, 0].tolist())}
    losses = []
    for i in range(n):
        candidates = [i] + [order[d] for d in distractors[i].tolist() if not torch.equal(codes[order[d]], codes[i])]
        sims = torch.cosine_similarity(predictions[i][None], targets[candidates], dim=-1) / 0.1
        losses.append(-torch.log_softmax(sims, 0)[0])
    torch.testing.assert_close(got.loss, torch.stack(losses).mean(), rtol=1e-4, atol=1e-5)
    assert got.frames == n


def make_batch(suite, n: int = 6, seconds: float = 3.0) -> Batch:
    from evalkit.audio import load_audio
    from evalkit.manifest import audio_path, read_manifest

    manifest = suite / "pretrain" / "train.jsonl"
    records = read_manifest(manifest)[:n]
    wavs = [torch.as_tensor(load_audio(audio_path(manifest, r)))[: int(seconds * 16000)] for r in records]
    lens = torch.tensor([len(w) for w in wavs])
    padded = torch.zeros(len(wavs), int(lens.max()))
    for i, w in enumerate(wavs):
        padded[i, : len(w)] = w
    return Batch(padded, lens, [r["id"] for r in records], torch.zeros(len(wavs), dtype=torch.long))


@pytest.mark.parametrize("kind", ["transformer", "summarymixing"])
def test_contrastive_loss_falls_on_smoke_data(smoke_suite, kind):
    batch = make_batch(smoke_suite)
    objective = Wav2Vec2(tiny_encoder(kind), **TINY_OBJECTIVE, gumbel_decay=0.99, feature_penalty=1.0,
                         frontend_grad_scale=1.0)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    losses, diversities = [], []
    for _ in range(20):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = objective(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.stats["contrastive"])
        diversities.append(out.stats["diversity"])
        assert math.isfinite(out.loss.item())
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.05, losses
    assert all(0.0 <= d <= 1.0 for d in diversities)
    assert int(objective.step) == 20
    assert objective.temperature == pytest.approx(2.0 * 0.99**20)
    assert {"accuracy", "code_perplexity", "temperature"} <= set(out.stats)


def test_diversity_loss_in_unit_interval_and_temperature_schedule(smoke_suite):
    batch = make_batch(smoke_suite, n=2, seconds=2.0)
    objective = Wav2Vec2(tiny_encoder(), **TINY_OBJECTIVE, gumbel_decay=0.5)
    assert objective.temperature == 2.0
    stats = objective(batch).stats
    assert 0.0 <= stats["diversity"] <= 1.0
    assert objective.temperature == 1.0
    objective(batch)
    objective(batch)
    assert objective.temperature == 0.5, "floored at the minimum"
    objective.eval()
    objective(batch)
    assert int(objective.step) == 3, "evaluation does not advance the schedule"
    state = objective.state_dict()
    assert int(state["step"]) == 3, "the schedule is resumed with the weights"


def test_cnn_frontend_and_config_round_trip():
    encoder = tiny_encoder()
    encoder["frontend"] = {"kind": "cnn", "channels": 32}
    objective = Wav2Vec2(encoder, **TINY_OBJECTIVE)
    wavs = torch.randn(2, 16000) * 0.1
    out = objective(Batch(wavs, torch.tensor([16000, 9000]), ["a", "b"], torch.zeros(2, dtype=torch.long)))
    out.loss.backward()
    assert out.stats["feature_penalty"] > 0
    assert objective.encoder.frontend.convs[0].weight.grad.abs().sum() > 0
    config = objective.config()
    assert config["method"] == "wav2vec2"
    rebuilt = Wav2Vec2(config["encoder"], **config["objective"])
    assert rebuilt.load_state_dict(objective.state_dict()) is not None


@pytest.mark.parametrize(
    "bad", [{"codebook_dim": 33}, {"num_negatives": 0}, {"gumbel_min_temperature": 3.0}, {"negatives": 5}]
)
def test_bad_objective_settings_name_the_key(bad):
    with pytest.raises(ConfigError, match="objective"):
        Wav2Vec2(tiny_encoder(), **bad)
