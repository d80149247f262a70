"""Real corpora -> manifests in the same schema as the synthetic suite (see evalkit.manifest).

One `prepare_<corpus>(src, out, **options)` per corpus reads the corpus as
its distributors ship it (nothing is downloaded) and writes `<out>/<split>.jsonl`
with SUPERB's splits. Each is idempotent: a finished preparation leaves a
`.done.json` marker, and a re-run with the same options returns at once
(delete the marker to force a rebuild after the source itself changed).
Entries are lazy so that listing corpora imports none of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from evalkit.core.registry import Registry

CORPORA = Registry("corpus", plural="corpora")
CORPORA.register("librispeech", "evalkit.corpora.librispeech:prepare_librispeech")
CORPORA.register("speech_commands", "evalkit.corpora.speech_commands:prepare_speech_commands")
CORPORA.register(
    "fluent_speech_commands", "evalkit.corpora.fluent_speech_commands:prepare_fluent_speech_commands"
)
CORPORA.register("voxceleb1_sid", "evalkit.corpora.voxceleb1:prepare_voxceleb1_sid")
CORPORA.register("voxceleb1_asv", "evalkit.corpora.voxceleb1:prepare_voxceleb1_asv")
CORPORA.register("iemocap", "evalkit.corpora.iemocap:prepare_iemocap")
CORPORA.register("snips", "evalkit.corpora.snips:prepare_snips")
CORPORA.register("quesst14", "evalkit.corpora.quesst14:prepare_quesst14")
CORPORA.register("libri2mix", "evalkit.corpora.libri2mix:prepare_libri2mix")
CORPORA.register("hf_dataset", "evalkit.corpora.hf_datasets:prepare_hf_dataset")


def prepare(name: str, src: str | os.PathLike, out: str | os.PathLike, **options) -> dict[str, Path]:
    """Prepare corpus `name` from `src` into `out`; returns split name -> manifest path."""
    return CORPORA.get(name)(src, out, **options)
