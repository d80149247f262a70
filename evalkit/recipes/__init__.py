"""Task kinds: the code behind task YAMLs (`kind:` picks one)."""

from evalkit.recipes.classification import Classification
from evalkit.recipes.ctc import CTC
from evalkit.recipes.diarization import Diarization
from evalkit.recipes.qbe import QbE
from evalkit.recipes.verification import Verification

RECIPES = {
    "classification": Classification,
    "ctc": CTC,
    "verification": Verification,
    "diarization": Diarization,
    "qbe": QbE,
}
