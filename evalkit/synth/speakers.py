"""Synthetic speakers: an eSpeak voice variant + an English accent + pitch, range and rate.

eSpeak ships 104 voice variants (formant sets, vocal-tract settings, some
whispered or robotic). Each variant is combined with four accents and base
prosody values, giving 416 speakers. Pools are split *by variant*, so a
held-out speaker does not even share a vocal tract with a training speaker:

    pretrain  unlabeled pre-training audio
    train     labeled training sets of the tasks (and SID's closed set)
    dev       model selection
    test      evaluation (unseen voices)
    babble    background talkers for babble noise
"""

from __future__ import annotations

import functools
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from evalkit.synth.espeak import Voice

ACCENTS = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-us-nyc",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
SPEAKERS_PER_VARIANT = 4
# Number of variants in each pool (103 usable: names with spaces are skipped).
POOL_VARIANTS = {"pretrain": 40, "train": 32, "dev": 8, "test": 16, "babble": 7}


@dataclass(frozen=True)
class Speaker:
    id: str
    variant: str
    accent: str
    pitch: int  # eSpeak 0-100
    range: int  # eSpeak 0-100
    rate: int  # words per minute

    def voice(
        self, pitch_shift: int = 0, range_shift: int = 0, rate_scale: float = 1.0, volume: int = 100
    ) -> Voice:
        """The eSpeak voice of this speaker, optionally with prosody changed (emotions)."""
        return Voice(
            name=f"{self.accent}+{self.variant}",
            pitch=_clip(self.pitch + pitch_shift, 0, 99),
            range=_clip(self.range + range_shift, 0, 99),
            rate=_clip(round(self.rate * rate_scale), 80, 400),
            volume=_clip(volume, 10, 200),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _clip(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(x)))


def variants() -> list[str]:
    """The voice variant names shipped with eSpeak NG (`voices/!v`)."""
    # deferred: the eSpeak NG library and voices load only when speech is made
    import espeakng_loader

    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and " " not in p.name)
    if len(names) < sum(POOL_VARIANTS.values()):
        raise RuntimeError(f"expected ~104 eSpeak voice variants in {folder}, found {len(names)}")
    return names


@functools.cache
def speaker_pools(seed: int = 0) -> dict[str, list[Speaker]]:
    """Disjoint speaker pools, deterministic in `seed`."""
    rng = random.Random(f"speakers-{seed}")
    names = variants()
    rng.shuffle(names)
    pools: dict[str, list[Speaker]] = {}
    start = 0
    for pool, n in POOL_VARIANTS.items():
        chosen = names[start : start + n]
        start += n
        speakers = []
        for v in chosen:
            accents = rng.sample(ACCENTS, SPEAKERS_PER_VARIANT)
            for k, accent in enumerate(accents):
                speakers.append(
                    Speaker(
                        id=f"{pool[:2]}-{v.lower()}-{k}",
                        variant=v,
                        accent=accent,
                        pitch=rng.randint(25, 75),
                        range=rng.randint(20, 80),
                        rate=rng.randint(135, 220),
                    )
                )
        pools[pool] = speakers
    return pools
