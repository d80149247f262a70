"""The GPU check of issue 21: evalkit's evaluation on a CUDA device against the CPU, in one run.

Writes a JSON (and prints it) with
  - extraction throughput (audio-s/s) of a HuBERT-Base-shaped random upstream (transformers' HubertConfig
    defaults: 12 layers x 768, GroupNorm front-end, as `hf:` loads it), fp32 and bf16 autocast, on the device
    and on this machine's CPU;
  - training steps/s of the ASR head (BiLSTM CTC, tasks/asr) and the SID head (mean-pooled linear,
    tasks/sid) on random features of the Base model's shape, with the weighted layer sum, device and CPU;
  - peak GPU memory;
  - with --suite (a smoke suite made by `evalkit synth --profile smoke`; the device machine has no eSpeak,
    so make it here and carry it), the CPU-vs-device agreement of a smoke evaluation: `evalkit eval
    --upstream fbank --tasks all --protocol quick` on both, each task's primary test value and whether the
    device's lies within the CPU result's 95% bootstrap interval; and the wall time of the KS and SID
    evaluations on the device (features cached first) with the training batches read in the loop
    (`--loader-workers 0`) and read ahead by two DataLoader workers (`--loader-workers 2`, the default there).

    python bench/gpu.py [--device cuda] [--suite DIR] [--out gpu.json] [--quick]

`--quick` shrinks every measurement (a check of the script itself, on any machine). Nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from evalkit.core.audio import SAMPLE_RATE
from evalkit.core.resources import tasks_dir
from evalkit.evaluation.featurizer import WeightedLayerSum
from evalkit.evaluation.heads import HEADS


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def base_upstream():
    """A random HuBERT Base as evalkit's `hf:` loader wraps it (frozen, exact padding)."""
    from transformers import HubertConfig, HubertModel

    from upstreams.hf import HFPreprocessing, HFUpstream

    torch.manual_seed(0)
    model = HubertModel(HubertConfig())
    return HFUpstream(model, HFPreprocessing(False, False, "bench/gpu.py"), path="random HuBERT Base")


