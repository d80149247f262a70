"""Speaker diarization (SD): per-frame speaker activity with permutation-invariant BCE.

Frame probabilities become segments as in SUPERB's scoring (s3prl's
downstream/diarization, from EEND): threshold, then a median filter over
frames. s3prl sweeps thresholds 0.3-0.7 and filters of 1 and 11 frames at the
upstream's frame rate (score.sh:46-47; 0.22 s at 20 ms) and reads the best DER
off the test set; here the grid is searched on dev (`tune`) and only the
chosen setting sees test. evalkit's own tasks give the filter in seconds
(`MEDIAN_SECONDS`, the same window at any frame rate); `labels.median_frames`
gives it in frames, as s3prl does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.signal import medfilt

from evalkit.core.errors import ConfigError
from evalkit.evaluation.kinds.base import CHOSEN_ON_TEST, RunSettings, TaskKind
from evalkit.evaluation.losses import pit_bce_loss
from evalkit.metrics.diarization import segments_from_activity

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MEDIAN_SECONDS = (0.0, 0.11)  # 0: no filter
UNTUNED = {"threshold": 0.5, "median_s": 0.0}  # what scoring uses before `tune` has chosen (training's dev)


def median_frames(seconds: float, frame_rate: float) -> int:
    """An odd window of about `seconds` at `frame_rate` (1: no filtering)."""
    k = max(1, round(seconds * frame_rate))
    return k if k % 2 else k + 1


class Diarization(TaskKind):
    """`labels: {speakers: 2}`; records carry `segments` [[start, end, speaker], ...].

    `frame_rate`: the upstream's, at which targets and predictions are per frame.
    """

    def __init__(self, task, data, *, frame_rate: float, settings: RunSettings | None = None) -> None:
        super().__init__(task, data, frame_rate=frame_rate, settings=settings)
        self.num_speakers = int(task.labels.get("speakers", 2))
        windows = task.labels.get("median_frames")
        if windows is not None and not (
            isinstance(windows, list)
            and windows
            and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2 for k in windows)
        ):
            raise ConfigError(
                f"{task.source or task.name}: labels.median_frames = {windows!r}: give a list of odd window "
                "lengths in frames (1: no filter), e.g. [1, 11]."
            )
        # the median filters `tune` tries: (seconds as the task gives them or None, frames)
        self.windows = (
            [(None, k) for k in windows]
            if windows
            else [(m, median_frames(m, self.frame_rate)) for m in MEDIAN_SECONDS]
        )

    def head_args(self) -> dict[str, Any]:
        """The speakers to output, and the frame rate of the features (a head's `rate` pools them)."""
        return {"n_speakers": self.num_speakers, "input_rate": self.frame_rate}

    def target(self, record: dict) -> list:
        order = sorted({s for _, _, s in record["segments"]})[: self.num_speakers]
        return [(float(s), float(e), order.index(spk)) for s, e, spk in record["segments"] if spk in order]

    def activity(self, segments: list, n_frames: int) -> torch.Tensor:
        act = torch.zeros(n_frames, self.num_speakers)
        for s, e, k in segments:
            act[int(round(s * self.frame_rate)) : int(round(e * self.frame_rate)), k] = 1.0
        return act

    def loss(self, out, targets, lens, criterion=None) -> torch.Tensor:
        labels = torch.stack([self.activity(t, out.shape[1]) for t in targets]).to(out.device)
        res = pit_bce_loss(out.float(), labels, lens)
        return res[0] if isinstance(res, tuple) else res

    def predict(self, out, lens) -> list:
        """Per-frame speaker probabilities [frames, speakers] (float32 arrays); `score` makes segments."""
        probs = torch.sigmoid(out.float()).cpu().numpy()
        return [p[:n] for p, n in zip(probs, lens.tolist())]

    def segments(self, probs: np.ndarray, threshold: float, frames: int) -> list:
        """[[start, end, speaker index], ...] from frame probabilities: threshold, then a median filter
        of `frames` frames (1: none)."""
        active = (probs > threshold).astype(np.float32)
        if frames > 1 and len(active):
            active = medfilt(active, (frames, 1))
        return [
            [round(s, 3), round(e, 3), int(spk)]
            for s, e, spk in segments_from_activity(active > 0.5, self.frame_rate)
        ]

    def tune(self, preds: dict[str, Any]) -> dict:
        """Pick threshold and median filter on dev predictions (lowest DER; ties: the earlier setting).

        Returns the choice (`threshold`, `median_frames`, what `score` takes; `median_s`, the window
        in seconds) and every setting's dev DER for the result file.
        """
        by_setting = {}
        for seconds, frames in self.windows:
            for threshold in THRESHOLDS:
                metrics, _ = self.score("dev", preds, {"threshold": threshold, "median_frames": frames})
                by_setting[(threshold, seconds, frames)] = next(m for m in metrics if m.primary).compute()
        threshold, seconds, frames = min(by_setting, key=by_setting.get)
        return {
            "threshold": threshold,
            "median_s": seconds if seconds is not None else round((frames > 1) * frames / self.frame_rate, 4),
            "median_frames": frames,
            "dev_by_setting": {
                f"threshold {t:g}, median {f'{m:g} s' if m is not None else f'{k} frames'}": v
                for (t, m, k), v in by_setting.items()
            },
        }

    def selected_on_test(self, preds: dict[str, Any]) -> dict:
        """The grid's lowest test DER and its setting: SUPERB's reported number (score.sh reads the best
        row off test), kept beside evalkit's dev-selected one and never used for it."""
        best = None
        for _, frames in self.windows:
            for threshold in THRESHOLDS:
                metrics, _ = self.score("test", preds, {"threshold": threshold, "median_frames": frames})
                value = next(m for m in metrics if m.primary).compute()
                if best is None or value < best[0]:
                    best = (value, threshold, frames)
        value, threshold, frames = best
        return {
            "note": CHOSEN_ON_TEST,
            "der": value,
            "threshold": threshold,
            "median_frames": frames,
        }

    def score(self, split: str, preds: dict[str, Any], postprocess: dict | None = None):
        """DER per recording, with the threshold and median filter of `postprocess` (default: `UNTUNED`)."""
        post = postprocess or UNTUNED
        metrics = self.metrics()
        rows = []
        for r in self.records(split):
            ref = [(s, e, spk) for s, e, spk in r["segments"]]
            frames = post.get("median_frames") or median_frames(post["median_s"], self.frame_rate)
            pred = self.segments(preds[r["id"]], post["threshold"], frames)
            hyp = [(s, e, f"h{k}") for s, e, k in pred]
            row = {"id": r["id"], "ref": r["segments"], "pred": pred}
            for m in metrics:
                row[m.name] = m.item_score(m.update([ref], [hyp])[0])
            rows.append(row)
        return metrics, rows
