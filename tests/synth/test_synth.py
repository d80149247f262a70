"""The synthetic suite: engine, speakers, determinism, labels that match the audio."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evalkit.core.manifest import audio_path, read_manifest
from evalkit.synth import phonemes, synthesize
from evalkit.synth.speakers import speaker_pools
from evalkit.synth.suite import SUITE_CORPORA, build_suite


def test_synthesize_gives_16k_float_speech():
    x = synthesize("the cat sat on the mat")
    assert x.dtype == np.float32 and x.ndim == 1
    assert 0.8 < len(x) / 16000 < 3.0
    assert np.abs(x).max() > 0.05


def test_phonemes_are_ipa_and_accent_dependent():
    us = phonemes("water", "en-us")
    gb = phonemes("water", "en")
    assert us[0] == "w" and gb[0] == "w"
    assert us != gb  # rhotic flap in US English, not in British
    assert phonemes("the cat sat") == ["ð", "ə", "k", "æ", "t", "s", "æ", "t"]


def test_alignment_phones_match_text_to_phonemes():
    from evalkit.synth.espeak import Voice, engine

    v = Voice("en-us+m3")
    text = "nobody knew where the old road used to go"
    speech = engine().speak(text, v)
    assert speech.phones == engine().phonemes(text, v)
    starts = [s for s, _, _ in speech.alignment]
    assert starts == sorted(starts)
    assert all(e > s for s, e, _ in speech.alignment)
    assert len(speech.words) == len(text.split())


def test_speaker_pools_are_disjoint_and_large():
    pools = speaker_pools(0)
    ids = [s.id for pool in pools.values() for s in pool]
    assert len(ids) == len(set(ids)) >= 300
    variants = {name: {s.variant for s in pool} for name, pool in pools.items()}
    names = list(variants)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not variants[a] & variants[b], f"pools {a} and {b} share a voice variant"


def _suite_digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "suite.json":
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_smoke_suite_has_all_corpora(smoke_suite):
    for corpus in SUITE_CORPORA:
        assert any((smoke_suite / corpus).glob("*.jsonl")), corpus
    assert (smoke_suite / "asv" / "test_trials.txt").exists()
    assert (smoke_suite / "sd" / "test.rttm").exists()
    for m in smoke_suite.glob("*/*.jsonl"):
        for r in read_manifest(m):
            assert audio_path(m, r).is_file()


def test_same_seed_gives_identical_suite(smoke_suite, tmp_path):
    corpora = ("ks", "sd", "er")
    build_suite(tmp_path, "smoke", seed=0, jobs=1, corpora=corpora, progress=False)
    mine = _suite_digest(tmp_path)
    ref = {k: v for k, v in _suite_digest(smoke_suite).items() if k.split("/")[0] in corpora}
    assert mine == ref


def test_different_seed_gives_different_suite(smoke_suite, tmp_path):
    build_suite(tmp_path, "smoke", seed=1, jobs=1, corpora=("ic",), progress=False)
    mine = _suite_digest(tmp_path)
    ref = _suite_digest(smoke_suite)
    assert mine["ic/test.jsonl"] != ref["ic/test.jsonl"]


def test_speaker_disjoint_splits(smoke_suite):
    def speakers(corpus, split):
        return {r["speaker"] for r in read_manifest(smoke_suite / corpus / f"{split}.jsonl")}

    pretrain = speakers("pretrain", "train")
    for corpus in ("asv", "er", "pr", "asr"):
        tr, dv, te = (speakers(corpus, s) for s in ("train", "dev", "test"))
        assert not tr & te and not tr & dv and not dv & te, corpus
        assert not pretrain & (tr | dv | te), corpus
    # SID is closed-set: the same speakers in every split
    assert speakers("sid", "train") == speakers("sid", "test")


def test_asv_trials_refer_to_test_utterances(smoke_suite):
    ids = {r["id"]: r["speaker"] for r in read_manifest(smoke_suite / "asv" / "test.jsonl")}
    lines = (smoke_suite / "asv" / "test_trials.txt").read_text().split("\n")
    trials = [line.split() for line in lines if line]
    assert {t[0] for t in trials} == {"0", "1"}
    for label, a, b in trials:
        assert (ids[a] == ids[b]) == (label == "1")


def test_sd_labels_match_audio(smoke_suite):
    """Speech energy sits inside the labelled segments, and overlaps exist."""
    any_overlap = False
    for r in read_manifest(smoke_suite / "sd" / "test.jsonl") + read_manifest(
        smoke_suite / "sd" / "train.jsonl"
    ):
        x, sr = sf.read(audio_path(smoke_suite / "sd" / "test.jsonl", r))
        frame = sr // 100
        n = len(x) // frame
        energy = (x[: n * frame].reshape(n, frame) ** 2).mean(1)
        inside = np.zeros(n, bool)
        for s, e, _ in r["segments"]:
            inside[int(s * 100) : int(e * 100)] = True
        assert inside.any() and (~inside).any()
        ratio_db = 10 * np.log10(energy[inside].mean() / (energy[~inside].mean() + 1e-12))
        assert ratio_db > 8, (r["id"], ratio_db)
        segs = sorted(r["segments"])
        any_overlap |= any(b[0] < a[1] and a[2] != b[2] for a, b in zip(segs, segs[1:]))
        for who in r["speakers"]:  # overlap is between talkers: nobody talks over themselves
            own = [s for s in segs if s[2] == who]
            assert all(b[0] >= a[1] for a, b in zip(own, own[1:])), (r["id"], who, own)
        assert abs(r["duration"] - len(x) / sr) < 1e-3
    assert any_overlap


def test_a_talker_who_takes_the_next_turn_pauses_instead_of_overlapping_themselves():
    """A turn's negative gap overlaps the other talker; the same talker again pauses for |gap|."""
    from dataclasses import asdict

    from evalkit.synth.render import Item, _render_mixture

    a, b = speaker_pools(0)["train"][:2]
    turns = [(asdict(a), "one two three four", 0.2), (asdict(a), "five six seven", -0.8)]
    turns.append((asdict(b), "eight nine ten", -0.5))
    item = Item("sd-x", "mixture", asdict(a), turns=turns)
    _, rec = _render_mixture(item, np.random.default_rng(0), with_alignment=False)
    (s1, e1, w1), (s2, e2, w2), (s3, e3, w3) = rec["segments"]
    assert w1 == w2 != w3
    assert s2 == pytest.approx(e1 + 0.8, abs=1e-3)  # a pause as long as the overlap would have been
    assert s3 == pytest.approx(e2 - 0.5, abs=1e-3) and s3 < e2  # the other talker still overlaps


