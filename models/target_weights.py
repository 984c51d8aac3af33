"""Row weights for a named target, learned from the target's own rows.

Two ways to decide how much the other sources count, each a switch of
:class:`~models.PreferenceModel` (``docs/target.md`` has their measurements):

- :func:`search_other_weight` (``target_other_weight="auto"``): a handful of
  factors on the non-target rows, each scored by the target's out-of-fold log
  loss of a fast LightGBM on the model's own folds; the best factor wins.
- :func:`search_family_weights` (``"auto-family"``): that factor, then one
  pass over the other families, largest first, trying each at 0 and 3 times
  it; a change is kept only when it lowers the proxy loss by more than
  ``min_gain``.
- :func:`density_ratio_weights` (``target_density_weights=True``): a logistic
  regression tells target rows from the rest on the feature matrix; each
  non-target row is weighed by its odds of being a target row, so the
  battles that look like the target's count more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from models.calibration import TemperatureScaler
from models.metrics import clipped_log, multiclass_log_loss
from models.target import TargetTieHead, target_weights

__all__ = [
    "FAMILY_MULTIPLIERS",
    "OTHER_WEIGHT_CANDIDATES",
    "density_ratio_weights",
    "proxy_target_loss",
    "search_family_weights",
    "search_other_weight",
]

logger = logging.getLogger(__name__)

OTHER_WEIGHT_CANDIDATES: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
"""Factors on the non-target rows tried by ``target_other_weight="auto"``."""

FAMILY_MULTIPLIERS: tuple[float, ...] = (0.0, 3.0)
"""What ``"auto-family"`` tries for each other family, times the shared factor."""

_PROXY_PARAMS: dict[str, Any] = {
    "objective": "multiclass",
    "num_class": 3,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.5,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "verbose": -1,
    "num_threads": 0,
    "deterministic": True,
    "force_row_wise": True,
}
_PROXY_ROUNDS = 400
_PROXY_PATIENCE = 30


def proxy_target_loss(
    X: Any,
    labels: NDArray[np.int64],
    folds: NDArray[np.int64],
    is_target: NDArray[np.bool_],
    weight: NDArray[np.float64],
    *,
    init_score: NDArray[np.float64] | None = None,
    seed: int = 0,
) -> float:
    """Target out-of-fold log loss of a fast LightGBM fitted with ``weight``.

    Each fold's model trains on every other fold's rows (all sources) and is
    scored on the target rows of its own fold, which also stop its boosting
    early: the same small selection for every candidate compared. The
    model's head is then refitted on those rows as the real fit does (a
    temperature and the target's tie head), so a factor is judged by what
    the head cannot repair: a factor that only moves the tie share toward
    the target's would otherwise look better than it is.
    """
    import lightgbm as lgb

    oof = np.zeros((len(labels), 3))
    params = {**_PROXY_PARAMS, "seed": seed}
    for fold in np.unique(folds):
        train = np.flatnonzero(folds != fold)
        valid = np.flatnonzero((folds == fold) & is_target)
        if len(valid) == 0:
            continue
        train_set = lgb.Dataset(
            X[train],
            labels[train],
            weight=weight[train],
            init_score=None if init_score is None else init_score[train],
            free_raw_data=True,
        )
        valid_set = lgb.Dataset(
            X[valid],
            labels[valid],
            init_score=None if init_score is None else init_score[valid],
            reference=train_set,
        )
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=_PROXY_ROUNDS,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(_PROXY_PATIENCE, verbose=False)],
        )
        raw = booster.predict(
            X[valid], num_iteration=booster.best_iteration, raw_score=True
        )
        if init_score is not None:
            raw = raw + init_score[valid]
        raw = raw - raw.max(axis=1, keepdims=True)
        proba = np.exp(raw)
        oof[valid] = proba / proba.sum(axis=1, keepdims=True)
    proba, target_labels = oof[is_target], labels[is_target]
    log_proba = clipped_log(proba)
    calibrated = (
        TemperatureScaler().fit(log_proba, target_labels).predict_proba(log_proba)
    )
    headed = TargetTieHead().fit(calibrated, target_labels).transform(calibrated)
    return multiclass_log_loss(target_labels, headed)


def search_other_weight(
    X: Any,
    labels: NDArray[np.int64],
    folds: NDArray[np.int64],
    is_target: NDArray[np.bool_],
    weight: NDArray[np.float64] | None,
    *,
    candidates: Sequence[float] = OTHER_WEIGHT_CANDIDATES,
    init_score: NDArray[np.float64] | None = None,
    seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """The factor on the non-target rows with the lowest proxy target loss.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_rows, n_features)
    labels, folds : ndarray of int64 of shape (n_rows,)
    is_target : ndarray of bool of shape (n_rows,)
    weight : ndarray of shape (n_rows,) or None
        The weights before the factor (None: every row 1).
    candidates : sequence of float, default=OTHER_WEIGHT_CANDIDATES
    init_score : ndarray of shape (n_rows, 3), default=None
        The boosters' starting score (the anchor's), as in the real fit.
    seed : int, default=0

    Returns
    -------
    best : float
        The chosen factor (ties: the first candidate).
    losses : dict of float to float
        Proxy target log loss per candidate.
    """
    losses = {}
    for factor in candidates:
        losses[float(factor)] = proxy_target_loss(
            X,
            labels,
            folds,
            is_target,
            target_weights(is_target, weight, float(factor)),
            init_score=init_score,
            seed=seed,
        )
        logger.info(
            "target weight search: other sources x%g -> proxy target log loss %.4f",
            factor,
            losses[float(factor)],
        )
    best = min(losses, key=losses.__getitem__)
    return best, losses


def search_family_weights(
    X: Any,
    labels: NDArray[np.int64],
    folds: NDArray[np.int64],
    is_target: NDArray[np.bool_],
    weight: NDArray[np.float64] | None,
    families: Sequence[str],
    *,
    candidates: Sequence[float] = OTHER_WEIGHT_CANDIDATES,
    multipliers: Sequence[float] = FAMILY_MULTIPLIERS,
    min_gain: float = 0.001,
    init_score: NDArray[np.float64] | None = None,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, Any]]:
    """A factor per other source family, searched by the proxy target loss.

    First the shared factor (:func:`search_other_weight`); then, family by
    family (most rows first), each of ``multipliers`` times it, kept when the
    proxy loss drops by more than ``min_gain`` (one pass: a handful of fits
    per family, not a search over every combination).

    Returns
    -------
    factors : dict of str to float
        Factor per non-target family.
    search : dict
        The shared factor's candidate losses and each family's trials.
    """
    families = np.asarray(families, dtype=object).astype(str)
    shared, losses = search_other_weight(
        X,
        labels,
        folds,
        is_target,
        weight,
        candidates=candidates,
        init_score=init_score,
        seed=seed,
    )
    others = [f for f in dict.fromkeys(families[~is_target])]
    others.sort(key=lambda f: (-int(np.sum(families == f)), f))
    factors = {family: shared for family in others}
    best = losses[shared]
    trials: dict[str, dict[str, float]] = {}

    def loss_of(trial: dict[str, float]) -> float:
        factor = np.array([trial.get(f, 1.0) for f in families])
        return proxy_target_loss(
            X,
            labels,
            folds,
            is_target,
            target_weights(is_target, weight, factor),
            init_score=init_score,
            seed=seed,
        )

    for family in others:
        trials[family] = {}
        for multiplier in multipliers:
            trial = {**factors, family: shared * float(multiplier)}
            loss = loss_of(trial)
            trials[family][str(shared * float(multiplier))] = loss
            if loss < best - min_gain:
                best, factors = loss, trial
        logger.info(
            "target family weights: %s x%g (proxy target log loss %.4f)",
            family,
            factors[family],
            best,
        )
    search = {
        "shared": shared,
        "proxy_log_loss": {str(k): v for k, v in losses.items()},
        "family_trials": trials,
        "factors": factors,
        "final_proxy_log_loss": best,
    }
    return factors, search


def density_ratio_weights(
    X: Any,
    is_target: NDArray[np.bool_],
    folds: NDArray[np.int64],
    *,
    clip: tuple[float, float] = (0.1, 10.0),
    C: float = 0.05,
) -> NDArray[np.float64]:
    """Odds that each row is a target row, cross-fitted; 1 on target rows.

    A ridge logistic regression on the standardized features, fitted on the
    other folds, gives each row's ``P(target)``; a non-target row's ratio is
    ``P / (1 - P)`` over the training odds, scaled to mean 1 over the
    non-target rows and clipped to ``clip`` (a few look-alikes must not carry
    the fit). Target rows get 1.

    Returns
    -------
    ndarray of shape (n_rows,)
        Factors to multiply the row weights by.
    """
    values = X.toarray() if hasattr(X, "toarray") else np.asarray(X, np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    proba = np.zeros(len(is_target))
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        scaler = StandardScaler().fit(values[train])
        classifier = LogisticRegression(C=C, max_iter=300)
        classifier.fit(scaler.transform(values[train]), is_target[train])
        proba[test] = classifier.predict_proba(scaler.transform(values[test]))[:, 1]
    prior_odds = is_target.mean() / (1 - is_target.mean())
    odds = np.clip(proba, 1e-6, 1 - 1e-6)
    ratio = odds / (1 - odds) / prior_odds
    other = ~is_target
    ratio[other] = np.clip(ratio[other] / ratio[other].mean(), *clip)
    ratio[other] /= ratio[other].mean()
    ratio[is_target] = 1.0
    return ratio
