"""HuBERT's discrete targets: k-means clusters of MFCC or of a checkpoint's hidden layer.

Built once in `HuBERT.setup()`: features of every pretrain utterance, k-means
(scikit-learn's MiniBatchKMeans) fitted on a random subsample of frames, then
every frame labelled and stored per utterance at the source's own frame rate
(100 Hz for MFCC). The training batch asks for the labels of its crops at the
encoder's frame rate (`ClusterTargets.batch`).

Frame alignment. Every source here puts the centre of frame i at sample
200 + hop·i: Kaldi MFCC/fbank (25 ms window, 10 ms shift, snip_edges), the
wav2vec 2.0 CNN (400-sample receptive field, 320 hop) and the Fast-HuBERT
fbank front-end (its two stride-2 convs centre output frame j on fbank frame
4j). So encoder frame j of a crop starting at sample `offset` takes the source
frame whose centre is nearest: round((offset + hop_enc·j) / hop_src) — the
4j-th MFCC frame for the 40 ms front-end, the 2j-th for the 20 ms CNN.

Target quality follows the HuBERT paper (Hsu et al. 2021, §IV-D): phone-
normalised mutual information I(phone; cluster) / H(phone), its cluster-
normalised twin, and the two purities, against the suite's phone alignments.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torchaudio.compliance import kaldi
from torchaudio.functional import compute_deltas

from evalkit.core.audio import SAMPLE_RATE, load_audio
from evalkit.core.errors import ConfigError, EvalkitError
from evalkit.core.io import atomic_write_text
from evalkit.core.manifest import audio_path, frame_labels
from upstreams.modules.frontends import FBANK_SHIFT, FBANK_WINDOW, KALDI_SCALE

FRAME_CENTRE = FBANK_WINDOW // 2  # samples from an utterance's start to the centre of frame 0
MFCC_HOP = FBANK_SHIFT  # 10 ms
LABELS_FILE = "targets.npy"
INDEX_FILE = "targets.json"
CENTROIDS_FILE = "centroids.npy"
FEATURE_CACHE_BYTES = 2 << 30  # keep a corpus's features between the two k-means passes up to this size


def mfcc_features(wav: torch.Tensor) -> np.ndarray:
    """[F, 39] MFCC (13, Kaldi defaults, no energy) + Δ + ΔΔ, as HuBERT iteration 1; F = Kaldi frames."""
    if wav.numel() < FBANK_WINDOW:
        return np.zeros((0, 39), np.float32)
    with torch.no_grad():
        ceps = kaldi.mfcc(wav.float()[None] * KALDI_SCALE, sample_frequency=SAMPLE_RATE, use_energy=False).T
        delta = compute_deltas(ceps)
        feats = torch.cat([ceps, delta, compute_deltas(delta)]).T
    return feats.numpy()


class FeatureSource:
    """What k-means clusters: a function of one waveform -> [frames, dim], and its hop in samples.

    `single_thread` runs it on one intra-op thread: per-utterance MFCC ops are too
    small for a second thread to pay, and on a loaded machine without
    OMP_WAIT_POLICY=PASSIVE (which the CLI sets) two threads ran 12x slower.
    """

    def __init__(
        self, name: str, hop: int, fn: Callable[[torch.Tensor], np.ndarray], single_thread: bool = False
    ) -> None:
        self.name = name
        self.hop = hop
        self.fn = fn
        self.single_thread = single_thread

    def __call__(self, wav: torch.Tensor) -> np.ndarray:
        if not self.single_thread:
            return self.fn(wav)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.fn(wav)
        finally:
            torch.set_num_threads(threads)


def mfcc_source() -> FeatureSource:
    return FeatureSource("mfcc", MFCC_HOP, mfcc_features, single_thread=True)


def checkpoint_source(upstream: torch.nn.Module, layer: int, name: str) -> FeatureSource:
    """Hidden state `layer` of a frozen upstream (HuBERT iteration 2)."""
    n = int(upstream.num_layers)
    if not 0 <= layer < n:
        raise ConfigError(
            f"objective.targets.layer = {layer}: {name} has hidden states 0..{n - 1}; choose one of them."
        )
    hop = round(SAMPLE_RATE / float(upstream.frame_rate))
    device = next(upstream.parameters(), torch.empty(0)).device

    def features(wav: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            hidden, lens = upstream(wav.float()[None].to(device), torch.tensor([wav.numel()], device=device))
        return hidden[layer][0, : int(lens[0])].float().cpu().numpy()

    return FeatureSource(f"{name} layer {layer}", hop, features)


@dataclass
class ClusterTargets:
    """Per-utterance cluster labels at the source's frame rate (`hop` samples apart), memory-mappable."""

    labels: np.ndarray  # all utterances' labels, concatenated
    ids: list[str]
    starts: np.ndarray  # [utterances] first label of each utterance in `labels`
    lengths: np.ndarray  # [utterances]
    hop: int
    n_clusters: int
    source: str

    def __post_init__(self) -> None:
        self._row = {u: i for i, u in enumerate(self.ids)}

    def utterance(self, utt_id: str) -> np.ndarray:
        row = self._row.get(utt_id)
        if row is None:
            raise EvalkitError(
                f"no k-means targets for utterance {utt_id!r}: the targets in setup/ were built for another "
                "corpus. Pre-train into a fresh --out folder (or delete its setup/ folder) to rebuild them."
            )
        start = int(self.starts[row])
        return self.labels[start : start + int(self.lengths[row])]

    def frames(self, utt_id: str, offset: int, n_frames: int, hop: int) -> np.ndarray:
        """Labels of `n_frames` encoder frames (`hop` samples apart) of a crop starting at sample `offset`."""
        labels = self.utterance(utt_id)
        if len(labels) == 0:
            raise EvalkitError(f"utterance {utt_id!r} is shorter than one frame; it has no targets.")
        wanted = np.rint((offset + hop * np.arange(n_frames)) / self.hop).astype(np.int64)
        return np.asarray(labels[np.clip(wanted, 0, len(labels) - 1)], dtype=np.int64)

    def batch(
        self, ids: Sequence[str], offsets: torch.Tensor, lens: torch.Tensor, hop: int, max_len: int
    ) -> torch.Tensor:
        """[B, max_len] long targets for a batch of crops; -1 past each crop's `lens` frames."""
        out = torch.full((len(ids), max_len), -1, dtype=torch.long)
        for b, utt_id in enumerate(ids):
            n = int(lens[b])
            out[b, :n] = torch.from_numpy(self.frames(utt_id, int(offsets[b]), n, hop))
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{LABELS_FILE}.tmp.npy"
        np.save(tmp, self.labels)
        tmp.replace(folder / LABELS_FILE)
        index = {
            "ids": self.ids,
            "starts": self.starts.tolist(),
            "lengths": self.lengths.tolist(),
            "hop": self.hop,
            "n_clusters": self.n_clusters,
            "source": self.source,
        }
        atomic_write_text(folder / INDEX_FILE, json.dumps(index))

    @classmethod
    def load(cls, folder: Path) -> ClusterTargets:
        index_path = folder / INDEX_FILE
        if not index_path.is_file() or not (folder / LABELS_FILE).is_file():
            raise EvalkitError(
                f"{folder}: no k-means targets ({INDEX_FILE} + {LABELS_FILE}); run setup first."
            )
        index = json.loads(index_path.read_text())
        return cls(
            labels=np.load(folder / LABELS_FILE, mmap_mode="r"),
            ids=list(index["ids"]),
            starts=np.asarray(index["starts"], np.int64),
            lengths=np.asarray(index["lengths"], np.int64),
            hop=int(index["hop"]),
            n_clusters=int(index["n_clusters"]),
            source=str(index["source"]),
        )

    @staticmethod
    def exists(folder: Path) -> bool:
        return (folder / INDEX_FILE).is_file() and (folder / LABELS_FILE).is_file()


