"""The training settings s3prl's recipes need: Adam at a constant rate, clipping, batches of
utterances with gradient accumulation, class-balanced sampling, SpecAugment."""

from __future__ import annotations

import copy
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from evalkit.core.errors import ConfigError
from evalkit.core.manifest import write_manifest
from evalkit.evaluation.specaug import draw
from evalkit.evaluation.task import KINDS, BatchConfig, SpecAugConfig, load_task_file
from evalkit.evaluation.trainer import build_runs, make_optimizer, train_step, utterance_batches

ROOT = Path(__file__).resolve().parents[2]


def _task(tmp_path, **changes):
    base = (ROOT / "tasks" / "ks" / "task.yaml").read_text()
    extra = "".join(f"{k}: {v}\n" for k, v in changes.items())
    path = tmp_path / "ks_recipe.yaml"
    path.write_text(base + extra)
    return load_task_file(path)


def test_adam_at_a_constant_rate(tmp_path):
    task = _task(tmp_path, optimizer="{name: adam}", schedule="constant")
    params = [torch.nn.Parameter(torch.ones(3))]
    opt, sched = make_optimizer(task, [{"params": params, "lr": 1e-2}], steps=100)
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["weight_decay"] == 0.0
    assert sched is None
    default, sched = make_optimizer(_task(tmp_path), [{"params": params, "lr": 1e-2}], steps=100)
    assert type(default) is torch.optim.AdamW and sched is not None
    assert default.param_groups[0]["lr"] == pytest.approx(1e-2 / 5)  # warm-up: 5 steps of 100


def test_bad_recipe_keys_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="schedule"):
        _task(tmp_path, schedule="cosine")
    with pytest.raises(ConfigError, match="batch.accumulate"):
        _task(tmp_path, batch="{utterances: 8, accumulate: 0}")
    with pytest.raises(ConfigError, match="time_mask_width"):
        _task(tmp_path, specaug="{time_mask_width: [40, 0]}")
    asr = (ROOT / "tasks" / "asr" / "task.yaml").read_text()
    (tmp_path / "asr.yaml").write_text(asr + "sampler: balanced\n")
    with pytest.raises(ConfigError, match="classification"):
        load_task_file(tmp_path / "asr.yaml")


def test_utterance_batches():
    ids = [f"u{i}" for i in range(100)]
    durations = {u: float(i % 17) for i, u in enumerate(ids)}
    rng = random.Random(0)
    plain = utterance_batches(ids, durations, BatchConfig(utterances=8), rng)
    assert sorted(u for b in plain for u in b) == sorted(ids) and [len(b) for b in plain] == [8] * 12 + [4]
    buckets = utterance_batches(ids, durations, BatchConfig(utterances=8, bucketing=True), rng)
    ordered = sorted(ids, key=durations.__getitem__)
    for b in buckets:  # each bucket is a run of neighbours in duration order
        at = ordered.index(b[0])
        assert b == ordered[at : at + len(b)]
    # 90 of class a, 10 of class b: drawn with replacement, each class about half of the draws
    classes = {u: "a" if i < 90 else "b" for i, u in enumerate(ids)}
    drawn = Counter(
        classes[u]
        for _ in range(40)
        for b in utterance_batches(ids, durations, BatchConfig(utterances=10), rng, classes)
        for u in b
    )
    assert sum(drawn.values()) == 4000 and 0.45 < drawn["b"] / 4000 < 0.55


def test_gradient_accumulation_equals_one_batch_of_all(tmp_path):
    """Two accumulated batches of 4 take the step that one batch of 8 takes (the loss is a mean)."""
    task = _task(tmp_path)
    for split in ("train", "dev", "test"):
        write_manifest(
            tmp_path / "ks" / f"{split}.jsonl",
            [
                {
                    "id": f"{split}{i}",
                    "path": "x.wav",
                    "duration": 1.0,
                    "speaker": "s",
                    "label": "yes" if i else "no",
                }
                for i in range(2)
            ],
        )
    kind = KINDS.get("classification")(task, tmp_path)
    (run,) = build_runs(kind, 3, 16, [1e-2], heads=task.heads[:1], seed=0)
    twin = copy.deepcopy(run)
    hidden, lens = torch.randn(3, 8, 5, 16), torch.tensor([5, 4, 3, 5, 2, 5, 5, 1])
    targets = [kind.target(kind.records("train")[i % 2]) for i in range(8)]
    sgd = torch.optim.SGD(run.modules().parameters(), lr=0.1)
    train_step(kind, [run], sgd, [(hidden, lens, targets)], False)
    sgd = torch.optim.SGD(twin.modules().parameters(), lr=0.1)
    halves = [(hidden[:, :4], lens[:4], targets[:4]), (hidden[:, 4:], lens[4:], targets[4:])]
    train_step(kind, [twin], sgd, halves, False, accumulate=2)
    for a, b in zip(run.modules().parameters(), twin.modules().parameters()):
        torch.testing.assert_close(a, b)


