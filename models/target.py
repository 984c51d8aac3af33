"""A named target population: whose votes a model predicts.

Sources differ in their voters: how often they call a tie, how much a refusal
costs, how much length counts. A model fitted on every source predicts for a
blend of those voters. ``training.target`` names the source family the model
predicts for; the other sources still teach what carries over (direction,
style), while the target's own rows decide what is particular to its voters:

- row weights: the other families weigh ``other_weight`` times what they would
  weigh without a target (:func:`target_weights`);
- the head: the stacker and the temperature are fitted on the target's
  out-of-fold rows only, and :class:`TargetTieHead` refits P(tie) on them;
- the target table: :func:`target_cross_fit` predicts each target row with a
  model that never saw it, every other source always in training.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import OptimizeWarning, curve_fit
from sklearn.linear_model import LogisticRegression

from features.errors import InvalidParameterError, NotFittedError
from models.folds import make_folds, prompt_groups
from models.transfer import source_families

__all__ = [
    "FitPredict",
    "TargetTieHead",
    "fit_learning_curve",
    "held_out_target_proba",
    "target_cross_fit",
    "target_folds",
    "target_rows",
    "target_weights",
]

TIE = 2
_EPS = 1e-12


def target_rows(battles: pd.DataFrame, target: str) -> NDArray[np.bool_]:
    """Which battles belong to the target source family.

    Parameters
    ----------
    battles : DataFrame
        Canonical battle table with a ``source`` column (labelled: these are
        training rows).
    target : str
        A source family (the part of ``source`` before ``:``), e.g.
        ``"kaggle-lmsys"``.

    Returns
    -------
    ndarray of bool

    Raises
    ------
    InvalidParameterError
        No ``source`` column, or no labelled battle of that family; the
        message lists the families there are.

    Examples
    --------
    >>> import pandas as pd
    >>> battles = pd.DataFrame({"source": ["kaggle-lmsys", "arena-2023", "x:1"]})
    >>> target_rows(battles, "kaggle-lmsys").tolist()
    [True, False, False]
    """
    if "source" not in battles.columns:
        raise InvalidParameterError(
            f"training.target={target!r} needs a 'source' column in the battles "
            "(the set each battle came from). Add one, or unset training.target."
        )
    families = source_families(battles["source"]).astype(str)
    mask = families == str(target)
    if "label" in battles.columns:
        mask &= battles["label"].notna().to_numpy()
    if not mask.any():
        names = sorted(set(families.tolist()))
        raise InvalidParameterError(
            f"training.target={target!r} has no labelled battles in the training "
            f"data; its source families are {names!r}. Name one of them, or add "
            "labelled battles of the target."
        )
    return mask


def target_weights(
    is_target: NDArray[np.bool_],
    weight: NDArray[np.float64] | None,
    other_weight: float | NDArray[np.float64],
) -> NDArray[np.float64]:
    """Row weights with the non-target rows scaled by ``other_weight``.

    Parameters
    ----------
    is_target : ndarray of bool
        :func:`target_rows`.
    weight : ndarray or None
        The source weights without a target (None: every row 1).
    other_weight : float or ndarray
        Factor on every non-target row (> 0), or one factor per row (>= 0:
        a family may be left out), as the family weight search gives.

    Returns
    -------
    ndarray
        Weights with mean 1.

    Examples
    --------
    >>> import numpy as np
    >>> target_weights(np.array([True, False, False]), None, 0.5).round(2).tolist()
    [1.5, 0.75, 0.75]
    """
    if np.ndim(other_weight) == 0 and not other_weight > 0:
        raise InvalidParameterError(
            f"The target's other-source weight must be > 0. Got {other_weight!r}."
        )
    if np.ndim(other_weight) and np.any(np.asarray(other_weight) < 0):
        raise InvalidParameterError("Per-row other-source weights must be >= 0.")
    base = np.ones(len(is_target)) if weight is None else np.asarray(weight, float)
    scaled = np.where(is_target, base, base * np.asarray(other_weight, float))
    return scaled / scaled.mean()


def target_folds(
    battles: pd.DataFrame,
    labels: NDArray[np.int64],
    is_target: NDArray[np.bool_],
    n_folds: int = 5,
    seed: int = 0,
) -> NDArray[np.int64]:
    """Outer folds over the target rows (prompt-grouped); -1 for every other row.

    A row with fold -1 is in the training set of every outer fold.
    """
    folds = np.full(len(labels), -1, dtype=np.int64)
    rows = np.flatnonzero(is_target)
    groups = prompt_groups(battles.iloc[rows])
    folds[rows] = make_folds(np.asarray(labels)[rows], groups, n_folds, seed)
    return folds


FitPredict = Callable[[NDArray[np.int64], NDArray[np.int64]], NDArray[np.float64]]
"""``fit_predict(train_rows, test_rows) -> proba of test_rows``."""


def target_cross_fit(
    folds: NDArray[np.int64],
    fit_predict: FitPredict,
    *,
    include_others: bool = True,
    keep: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """Predict every target row with a model that never saw it.

    Parameters
    ----------
    folds : ndarray of int
        :func:`target_folds` (-1: not a target row).
    fit_predict : callable
        ``fit_predict(train_rows, test_rows)`` fits on the row indices
        ``train_rows`` and returns probabilities (len(test_rows), 3).
    include_others : bool, default=True
        Train on every non-target row too (else: target rows only).
    keep : ndarray of bool, default=None
        Target rows that may train (a learning-curve subsample); None: all.

    Returns
    -------
    ndarray of shape (n_rows, 3)
        Out-of-fold probabilities on the target rows; NaN elsewhere.
    """
    folds = np.asarray(folds)
    keep = np.ones(len(folds), bool) if keep is None else np.asarray(keep, bool)
    oof = np.full((len(folds), 3), np.nan)
    for fold in np.unique(folds[folds >= 0]):
        test = np.flatnonzero(folds == fold)
        train_mask = (folds >= 0) & (folds != fold) & keep
        if include_others:
            train_mask |= folds < 0
        train = np.flatnonzero(train_mask)
        oof[test] = fit_predict(train, test)
    return oof


def held_out_target_proba(
    model: Any,
    battles: pd.DataFrame,
    *,
    n_folds: int = 5,
    seed: int = 0,
    store: Any = None,
) -> NDArray[np.float64]:
    """What the model's recipe scores on target battles it never saw.

    The out-of-fold score a fit reports has its boosting rounds, stacker,
    temperature and tie head chosen on the very folds it is scored on, so on a
    target of a few hundred rows it flatters. Here each of ``n_folds``
    prompt-grouped folds of the target's rows is predicted by a clone of
    ``model`` fitted on everything else (every other source, the other target
    folds; feature blocks included), so every choice the fit makes is made
    without the rows it is scored on.

    Parameters
    ----------
    model : PreferenceModel
        Unfitted or fitted; a clone with the same params is fitted per fold.
        Its ``target`` names the target family.
    battles : DataFrame
        Canonical battle table with ``label`` and ``source``.
    n_folds : int, default=5
    seed : int, default=0
    store : FeatureStore, default=None
        Feature cache for the fold fits.

    Returns
    -------
    ndarray of shape (n_battles, 3)
        Held-out probabilities on the target's rows; NaN on the others.

    Raises
    ------
    InvalidParameterError
        The model has no ``target``, or the target has no labelled battles.
    """
    from sklearn.base import clone

    if getattr(model, "target", None) is None:
        raise InvalidParameterError(
            "held_out_target_proba needs a model with a target (training.target); "
            "set one, or read the model's out-of-fold score instead."
        )
    battles = battles.reset_index(drop=True)
    labels = battles["label"].to_numpy(dtype=np.int64)
    is_target = target_rows(battles, model.target)
    folds = target_folds(battles, labels, is_target, n_folds, seed)

    def fit_predict(train: NDArray[np.int64], test: NDArray[np.int64]) -> NDArray:
        fold_model = clone(model).set_params(verbose=False)
        fold_model.fit(battles.iloc[train], store=store)
        return fold_model.predict_proba(battles.iloc[test])

    return target_cross_fit(folds, fit_predict)


class TargetTieHead:
    """P(tie) refitted on the target's rows; P(A) / (P(A) + P(B)) kept.

    A logistic model of tie against decisive on two numbers the model already
    has: the tie logit ``log P(tie) - log(1 - P(tie))`` and the decisive margin
    ``|log P(A) - log P(B)|``. Its intercept carries the target's tie rate, its
    slopes how far the model's own tie ranking holds for these voters. Both
    inputs are swap-symmetric, so the output keeps the A/B symmetry.

    With ``features`` given to :meth:`fit` (symmetric feature columns of the
    same rows: prompt kind, answer similarity, length ratio, both refusing...),
    they join the two inputs, standardized and clipped to +-3 standard
    deviations, and the L2 strength is chosen from ``Cs`` by 5-fold log loss
    on the rows it is fitted on.

    Parameters
    ----------
    C : float, default=1.0
        Inverse L2 strength of the logistic model without features.
    Cs : sequence of float, default=(0.003, 0.01, 0.03, 0.1)
        Candidates for the inverse L2 strength with features.

    Attributes
    ----------
    coef_ : ndarray of shape (2 + n_features,)
    intercept_ : float
    n_features_ : int
        Feature columns used besides the two inputs (0 without).
    C_ : float
        The inverse L2 strength used.

    Examples
    --------
    >>> import numpy as np
    >>> proba = np.tile([0.45, 0.45, 0.10], (40, 1))
    >>> labels = np.array([0, 1, 2, 2] * 10)
    >>> head = TargetTieHead().fit(proba, labels)
    >>> round(float(head.transform(proba)[0, 2]), 2)
    0.5
    """

    def __init__(
        self, *, C: float = 1.0, Cs: Sequence[float] = (0.003, 0.01, 0.03, 0.1)
    ) -> None:
        self.C = C
        self.Cs = Cs

    @staticmethod
    def _base_inputs(proba: NDArray[np.float64]) -> NDArray[np.float64]:
        p = np.clip(np.asarray(proba, float), _EPS, 1.0)
        tie_logit = np.log(p[:, TIE]) - np.log(np.clip(1 - p[:, TIE], _EPS, 1))
        margin = np.abs(np.log(p[:, 0]) - np.log(p[:, 1]))
        return np.column_stack([tie_logit, margin])

    def _inputs(
        self, proba: NDArray[np.float64], features: Any = None
    ) -> NDArray[np.float64]:
        base = self._base_inputs(proba)
        if not getattr(self, "n_features_", 0):
            return base
        if features is None:
            raise InvalidParameterError(
                "this TargetTieHead was fitted with feature columns; pass the same "
                "columns of the battles to transform."
            )
        values = features.toarray() if hasattr(features, "toarray") else features
        values = np.nan_to_num(np.asarray(values, float), nan=0.0)
        scaled = np.clip((values - self.mean_) / self.scale_, -3.0, 3.0)
        return np.column_stack([base, scaled])

    def fit(
        self,
        proba: NDArray[np.float64],
        labels: NDArray[np.int64],
        sample_weight: NDArray[np.float64] | None = None,
        *,
        features: Any = None,
    ) -> TargetTieHead:
        """Fit on out-of-fold probabilities of target rows and their labels."""
        is_tie = np.asarray(labels) == TIE
        self.n_features_ = 0
        self.C_ = float(self.C)
        if is_tie.all() or not is_tie.any():
            # One class only: the tie rate is all there is to learn.
            rate = float(np.clip(is_tie.mean(), 1e-3, 1 - 1e-3))
            self.coef_ = np.zeros(2)
            self.intercept_ = float(np.log(rate / (1 - rate)))
            return self
        if features is not None:
            values = features.toarray() if hasattr(features, "toarray") else features
            values = np.nan_to_num(np.asarray(values, float), nan=0.0)
            self.mean_ = values.mean(axis=0)
            scale = values.std(axis=0)
            self.scale_ = np.where(scale > 0, scale, 1.0)
            self.n_features_ = values.shape[1]
            inputs = self._inputs(proba, values)
            self.C_ = _choose_C(inputs, is_tie, sample_weight, self.Cs)
        else:
            inputs = self._inputs(proba)
        model = LogisticRegression(C=self.C_, max_iter=2000)
        model.fit(inputs, is_tie, sample_weight=sample_weight)
        self.coef_ = model.coef_.ravel().astype(float)
        self.intercept_ = float(model.intercept_[0])
        return self

    def transform(
        self, proba: NDArray[np.float64], features: Any = None
    ) -> NDArray[np.float64]:
        """The probabilities with P(tie) replaced and A/B rescaled to fill the rest."""
        if not hasattr(self, "coef_"):
            raise NotFittedError("This TargetTieHead is not fitted; call fit first.")
        proba = np.asarray(proba, float)
        inputs = self._inputs(proba, features)
        tie = 1 / (1 + np.exp(-(inputs @ self.coef_ + self.intercept_)))
        decisive = np.clip(proba[:, 0] + proba[:, 1], _EPS, None)
        out = np.empty_like(proba)
        out[:, 0] = (1 - tie) * proba[:, 0] / decisive
        out[:, 1] = (1 - tie) * proba[:, 1] / decisive
        out[:, TIE] = tie
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        state = {
            "C": self.C,
            "Cs": [float(c) for c in self.Cs],
            "C_used": self.C_,
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "n_features": self.n_features_,
        }
        if self.n_features_:
            state["mean"] = self.mean_.tolist()
            state["scale"] = self.scale_.tolist()
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TargetTieHead:
        """Rebuild from :meth:`to_dict`."""
        head = cls(C=float(state["C"]))
        if "Cs" in state:
            head.Cs = tuple(float(c) for c in state["Cs"])
        head.coef_ = np.asarray(state["coef"], dtype=float)
        head.intercept_ = float(state["intercept"])
        head.C_ = float(state.get("C_used", head.C))
        head.n_features_ = int(state.get("n_features", 0))
        if head.n_features_:
            head.mean_ = np.asarray(state["mean"], dtype=float)
            head.scale_ = np.asarray(state["scale"], dtype=float)
        if len(head.coef_) != 2 + head.n_features_:
            raise InvalidParameterError(
                f"tie head state has {len(head.coef_)} coefficients for "
                f"{2 + head.n_features_} inputs."
            )
        return head


def _choose_C(
    inputs: NDArray[np.float64],
    is_tie: NDArray[np.bool_],
    sample_weight: NDArray[np.float64] | None,
    Cs: Sequence[float],
) -> float:
    """The candidate inverse L2 strength with the lowest 5-fold log loss."""
    from sklearn.model_selection import StratifiedKFold

    n_splits = int(min(5, is_tie.sum(), (~is_tie).sum()))
    if n_splits < 2:
        return float(min(Cs))
    weight = np.ones(len(is_tie)) if sample_weight is None else sample_weight
    splits = list(
        StratifiedKFold(n_splits, shuffle=True, random_state=0).split(inputs, is_tie)
    )
    losses = []
    for C in Cs:
        total = 0.0
        for train, test in splits:
            model = LogisticRegression(C=C, max_iter=2000)
            model.fit(inputs[train], is_tie[train], sample_weight=weight[train])
            p = np.clip(model.predict_proba(inputs[test])[:, 1], 1e-6, 1 - 1e-6)
            y = is_tie[test]
            total -= np.sum(weight[test] * (y * np.log(p) + (1 - y) * np.log(1 - p)))
        losses.append(total)
    return float(Cs[int(np.argmin(losses))])


def _power_law(n: NDArray, a: float, b: float, c: float) -> NDArray:
    return a + b * np.power(n, -c)


def fit_learning_curve(
    n_rows: Sequence[float], losses: Sequence[float]
) -> tuple[float, float, float]:
    """Fit ``loss = a + b * n ** -c`` (b, c >= 0) through a learning curve.

    Returns
    -------
    (a, b, c) : tuple of float
        ``a`` is the loss the curve levels off at.

    Raises
    ------
    InvalidParameterError
        Fewer than 3 points.

    Examples
    --------
    >>> n = [100, 200, 400, 800]
    >>> a, b, c = fit_learning_curve(n, [1.0 + 2 * x**-0.5 for x in n])
    >>> round(a, 3), round(c, 2)
    (1.0, 0.5)
    """
    n = np.asarray(n_rows, float)
    y = np.asarray(losses, float)
    if len(n) < 3:
        raise InvalidParameterError(
            f"fit_learning_curve needs at least 3 points (a + b n^-c has 3 "
            f"parameters); got {len(n)}. Add learning-curve sizes."
        )
    start = (float(y.min()) - 0.01, float(y.max() - y.min()) * n.min() ** 0.5, 0.5)
    with warnings.catch_warnings():
        # Only the parameters are used, never their covariance.
        warnings.simplefilter("ignore", OptimizeWarning)
        params, _ = curve_fit(
            _power_law,
            n,
            y,
            p0=start,
            bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, 3.0]),
            maxfev=20_000,
        )
    return float(params[0]), float(params[1]), float(params[2])