def _corpus_features(manifest: Path, records: Sequence[dict], source: FeatureSource) -> Iterable[np.ndarray]:
    for rec in records:
        wav = torch.from_numpy(load_audio(audio_path(manifest, rec)))
        yield source(wav)


def fit_kmeans(
    manifest: Path,
    records: Sequence[dict],
    source: FeatureSource,
    n_clusters: int,
    max_frames: int = 300_000,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> tuple[ClusterTargets, np.ndarray]:
    """Fits k-means on at most `max_frames` random frames of the corpus, then labels every frame.

    The features of a corpus that fits in `FEATURE_CACHE_BYTES` are kept from
    the first pass; a larger one is read twice, so memory holds only the
    subsample. Returns the targets and the centroids.
    """
    from sklearn.cluster import MiniBatchKMeans  # deferred: scikit-learn is slow to import

    if n_clusters < 2:
        raise ConfigError(f"objective.n_clusters must be at least 2; got {n_clusters}.")
    rng = np.random.default_rng(seed)
    expected = sum(float(r["duration"]) for r in records) * SAMPLE_RATE / source.hop
    keep = min(1.0, 1.1 * max_frames / max(expected, 1.0))
    if not records:
        raise EvalkitError(f"{manifest}: no utterances to fit k-means targets on.")
    sample, cache, cache_all = [], [], False
    for i, feats in enumerate(_corpus_features(manifest, records, source)):
        if i == 0:
            cache_all = expected * feats.shape[1] * feats.itemsize <= FEATURE_CACHE_BYTES
        if cache_all:
            cache.append(feats)
        sample.append(feats[rng.random(len(feats)) < keep])
        if (i + 1) % 500 == 0:
            log(f"k-means features: {i + 1}/{len(records)} utterances")
    frames = np.concatenate(sample)
    if len(frames) > max_frames:
        frames = frames[rng.choice(len(frames), max_frames, replace=False)]
    frames = frames.astype(np.float64)  # scikit-learn computes float32 distances by a slow chunked up-cast
    if len(frames) < n_clusters:
        raise EvalkitError(
            f"k-means: {len(frames)} frames of {source.name} cannot make {n_clusters} clusters; "
            "lower objective.n_clusters or pre-train on more audio."
        )
    log(f"k-means: fitting {n_clusters} clusters on {len(frames)} frames of {source.name}")
    # One k-means++ start: on this suite 3 starts moved PNMI by < 0.002 (MFCC, k=300; a 128-d layer,
    # k=500), while the k-means++ init dominates the fit's time.
    kmeans = MiniBatchKMeans(
        n_clusters=n_clusters,
        batch_size=10_000,
        n_init=1,
        max_iter=100,
        max_no_improvement=20,
        reassignment_ratio=0.0,
        random_state=seed,
    ).fit(frames)
    dtype = np.int16 if n_clusters <= np.iinfo(np.int16).max else np.int32
    labels, lengths = [], []
    for feats in cache or _corpus_features(manifest, records, source):
        labels.append(
            kmeans.predict(feats.astype(np.float64)).astype(dtype) if len(feats) else np.zeros(0, dtype)
        )
        lengths.append(len(feats))
    lengths_arr = np.asarray(lengths, np.int64)
    targets = ClusterTargets(
        labels=np.concatenate(labels) if labels else np.zeros(0, dtype),
        ids=[str(r["id"]) for r in records],
        starts=np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]).astype(np.int64),
        lengths=lengths_arr,
        hop=source.hop,
        n_clusters=n_clusters,
        source=source.name,
    )
    return targets, kmeans.cluster_centers_.astype(np.float32)