def test_qbe_occurrences_cover_their_term(smoke_suite):
    for split in ("dev", "test"):
        recs = read_manifest(smoke_suite / "qbe" / f"{split}.jsonl")
        queries = {r["term"] for r in recs if r["role"] == "query"}
        docs = [r for r in recs if r["role"] == "document"]
        assert queries and any(d["occurrences"] for d in docs)
        for d in docs:
            for occ in d["occurrences"]:
                assert occ["term"] in queries and occ["term"] in d["text"]
                assert 0 <= occ["start"] < occ["end"] <= d["duration"]


def test_labels_present(smoke_suite):
    ks = read_manifest(smoke_suite / "ks" / "train.jsonl")
    assert {r["label"] for r in ks} >= {"yes", "no", "_unknown_", "_silence_"}
    assert all(abs(r["duration"] - 1.0) < 1e-3 for r in ks)
    for r in read_manifest(smoke_suite / "sf" / "train.jsonl"):
        for s in r["slots"]:
            assert r["text"][s["start"] : s["end"]] == s["value"]
    er = read_manifest(smoke_suite / "er" / "train.jsonl")
    assert {r["emotion"] for r in er} == {"neutral", "happy", "angry", "sad"}
    pr = read_manifest(smoke_suite / "pr" / "train.jsonl")
    assert all(r["phones"] and len(r["alignment"]) == len(r["phones"]) for r in pr)


def test_resume_after_interruption(smoke_suite, tmp_path):
    """Chunks finished before a crash are kept; finished splits are skipped; the result is unchanged."""
    import multiprocessing as mp

    from evalkit.synth.render import render_chunk
    from evalkit.synth.suite import SUITE_PROFILES, plan_jobs

    stamp = {"profile": "smoke", "seed": 0, "version": SUITE_PROFILES["smoke"].version}
    (tmp_path / "suite.json").write_text(json.dumps(stamp))
    first = plan_jobs(tmp_path, SUITE_PROFILES["smoke"], 0, ("ic",))[0].chunks[0]
    proc = mp.get_context("spawn").Process(target=render_chunk, args=(first,))  # as a crashed run left it
    proc.start()
    proc.join()
    done_wav = tmp_path / "ic" / "wav" / first.split / f"{first.items[0].id}.wav"
    mtime = done_wav.stat().st_mtime_ns
    build_suite(tmp_path, "smoke", seed=0, jobs=1, corpora=("ic",), progress=False)
    assert done_wav.stat().st_mtime_ns == mtime
    ref = {k: v for k, v in _suite_digest(smoke_suite).items() if k.startswith("ic/")}
    assert _suite_digest(tmp_path) == ref
    assert not (tmp_path / "ic" / ".parts").exists()
    build_suite(tmp_path, "smoke", seed=0, jobs=1, corpora=("ic",), progress=False)
    assert done_wav.stat().st_mtime_ns == mtime


def test_profile_or_seed_mismatch_is_refused(tmp_path):
    from evalkit.core.errors import EvalkitError

    build_suite(tmp_path, "smoke", seed=0, jobs=1, corpora=("ks",), progress=False)
    with pytest.raises(EvalkitError, match="seed"):
        build_suite(tmp_path, "smoke", seed=3, jobs=1, corpora=("ks",), progress=False)


def test_a_suite_of_another_version_is_refused(tmp_path):
    from evalkit.core.errors import EvalkitError

    (tmp_path / "suite.json").write_text(json.dumps({"profile": "default", "seed": 0}))  # before versions: 1
    with pytest.raises(
        EvalkitError, match="holds version 1 of the 'default' suite; this evalkit makes version 5"
    ):
        build_suite(tmp_path, "default", seed=0, jobs=1, corpora=("ks",), progress=False)
    assert not (tmp_path / "ks").exists()  # nothing written into the old suite
