"""The ground truth the suite's records carry for an oracle: phone alignments in every speech corpus,
accent-independent phones, ER's drawn prosody, SD's talkers; and that recording it leaves the audio alone."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evalkit.core.manifest import audio_path, read_manifest
from evalkit.synth import phonemes
from evalkit.synth.espeak import engine
from evalkit.synth.phones import common_phones, phone_map
from evalkit.synth.render import to_16k
from evalkit.synth.speakers import ACCENTS, Speaker
from evalkit.synth.suite import SUITE_CORPORA, SUITE_PROFILES, plan_jobs

SPEAKER_FIELDS = ("id", "variant", "accent", "pitch", "range", "rate")


def _manifests(root: Path) -> list[Path]:
    return sorted(p for corpus in SUITE_CORPORA for p in (root / corpus).glob("*.jsonl"))


def test_every_record_has_an_alignment_inside_its_audio(smoke_suite):
    manifests = _manifests(smoke_suite)
    assert {m.parent.name for m in manifests} == set(SUITE_CORPORA)
    for m in manifests:
        records = read_manifest(m)
        assert sum(bool(r["alignment"]) for r in records) >= len(records) - sum(
            r.get("label") == "_silence_" for r in records
        ), m
        for r in records:
            aligned = r["alignment"]
            assert r["phones"] == [a[2] for a in aligned], (m, r["id"])
            assert len(r["phones_common"]) == len(aligned), (m, r["id"])
            assert all(0 <= a[0] < a[1] <= r["duration"] + 1e-3 for a in aligned), (m, r["id"])
            if m.parent.name != "sd":  # one talker: phones follow one another
                assert all(b[0] >= a[1] - 1e-3 for a, b in zip(aligned, aligned[1:])), (m, r["id"])


def test_ks_alignment_is_the_placed_word(smoke_suite):
    """The phones of the word, starting where it was placed, where the clip's energy is."""
    for split in ("train", "test"):
        m = smoke_suite / "ks" / f"{split}.jsonl"
        ratios = []
        for r in read_manifest(m):
            if r["label"] == "_silence_":
                assert r["alignment"] == [] and r["phones"] == []
                continue
            assert r["phones"] == phonemes(r["text"], r["voice"]["accent"]), r["id"]
            start, end = r["alignment"][0][0], r["alignment"][-1][1]
            assert start == pytest.approx(r["word_start"], abs=1e-3) and end <= 1.0
            x, sr = sf.read(audio_path(m, r))
            a, b = int(start * sr), int(end * sr)
            inside, outside = np.mean(x[a:b] ** 2), np.mean(np.concatenate([x[:a], x[b:]]) ** 2)
            ratios.append(10 * np.log10(inside / outside))
        assert min(ratios) > 3 and np.median(ratios) > 10, ratios


def test_sd_phones_name_their_talker_inside_its_turns(smoke_suite):
    talkers = []
    for split in ("train", "test"):
        for r in read_manifest(smoke_suite / "sd" / f"{split}.jsonl"):
            assert set(r["voices"]) == set(r["speakers"]), r["id"]
            talkers.append(len(r["speakers"]))
            for spk, voice in r["voices"].items():
                assert voice["id"] == spk and set(SPEAKER_FIELDS) <= set(voice)
            assert r["voice"] == {**r["voices"][r["speaker"]], "channel": r["voice"]["channel"]}
            for (start, end, phone, talker), common in zip(r["alignment"], r["phones_common"]):
                turns = [(s, e) for s, e, who in r["segments"] if who == talker]
                assert any(s - 1e-3 <= start and end <= e + 1e-3 for s, e in turns), (r["id"], start, talker)
                assert common == common_phones([phone], r["voices"][talker]["accent"])[0]
            assert {a[3] for a in r["alignment"]} == set(r["speakers"])
    assert max(talkers) == 2  # a mixture names its second talker's voice too


