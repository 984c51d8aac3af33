"""Baselines every report compares against, computed on the same folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from models.metrics import PROBA_CLIP

__all__ = ["length_features", "length_logreg_oof", "prior_oof"]


def length_features(battles: pd.DataFrame) -> NDArray[np.float64]:
    """log1p characters of A and B and their difference (3 columns)."""
    a = np.log1p([sum(len(t) for t in turns) for turns in battles["response_a"]])
    b = np.log1p([sum(len(t) for t in turns) for turns in battles["response_b"]])
    return np.column_stack([a, b, a - b])


def length_logreg_oof(
    battles: pd.DataFrame, labels: NDArray[np.int64], folds: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Out-of-fold probabilities of a length-only logistic regression."""
    X = length_features(battles)
    oof = np.zeros((len(labels), 3))
    for fold in np.unique(folds):
        train, valid = folds != fold, folds == fold
        model = LogisticRegression(max_iter=1000).fit(X[train], labels[train])
        proba = np.zeros((valid.sum(), 3))
        proba[:, model.classes_] = model.predict_proba(X[valid])
        oof[valid] = proba
    return np.clip(oof, PROBA_CLIP, 1)


def prior_oof(
    labels: NDArray[np.int64], folds: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Out-of-fold class prior: each fold predicts the others' class shares."""
    oof = np.zeros((len(labels), 3))
    for fold in np.unique(folds):
        train, valid = folds != fold, folds == fold
        oof[valid] = np.bincount(labels[train], minlength=3) / train.sum()
    return oof
