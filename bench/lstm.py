"""Packed-sequence nn.LSTM vs evalkit's PaddedLSTM (same maths) on CPU, forward + backward.

    python bench/lstm.py [--threads 1]

The SUPERB ASR/SF head's shape: BiLSTM 2x128 over 8 utterances of 330-400 frames
(fbank at 100 Hz, a 20-s batch). Prints the median of 7 timings for each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from evalkit.evaluation.heads import PaddedLSTM


def median_time(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--frames", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(8, args.frames, 128, requires_grad=True)
    lens = torch.linspace(args.frames, args.frames * 0.82, 8).long()
    ref = torch.nn.LSTM(128, 128, num_layers=2, bidirectional=True, batch_first=True)
    ours = PaddedLSTM(128, 128, num_layers=2)

    def packed():
        p = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        pad_packed_sequence(ref(p)[0], batch_first=True)[0].sum().backward()

    def padded():
        ours(x, lens).sum().backward()

    t_packed, t_padded = median_time(packed), median_time(padded)
    print(
        f"threads={args.threads} frames={args.frames}: packed nn.LSTM {t_packed:.3f} s, "
        f"PaddedLSTM {t_padded:.3f} s, ratio {t_packed / t_padded:.1f}x"
    )


if __name__ == "__main__":
    main()