def test_er_records_the_prosody_it_was_spoken_with(smoke_suite):
    """eSpeak with the recorded prosody gives the WAV's length; the speaker's plain voice does not."""
    records = read_manifest(smoke_suite / "er" / "dev.jsonl")
    shifts: dict[str, list[int]] = {}
    for r in records:
        p = r["emotion_params"]
        assert set(p) == {"pitch_shift", "range_shift", "rate_scale", "volume", "tilt"}
        shifts.setdefault(r["emotion"], []).append(p["pitch_shift"])
        spk = Speaker(**{k: r["voice"][k] for k in SPEAKER_FIELDS})
        drawn = spk.voice(p["pitch_shift"], p["range_shift"], p["rate_scale"], p["volume"])
        with_params = len(to_16k(engine().speak(r["text"], drawn)))
        plain = len(to_16k(engine().speak(r["text"], spk.voice())))
        n = round(r["duration"] * 16000)
        # eSpeak carries a little state from one utterance to the next: lengths agree to ~1%
        assert abs(with_params - n) <= 0.01 * n and abs(plain - n) > abs(with_params - n), r["id"]
    assert np.mean(shifts["happy"]) > np.mean(shifts["neutral"]) > np.mean(shifts["sad"])


def test_phone_map_makes_train_the_same_in_every_accent():
    us = phonemes("train", "en-us")
    scottish = phonemes("train", "en-gb-scotland")
    assert scottish != us  # t r eː n and t ɹ eɪ n
    assert common_phones(scottish, "en-gb-scotland") == common_phones(us, "en-us") == ["t", "ɹ", "eɪ", "n"]
    assert set(phone_map()) == set(ACCENTS)
    for accent in ACCENTS:  # the inventory is en-us's classes
        assert set(phone_map()[accent].values()) <= set(phone_map()["en-us"].values()) | {"ʲ"}, accent


def test_every_phone_of_the_suite_is_in_the_map(smoke_suite):
    table = phone_map()
    for m in _manifests(smoke_suite):
        for r in read_manifest(m):
            accents = {k: v["accent"] for k, v in r.get("voices", {}).items()}
            for a in r["alignment"]:
                accent = accents[a[3]] if len(a) == 4 else r["voice"]["accent"]
                assert a[2] in table[accent], (m, r["id"], accent, a[2])


@pytest.mark.slow
def test_stored_phone_map_is_what_the_builder_makes():
    """The data file is not stale: rebuilding it from the lexicon and eSpeak gives the same rows."""
    from evalkit.synth.phones import build_phone_map

    rows = {(r.accent, r.symbol): r.mapped for r in build_phone_map()}
    stored = {(a, s): m for a, table in phone_map().items() for s, m in table.items()}
    assert rows == stored


def _render_without_alignment(chunk) -> None:
    from dataclasses import replace

    from evalkit.synth.render import render_chunk

    render_chunk(replace(chunk, with_alignment=False))


def test_recording_ground_truth_leaves_the_audio_alone(smoke_suite, tmp_path):
    """Chunks rendered without alignment (as the suite's versions before it) give the same WAV bytes."""
    jobs = plan_jobs(tmp_path, SUITE_PROFILES["smoke"], 0, ("ks", "sd", "er"))
    chunks = [j.chunks[0] for j in jobs if j.split == "test"]
    assert all(c.with_alignment for c in chunks) and len(chunks) == 3
    ctx = mp.get_context("spawn")  # a fresh eSpeak per chunk, as the suite renders them
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        pool.map(_render_without_alignment, chunks)
    compared = 0
    for chunk in chunks:
        for item in chunk.items:
            rel = Path("wav") / chunk.split / f"{item.id}.wav"
            mine = (tmp_path / chunk.corpus / rel).read_bytes()
            theirs = (smoke_suite / chunk.corpus / rel).read_bytes()
            assert hashlib.sha256(mine).digest() == hashlib.sha256(theirs).digest(), item.id
            compared += 1
    assert compared == 3 + 24 + 16
