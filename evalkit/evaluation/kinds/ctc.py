"""Sequence transcription with CTC: PR (phones), ASR (characters), SF (characters + slot tags).

`labels: {unit: phones | chars | slot_chars, min_frame_rate: HZ, lexicon: FILE, beam: N, vocab: train | s3prl}`.
Token 0 is the CTC blank. With `vocab: train` (the default) the vocabulary is the
train split's symbols (unseen symbols in dev/test are dropped from targets but still
count against the hypothesis in the metrics).

`vocab: s3prl` (with `layout: s3prl`) gives the output layer s3prl's fixed
vocabulary instead, symbols no target uses included, and maps a symbol outside it
to `<unk>` as s3prl's encoders do:
- phones: `<pad>` (the blank), `<eos>`, `<unk>` and the 71 symbols of
  downstream/ctc/vocab/phoneme.txt (SIL, SPN, stressed ARPAbet): 74 outputs
  (ctc/text.py:50-55, :287-300; the blank is `pad_idx`, ctc/expert.py:45-46);
- chars: fairseq's dictionary of downstream/asr/char.dict, `<s>` (the blank,
  asr/expert.py:97-100), `<pad>`, `</s>`, `<unk>` and its 28 characters in the
  file's order: 32 outputs;
- slot_chars: `<pad>` (the blank), `<eos>`, `<unk>`, the 28 characters of
  downstream/ctc/vocab/character.txt (space, A-Z, apostrophe; 28 lines, the last without a newline) and `B-x`, `E-x`
  for every slot type x of the corpus's `slots.txt` after its first line, in the
  file's order (ctc/text.py:95-104, :140-151); `evalkit prepare snips` writes it.

`lexicon` (unit chars): a file of the corpus folder listing the words its speech
may contain, one per line; predictions are then decoded by a beam search (width
`beam`, default 16) that spells only those words (`LexiconDecoder`), instead of
greedily. The synthetic suite writes `asr/lexicon.txt`, every word its grammar
can say.

`phones_key` (unit phones): the record key holding the phones (default `phones`;
the faithful PR reads `arpabet`, s3prl's g2p phones, which the librispeech
preparer writes when given s3prl's lexicons).

`layout: s3prl` spells targets as s3prl's encoders do (s3prl/downstream/ctc/
text.py, asr/dataset.py:116-121): an end-of-sentence token after every target
(PR, ASR, SF), ASR's characters with a word separator after the last word too,
and SF's slot tags right against the slot's first and last characters
(`B-x c h a r s E-x |`, not evalkit's `| B-x | c h a r s | E-x |`). The token
is dropped from predictions before scoring.

`min_frame_rate`: CTC needs at least one frame per label (two between repeated
labels). At 40 ms (Fast-HuBERT, the CPU recipes) half of the synthetic SF
utterances and a tenth of the ASR ones have more labels than frames, and CTC
gives them no gradient; upstreams slower than this rate get each frame repeated
in the head, as SUPERB's 50 Hz upstreams would need none.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from evalkit.core.errors import ConfigError
from evalkit.evaluation.decoders import LexiconDecoder, greedy_decode
from evalkit.evaluation.kinds.base import RunSettings, TaskKind, pad_targets
from evalkit.metrics.text import parse_tagged_slots, untag

BLANK = "<blank>"
SPACE = "|"
EOS = "<eos>"
UNK = "<unk>"
PAD = "<pad>"
UNITS = ("phones", "chars", "slot_chars")
LAYOUTS = ("evalkit", "s3prl")
VOCABS = ("train", "s3prl")
SLOTS_FILE = "slots.txt"
# s3prl's inventories (s3prl commit ec8064b); evalkit spells text in lower case and the word separator as SPACE
S3PRL_PHONEMES = tuple(  # downstream/ctc/vocab/phoneme.txt, in its order
    "SIL SPN AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH EH0 EH1 EH2 ER0 ER1 "
    "ER2 EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG OW0 OW1 OW2 OY0 OY1 OY2 P R S SH T TH UH0 UH1 UH2 "
    "UW0 UW1 UW2 V W Y Z ZH".split()
)
FAIRSEQ_CHARS = tuple("|etaonihsrdlumcwfgypbvk'xjqz")  # downstream/asr/char.dict, in its (frequency) order
S3PRL_CHARACTERS = (SPACE, *"abcdefghijklmnopqrstuvwxyz'")  # downstream/ctc/vocab/character.txt


def s3prl_slot_tokens(text: str, slots: list[dict]) -> list[str]:
    """s3prl's SF target (CharacterTextSlotEncoder.encode): characters with `B-type` right before a slot's
    first character and `E-type` right after its last, words separated by `|`; no EOS (added apart)."""
    starts: dict[int, list[str]] = {}
    ends: dict[int, list[str]] = {}
    for s in sorted(slots, key=lambda s: s["start"]):
        starts.setdefault(s["start"], []).append(f"B-{s['type']}")
        ends.setdefault(s["end"], []).append(f"E-{s['type']}")
    tokens: list[str] = []
    for i, c in enumerate(text):
        tokens += ends.get(i, []) + starts.get(i, [])
        tokens.append(SPACE if c == " " else c)
    tokens += ends.get(len(text), [])
    return _one_separator(tokens)


def slot_tagged_tokens(text: str, slots: list[dict]) -> list[str]:
    """Characters of `text` with `B-type` / `E-type` tokens around each slot value (SUPERB SF)."""
    tokens: list[str] = []
    pos = 0
    for s in sorted(slots, key=lambda s: s["start"]):
        tokens += _chars(text[pos : s["start"]])
        tokens += (
            [SPACE, f"B-{s['type']}", SPACE]
            + _chars(text[s["start"] : s["end"]])
            + [SPACE, f"E-{s['type']}", SPACE]
        )
        pos = s["end"]
    tokens += _chars(text[pos:])
    return _one_separator(tokens)


def _one_separator(tokens: list[str]) -> list[str]:
    """`tokens` with one word separator between words: runs collapsed, none first or last."""
    out: list[str] = []
    for t in tokens:
        if t == SPACE and (not out or out[-1] == SPACE):
            continue
        out.append(t)
    while out and out[-1] == SPACE:
        out.pop()
    return out


def _chars(text: str) -> list[str]:
    return [SPACE if c == " " else c for c in text]


class CTC(TaskKind):
    """`frame_rate`: the upstream's, which `min_frame_rate` is compared with."""

    def __init__(self, task, data, *, frame_rate: float, settings: RunSettings | None = None) -> None:
        super().__init__(task, data, frame_rate=frame_rate, settings=settings)
        self.unit = task.labels.get("unit", "chars")
        self.min_frame_rate = float(task.labels.get("min_frame_rate", 0))
        self.layout = task.labels.get("layout", "evalkit")
        self.phones_key = task.labels.get("phones_key", "phones")
        if self.unit not in UNITS:
            raise ConfigError(f"{task.source}: labels.unit {self.unit!r} is not one of {', '.join(UNITS)}.")
        if self.layout not in LAYOUTS:
            raise ConfigError(
                f"{task.source}: labels.layout {self.layout!r} is not one of {', '.join(LAYOUTS)}."
            )
        need = {"phones": self.phones_key, "chars": "text", "slot_chars": "slots"}[self.unit]
        train = self.records("train")
        if not all(need in r for r in train):
            how = (
                " `evalkit prepare librispeech` writes it when given s3prl's lexicons (--opt g2p_lexicon=...)."
                if need == "arpabet"
                else ""
            )
            raise ConfigError(
                f"{self.manifest('train')}: records lack key {need!r} needed by task {task.name!r}.{how}"
            )
        self.fixed_vocab = task.labels.get("vocab", "train") == "s3prl"
        self.vocab = self._s3prl_vocab() if self.fixed_vocab else self._train_vocab(train)
        self.index = {s: i for i, s in enumerate(self.vocab)}
        self.lexicon = self._lexicon_decoder()

    def _train_vocab(self, train: list[dict]) -> list[str]:
        return [BLANK, *sorted({t for r in train for t in self.tokens(r)})]

    def _s3prl_vocab(self) -> list[str]:
        """s3prl's fixed output vocabulary of this unit (see the module's docstring)."""
        where = f"{self.task.source or self.task.name}: labels.vocab"
        vocab = self.task.labels.get("vocab")
        if vocab not in VOCABS:
            raise ConfigError(f"{where} {vocab!r} is not one of {', '.join(VOCABS)}.")
        if self.layout != "s3prl":
            raise ConfigError(f"{where} s3prl needs labels.layout s3prl (s3prl's targets end with <eos>).")
        if self.unit == "phones":
            return [BLANK, EOS, UNK, *S3PRL_PHONEMES]
        if self.unit == "chars":
            return [BLANK, PAD, EOS, UNK, *FAIRSEQ_CHARS]
        return [BLANK, EOS, UNK, *S3PRL_CHARACTERS, *(f"{e}-{t}" for t in self._slot_types() for e in "BE")]

    def _slot_types(self) -> list[str]:
        """The slot types of the corpus's slots.txt, its first line (the outside tag, O) skipped as s3prl does."""
        path = self.folder / SLOTS_FILE
        if not path.is_file():
            raise ConfigError(
                f"{path}: missing; labels.vocab s3prl reads the slot types from it. `evalkit prepare snips` "
                "writes it: prepare the corpus again."
            )
        types = [t for line in path.read_text(encoding="utf-8").split("\n")[1:] if (t := line.strip())]
        known = set(types)
        unknown = sorted({s["type"] for r in self.records("train") for s in r["slots"]} - known)
        if unknown:
            raise ConfigError(
                f"{path}: lacks slot types of the train split ({', '.join(unknown[:5])}); s3prl could not "
                "encode them either. Prepare the corpus again so that the file lists every type."
            )
        return types

    def _lexicon_decoder(self) -> LexiconDecoder | None:
        """The decoder of `labels.lexicon`, None when the task decodes greedily."""
        name = self.task.labels.get("lexicon")
        if name is None:
            return None
        where = f"{self.task.source or self.task.name}: labels.lexicon"
        if self.unit != "chars":
            raise ConfigError(f"{where} needs labels.unit chars (it is {self.unit!r}); remove one of them.")
        if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            raise ConfigError(f"{where} = {name!r}: give a file name in the corpus folder {self.folder}.")
        path = self.folder / name
        if not path.is_file():
            raise ConfigError(
                f"{path}: the lexicon that {where} names is missing. A suite made by `evalkit synth` gets it "
                "when synth is run again on the same --out (it keeps everything already made)."
            )
        beam = self.task.labels.get("beam", 16)
        if not isinstance(beam, int) or isinstance(beam, bool) or beam < 1:
            raise ConfigError(
                f"{self.task.source or self.task.name}: labels.beam = {beam!r}: give a whole number >= 1."
            )
        try:
            words = [w for line in path.read_text(encoding="utf-8").splitlines() if (w := line.strip())]
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(
                f"{path}: cannot read the lexicon ({e}); it must be UTF-8 text, a word per line."
            ) from e
        bad = [w for w in words if len(w.split()) != 1]
        if bad or not words:
            raise ConfigError(
                f"{path}: a lexicon lists one word per line; "
                + (f"line {words.index(bad[0]) + 1} is {bad[0]!r}." if bad else "the file has no words.")
            )
        return LexiconDecoder(
            [w.lower() for w in words],
            self.vocab,
            blank=BLANK,
            space=SPACE,
            beam=beam,
        )

    def data_warnings(self) -> list[str]:
        if self.lexicon is None or not self.lexicon.dropped:
            return []
        d = self.lexicon.dropped
        return [
            f"{self.folder / self.task.labels['lexicon']}: {len(d)} of its words use characters the train "
            f"split never has, so they cannot be decoded (e.g. {', '.join(map(repr, d[:3]))})."
        ]

    def tokens(self, record: dict) -> list[str]:
        if self.unit == "phones":
            tokens = list(record[self.phones_key])
        elif self.unit == "chars":
            tokens = _chars(" ".join(record["text"].lower().split()))
            if self.layout == "s3prl":  # s3prl's ASR: "C H A R |" after every word, the last too
                tokens.append(SPACE)
        elif self.layout == "s3prl":
            tokens = s3prl_slot_tokens(record["text"].lower(), record["slots"])
        else:
            tokens = slot_tagged_tokens(record["text"].lower(), record["slots"])
        return tokens + [EOS] if self.layout == "s3prl" else tokens

    def upsample(self) -> int:
        """How many times the head repeats each frame to reach `min_frame_rate`."""
        return max(1, math.ceil(self.min_frame_rate / self.frame_rate - 1e-9))

    def head_args(self) -> dict[str, Any]:
        return {"vocab_size": len(self.vocab), "upsample": self.upsample()}

    def target(self, record: dict) -> list[int]:
        if self.fixed_vocab:  # s3prl's encoders map a symbol outside the vocabulary to <unk>
            return [self.index.get(t, self.index[UNK]) for t in self.tokens(record)]
        return [self.index[t] for t in self.tokens(record) if t in self.index]

    @staticmethod
    def _log_probs(out) -> torch.Tensor:
        return out[0] if isinstance(out, tuple | list) else out

    @staticmethod
    def _lens(out, lens: torch.Tensor) -> torch.Tensor:
        """The heads' own output lengths (they differ from the input's when frames are repeated)."""
        return out[1] if isinstance(out, tuple | list) else lens

    def loss(self, out, targets, lens, criterion=None) -> torch.Tensor:
        log_probs, lens = self._log_probs(out).float(), self._lens(out, lens)
        tgt, tgt_lens = pad_targets(targets)
        return F.ctc_loss(
            log_probs.transpose(0, 1),
            tgt.to(log_probs.device),
            lens,
            tgt_lens,
            blank=0,
            reduction="mean",
            zero_infinity=True,
        )

    def predict(self, out, lens) -> list:
        if self.lexicon is not None:
            return [" ".join(words) for words in self.lexicon(self._log_probs(out), self._lens(out, lens))]
        paths = greedy_decode(self._log_probs(out), self._lens(out, lens), blank=0)
        return [self.detokenize(self._symbols(path)) for path in paths]

    def _symbols(self, path: list[int]) -> list[str]:
        """A decoded path's symbols without <eos> (and fairseq's <pad>). With s3prl's vocabulary, PR and SF stop at
        the first <eos> as s3prl's encoders decode (ctc/text.py:59-70); ASR's fairseq string drops it."""
        symbols = []
        for s in (self.vocab[t] for t in path):
            if s == EOS and self.fixed_vocab and self.unit != "chars":
                break
            if s not in (EOS, PAD):
                symbols.append(s)
        return symbols

    def detokenize(self, toks: list[str]):
        if self.unit == "phones":
            return toks
        text = "".join(f" {t} " if t.startswith(("B-", "E-")) and len(t) > 2 else t for t in toks)
        return " ".join(text.replace(SPACE, " ").split())

    def reference(self, record: dict):
        if self.unit == "phones":
            return list(record[self.phones_key])
        if self.unit == "chars":
            return " ".join(record["text"].lower().split())
        return self.detokenize(slot_tagged_tokens(record["text"].lower(), record["slots"]))

    def score(self, split: str, preds: dict[str, Any], postprocess: dict | None = None):
        metrics = self.metrics()
        rows = []
        for r in self.records(split):
            ref, hyp = self.reference(r), preds[r["id"]]
            row = {"id": r["id"], "ref": ref, "pred": hyp}
            for m in metrics:
                if m.name in ("slot_type_f1", "slot_value_cer"):
                    s = m.update([parse_tagged_slots(ref)], [parse_tagged_slots(hyp)])[0]
                elif self.unit == "slot_chars":  # text metrics on the transcript without tags
                    s = m.update([untag(ref)], [untag(hyp)])[0]
                else:
                    s = m.update([ref], [hyp])[0]
                row[m.name] = m.item_score(s)
            rows.append(row)
        return metrics, rows
