"""HuBERT and DistilHuBERT: target quality, frame alignment, and loss curves of tiny models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.metrics import mutual_info_score

from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.manifest import read_manifest
from upstreams.distilhubert import DistilHuBERT, evenly_spaced_layers
from upstreams.encoder import SSLEncoder
from upstreams.hubert import HuBERT
from upstreams.kmeans_targets import (
    MFCC_HOP,
    ClusterTargets,
    aligned_phones,
    cluster_quality,
    mfcc_features,
    target_quality,
)
from upstreams.modules import fbank_lengths
from upstreams.objective import Batch, PretrainData

K = 50  # clusters in the smoke tests: few enough that 19k frames estimate PNMI with little bias


def tiny(frontend: str = "fbank", layers: int = 2, dim: int = 64) -> dict:
    return {
        "frontend": {"kind": frontend, "channels": dim},
        "encoder": {
            "kind": "transformer",
            "dim": dim,
            "layers": layers,
            "heads": 4,
            "ffn_dim": 2 * dim,
            "dropout": 0.0,
            "attention_dropout": 0.0,
            "input_dropout": 0.0,
            "layerdrop": 0.0,
            "pos_conv_kernel": 16,
            "pos_conv_groups": 4,
        },
    }


@pytest.fixture(scope="module")
def smoke_pretrain(tmp_path_factory) -> PretrainData:
    from evalkit.synth.suite import build_suite

    out = tmp_path_factory.mktemp("hubert_suite")
    build_suite(out, "smoke", seed=0, jobs=1, corpora=("pretrain",), progress=False)
    manifest = out / "pretrain" / "train.jsonl"
    return PretrainData(manifest, read_manifest(manifest))


@pytest.fixture(scope="module")
def mfcc_setup(smoke_pretrain, tmp_path_factory):
    """MFCC k-means targets of the smoke corpus, fitted once: (setup folder, setup report)."""
    folder = tmp_path_factory.mktemp("hubert_setup")
    report = HuBERT(tiny(), n_clusters=K).setup(smoke_pretrain, folder, log=lambda *_: None)
    return folder, report


def batches(data: PretrainData, n_utts: int = 8, crop_s: float = 2.0, seed: int = 0):
    """Endless random crops of the first `n_utts` utterances, as the loop makes them."""
    from evalkit.core.audio import load_audio
    from evalkit.core.manifest import audio_path

    rng = np.random.default_rng(seed)
    wavs = [torch.from_numpy(load_audio(audio_path(data.manifest, r))) for r in data.records[:n_utts]]
    crop = int(crop_s * 16000)
    while True:
        offsets = [int(rng.integers(0, max(1, len(w) - crop))) for w in wavs]
        pieces = [w[o : o + crop] for w, o in zip(wavs, offsets)]
        lens = torch.tensor([len(p) for p in pieces])
        padded = torch.zeros(len(pieces), int(lens.max()))
        for i, p in enumerate(pieces):
            padded[i, : len(p)] = p
        yield Batch(padded, lens, [r["id"] for r in data.records[:n_utts]], torch.tensor(offsets))


def train(objective, data: PretrainData, steps: int, lr: float = 3e-3) -> list[dict]:
    opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=lr)
    history = []
    for _, batch in zip(range(steps), batches(data, n_utts=4)):
        out = objective(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        history.append({"loss": float(out.loss.detach()), **out.stats})
    return history


def save_checkpoint(encoder: SSLEncoder, folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"upstream": "encoder", "config": encoder.config}))
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, folder / "model.safetensors")
    return str(folder)


# ---- target quality ------------------------------------------------------------------------------


def test_cluster_quality_hand_worked():
    # p(a,0) = 1/2, p(a,1) = 1/4, p(b,1) = 1/4: H(phone|cluster) = ½·ln 2, H(phone) = H(¾, ¼)
    q = cluster_quality(["a", "a", "a", "b"], [0, 0, 1, 1])
    h_phone = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = h_phone - 0.5 * math.log(2)
    assert q.pnmi == pytest.approx(mi / h_phone)
    assert q.pnmi == pytest.approx(0.383689, abs=1e-6)
    assert q.cnmi == pytest.approx(mi / math.log(2))
    assert q.phone_purity == pytest.approx(0.75)  # cluster 0 → a (½), cluster 1 → a or b (¼)
    assert q.cluster_purity == pytest.approx(0.75)  # a → cluster 0 (½), b → cluster 1 (¼)
    assert q.majority_phone == pytest.approx(0.75)
    perfect = cluster_quality(["x", "y", "x", "y"], [7, 3, 7, 3])
    assert perfect.pnmi == pytest.approx(1.0) and perfect.phone_purity == pytest.approx(1.0)


def test_cluster_quality_matches_sklearn():
    rng = np.random.default_rng(0)
    phones = rng.integers(0, 12, 5000)
    clusters = (phones * 3 + rng.integers(0, 5, 5000)) % 20  # informative, not a function of phone
    py = np.bincount(phones) / len(phones)
    expected = mutual_info_score(phones, clusters) / -(py * np.log(py)).sum()
    assert cluster_quality(phones, clusters).pnmi == pytest.approx(expected, rel=1e-9)


def test_mfcc_targets_carry_phone_information(smoke_pretrain, mfcc_setup):
    folder, report = mfcc_setup
    q = report["quality"]
    # Measured on the smoke suite: PNMI 0.32-0.35, phone purity 0.27-0.30, majority phone 0.07.
    assert q["pnmi"] > 0.2
    assert q["phone_purity"] > 2.5 * q["majority_phone"]
    assert q["clusters_used"] == K and q["frames"] == report["frames"]
    # The labels the 25 Hz encoder trains on keep it (a misaligned downsampling would not).
    assert report["quality_at_encoder_rate"]["pnmi"] > 0.8 * q["pnmi"]

    targets = ClusterTargets.load(folder)
    labels = np.concatenate([np.asarray(targets.utterance(r["id"])) for r in smoke_pretrain.records])
    phones = [
        p
        for r in smoke_pretrain.records
        for p in aligned_phones(r["alignment"], len(targets.utterance(r["id"])), targets.hop)
    ]
    assert cluster_quality(phones, np.random.default_rng(0).permutation(labels)).pnmi < 0.05
    # Phones read at the wrong frame rate (50 Hz instead of 100) lose most of the information.
    wrong = [
        p
        for r in smoke_pretrain.records
        for p in aligned_phones(r["alignment"], len(targets.utterance(r["id"])), 2 * targets.hop)
    ]
    assert cluster_quality(wrong, labels).pnmi < 0.5 * q["pnmi"]


def test_no_alignments_no_quality(smoke_pretrain, mfcc_setup):
    targets = ClusterTargets.load(mfcc_setup[0])
    bare = [{k: v for k, v in r.items() if k != "alignment"} for r in smoke_pretrain.records]
    assert target_quality(bare, targets) is None


def test_setup_is_reused_and_guards_its_settings(smoke_pretrain, mfcc_setup):
    folder, report = mfcc_setup
    messages = []
    assert HuBERT(tiny(), n_clusters=K).setup(smoke_pretrain, folder, log=messages.append) == report
    assert any("reusing" in m for m in messages)
    with pytest.raises(EvalkitError, match="fresh --out"):
        HuBERT(tiny(), n_clusters=K + 1).setup(smoke_pretrain, folder, log=lambda *_: None)


# ---- frame alignment -----------------------------------------------------------------------------


@pytest.mark.parametrize("frontend", ["fbank", "cnn"])
def test_label_frames_match_encoder_frames(frontend):
    encoder = SSLEncoder(**tiny(frontend))
    hop = round(16000 / encoder.frame_rate)
    step = hop // MFCC_HOP
    for samples in [400, 559, 560, 1000, 4321, 16000, 16001, 31999, 48000, 80123]:
        n_mfcc = mfcc_features(torch.randn(samples)).shape[0]
        assert n_mfcc == int(fbank_lengths(torch.tensor([samples]))[0])
        n_enc = int(encoder.frames_for(torch.tensor([samples]))[0])
        assert n_enc >= 1 and step * (n_enc - 1) <= n_mfcc - 1  # every encoder frame has its own MFCC label
        assert n_enc >= math.ceil(n_mfcc / step) - (1 if frontend == "cnn" else 0)
        targets = ClusterTargets(
            np.arange(n_mfcc, dtype=np.int16),
            ["u"],
            np.array([0]),
            np.array([n_mfcc]),
            MFCC_HOP,
            n_mfcc,
            "test",
        )
        assert targets.frames("u", 0, n_enc, hop).tolist() == list(range(0, step * n_enc, step))
        # A crop starting 0.5 s in reads the utterance's labels from frame 50 on.
        assert targets.frames("u", 8000, 2, hop).tolist() == [min(50, n_mfcc - 1), min(50 + step, n_mfcc - 1)]


@pytest.mark.parametrize("frontend", ["fbank", "cnn"])
def test_encoder_frame_centres(frontend):
    """Output frame j depends on samples centred on 200 + hop·j, the centre that labels assume."""
    cfg = tiny(frontend)
    # Per-utterance CMVN (fbank) and GroupNorm (CNN) make every frame depend on every sample.
    cfg["frontend"].update({"cmvn": False} if frontend == "fbank" else {"norm": "layer_norm"})
    encoder = SSLEncoder(**cfg)
    hop = round(16000 / encoder.frame_rate)
    wav = torch.randn(1, 16000, requires_grad=True)
    feats, _ = encoder.frontend(wav, torch.tensor([16000]))
    j = 10
    feats[0, j].sum().backward()
    support = (wav.grad[0].abs() > 0).nonzero()[:, 0]
    assert (int(support.min()) + int(support.max()) + 1) / 2 == 200 + hop * j


# ---- HuBERT training -----------------------------------------------------------------------------


@pytest.mark.slow  # ~6 s: 60 steps
def test_hubert_loss_falls(smoke_pretrain, mfcc_setup):
    torch.manual_seed(0)
    objective = HuBERT(tiny(), n_clusters=K, supervise_layers=[1])
    objective.load_setup(mfcc_setup[0])
    history = train(objective, smoke_pretrain, steps=60)
    counts = np.bincount(np.asarray(objective.targets.labels), minlength=K) / len(objective.targets.labels)
    unigram = -(counts * np.log(counts)).sum()  # the loss of predicting the cluster frequencies alone
    first = np.mean([h["ce"] for h in history[:3]])
    last = np.mean([h["ce"] for h in history[-5:]])
    # Measured over three seeds: 3.91-3.98 -> 3.48-3.55, against ln 50 = 3.91 and a unigram loss of 3.76.
    assert first == pytest.approx(math.log(K), abs=0.2)
    assert last < first - 0.25 and last < unigram - 0.12
    assert np.mean([h["acc_masked"] for h in history[-5:]]) > 1.5 / K
    assert {"ce_layer1", "acc_masked_layer1", "acc_unmasked"} <= set(history[-1])
    assert history[-1]["loss"] == pytest.approx((history[-1]["ce"] + history[-1]["ce_layer1"]) / 2, rel=1e-5)
    assert 0.3 < history[-1]["masked_fraction"] < 0.8


def test_original_hubert_cosine_recipe_runs(smoke_pretrain, mfcc_setup):
    torch.manual_seed(0)
    objective = HuBERT(
        tiny("cnn", dim=32), n_clusters=K, head="cosine", final_dim=16, frontend_grad_scale=0.1
    )
    objective.load_setup(mfcc_setup[0])
    history = train(objective, smoke_pretrain, steps=6)
    assert all(math.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = objective(next(batches(smoke_pretrain)))
    assert math.isfinite(float(out.loss.detach()))


def test_unmasked_weight_adds_the_unmasked_frames_loss(smoke_pretrain, mfcc_setup):
    batch = next(batches(smoke_pretrain))
    outs = []
    for weight in (0.0, 0.5):
        torch.manual_seed(0)
        objective = HuBERT(tiny(), n_clusters=K, unmasked_weight=weight)
        objective.load_setup(mfcc_setup[0])
        torch.manual_seed(1)  # the same mask both times
        outs.append(objective(batch))
    plain, weighted = outs
    assert "ce_unmasked" not in plain.stats
    assert float(weighted.loss.detach()) == pytest.approx(
        weighted.stats["ce"] + 0.5 * weighted.stats["ce_unmasked"], rel=1e-5
    )
    assert weighted.stats["ce"] == pytest.approx(plain.stats["ce"], rel=1e-5)
    with pytest.raises(ConfigError, match="unmasked_weight"):
        HuBERT(tiny(), unmasked_weight=-1)


def test_iteration2_targets_from_a_checkpoint(smoke_pretrain, tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(SSLEncoder(**tiny()), tmp_path / "iter1")
    data = PretrainData(smoke_pretrain.manifest, smoke_pretrain.records[:10])
    objective = HuBERT(tiny(), n_clusters=8, targets={"source": "checkpoint", "path": path, "layer": 1})
    report = objective.setup(data, tmp_path / "setup", log=lambda *_: None)
    assert report["source"] == f"{path} layer 1"
    assert objective.targets.hop == 640  # labels at the checkpoint's 25 Hz
    assert report["quality"]["clusters_used"] == 8
    out = objective(next(batches(data)))
    assert math.isfinite(float(out.loss.detach()))


def test_placeholders_and_bad_settings(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="only placeholder"):
        HuBERT(tiny(), targets={"source": "checkpoint", "path": "${out}/x"})
    with pytest.raises(ConfigError, match="targets.path is empty"):
        HuBERT(tiny(), targets={"source": "checkpoint"})
    with pytest.raises(ConfigError, match="supervise_layers"):
        HuBERT(tiny(), supervise_layers=[3])
    with pytest.raises(ConfigError, match="unknown key"):
        HuBERT(tiny(), clusters=100)
    monkeypatch.setenv("EVALKIT_WORK", str(tmp_path))
    with pytest.raises(EvalkitError, match=str(tmp_path / "hubert-small")):
        DistilHuBERT(tiny(), teacher="${work}/hubert-small")


# ---- DistilHuBERT --------------------------------------------------------------------------------


def test_evenly_spaced_layers():
    assert evenly_spaced_layers(12, 3) == [4, 8, 12]
    assert evenly_spaced_layers(4, 3) == [2, 3, 4]
    assert evenly_spaced_layers(2, 3) == [1, 2]


def test_distilhubert_copies_the_teacher_and_learns(smoke_pretrain, tmp_path, monkeypatch):
    torch.manual_seed(0)
    teacher = SSLEncoder(**tiny(layers=4))
    save_checkpoint(teacher, tmp_path / "hubert-tiny")
    monkeypatch.setenv("EVALKIT_WORK", str(tmp_path))
    objective = DistilHuBERT(tiny(layers=2), teacher="${work}/hubert-tiny")
    assert objective.target_layers == [2, 3, 4]
    assert objective.init_report.startswith("copied")
    student = objective.encoder.state_dict()
    for name, value in student.items():
        assert torch.equal(value, teacher.state_dict()[name]), name
    assert not any(k.startswith("teacher") for k in objective.state_dict())  # the teacher is not saved
    report = objective.setup(smoke_pretrain, tmp_path / "setup", log=lambda *_: None)
    assert report["teacher"] == str(tmp_path / "hubert-tiny") and report["target_layers"] == [2, 3, 4]

    history = train(objective, smoke_pretrain, steps=12)
    assert np.mean([h["loss"] for h in history[-3:]]) < 0.8 * np.mean([h["loss"] for h in history[:3]])
    assert history[-1]["cos_layer4"] > history[0]["cos_layer4"]
    assert all(p.grad is None for p in objective.teacher.parameters())

    other = DistilHuBERT(tiny(layers=2, dim=32), teacher=str(tmp_path / "hubert-tiny"))
    assert other.init_report.startswith("random")
    assert other.heads[0].out_features == 64  # predicts the teacher's width


# ---- the recipes, through the pre-training loop --------------------------------------------------


def recipe(name: str):
    """A shipped recipe, shrunk for the smoke corpus: short batches, few clusters."""
    from pathlib import Path

    from evalkit.pretraining.recipe import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "pretrain" / f"{name}.yaml")
    cfg.data.crop_seconds, cfg.data.batch_seconds = 3.0, 12.0
    if "n_clusters" in cfg.objective:
        cfg.objective["n_clusters"] = K
    return cfg


@pytest.mark.slow  # ~10 s: four short runs, three setups
def test_recipes_run_through_the_loop(smoke_pretrain, tmp_path, monkeypatch):
    from evalkit.pretraining.loop import pretrain
    from upstreams.load import load_upstream

    suite = smoke_pretrain.manifest.parent.parent
    monkeypatch.setenv("EVALKIT_WORK", str(tmp_path))
    out = pretrain(
        recipe("hubert-tiny"), data=suite, out=tmp_path / "hubert-tiny", max_steps=2, progress=False
    )
    summary = json.loads((out / "config.json").read_text())
    assert summary["pretraining"]["setup_report"]["quality"]["pnmi"] > 0.2
    pretrain(recipe("hubert-tiny"), data=suite, out=out, max_steps=3, resume=True, progress=False)
    assert json.loads((out / "config.json").read_text())["pretraining"]["steps"] == 3
    upstream = load_upstream(str(out))
    hidden, lens = upstream(torch.zeros(1, 16000), torch.tensor([16000]))
    assert len(hidden) == 5 and int(lens[0]) == 25

    distil = pretrain(
        recipe("distilhubert-tiny"), data=suite, out=tmp_path / "distil", max_steps=2, progress=False
    )
    report = json.loads((distil / "config.json").read_text())["pretraining"]["setup_report"]
    assert report["student_init"].startswith("copied") and report["target_layers"] == [2, 3, 4]

    iter2 = recipe("hubert-iter2-small")
    iter2.encoder = recipe("hubert-tiny").encoder
    iter2.objective["targets"]["path"] = "${work}/hubert-tiny"
    out2 = pretrain(iter2, data=suite, out=tmp_path / "iter2", max_steps=2, progress=False)
    report = json.loads((out2 / "config.json").read_text())["pretraining"]["setup_report"]
    assert (
        report["source"] == f"{tmp_path / 'hubert-tiny'} layer 3" and report["quality"]["clusters_used"] == K
    )


def test_distilhubert_reads_a_faster_teacher_at_the_students_frames(smoke_pretrain, tmp_path):
    torch.manual_seed(0)
    teacher = SSLEncoder(**tiny("cnn", dim=32))  # 50 Hz
    path = save_checkpoint(teacher, tmp_path / "cnn-teacher")
    objective = DistilHuBERT(tiny("fbank", layers=1), teacher=path)  # 25 Hz
    assert objective.init_report.startswith("random") and objective.target_layers == [1, 2]
    batch = next(batches(smoke_pretrain, n_utts=2, crop_s=1.0))
    n_student = int(objective.encoder.frames_for(batch.wav_lens).max())
    states = objective._teacher_states(batch, n_student)
    with torch.no_grad():
        hidden, lens = teacher.eval()(batch.wavs, batch.wav_lens)
    for b in range(2):
        expected = hidden[2][b, torch.arange(n_student).mul(2).clamp(max=int(lens[b]) - 1)]
        assert torch.allclose(states[1][b], expected)
    assert math.isfinite(float(objective(batch).loss.detach()))