def test_specaug_masks_and_warp():
    cfg = SpecAugConfig(
        time_warp=5, freq_mask_width=[0, 50], freq_masks=4, time_mask_width=[0, 40], time_masks=2
    )
    torch.manual_seed(0)
    lens = torch.tensor([300, 120, 8])
    x = torch.randn(3, 300, 64)
    x[1, 120:] = 0
    x[2, 8:] = 0
    aug = draw(cfg, lens, 300, 64)
    assert aug.warps[2] is None  # 8 frames: too short for a window of 5 on each side
    for n, (valid, centre, warped) in zip((300, 120), aug.warps[:2]):
        assert valid == n and 5 <= centre < n - 5 and centre - 5 < warped <= centre + 5
    for mask, count, high in ((aug.freq_mask, 4, 50), (aug.time_mask, 2, 40)):
        assert mask.shape[0] == 3 and (mask.sum(1) <= count * (high - 1)).all()
    y = aug(x)
    assert y.shape == x.shape
    masked = aug.time_mask[:, :, None] | aug.freq_mask[:, None, :]
    assert (y[masked] == 0).all()
    assert (y[1, 120:] == 0).all()  # padding stays zero
    keep = ~masked[2]  # not warped: the unmasked values are the input's
    torch.testing.assert_close(y[2][keep], x[2][keep])
    # the warp maps the first `centre` frames onto `warped` frames: the ends stay where they were
    valid, centre, warped = aug.warps[0]
    plain = draw(SpecAugConfig(time_warp=5, freq_masks=0, time_masks=0), lens[:1], 300, 64)
    plain.warps = [aug.warps[0]]
    z = plain(x[:1])
    torch.testing.assert_close(z[0, 0], x[0, 0], atol=0.05, rtol=0)
    torch.testing.assert_close(z[0, 299], x[0, 299], atol=0.05, rtol=0)


def test_specaug_gives_every_run_the_same_choices():
    torch.manual_seed(1)
    cfg = SpecAugConfig()
    aug = draw(cfg, torch.tensor([100, 100]), 100, 80)
    x = torch.randn(2, 100, 80, requires_grad=True)
    a, b = aug(x), aug(x)
    torch.testing.assert_close(a, b)
    a.sum().backward()  # gradients flow through the warp
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_s3prl_target_layouts():
    """s3prl's CTC targets (downstream/ctc/text.py, asr/dataset.py): an end token after every target, a
    word separator after ASR's last word, SF's tags right against the slot's characters."""
    from evalkit.evaluation.kinds.ctc import EOS, SPACE, s3prl_slot_tokens, slot_tagged_tokens

    text, slots = "play music by adele", [{"start": 14, "end": 19, "type": "artist"}]
    # CharacterTextSlotEncoder.encode on "BOS play music by adele EOS / O O O O B-artist O":
    # play | music | by | B-artist a d e l e E-artist, then <eos>
    assert s3prl_slot_tokens(text, slots) == [
        *"play",
        SPACE,
        *"music",
        SPACE,
        *"by",
        SPACE,
        "B-artist",
        *"adele",
        "E-artist",
    ]
    assert slot_tagged_tokens(text, slots)[-10:] == [SPACE, "B-artist", SPACE, *"adele", SPACE, "E-artist"]
    two = [{"start": 0, "end": 4, "type": "a"}, {"start": 5, "end": 10, "type": "b"}]
    assert s3prl_slot_tokens("play music", two) == ["B-a", *"play", "E-a", SPACE, "B-b", *"music", "E-b"]
    assert EOS == "<eos>"


