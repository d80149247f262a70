"""WavLM's utterance mixing: overlapped speech for a masked-prediction objective.

With probability `prob`, an utterance of the batch gets a crop of another
utterance of the batch added at a random position: at most half its own length,
scaled to an energy ratio drawn uniformly in [-5, 5] dB (WavLM, Chen et al.
2022, section 3.2). The objective still predicts the targets of the primary,
clean utterance, so the encoder learns to attend to one speaker in an overlap,
which is what speaker diarization needs.

It draws from torch's global generator, so a resumed pre-training (whose
checkpoint restores that generator) mixes exactly as the uninterrupted one.
"""

from __future__ import annotations

import torch


def mix_utterances(
    wavs: torch.Tensor,
    wav_lens: torch.Tensor,
    prob: float,
    ratio_db: tuple[float, float] = (-5.0, 5.0),
    max_fraction: float = 0.5,
) -> torch.Tensor:
    """`wavs` [B, S] (zero-padded to `wav_lens`) with some utterances overlapped by a crop of another one.

    The result is a new tensor; the padding of each row stays zero and a row's own samples are
    only added to, never moved. With fewer than two utterances or `prob` 0 it is `wavs` itself.
    """
    n = wavs.shape[0]
    if prob <= 0 or n < 2:
        return wavs
    out = wavs.clone()
    chosen = torch.rand(n) < prob
    for i in torch.nonzero(chosen).flatten().tolist():
        j = int(torch.randint(n - 1, ()))
        j += j >= i  # another utterance
        own, other = int(wav_lens[i]), int(wav_lens[j])
        length = min(int(own * max_fraction * float(torch.rand(()))), other)
        if length < 1:
            continue
        src = int(torch.randint(other - length + 1, ()))
        dst = int(torch.randint(own - length + 1, ()))
        primary = wavs[i, :own]
        crop = wavs[j, src : src + length]
        ratio = ratio_db[0] + (ratio_db[1] - ratio_db[0]) * float(torch.rand(()))
        # scale the crop so that primary energy / crop energy = ratio (in dB), per sample
        p_energy = primary.pow(2).mean().clamp(min=1e-10)
        c_energy = crop.pow(2).mean().clamp(min=1e-10)
        scale = torch.sqrt(p_energy / (c_energy * 10 ** (ratio / 10)))
        out[i, dst : dst + length] += scale * crop
    return out