@dataclass
class ClusterQuality:
    """How well clusters predict phones (HuBERT paper, §IV-D); all in [0, 1], higher is better."""

    pnmi: float  # I(phone; cluster) / H(phone)
    cnmi: float  # I(phone; cluster) / H(cluster)
    phone_purity: float  # E_cluster[max_phone p(phone | cluster)]
    cluster_purity: float  # E_phone[max_cluster p(cluster | phone)]
    majority_phone: float  # phone purity of a single cluster: the chance level of phone_purity
    frames: int
    phones: int
    clusters_used: int

    def to_dict(self) -> dict:
        return asdict(self)


def cluster_quality(phones: Sequence, clusters: Sequence) -> ClusterQuality:
    """PNMI, CNMI and purities of frame-level `clusters` against frame-level `phones` (any hashables)."""
    if len(phones) != len(clusters):
        raise ValueError(f"phones ({len(phones)}) and clusters ({len(clusters)}) differ in length")
    if len(phones) == 0:
        raise ValueError("cluster_quality needs at least one frame")
    _, y = np.unique(np.asarray(phones), return_inverse=True)
    _, z = np.unique(np.asarray(clusters), return_inverse=True)
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0)
    p = joint / joint.sum()
    py, pz = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(py, pz)[nz])).sum())
    h_y = float(-(py * np.log(py)).sum())
    h_z = float(-(pz * np.log(pz)).sum())
    return ClusterQuality(
        pnmi=mi / h_y if h_y > 0 else 0.0,
        cnmi=mi / h_z if h_z > 0 else 0.0,
        phone_purity=float(p.max(0).sum()),
        cluster_purity=float(p.max(1).sum()),
        majority_phone=float(py.max()),
        frames=len(y),
        phones=p.shape[0],
        clusters_used=p.shape[1],
    )


def aligned_phones(alignment: list, n_frames: int, hop: int) -> list[str]:
    """Phone of each frame (centres at FRAME_CENTRE + hop·i samples); "sil" where unaligned.

    `frame_labels` reads frame i as centred at (i + ½)/rate, so the alignment is
    shifted by the difference first.
    """
    rate = SAMPLE_RATE / hop
    shift = 0.5 / rate - FRAME_CENTRE / SAMPLE_RATE
    shifted = [[start + shift, end + shift, phone] for start, end, phone in alignment]
    return frame_labels(shifted, n_frames, rate, blank="sil")


def target_quality(records: Sequence[dict], targets: ClusterTargets) -> ClusterQuality | None:
    """Quality of `targets` against the records' `alignment`; None when no record has one."""
    phones: list[str] = []
    clusters: list[np.ndarray] = []
    for rec in records:
        alignment = rec.get("alignment")
        if not alignment:
            continue
        labels = np.asarray(targets.utterance(str(rec["id"])))
        phones.extend(aligned_phones(alignment, len(labels), targets.hop))
        clusters.append(labels)
    if not phones:
        return None
    return cluster_quality(phones, np.concatenate(clusters))
