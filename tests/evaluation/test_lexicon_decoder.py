"""The lexicon CTC decoder (`LexiconDecoder`) and the ctc kind's `labels.lexicon`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evalkit.core.errors import ConfigError
from evalkit.evaluation.decoders import LexiconDecoder, greedy_decode
from evalkit.evaluation.kinds.ctc import BLANK, CTC, SPACE
from evalkit.evaluation.task import load_task_file

VOCAB = [BLANK, SPACE, *"acdehlorstw"]
WORDS = ["the", "cat", "sat", "hat", "world", "word", "hello", "held"]


def emissions(text: str, peak: float = 0.8) -> torch.Tensor:
    """[1, T, V] log-probs whose best path spells `text` (letters, with blanks between repeats)."""
    frames = []
    for i, ch in enumerate(text):
        sym = SPACE if ch == " " else ch
        if i and text[i - 1] == ch:
            frames.append(BLANK)
        frames += [sym, sym]
    frames += [BLANK]
    probs = torch.full((len(frames), len(VOCAB)), (1 - peak) / (len(VOCAB) - 1))
    for t, sym in enumerate(frames):
        probs[t, VOCAB.index(sym)] = peak
    return probs.log().unsqueeze(0)


def greedy_text(lp: torch.Tensor) -> str:
    path = greedy_decode(lp, torch.tensor([lp.shape[1]]))[0]
    return "".join(VOCAB[t] for t in path).replace(SPACE, " ").strip()


def test_misspellings_become_the_nearest_lexicon_words():
    decode = LexiconDecoder(WORDS, VOCAB, blank=BLANK, space=SPACE, beam=32)
    for said, meant in [("thw cat", "the cat"), ("the hwt sat", "the hat sat"), ("wold", "world")]:
        lp = emissions(said)
        assert greedy_text(lp) == said  # what greedy decoding reads
        assert decode(lp, torch.tensor([lp.shape[1]])) == [meant.split()]


def test_a_right_path_is_read_as_it_is_and_padding_is_ignored():
    decode = LexiconDecoder(WORDS, VOCAB, blank=BLANK, space=SPACE)
    a, b = emissions("hello world"), emissions("the cat")
    batch = torch.full((2, a.shape[1], len(VOCAB)), math.log(1 / len(VOCAB)))
    batch[0], batch[1, : b.shape[1]] = a[0], b[0]  # b padded with noise that must not be read
    assert decode(batch, torch.tensor([a.shape[1], b.shape[1]])) == [["hello", "world"], ["the", "cat"]]


def test_the_choice_matches_the_ctc_likelihood_of_each_word():
    """Single-word utterances: the decoded word is the lexicon word CTC finds likeliest (torch's loss)."""
    decode = LexiconDecoder(WORDS, VOCAB, blank=BLANK, space=SPACE, beam=64)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        lp = emissions(WORDS[int(torch.randint(len(WORDS), (1,), generator=gen))], peak=0.5)
        lp = (lp + 0.8 * torch.randn(lp.shape, generator=gen)).log_softmax(-1)
        n = torch.tensor([lp.shape[1]])
        nll = {
            w: torch.nn.functional.ctc_loss(
                lp.transpose(0, 1), torch.tensor([[VOCAB.index(c) for c in w]]), n, torch.tensor([len(w)])
            ).item()
            for w in WORDS
        }
        best = sorted(nll, key=nll.get)
        if nll[best[1]] - nll[best[0]] < 1.0:  # a near tie: best path and sum over paths may differ
            continue
        assert decode(lp, n) == [[best[0]]]


def test_words_it_cannot_spell_are_reported():
    decode = LexiconDecoder([*WORDS, "zebra", "cat"], VOCAB, blank=BLANK, space=SPACE)
    assert decode.dropped == ["zebra"]
    assert decode.size == len(WORDS)


def lexicon_task(tmp_path, labels: str):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "task.yaml").write_text(
        "name: t\nversion: 1\nkind: ctc\ncorpus: asr\n"
        f"labels: {labels}\n"
        "heads:\n  - {name: h, type: bilstm_ctc}\nmetrics:\n  - {name: wer, primary: true}\n"
        "lr_grid: [1.0e-3]\nsteps: {smoke: 2}\nbatch_seconds: 10\n"
    )
    return load_task_file(tmp_path / "t" / "task.yaml")


def test_the_suite_lexicon_holds_every_word_said_and_decodes(smoke_suite, tmp_path):
    lexicon = set((smoke_suite / "asr" / "lexicon.txt").read_text().split())
    said = {
        w
        for split in ("train", "dev", "test")
        for line in (smoke_suite / "asr" / f"{split}.jsonl").read_text().splitlines()
        for w in json.loads(line)["text"].split()
    }
    assert said <= lexicon and len(lexicon) > 3000
    kind = CTC(
        lexicon_task(tmp_path, "{unit: chars, lexicon: lexicon.txt, beam: 4}"), smoke_suite, frame_rate=50
    )
    assert kind.lexicon is not None and kind.lexicon.size > 3000
    text = kind.records("test")[0]["text"]
    lp = torch.full((1, 2 * len(text), len(kind.vocab)), -20.0)
    for t, ch in enumerate(text):  # each letter, then a blank: doubled letters survive
        lp[0, 2 * t, kind.index[SPACE if ch == " " else ch]] = 0.0
        lp[0, 2 * t + 1, 0] = 0.0
    assert kind.predict(lp.log_softmax(-1), torch.tensor([lp.shape[1]])) == [text]


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        ("{unit: chars, lexicon: missing.txt}", "missing.txt: the lexicon"),
        ("{unit: phones, lexicon: lexicon.txt}", "needs labels.unit chars"),
        ("{unit: chars, lexicon: ../asr/lexicon.txt}", "give a file name in the corpus folder"),
        ("{unit: chars, lexicon: lexicon.txt, beam: 0}", "labels.beam = 0"),
    ],
)
def test_bad_lexicon_settings_say_what_to_fix(smoke_suite, tmp_path, labels, says):
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        CTC(lexicon_task(tmp_path, labels), smoke_suite, frame_rate=50)


def test_a_lexicon_line_of_two_words_is_refused(smoke_suite, tmp_path):
    data = tmp_path / "data"
    (data / "asr").mkdir(parents=True)
    for f in (smoke_suite / "asr").glob("*.jsonl"):
        (data / "asr" / f.name).write_text(f.read_text())
    (data / "asr" / "lexicon.txt").write_text("cat\nthe cat\n")
    with pytest.raises(ConfigError, match=r"lexicon.txt: a lexicon lists one word per line; line 2"):
        CTC(lexicon_task(tmp_path, "{unit: chars, lexicon: lexicon.txt}"), data, frame_rate=50)
