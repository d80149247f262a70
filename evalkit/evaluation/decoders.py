"""From a head's output to predictions: greedy CTC decoding, cosine trial scoring."""

from __future__ import annotations

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
