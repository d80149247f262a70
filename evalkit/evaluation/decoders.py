"""From a head's output to predictions: greedy and lexicon CTC decoding, cosine trial scoring."""

from __future__ import annotations

import os
import tempfile

import torch
import torch.nn.functional as F


def greedy_decode(log_probs: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path per utterance: argmax per valid frame, collapse repeats, drop blanks."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for path, n in zip(best, lens.cpu().tolist()):
        path = path[: int(n)]
        if len(path) == 0:
            out.append([])
            continue
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        out.append([t for t in path[keep].tolist() if t != blank])
    return out


def cosine_score(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Verification score of trial pairs: cosine of embeddings [..., E] x [..., E] -> [...]."""
    return F.cosine_similarity(a, b, dim=-1)


class LexiconDecoder:
    """CTC beam search that spells only words of a lexicon (flashlight's decoder, through torchaudio).

    A character CTC head must learn a language's spelling from its training transcripts; with little
    labelled speech most of its word errors are misspellings of words it heard right (measured on the
    synthetic suite's ASR with perfect phone features: CER 7.7%, WER 32.9%). Decoding against the
    words a corpus can contain, as a closed-vocabulary task does (and SUPERB's ASR with its LibriSpeech
    lexicon and LM), scores what the representation heard rather than the head's orthography. No
    language model: every word of the lexicon is equally likely, so the score comes from the acoustics.

    `vocab`: the head's output symbols in order (`blank` among them); `space`: the word separator
    symbol. Words that need a symbol `vocab` lacks cannot be spelled and are left out (`dropped`).
    """

    def __init__(self, words: list[str], vocab: list[str], *, blank: str, space: str, beam: int = 16) -> None:
        # torchaudio.models.decoder needs flashlight-text, a dependency of evalkit; imported here
        # because it is only needed by tasks that decode against a lexicon
        from torchaudio.models.decoder import ctc_decoder

        known = set(vocab)
        spelled = {w: list(w) for w in dict.fromkeys(words)}
        self.dropped = sorted(w for w, chars in spelled.items() if not chars or not set(chars) <= known)
        kept = [w for w in spelled if w not in set(self.dropped)]
        with tempfile.NamedTemporaryFile("w", suffix=".lexicon", encoding="utf-8", delete=False) as f:
            f.writelines(f"{w} {' '.join(spelled[w])} {space}\n" for w in kept)
        try:
            self._decode = ctc_decoder(
                lexicon=f.name,
                tokens=list(vocab),
                lm=None,
                beam_size=beam,
                blank_token=blank,
                sil_token=space,
                unk_word="<unk>",
                word_score=0.0,
                sil_score=0.0,
            )
        finally:
            os.unlink(f.name)
        self.size = len(kept)

    def __call__(self, log_probs: torch.Tensor, lens: torch.Tensor) -> list[list[str]]:
        """The best word sequence of each utterance (log_probs [B, T, V], lens [B])."""
        hyps = self._decode(log_probs.detach().float().cpu().contiguous(), lens.cpu().to(torch.int32))
        return [list(h[0].words) if h else [] for h in hyps]
