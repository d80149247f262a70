"""The oracle upstream: frames from the suite's records, their timing and content, the record
contract with the runner, and that it is a ceiling (it beats FBANK where FBANK is weak)."""

from __future__ import annotations

import json
import math

import pytest
import soundfile as sf
import torch

from evalkit.cli import main
from evalkit.core.errors import EvalkitError
from evalkit.core.manifest import audio_path, read_manifest, write_manifest
from evalkit.evaluation.features import extract
from evalkit.evaluation.fingerprint import upstream_fingerprint
from evalkit.evaluation.runner import OnTheFlyFeatures, UpstreamRunner, utterances_of
from upstreams.load import load_upstream
from upstreams.oracle import LAYERS, OracleUpstream


def _frames(upstream, manifest):
    """{id: [L, T, D]} and the records, run through the evaluation runner."""
    records = read_manifest(manifest)
    runner = UpstreamRunner(upstream, "cpu", False, None, 60.0)
    utts = utterances_of(manifest, records)
    runner.check_audio(manifest, utts)
    with torch.no_grad():
        hidden, lens = runner.forward(utts)
    out = {u.id: torch.stack([h[i, : int(lens[i])] for h in hidden]) for i, u in enumerate(utts)}
    return out, {r["id"]: r for r in records}


def test_it_is_registered_deterministic_and_has_no_parameters():
    a, b = load_upstream("oracle"), OracleUpstream()
    assert (a.num_layers, a.hidden_size, a.frame_rate) == (len(LAYERS), 256, 50.0)
    assert list(a.parameters()) == [] and a.record_keys
    assert upstream_fingerprint(a) == upstream_fingerprint(b) != upstream_fingerprint(OracleUpstream(seed=1))
    assert torch.equal(a.vector("phone", "t"), b.vector("phone", "t"))
    assert not torch.allclose(a.vector("phone", "t"), a.vector("phone", "d"))


@pytest.mark.parametrize("corpus", ["ks", "pr", "sd"])
def test_frame_counts_are_frames_for_the_audio(smoke_suite, corpus):
    up = OracleUpstream()
    manifest = smoke_suite / corpus / "test.jsonl"
    frames, records = _frames(up, manifest)
    for utt_id, h in frames.items():
        samples = sf.info(str(audio_path(manifest, records[utt_id]))).frames
        assert h.shape[1] == int(up.frames_for(torch.tensor([samples]))[0]), utt_id


def test_phone_frames_hold_each_phone_in_order(smoke_suite):
    """Frame by frame, the phone layers hold the aligned phones in order (both layers the same
    phone), hardly any lost; frames of no phone are zero."""
    up = OracleUpstream()
    frames, records = _frames(up, smoke_suite / "pr" / "test.jsonl")
    lost = total = 0
    for utt_id, h in frames.items():
        rec = records[utt_id]
        pairs = list(zip(rec["phones_common"], (a[2] for a in rec["alignment"])))
        runs: list[tuple[str, str]] = []  # the phones of the frames, repeats collapsed
        for t in range(h.shape[1]):
            if h[0, t].abs().sum() == 0:
                assert h[1, t].abs().sum() == 0
                runs.append(("-", "-"))
                continue
            held = [
                p
                for p in dict.fromkeys(pairs)
                if torch.allclose(h[0, t], up.vector("phone", p[0]))
                and torch.allclose(h[1, t], up.vector("phone_raw", p[1]))
            ]
            assert len(held) == 1, (utt_id, t)
            runs.append(held[0])
        said = [p for k, p in enumerate(runs) if p != ("-", "-") and (k == 0 or runs[k - 1] != p)]
        expected = [p for k, p in enumerate(pairs) if k == 0 or pairs[k - 1] != p]  # CTC's view too
        it = iter(expected)
        assert all(p in it for p in said), utt_id  # in order, a subsequence of the alignment
        lost += len(expected) - len(said)
        total += len(expected)
    # a phone shorter than a frame next to another short one can lose its frame (6 of the smoke
    # suite's 16,633 phones)
    assert lost <= 0.005 * total, (lost, total)


def test_a_phone_is_on_the_frames_holding_its_centre():
    up = OracleUpstream()
    rec = {
        "id": "u",
        "speaker": "s",
        "alignment": [[0.10, 0.21, "t"], [0.21, 0.22, "r"], [0.22, 0.40, "eː"]],
        "phones_common": ["t", "ɹ", "eɪ"],
        "voice": {
            "id": "s",
            "variant": "m3",
            "accent": "en-gb-scotland",
            "pitch": 50,
            "range": 50,
            "rate": 175,
        },
    }
    hidden, lens = up(torch.zeros(1, 8000), torch.tensor([8000]), records=[rec])
    assert int(lens[0]) == 25
    phones = hidden[0][0]
    # centres (i + .5) / 50: frames 5..9 are t (0.11 .. 0.19), the 10 ms r takes frame 10 (its
    # midpoint 0.215; t keeps five), 11..19 are eː, the rest silence
    expect = ["-"] * 5 + ["t"] * 5 + ["ɹ"] + ["eɪ"] * 9 + ["-"] * 5
    for i, p in enumerate(expect):
        want = torch.zeros(256) if p == "-" else up.vector("phone", p)
        assert torch.allclose(phones[i], want), (i, p)
    voice = hidden[2][0]
    assert voice[:5].abs().sum() == 0 and voice[20:].abs().sum() == 0
    assert torch.allclose(voice[5], voice[19]) and voice[5].abs().sum() > 0
    assert hidden[3][0].abs().sum() == 0  # no emotion
    assert torch.allclose(hidden[4][0], sum(h[0] for h in hidden[:4]))


