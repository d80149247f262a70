"""evalkit's native encoder vs transformers on the same weights: extraction time, fp32 and bf16.

A random wav2vec 2.0 Base encoder (`wav2vec2-base.yaml`: waveform CNN, 12 x 768, post-LN) is exported
with `upstreams.export.export_hf` (what `evalkit export --format hf` writes) and loaded by transformers'
`Wav2Vec2Model`; both extract every layer's hidden states of the same batch of equal-length utterances
in inference mode (no padding, so both compute the same thing: the largest difference between their
last layers is reported). Target: evalkit at least as fast (>= 1.0x). bf16 is timed only where the
machine computes it natively (a CUDA GPU, a CPU with AVX-512 BF16 or AMX): elsewhere torch emulates it,
minutes a round, and the ratio would time the emulation, not either library.

    python -m bench transformers_parity [--quick]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import yaml

from bench.harness import aa_check, noise_batch, ratio, table, target, time_rounds
from evalkit.pretraining.distributed import native_bf16
from upstreams.encoder import SSLEncoder
from upstreams.export import export_hf

NAME = "transformers_parity"
TITLE = "evalkit vs transformers, same weights (extraction)"
TARGET = 1.0


def native() -> SSLEncoder:
    torch.manual_seed(0)
    return SSLEncoder(**yaml.safe_load(open("configs/pretrain/wav2vec2-base.yaml"))["encoder"]).eval()


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def extract(fn, bf16: bool):
    device = DEVICE

    def run() -> None:
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            fn()

    return run


def run(quick: bool = False) -> dict:
    from transformers import Wav2Vec2Model

    n, seconds, reps = (2, 2.0, 3) if quick else (4, 8.0, 5)
    batch = noise_batch(n, seconds)
    ours = native()
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(ours, Path(tmp), "wav2vec2", "bench")
        theirs = Wav2Vec2Model.from_pretrained(tmp).eval()
    sides = {
        "transformers": lambda: theirs(batch.wavs, output_hidden_states=True).hidden_states,
        "evalkit": lambda: ours(batch.wavs, batch.wav_lens)[0],
    }
    with torch.inference_mode():
        difference = float((sides["transformers"]()[-1] - sides["evalkit"]()[-1]).abs().max())
    rows = []
    precisions = (False, True) if native_bf16(torch.device(DEVICE)) else (False,)
    for bf16 in precisions:
        times = time_rounds({k: extract(fn, bf16) for k, fn in sides.items()}, reps)
        r = ratio(times, "transformers", "evalkit")
        rows.append(
            {
                "precision": "bf16" if bf16 else "fp32",
                "transformers s/batch": r.a_median_s,
                "evalkit s/batch": r.b_median_s,
                "speed-up": r.ratio,
                "95% CI": [round(r.low, 3), round(r.high, 3)],
                "max abs difference": difference,
            }
        )
    aa = aa_check(lambda: extract(sides["evalkit"], False), reps)
    return {
        "title": TITLE,
        "setup": f"batch {n} x {seconds:g} s of noise, every layer, median of {reps} rounds"
        + ("" if len(precisions) == 2 else "; no bf16 row: this machine emulates bf16"),
        "rows": rows,
        "targets": [
            target(f"speed-up over transformers ({row['precision']})", ">=", TARGET, row["speed-up"])
            for row in rows
        ],
        "aa": aa,
        "markdown": table(
            rows, ["precision", "transformers s/batch", "evalkit s/batch", "speed-up", "max abs difference"]
        ),
    }
