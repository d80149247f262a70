"""DistilHuBERT vs its teacher: parameters and extraction time (the paper: 75% smaller, 73% faster).

The student is `configs/pretrain/distilhubert-<size>.yaml`'s encoder (2 layers), the teacher
`hubert-<size>.yaml`'s (the Fast-HuBERT fbank front-end at every size: evalkit's teacher); both
randomly initialised (time does not depend on the weights). Parameters are the encoder's, what
`evalkit eval` runs (the student's prediction heads serve pre-training only). Extraction is a
forward pass over a batch of noise in inference mode, fp32, every layer returned.

    python -m bench distill [--quick]
"""

from __future__ import annotations

import torch
import yaml

from bench.harness import aa_check, ratio, table, target, time_rounds
from evalkit.core.audio import SAMPLE_RATE
from upstreams.encoder import SSLEncoder

NAME = "distill"
TITLE = "DistilHuBERT vs its teacher"
CONFIGS = "configs/pretrain"
# the paper's claims for the Base size (Chang et al., 2022): 23.49 M of 94.68 M parameters, 73% less time
TARGETS = {"parameter share": ("<=", 0.25), "extraction speed-up": (">=", 3.7)}


def encoder(recipe: str) -> SSLEncoder:
    torch.manual_seed(0)
    return SSLEncoder(**yaml.safe_load(open(f"{CONFIGS}/{recipe}.yaml"))["encoder"]).eval()


def extractor(model: SSLEncoder, batch: int, seconds: float):
    wavs = torch.randn(batch, int(seconds * SAMPLE_RATE)) * 0.1
    lens = torch.full((batch,), wavs.shape[1])

    def extract() -> None:
        with torch.inference_mode():
            model(wavs, lens)

    return extract


def run(quick: bool = False) -> dict:
    sizes = ["tiny", "small"] if quick else ["tiny", "small", "base"]
    batch, seconds, reps = (2, 4.0, 5) if quick else (4, 10.0, 7)
    rows = []
    for size in sizes:
        teacher, student = encoder(f"hubert-{size}"), encoder(f"distilhubert-{size}")
        params = {
            n: sum(p.numel() for p in m.parameters()) for n, m in (("teacher", teacher), ("student", student))
        }
        times = time_rounds(
            {"teacher": extractor(teacher, batch, seconds), "student": extractor(student, batch, seconds)},
            reps,
        )
        r = ratio(times, "teacher", "student")
        rows.append(
            {
                "size": size,
                "teacher layers": teacher.num_layers - 1,
                "student layers": student.num_layers - 1,
                "teacher params (M)": params["teacher"] / 1e6,
                "student params (M)": params["student"] / 1e6,
                "parameter share": params["student"] / params["teacher"],
                "teacher s/batch": r.a_median_s,
                "student s/batch": r.b_median_s,
                "extraction speed-up": r.ratio,
                "speed-up 95% CI": [round(r.low, 3), round(r.high, 3)],
            }
        )
    largest = sizes[-1]
    aa = aa_check(lambda: extractor(encoder(f"hubert-{largest}"), batch, seconds), reps)
    judged = rows[-1]  # the targets are the paper's, for the Base size (quick: the largest it runs)
    targets = [
        target(f"{what} ({judged['size']})", op, value, judged[what]) for what, (op, value) in TARGETS.items()
    ]
    columns = ["size", "teacher layers", "student layers", "teacher params (M)", "student params (M)",
               "parameter share", "teacher s/batch", "student s/batch", "extraction speed-up"]  # fmt: skip
    return {
        "title": TITLE,
        "setup": f"batch {batch} x {seconds:g} s of noise, fp32, inference mode, median of {reps} rounds",
        "rows": rows,
        "targets": targets,
        "aa": aa,
        "markdown": table(rows, columns),
    }
