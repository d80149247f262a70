"""What `evalkit eval` checks before any work: audio the manifests name exists, output folders can be
written, and what a user should know about the upstream before it is evaluated (an unfinished
pre-training; features s3prl would not compute for a faithful task)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from evalkit.core.errors import AudioError, ConfigError
from evalkit.core.manifest import audio_path
from evalkit.evaluation.task import TaskConfig
from upstreams.checkpoint import read_config
from upstreams.hf import HFUpstream


def check_audio(manifest: Path, records: list[dict]) -> None:
    """Fail before any work if a manifest points at missing audio."""
    missing = [audio_path(manifest, r) for r in records if not audio_path(manifest, r).is_file()]
    if missing:
        raise AudioError(
            f"{manifest}: {len(missing)} record(s) point at missing audio, first {missing[0]}. "
            "Re-run `evalkit synth`/`evalkit prepare` for this corpus or fix the paths."
        )


def spec_folder(spec: str) -> Path | None:
    """The folder holding an upstream's files (an evalkit checkpoint or an `hf:` folder), or None."""
    if spec.startswith("hf:"):
        return Path(spec[3:])
    if spec.startswith("s3prl:") or not (Path(spec).is_dir() or "/" in spec or spec.startswith(".")):
        return None  # a registered name (or s3prl's): built by code, quick to fingerprint
    return Path(spec)


def check_writable(folder: Path, option: str) -> None:
    """Fail before any work (no upstream loaded, nothing trained) if `folder` cannot be created or
    written: create it, then write, sync and remove a small probe file."""
    probe = folder / f".evalkit-write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(probe, "wb") as f:
                f.write(bytes(4096))
                f.flush()
                os.fsync(f.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as e:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            why = f"{blocker} is a file, not a folder"
        elif e.errno == errno.ENOSPC:
            why = "the disk is full: free some space"
        else:
            why = f"cannot write there ({e.strerror})"
        raise ConfigError(f"{option} {folder}: {why}. Give {option} a folder you can write to.") from None


def warn_if_unfinished(spec: str, log=print) -> None:
    """A checkpoint of a pre-training that has not reached its last step is evaluated, with a warning."""
    folder = spec_folder(spec)
    if folder is None or not (folder / "config.json").is_file():
        return
    pre = read_config(folder).get("pretraining") or {}
    if pre and pre.get("method") != "random-init" and not pre.get("finished"):
        log(
            f"warning: {spec} is an unfinished pre-training (step {pre.get('steps', '?')}, not its last): "
            "its results describe that step. Finish it with `evalkit pretrain ... --resume` for the final model."
        )


def warn_if_not_s3prls_features(upstream, tasks: list[TaskConfig], hf_padding: str, log=print) -> None:
    """Say before any work when a faithful task will read features s3prl would not compute: a GroupNorm
    `hf:` checkpoint run padding-exact (the leaderboard then calls the result a deviation)."""
    faithful = [t.name for t in tasks if t.recipe == "s3prl"]
    if faithful and isinstance(upstream, HFUpstream) and upstream.group_norm and hf_padding == "exact":
        log(
            f"warning: {', '.join(faithful)} follow s3prl's recipes, but this GroupNorm checkpoint runs with "
            "--hf-padding exact (each utterance's features as it gives alone), where s3prl's experts normalise "
            "over the padded batch: the leaderboard will list these results as deviating from s3prl. Add "
            "--hf-padding s3prl for numbers to set beside the public leaderboard."
        )
