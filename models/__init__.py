"""From feature matrices to calibrated, swap-symmetric preference probabilities."""

from models.artifact import FORMAT_VERSION, ModelIntegrityError
from models.calibration import TemperatureScaler, multiclass_log_loss
from models.folds import make_folds, prompt_groups, subsample_groups
from models.label_shift import adjust_to_prior, estimate_prior_em
from models.preference import PreferenceModel
from models.stacking import BoosterStacker

__all__ = [
    "FORMAT_VERSION",
    "BoosterStacker",
    "ModelIntegrityError",
    "PreferenceModel",
    "TemperatureScaler",
    "adjust_to_prior",
    "estimate_prior_em",
    "make_folds",
    "multiclass_log_loss",
    "prompt_groups",
    "subsample_groups",
]
