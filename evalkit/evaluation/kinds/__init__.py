"""Task kinds: the code behind task YAMLs (`kind:` picks one)."""

from evalkit.evaluation.kinds.classification import Classification
from evalkit.evaluation.kinds.ctc import CTC
from evalkit.evaluation.kinds.diarization import Diarization
from evalkit.evaluation.kinds.qbe import QbE
from evalkit.evaluation.kinds.verification import Verification

RECIPES = {
    "classification": Classification,
    "ctc": CTC,
    "verification": Verification,
    "diarization": Diarization,
    "qbe": QbE,
}
