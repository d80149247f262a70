"""Fast-HuBERT's front-end: pre-training step throughput with the fbank 40 ms front-end vs the waveform CNN.

Two comparisons of one HuBERT pre-training step (forward, backward, AdamW) on the same batch of noise:
1. the same recipe (`hubert-<size>.yaml`: encoder, objective) with evalkit's fbank front-end (80 mel bins
   subsampled to 40 ms) against the paper's waveform CNN (512 channels, 20 ms): what the front-end alone
   buys, at the tiny, small and Base sizes;
2. the user's real choice at the Base size: evalkit's Fast-HuBERT Base step against transformers'
   `HubertModel` Base (CNN front-end) with a HuBERT-style masked-prediction loss (a projection to 256-d
   and cross-entropy over 100 cluster embeddings on the masked frames). Fast-HuBERT reports 5.2x for
   its whole pre-training run on GPUs.
Throughput is seconds of audio per second of step; fp32 on a CPU without native bf16 (bf16 elsewhere).

    python -m bench frontend [--quick]
"""

from __future__ import annotations

import torch

from bench.harness import (
    aa_check,
    give_random_targets,
    noise_batch,
    objective_from_recipe,
    ratio,
    table,
    target,
    time_rounds,
    training_step,
    with_frontend,
)

NAME = "frontend"
TITLE = "Fast-HuBERT front-end (fbank 40 ms) vs the waveform CNN (20 ms)"
CNN = {"kind": "cnn", "channels": 512, "norm": "group_norm", "conv_bias": False}
TARGET = 5.2


def bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def hubert_step(recipe, batch):
    objective = objective_from_recipe(recipe)
    give_random_targets(objective, batch)
    return training_step(objective, batch, bf16())


def transformers_hubert_step(batch, mask_prob: float = 0.8, span: int = 10):
    """transformers' HubertModel Base (CNN, 12 x 768) with a HuBERT-style loss on masked frames."""
    from transformers import HubertConfig, HubertModel
    from transformers.models.hubert.modeling_hubert import _compute_mask_indices

    torch.manual_seed(0)
    model = HubertModel(HubertConfig()).train()
    project = torch.nn.Linear(768, 256)
    clusters = torch.nn.Parameter(torch.randn(100, 256))
    params = [*model.parameters(), *project.parameters(), clusters]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    frames = int(model._get_feat_extract_output_lengths(torch.tensor(batch.wavs.shape[1])))
    mask = torch.from_numpy(
        _compute_mask_indices((len(batch.ids), frames), mask_prob / span, span, min_masks=2)
    )
    labels = torch.randint(0, 100, (len(batch.ids), frames))
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16()):
            hidden = model(batch.wavs, mask_time_indices=mask).last_hidden_state
            logits = (
                torch.nn.functional.cosine_similarity(project(hidden)[..., None, :], clusters, dim=-1) / 0.1
            )
            loss = torch.nn.functional.cross_entropy(logits[mask], labels[mask])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _row(comparison: str, r, audio: float) -> dict:
    return {
        "comparison": comparison,
        "A s/step": r.a_median_s,
        "B s/step": r.b_median_s,
        "A audio s/s": audio / r.a_median_s,
        "B audio s/s": audio / r.b_median_s,
        "speed-up": r.ratio,
        "95% CI": [round(r.low, 3), round(r.high, 3)],
    }


def run(quick: bool = False) -> dict:
    sizes = ["tiny", "small"] if quick else ["tiny", "small", "base"]
    n, seconds, reps = (2, 4.0, 3) if quick else (4, 8.0, 5)
    batch = noise_batch(n, seconds)
    audio = n * seconds
    rows = []
    for size in sizes:
        recipe = f"configs/pretrain/hubert-{size}.yaml"
        times = time_rounds(
            {"cnn": hubert_step(with_frontend(recipe, CNN), batch), "fbank": hubert_step(recipe, batch)}, reps
        )
        rows.append(_row(f"HuBERT {size}: CNN vs fbank front-end", ratio(times, "cnn", "fbank"), audio))
    if not quick:  # transformers' Base step takes minutes here: the full run only
        times = time_rounds(
            {
                "transformers": transformers_hubert_step(batch),
                "evalkit": hubert_step("configs/pretrain/hubert-base.yaml", batch),
            },
            reps,
        )
        comparison = "transformers HubertModel Base (CNN) vs evalkit Fast-HuBERT Base"
        rows.append(_row(comparison, ratio(times, "transformers", "evalkit"), audio))
    judged = rows[-1]
    aa = aa_check(lambda: hubert_step(f"configs/pretrain/hubert-{sizes[-1]}.yaml", batch), reps)
    return {
        "title": TITLE,
        "setup": f"batch {n} x {seconds:g} s of noise, {'bf16' if bf16() else 'fp32'}, median of {reps} rounds; "
        "A/B: A's step time over B's",
        "rows": rows,
        "targets": [target(f"speed-up, {judged['comparison']}", ">=", TARGET, judged["speed-up"])],
        "aa": aa,
        "markdown": table(
            rows, ["comparison", "A s/step", "B s/step", "A audio s/s", "B audio s/s", "speed-up"]
        ),
    }