def _sox_silence_reference(
    x: np.ndarray, need: int = 1600, window: int = 320, gain_db: float = -3.0
) -> np.ndarray:
    """sox's silence effect (src/silence.c: sox_silence_flow and drain, one channel) sample by sample,
    for `silence 1 0.1 0.1% -1 0.1 0.1%` after `gain -3`: the reference `sox_silence` is checked against."""
    gain = 10 ** (gain_db / 20)
    squares, current, rms_sum = [0.0] * window, 0, 0.0
    out, start_hold, stop_hold, mode = [], [], [], "trim"

    def above(sample: float) -> bool:
        rms = int(math.sqrt((rms_sum - squares[current] + sample * sample) / window))  # compute_rms
        word = (rms + 2**15) >> 16  # SOX_SAMPLE_TO_SIGNED_WORD
        return abs(word) / 32767 * 100 >= 0.1

    for i, v in enumerate(x):
        sample = float(v) * gain * 2**31
        loud = above(sample)
        rms_sum += sample * sample - squares[current]  # update_rms
        squares[current], current = sample * sample, (current + 1) % window
        if mode == "trim":
            if not loud:
                start_hold = []
                continue
            start_hold.append(i)
            if len(start_hold) >= need:
                out += start_hold
                start_hold, mode = [], "copy"
        elif loud:
            out += stop_hold + [i]  # a short silence is flushed with the sound after it
            stop_hold = []
        else:
            stop_hold.append(i)
            if len(stop_hold) >= need:  # -1: drop it, clear the window, look for sound again
                stop_hold, mode = [], "trim"
                squares, current, rms_sum = [0.0] * window, 0, 0.0
    if mode == "copy":
        out += stop_hold  # drain
    return x[np.array(out, dtype=np.int64)]


def test_sox_silence_is_sox_silence_effect():
    """s3prl's ASV reads audio through sox's `gain -3.0` and `silence 1 0.1 0.1% -1 0.1 0.1%`: leading
    silence, every inner silence of 0.1 s and more, and sound too short to count, all go."""
    from evalkit.core.audio import sox_silence

    rng = np.random.default_rng(0)

    def part(seconds: float, level: float) -> np.ndarray:
        return (level * rng.uniform(-1, 1, int(seconds * 16000))).astype(np.float32)

    speech = lambda s: part(s, 0.3)  # noqa: E731
    quiet = lambda s: part(s, 0.0002)  # noqa: E731 - under 0.1% of full scale
    cases = [
        np.concatenate([quiet(0.3), speech(0.5), quiet(0.4), speech(0.6), quiet(0.05)]),
        np.concatenate([speech(0.05), quiet(0.2), speech(0.3), quiet(0.08), speech(0.2)]),  # short bits
        np.concatenate([quiet(1.0)]),
        np.concatenate([speech(0.08), quiet(0.5)]),  # sound shorter than 0.1 s only
    ]
    for x in cases:
        got, ref = sox_silence(x), _sox_silence_reference(x)
        assert len(got) == len(ref) and np.array_equal(got, ref)
    first = sox_silence(cases[0])
    # leading 0.3 s go; 0.5 s of sound, the 20 ms the RMS window takes to fall, then the 0.4 s pause
    # goes; 0.6 s of sound and the 50 ms tail stay
    assert abs(len(first) - int((0.5 + 0.02 + 0.6 + 0.05) * 16000)) < 2
    assert len(sox_silence(cases[2])) == 0 and len(sox_silence(cases[3])) == 0


def test_crops_trim_and_cut_a_random_window():
    from evalkit.core.audio import SAMPLE_RATE, AudioFilter, Crop

    samples = np.arange(3 * SAMPLE_RATE, dtype=np.float32) / (3 * SAMPLE_RATE)
    crop = Crop(1.0, random.Random(0))
    starts = {float(crop(samples)[0]) for _ in range(20)}
    assert len(starts) > 10 and max(starts) <= 2 / 3  # random windows inside the audio
    assert all(len(crop(samples)) == SAMPLE_RATE for _ in range(5))
    assert len(crop(samples[:100])) == 100  # shorter than the window: whole
    silence, loud = np.zeros(8000, np.float32), np.full(16000, 0.5, np.float32)
    quiet = AudioFilter(remove_silence=True)
    trimmed = Crop(8.0, random.Random(0), quiet)(np.concatenate([silence, loud]))
    assert len(trimmed) == 16000
    assert len(Crop(8.0, random.Random(0), quiet)(silence)) == 8000  # all silence: kept whole
    softer = Crop(8.0, random.Random(0), AudioFilter(gain_db=-3.0))(loud)  # sox's gain -3: x 0.708
    assert np.allclose(softer, loud * 10 ** (-3 / 20)) and AudioFilter(gain_db=-3.0).name == "gain-3"
    assert AudioFilter().name is None and AudioFilter(-3.0, True).name == "gain-3_sox_silence"