def extraction(upstream, device: torch.device, bf16: bool, batch: int, seconds: float, reps: int) -> float:
    """Audio seconds per second through the upstream: `reps` timed batches after one warm-up."""
    upstream.to(device)
    wavs = (0.1 * torch.randn(batch, int(seconds * SAMPLE_RATE))).to(device)
    lens = torch.full((batch,), wavs.shape[1], dtype=torch.int64, device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        upstream(wavs, lens)
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            upstream(wavs, lens)
        synchronize(device)
    return reps * batch * seconds / (time.perf_counter() - t0)


def head_args(task: str, head: str) -> dict:
    spec = yaml.safe_load((tasks_dir() / task / "task.yaml").read_text())
    return next(h.get("args", {}) for h in spec["heads"] if h["type"] == head)


def head_steps(
    head_type: str, task: str, device: torch.device, layers: int, dim: int, frames: int, batch: int, reps: int
) -> float:
    """Training steps per second of one head (with the weighted layer sum) on random Base-shaped features."""
    torch.manual_seed(0)
    n_out = 32 if head_type.endswith("ctc") else 1251  # characters / VoxCeleb1's speakers
    head = HEADS.get(head_type)(dim, n_out, **head_args(task, head_type)).to(device)
    featurizer = WeightedLayerSum(layers).to(device)
    opt = torch.optim.AdamW([*head.parameters(), *featurizer.parameters()], lr=1e-3)
    hidden = torch.randn(layers, batch, frames, dim, device=device)
    lens = torch.full((batch,), frames, dtype=torch.int64, device=device)
    targets = torch.randint(1, n_out, (batch, frames // 4), device=device)
    labels = torch.randint(0, n_out, (batch,), device=device)

    def step() -> None:
        out = head(featurizer(hidden), lens)
        if head_type.endswith("ctc"):
            log_probs, out_lens = out
            target_lens = torch.full((batch,), targets.shape[1], dtype=torch.int64)
            loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, target_lens, zero_infinity=True)
        else:
            loss = F.cross_entropy(out, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    synchronize(device)
    return reps / (time.perf_counter() - t0)


def agreement(suite: Path, device: str, steps: int) -> dict:
    """`evalkit eval --upstream fbank --tasks all --protocol quick` on the CPU and on `device`: per task the
    primary test values and whether the device's lies within the CPU result's 95% interval."""
    from evalkit.cli import main

    out = Path(tempfile.mkdtemp(prefix="gpu-agreement-"))
    for folder, where in (("cpu", "cpu"), ("device", device)):
        args = ["eval", "--upstream", "fbank", "--tasks", "all", "--data", str(suite), "--protocol", "quick"]
        code = main([*args, "--steps", str(steps), "--output", str(out / folder), "--device", where])
        if code != 0:
            return {"error": f"evalkit eval --device {where} exited {code}"}
    rows = {}
    for path in sorted((out / "cpu" / "fbank").glob("*.json")):
        cpu = json.loads(path.read_text())
        dev = json.loads((out / "device" / "fbank" / path.name).read_text())
        metric = cpu["primary_metric"]
        low_high = (cpu.get("ci95") or {}).get("test", {}).get(metric)
        a, b = cpu["metrics"]["test"][metric], dev["metrics"]["test"][metric]
        inside = low_high is not None and low_high[0] <= b <= low_high[1]
        rows[cpu["task"]] = {"metric": metric, "cpu": a, "device": b, "cpu_ci95": low_high, "within": inside}
    return rows


def loader_effect(suite: Path, device: str, steps: int) -> dict:
    """Seconds of `evalkit eval --upstream fbank --tasks ks,sid` on `device` from a filled cache, with the
    training batches read in the loop and read ahead by two DataLoader workers (same results either way)."""
    from evalkit.cli import main

    out = Path(tempfile.mkdtemp(prefix="gpu-loader-"))
    args = ["eval", "--upstream", "fbank", "--tasks", "ks,sid", "--data", str(suite), "--protocol", "quick"]
    args += ["--steps", str(steps), "--device", device, "--cache", str(out / "cache")]
    seconds = {}
    for label, workers in (("filling the cache", "0"), ("loader_workers=0", "0"), ("loader_workers=2", "2")):
        start = time.perf_counter()
        if main([*args, "--output", str(out / label.replace(" ", "-")), "--loader-workers", workers]):
            return {"error": f"evalkit eval --loader-workers {workers} failed"}
        seconds[label] = round(time.perf_counter() - start, 2)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--suite", type=Path, default=None, help="a smoke suite, for the agreement check")
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check of the script itself")
    args = parser.parse_args()
    device, cpu = torch.device(args.device), torch.device("cpu")
    q = args.quick
    report: dict = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    upstream = base_upstream()
    if q:  # a 2-layer Base-width model: the same code, seconds instead of minutes
        from transformers import HubertConfig, HubertModel

        from upstreams.hf import HFPreprocessing, HFUpstream

        upstream = HFUpstream(
            HubertModel(HubertConfig(num_hidden_layers=2)), HFPreprocessing(False, False, "q")
        )
    layers, dim = upstream.num_layers, upstream.hidden_size
    batch, seconds, reps = (2, 2.0, 1) if q else (8, 10.0, 5)
    report["extraction_audio_s_per_s"] = {
        f"{where}-{'bf16' if bf16 else 'fp32'}": extraction(
            upstream, dev, bf16, batch, seconds, reps if dev != cpu else 1
        )
        for where, dev in (("device", device), ("cpu", cpu))
        for bf16 in (False, True)
    }
    upstream.to(cpu)
    frames, n = (50, 2) if q else (500, 8)  # 10-s utterances at 50 Hz
    report["head_steps_per_s"] = {
        f"{task}-{where}": head_steps(
            head, task, dev, layers, dim, frames, n, 2 if q else (20 if dev != cpu else 3)
        )
        for task, head in (("asr", "bilstm_ctc"), ("sid", "mean_pool_linear"))
        for where, dev in (("device", device), ("cpu", cpu))
    }
    if device.type == "cuda":
        report["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if args.suite is not None:
        report["agreement"] = agreement(args.suite, args.device, 8 if q else 200)
        within = [r["within"] for r in report["agreement"].values() if isinstance(r, dict)]
        report["agreement_within"] = f"{sum(within)} of {len(within)}"
        report["ks_sid_eval_seconds"] = loader_effect(args.suite, args.device, 8 if q else 400)
    ratios = report["extraction_audio_s_per_s"]
    report["extraction_speedup_fp32"] = round(ratios["device-fp32"] / ratios["cpu-fp32"], 1)
    report["median_head_speedup"] = round(
        statistics.median(
            report["head_steps_per_s"][f"{t}-device"] / report["head_steps_per_s"][f"{t}-cpu"]
            for t in ("asr", "sid")
        ),
        1,
    )
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