def test_sd_overlap_sums_the_active_talkers(smoke_suite):
    up = OracleUpstream()
    frames, records = _frames(up, smoke_suite / "sd" / "train.jsonl")
    overlaps = 0
    for utt_id, h in frames.items():
        rec = records[utt_id]
        voices = {k: up._voice(rec, v) for k, v in rec["voices"].items()}
        for t in range(h.shape[1]):
            centre = (t + 0.5) / up.frame_rate
            active = sorted({w for s, e, w in rec["segments"] if s <= centre < e})
            want = sum((voices[w] for w in active), torch.zeros(up.hidden_size))
            assert torch.allclose(h[2, t], want, atol=1e-5), (utt_id, t, active)
            overlaps += len(active) == 2
    assert overlaps > 0


def test_emotion_layer_carries_the_label_and_prosody(smoke_suite):
    up = OracleUpstream()
    frames, records = _frames(up, smoke_suite / "er" / "test.jsonl")
    by_label: dict[str, list[torch.Tensor]] = {}
    for utt_id, h in frames.items():
        active = h[3].abs().sum(1) > 0
        assert active.any()
        by_label.setdefault(records[utt_id]["emotion"], []).append(h[3][active][0])
    # each utterance is closest to its own label's vector; the drawn prosody varies within a label
    labels = sorted(by_label)
    assert labels == ["angry", "happy", "neutral", "sad"]
    for label, vs in by_label.items():
        for x in vs:
            cos = [float(torch.cosine_similarity(x, up.vector("emotion", other), 0)) for other in labels]
            assert labels[cos.index(max(cos))] == label
        assert not torch.allclose(vs[0], vs[1])


def test_records_without_ground_truth_are_refused_by_name(smoke_suite, tmp_path):
    """A manifest without the suite's ground truth (a real corpus, an older suite) is a clear error."""
    src = smoke_suite / "ks" / "test.jsonl"
    records = read_manifest(src)
    for r in records:
        r["path"] = str(audio_path(src, r))
        del r["phones_common"]
    manifest = tmp_path / "ks" / "test.jsonl"
    manifest.parent.mkdir()
    write_manifest(manifest, records)
    for run in (
        lambda: extract(OracleUpstream(), manifest, tmp_path / "cache", progress=False),
        lambda: OnTheFlyFeatures(OracleUpstream(), manifest),
    ):
        with pytest.raises(EvalkitError, match=r"test\.jsonl: record '.*' lacks key 'phones_common'"):
            run()
    with pytest.raises(EvalkitError, match="not from audio"):
        OracleUpstream()(torch.zeros(1, 16000), torch.tensor([16000]))
    records[0]["phones_common"] = []
    with pytest.raises(EvalkitError, match="same length"):
        OracleUpstream()(torch.zeros(1, 16000), torch.tensor([16000]), records=records[:1])


def test_eval_refuses_a_manifest_without_ground_truth(smoke_suite, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "ks").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        src = smoke_suite / "ks" / f"{split}.jsonl"
        records = read_manifest(src)
        for r in records:
            r["path"] = str(audio_path(src, r))
            r.pop("alignment")
        write_manifest(data / "ks" / f"{split}.jsonl", records)
    args = [
        "eval",
        "--upstream",
        "oracle",
        "--tasks",
        "ks",
        "--data",
        str(data),
        "--output",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "lacks key 'alignment'" in err and "ks/train.jsonl" in err and "Traceback" not in err


@pytest.mark.slow
def test_oracle_beats_fbank_on_ks_and_pr(smoke_suite, tmp_path):
    scores = {}
    for upstream in ("oracle", "fbank"):
        args = ["eval", "--upstream", upstream, "--tasks", "ks,pr", "--data", str(smoke_suite)]
        args += ["--output", str(tmp_path), "--protocol", "quick", "--steps", "40"]
        assert main(args) == 0
        for task in ("ks", "pr"):
            res = json.loads((tmp_path / upstream / f"{task}.json").read_text())
            scores[upstream, task] = res["metrics"]["test"][res["primary_metric"]]
    # measured: KS accuracy 0.625 vs 0.208, PR PER 0.067 vs 1.39
    assert scores["oracle", "ks"] > scores["fbank", "ks"] + 0.2
    assert scores["oracle", "pr"] < 0.2 < scores["fbank", "pr"]
    assert all(math.isfinite(v) for v in scores.values())