def test_training_crops_run_the_upstream_on_each_crop(tmp_path):
    """With `crop:`, training reads every utterance as a fresh random window through the upstream (features
    on the fly), and utterances under `min_seconds` leave the training set."""
    import numpy as np

    from evalkit.core.audio import Crop, save_wav
    from evalkit.evaluation.runner import OnTheFlyFeatures
    from evalkit.evaluation.trainer import training_records
    from upstreams.load import load_upstream

    records = []
    for i, seconds in enumerate((3.0, 1.5, 0.5)):
        save_wav(
            tmp_path / "ks" / f"u{i}.wav", np.random.default_rng(i).uniform(-0.3, 0.3, int(seconds * 16000))
        )
        records.append(
            {"id": f"u{i}", "path": f"u{i}.wav", "duration": seconds, "speaker": "s", "label": "yes"}
        )
    for split in ("train", "dev", "test"):
        write_manifest(tmp_path / "ks" / f"{split}.jsonl", records)
    fly = OnTheFlyFeatures(load_upstream("fbank"), tmp_path / "ks" / "train.jsonl")
    whole = fly.batch(["u0", "u1", "u2"])[1].tolist()
    cropped = fly.batch(["u0", "u1", "u2"], crop=Crop(1.0, random.Random(0)))[1].tolist()
    assert whole[0] > 250 and cropped[0] < 110 and cropped[1] < 110 and cropped[2] == whole[2]
    task = _task(tmp_path, crop="{seconds: 1.0, min_seconds: 1.0}")
    task.corpus = "ks"
    assert [r["id"] for r in training_records(KINDS.get("classification")(task, tmp_path))] == ["u0", "u1"]


def test_silence_removed_before_the_upstream_is_its_own_cache(tmp_path):
    """`remove_silence` (s3prl's ASV): dev and test are cached from the audio sox's silence effect leaves,
    under a cache folder of their own; on the fly, the same."""
    from evalkit.core.audio import AudioFilter, save_wav
    from evalkit.evaluation.features import cache_dir, extract
    from evalkit.evaluation.runner import OnTheFlyFeatures
    from upstreams.load import load_upstream

    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(8000), rng.uniform(-0.3, 0.3, 16000)]).astype(np.float32)
    save_wav(tmp_path / "c" / "u.wav", audio)
    write_manifest(
        tmp_path / "c" / "test.jsonl", [{"id": "u", "path": "u.wav", "duration": 1.5, "speaker": "s"}]
    )
    up, manifest = load_upstream("fbank"), tmp_path / "c" / "test.jsonl"
    whole = extract(up, manifest, tmp_path / "cache", progress=False)
    quiet = AudioFilter(remove_silence=True)
    trimmed = extract(up, manifest, tmp_path / "cache", progress=False, audio=quiet)
    assert cache_dir(tmp_path / "cache", up, manifest) != cache_dir(
        tmp_path / "cache", up, manifest, audio=quiet
    )
    assert whole.lengths["u"] > 140 and 90 < trimmed.lengths["u"] < 110  # the leading 0.5 s are gone
    fly = OnTheFlyFeatures(up, manifest, audio=quiet)
    torch.testing.assert_close(fly.get("u"), trimmed.get("u"), atol=0.05, rtol=0.02)  # bf16 cache


