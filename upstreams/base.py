"""The upstream contract (s3prl's, kept small).

An upstream is an `nn.Module` whose

    forward(wavs: Tensor[B, S], wav_lens: Tensor[B]) -> (hidden: list[Tensor[B, T, D]], lens: Tensor[B])

takes 16 kHz float32 waveforms, zero-padded to the longest, with their lengths
in samples, and returns every hidden state plus the number of valid frames of
each utterance. `hidden[0]` is the input of the first context layer (after the
front-end / feature projection), `hidden[i]` the output of context layer i,
as in s3prl: a 12-layer Base model returns 13 tensors.

Attributes every upstream sets:
    frame_rate   frames per second of the hidden states (50 for 20 ms)
    num_layers   how many hidden states forward returns (len(hidden))
    hidden_size  D of the hidden states

One optional attribute, for upstreams that read the manifest rather than (only) the audio:
    record_keys  the manifest keys it reads from each utterance's record; empty (the default)
                 for every upstream that reads audio alone. When set, the evaluation runner
                 refuses, before any work, a manifest whose records lack one (naming the
                 manifest, record and key), and calls
                 forward(wavs, wav_lens, records=[record of each utterance, in batch order]).
                 The oracle (upstreams/oracle.py) is the one user: its frames are the suite's
                 ground truth.
"""

from __future__ import annotations

import torch
from torch import nn

from evalkit.core.audio import SAMPLE_RATE


class Upstream(nn.Module):
    frame_rate: float
    num_layers: int
    hidden_size: int
    record_keys: tuple[str, ...] = ()

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def frames_for(self, wav_lens: torch.Tensor) -> torch.Tensor:
        """Valid frame counts for sample counts (override when the front-end differs)."""
        return torch.div(wav_lens * self.frame_rate, SAMPLE_RATE, rounding_mode="floor").long()


def padding_mask(lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, T] bool mask, True where a frame is valid (not padding)."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]
