"""From feature matrices to calibrated, swap-symmetric preference probabilities."""

import features._openmp  # noqa: F401  # before LightGBM or XGBoost load libgomp
from models.artifact import FORMAT_VERSION, ModelIntegrityError
from models.calibration import TemperatureScaler
from models.folds import make_folds, prompt_groups, subsample_groups
from models.label_shift import adjust_to_prior, estimate_prior_em
from models.metrics import (
    decisive_auc,
    decisive_log_loss,
    length_difference_auc,
    multiclass_log_loss,
    tie_auc,
)
from models.preference import PreferenceModel
from models.recipe import TrainingRecipe, TrainingRows, swap_copies
from models.sources import source_families
from models.stacking import BoosterStacker
from models.transfer import model_fit_predict, transfer_table, within_set_cv

__all__ = [
    "FORMAT_VERSION",
    "BoosterStacker",
    "ModelIntegrityError",
    "PreferenceModel",
    "TemperatureScaler",
    "TrainingRecipe",
    "TrainingRows",
    "adjust_to_prior",
    "decisive_auc",
    "decisive_log_loss",
    "estimate_prior_em",
    "length_difference_auc",
    "make_folds",
    "model_fit_predict",
    "multiclass_log_loss",
    "prompt_groups",
    "source_families",
    "subsample_groups",
    "swap_copies",
    "tie_auc",
    "transfer_table",
    "within_set_cv",
]