def test_the_minimum_length_is_read_after_the_silence_goes(tmp_path):
    """s3prl's ASV drops training utterances under 2 s after its sox effects: a 2.5 s file with a 1 s pause
    inside is 1.5 s of audio and goes; a 2.5 s file of sound stays."""
    from evalkit.core.audio import save_wav
    from evalkit.evaluation.trainer import training_records

    rng = np.random.default_rng(0)
    sound = lambda s: rng.uniform(-0.3, 0.3, int(s * 16000))  # noqa: E731
    save_wav(tmp_path / "ks" / "paused.wav", np.concatenate([sound(0.75), np.zeros(16000), sound(0.75)]))
    save_wav(tmp_path / "ks" / "spoken.wav", sound(2.5))
    records = [
        {"id": u, "path": f"{u}.wav", "duration": 2.5, "speaker": "s", "label": "yes"}
        for u in ("paused", "spoken")
    ]
    for split in ("train", "dev", "test"):
        write_manifest(tmp_path / "ks" / f"{split}.jsonl", records)
    kept = {}
    for remove in (False, True):
        task = _task(tmp_path, crop="{seconds: 8.0, min_seconds: 2.0}", remove_silence=str(remove).lower())
        task.corpus = "ks"
        kept[remove] = [r["id"] for r in training_records(KINDS.get("classification")(task, tmp_path))]
    assert kept == {False: ["paused", "spoken"], True: ["spoken"]}


def _ctc_corpus(root: Path, corpus: str, records: list[dict], slots_txt: str | None = None) -> None:
    for split in ("train", "dev", "test"):
        write_manifest(root / corpus / f"{split}.jsonl", records)
    if slots_txt is not None:
        (root / corpus / "slots.txt").write_text(slots_txt)


def test_s3prl_vocabularies_are_s3prls_fixed_outputs(tmp_path):
    """`labels.vocab: s3prl`: the output layer is s3prl's whole vocabulary (PR 74, ASR 32, SF 31 + 2 per slot
    type), whatever the train split holds; a symbol outside it is <unk> as s3prl encodes it, and decoding
    stops at <eos> (PR, SF)."""
    from evalkit.evaluation.kinds.ctc import BLANK, CTC, EOS, SPACE, UNK
    from evalkit.evaluation.task import load_task

    rec = {"id": "u", "path": "u.wav", "duration": 1.0, "speaker": "s"}
    _ctc_corpus(tmp_path, "librispeech", [{**rec, "text": "Yes no", "arpabet": ["Y", "EH1", "S", "XX"]}])
    pr = CTC(load_task("pr_superb"), tmp_path, frame_rate=50)
    assert len(pr.vocab) == 74 and pr.vocab[:3] == [BLANK, EOS, UNK] and pr.vocab[3:5] == ["SIL", "SPN"]
    record = pr.records("train")[0]
    assert [pr.vocab[i] for i in pr.target(record)] == ["Y", "EH1", "S", UNK, EOS]
    path = [pr.index[s] for s in ("Y", "EH1", EOS, "S")]
    assert pr._symbols(path) == ["Y", "EH1"]  # s3prl's decode breaks at <eos>

    asr = CTC(load_task("asr_superb"), tmp_path, frame_rate=50)
    assert len(asr.vocab) == 32 and asr.vocab[4:8] == [SPACE, "e", "t", "a"]
    assert [asr.vocab[i] for i in asr.target(record)] == [*"yes", SPACE, *"no", SPACE, EOS]

    slots = [{"type": "artist", "value": "adele", "start": 5, "end": 10}]
    _ctc_corpus(tmp_path, "snips", [{**rec, "text": "play adele", "slots": slots}], "O\nartist\ncity")
    sf = CTC(load_task("sf_superb"), tmp_path, frame_rate=50)
    assert len(sf.vocab) == 3 + 28 + 4 and sf.vocab[-4:] == ["B-artist", "E-artist", "B-city", "E-city"]
    assert sf.vocab[3] == SPACE and sf.vocab[3:].count(SPACE) == 1
    (tmp_path / "snips" / "slots.txt").write_text("O\ncity\n")
    with pytest.raises(ConfigError, match=r"slots\.txt: lacks slot types of the train split \(artist\)"):
        CTC(load_task("sf_superb"), tmp_path, frame_rate=50)
    (tmp_path / "snips" / "slots.txt").unlink()
    with pytest.raises(ConfigError, match=r"slots\.txt: missing.*evalkit prepare snips"):
        CTC(load_task("sf_superb"), tmp_path, frame_rate=50)
