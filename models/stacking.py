"""Combine the out-of-fold class probabilities of several boosters into one.

Each base model (LightGBM, XGBoost, ...) gives an (n_samples, n_classes)
probability array. :class:`BoosterStacker` learns, on out-of-fold predictions,
either a convex blend of those arrays or a multinomial logistic regression on
their log-probabilities, and by default keeps whichever scores better, never
doing worse than the best single input.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted

from features.validation import Interval, Options, ParameterTable, check_parameters
from models._blas import single_blas_thread
from models._inputs import (
    check_n_columns,
    check_scores,
    check_state_header,
    check_targets,
)
from models.metrics import PROBA_CLIP, log_softmax, multiclass_log_loss

logger = logging.getLogger(__name__)

STACK_METHODS: tuple[str, ...] = ("auto", "blend", "logreg")
"""Values of :class:`BoosterStacker`'s ``method`` (and of ``PreferenceModel``'s
``stack_method``)."""
# What `method_` can be after fit; "best_single" is weight 1 on the best input.
_FITTED_METHODS = ("best_single", "blend", "logreg")
_CV_FOLDS = 5
_CV_SEED = 0
_LOGREG_MAX_ITER = 1000
_FORMAT_VERSION = 1

ProbasLike = ArrayLike | list[ArrayLike] | tuple[ArrayLike, ...]
"""Base-model probabilities: a list of (n, K) arrays, one (n, K) or (M, n, K)."""


class BoosterStacker(BaseEstimator):
    """Blend or stack the out-of-fold probabilities of several base models.

    Fitting on out-of-fold predictions keeps the combination honest: the
    weights learn how good each model is on data it did not train on.

    Parameters
    ----------
    method : {"auto", "blend", "logreg"}, default="auto"
        - "blend": non-negative weights summing to 1, minimising the log loss
          of the weighted average of the probabilities (starts from the best
          single model, so it is never worse than it).
        - "logreg": multinomial logistic regression on the concatenated
          log-probabilities of all models.
        - "auto": fit both, score the logistic regression by a 5-fold
          stratified cross-validated prediction and the blend on the fitting
          data, and keep the better; falls back to the best single input
          (``method_ == "best_single"``) when neither beats it.
    C : float, default=1.0
        Inverse L2 regularisation strength of the logistic regression.

    Attributes
    ----------
    method_ : {"best_single", "blend", "logreg"}
        The combination used by `predict_proba`.
    weights_ : ndarray of shape (n_models,) or None
        Blend weights (one-hot for "best_single"); None for "logreg".
    coef_ : ndarray of shape (n_classes, n_models * n_classes) or None
        Logistic-regression coefficients in softmax form (feature
        ``m * n_classes + k`` is ``log proba`` of class ``k`` from model ``m``);
        None unless ``method_ == "logreg"``.
    intercept_ : ndarray of shape (n_classes,) or None
        Logistic-regression intercepts; None unless ``method_ == "logreg"``.
    oof_log_loss_ : dict of str to float
        Log loss on the out-of-fold inputs of each candidate that was scored:
        "best_single"; "blend", scored on the rows it was fitted on (only
        n_models - 1 free weights); "logreg", from a cross-validated prediction
        (absent when a class has fewer than 2 samples).
    n_models_ : int
        Number of base models.
    n_classes_ : int
        Number of classes (columns of each probability array).
    classes_ : ndarray of shape (n_classes,)
        ``np.arange(n_classes_)``.
    n_features_in_ : int
        Same as `n_classes_`: the columns of each input array.

    Notes
    -----
    Input forms accepted by `fit` and `predict_proba`:

    - a list or tuple of M arrays of shape (n_samples, n_classes), one per model;
    - a 3-D array of shape (M, n_samples, n_classes);
    - a 2-D array of shape (n_samples, n_classes), read as a single model (M = 1).
      This is the form scikit-learn's generic checks use.

    Values must be finite and non-negative. Each row is clipped at
    :data:`models.metrics.PROBA_CLIP` and divided by its sum, so probabilities
    stored as float32 are fine; pass probabilities, not logits.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, size=1000)
    >>> good = np.full((1000, 3), 0.2)
    >>> good[np.arange(1000), labels] = 0.6
    >>> noise = rng.dirichlet(np.ones(3), size=1000)
    >>> stacker = BoosterStacker(method="blend").fit([good, noise], labels)
    >>> stacker.weights_.round(2)
    array([1., 0.])
    >>> stacker.predict_proba([good, noise]).shape
    (1000, 3)
    """

    # Allowed values per parameter, checked first in fit.
    _allowed_values: ClassVar[ParameterTable] = {
        "method": [Options(STACK_METHODS)],
        "C": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        method: Literal["auto", "blend", "logreg"] = "auto",
        C: float = 1.0,
    ) -> None:
        self.method = method
        self.C = C

    def __sklearn_tags__(self) -> Tags:
        """Declare that `fit` needs `y` and non-negative input (estimator tags)."""
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.positive_only = True
        return tags

    def fit(
        self,
        probas: ProbasLike,
        y: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> BoosterStacker:
        """Learn how to combine the base models from out-of-fold probabilities.

        Parameters
        ----------
        probas : list of array-like of shape (n_samples, n_classes), or array-like
            Out-of-fold probabilities of the M >= 1 base models; see Notes of
            the class for the accepted forms.
        y : array-like of shape (n_samples,)
            Integer labels in ``0 .. n_classes - 1``.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; None weighs every sample 1.

        Returns
        -------
        BoosterStacker
            The fitted stacker (``self``).

        Raises
        ------
        InvalidParameterError
            If a parameter is outside its allowed values.
        TypeError
            If the input has the wrong type (e.g. sparse).
        ValueError
            If the probabilities are malformed, `y`/`sample_weight` do not match
            them, or ``method="logreg"`` and a class is missing from `y`.
        """
        check_parameters(self)
        owner = f"{type(self).__name__}.fit"
        stacked = _check_probas(probas, owner=owner)
        n_models, n_samples, n_classes = stacked.shape
        labels, weights = check_targets(
            y, sample_weight, n_samples=n_samples, n_classes=n_classes, owner=owner
        )
        missing = np.setdiff1d(np.arange(n_classes), labels)
        if self.method == "logreg" and missing.size:
            raise ValueError(
                f"{owner}: method='logreg' needs every class in y, but class(es) "
                f"{missing.tolist()} never occur. Use method='blend' or add samples "
                "of every class."
            )
        # The solvers sum over every row; on one BLAS thread the sums, and so
        # the weights, are bit-identical whatever the process's thread count.
        with single_blas_thread():
            candidates = self._score_candidates(
                stacked, labels, weights, every_class=not missing.size
            )
            chosen = (
                _best_candidate(candidates.scores)
                if self.method == "auto"
                else self.method
            )
            self._keep(chosen, candidates, labels, weights)
        logger.info(
            "stacking %d models on %d samples: chose %s; OOF log loss %s",
            n_models,
            n_samples,
            chosen,
            {name: round(score, 5) for name, score in candidates.scores.items()},
        )
        return self

    def _score_candidates(
        self,
        stacked: NDArray[np.float64],
        labels: NDArray[np.intp],
        weights: NDArray[np.float64],
        *,
        every_class: bool,
    ) -> _Candidates:
        """Fit and score, on the out-of-fold inputs, the combinations `method` allows.

        The logistic regression is scored by a cross-validated prediction and
        only when every class occurs; the blend on the rows it was fitted on.
        """
        best_single, best_single_loss = _best_single_weights(stacked, labels, weights)
        scores = {"best_single": best_single_loss}
        blend_weights = None
        if self.method in ("auto", "blend"):
            blend_weights = _fit_blend_weights(stacked, labels, weights, best_single)
            blend_proba = np.tensordot(blend_weights, stacked, axes=1)
            scores["blend"] = multiclass_log_loss(labels, blend_proba, weights)
        features = None
        if self.method in ("auto", "logreg") and every_class:
            features = _log_features(stacked)
            cv_proba = _cross_validated_logreg_proba(
                features, labels, weights, float(self.C), stacked.shape[2]
            )
            if cv_proba is not None:
                scores["logreg"] = multiclass_log_loss(labels, cv_proba, weights)
        return _Candidates(
            scores, best_single, blend_weights, features, n_classes=stacked.shape[2]
        )

    def _keep(
        self,
        chosen: str,
        candidates: _Candidates,
        labels: NDArray[np.intp],
        weights: NDArray[np.float64],
    ) -> None:
        """Store the chosen combination, refitting a logistic regression on all rows."""
        n_models = candidates.best_single.size
        n_classes = candidates.n_classes
        self.method_ = chosen
        self.weights_ = {
            "best_single": candidates.best_single,
            "blend": candidates.blend_weights,
        }.get(chosen)
        self.coef_ = None
        self.intercept_ = None
        if chosen == "logreg":
            self.coef_, self.intercept_ = _fit_logreg(
                candidates.log_features, labels, weights, float(self.C), n_classes
            )
        self.oof_log_loss_ = candidates.scores
        self.n_models_ = n_models
        self.n_classes_ = n_classes
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = n_classes

    def predict_proba(self, probas: ProbasLike) -> NDArray[np.float64]:
        """Combine the base models' probabilities; each row sums to 1.

        Parameters
        ----------
        probas : list of array-like of shape (n_samples, n_classes), or array-like
            Probabilities of the same base models, in the same order, as in
            `fit`.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Combined probabilities, columns in `classes_` order.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before `fit`.
        ValueError
            If the number of models or classes differs from `fit`.
        """
        check_is_fitted(self)
        name = type(self).__name__
        stacked = _check_probas(probas, owner=f"{name}.predict_proba", min_columns=1)
        if stacked.shape[0] != self.n_models_:
            raise ValueError(
                f"{name}.predict_proba: got {stacked.shape[0]} model(s) but the "
                f"stacker was fitted on {self.n_models_}. Pass the same base models "
                "in the same order as in fit."
            )
        check_n_columns(stacked[0], self.n_classes_, name)
        if self.method_ == "logreg":
            scores = _log_features(stacked) @ self.coef_.T + self.intercept_
            return np.exp(log_softmax(scores))
        combined = np.tensordot(self.weights_, stacked, axes=1)
        return combined / combined.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters and fitted state as a JSON-serialisable dict.

        The logistic regression is stored as its coefficients, so no pickle is
        needed to save or load a stacker.

        Returns
        -------
        dict
            Plain Python values only; :meth:`from_dict` rebuilds the stacker.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before `fit`.

        Examples
        --------
        >>> import json
        >>> import numpy as np
        >>> proba = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
        >>> stacker = BoosterStacker(method="blend").fit([proba], [0, 1, 1])
        >>> state = json.loads(json.dumps(stacker.to_dict()))
        >>> BoosterStacker.from_dict(state).predict_proba([proba]).round(2)[0]
        array([0.7, 0.3])
        """
        check_is_fitted(self)

        def as_list(array: NDArray | None) -> list | None:
            return None if array is None else np.asarray(array, dtype=float).tolist()

        return {
            "estimator": type(self).__name__,
            "format_version": _FORMAT_VERSION,
            "params": {"method": str(self.method), "C": float(self.C)},
            "method": self.method_,
            "n_models": self.n_models_,
            "n_classes": self.n_classes_,
            "weights": as_list(self.weights_),
            "coef": as_list(self.coef_),
            "intercept": as_list(self.intercept_),
            "oof_log_loss": {
                key: float(value) for key, value in self.oof_log_loss_.items()
            },
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> BoosterStacker:
        """Rebuild a fitted stacker from the output of :meth:`to_dict`.

        Parameters
        ----------
        state : mapping
            A dict produced by :meth:`to_dict` (for example read back from JSON).

        Returns
        -------
        BoosterStacker
            A fitted stacker whose predictions equal the original's.

        Raises
        ------
        ValueError
            If `state` is not a saved BoosterStacker of a known format, or its
            arrays have the wrong shapes.
        """
        check_state_header(state, cls.__name__, _FORMAT_VERSION)
        where = f"{cls.__name__}.from_dict"
        try:
            stacker = cls(**state["params"])
            method = state["method"]
            n_models = int(state["n_models"])
            n_classes = int(state["n_classes"])
            oof_log_loss = {
                str(key): float(value) for key, value in state["oof_log_loss"].items()
            }
            arrays = {
                key: None if state[key] is None else np.asarray(state[key], dtype=float)
                for key in ("weights", "coef", "intercept")
            }
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(
                f"{where}: saved state is missing or has a bad field ({err}). Pass "
                "the unchanged output of to_dict()."
            ) from err
        if method not in _FITTED_METHODS:
            raise ValueError(
                f"{where}: unknown fitted method {method!r}; expected one of "
                f"{_FITTED_METHODS!r}. Pass the unchanged output of to_dict()."
            )
        expected_shapes = (
            {"coef": (n_classes, n_models * n_classes), "intercept": (n_classes,)}
            if method == "logreg"
            else {"weights": (n_models,)}
        )
        for key, shape in expected_shapes.items():
            array = arrays[key]
            if array is None or array.shape != shape or not np.all(np.isfinite(array)):
                raise ValueError(
                    f"{where}: {key!r} of a {method!r} stacker must be finite with "
                    f"shape {shape}; got {state[key]!r}. Pass the unchanged output "
                    "of to_dict()."
                )
        stacker.method_ = method
        stacker.weights_ = arrays["weights"] if method != "logreg" else None
        stacker.coef_ = arrays["coef"] if method == "logreg" else None
        stacker.intercept_ = arrays["intercept"] if method == "logreg" else None
        stacker.oof_log_loss_ = oof_log_loss
        stacker.n_models_ = n_models
        stacker.n_classes_ = n_classes
        stacker.classes_ = np.arange(n_classes)
        stacker.n_features_in_ = n_classes
        return stacker


@dataclass(frozen=True)
class _Candidates:
    """The combinations scored on the out-of-fold inputs, and what refits them."""

    scores: dict[str, float]
    """Log loss of each candidate scored, by name."""
    best_single: NDArray[np.float64]
    """One-hot blend weights of the best input model."""
    blend_weights: NDArray[np.float64] | None
    """Fitted blend weights; None when the blend was not a candidate."""
    log_features: NDArray[np.float64] | None
    """Inputs of the logistic regression; None when it was not a candidate."""
    n_classes: int
    """Columns of each input array."""


def _check_probas(
    probas: ProbasLike, *, owner: str, min_columns: int = 2
) -> NDArray[np.float64]:
    """Return the models' probabilities as a (M, n, K) array with rows summing to 1.

    Rows are clipped at `PROBA_CLIP` then normalised, so logs are finite.
    """
    if isinstance(probas, (list, tuple)):
        if not probas:
            raise ValueError(
                f"{owner}: probas is an empty list. Pass one (n_samples, n_classes) "
                "array per base model."
            )
        arrays = [
            check_scores(
                model_proba,
                name=f"probas[{index}]",
                owner=owner,
                min_columns=min_columns,
            )
            for index, model_proba in enumerate(probas)
        ]
        shapes = [array.shape for array in arrays]
        if len(set(shapes)) > 1:
            raise ValueError(
                f"{owner}: the base models' probability arrays differ in shape "
                f"{shapes}. Pass arrays for the same rows and classes."
            )
    elif scipy.sparse.issparse(probas):
        arrays = [
            check_scores(probas, name="probas", owner=owner, min_columns=min_columns)
        ]
    else:
        raw = np.asarray(probas)
        if raw.ndim == 3:
            arrays = [
                check_scores(
                    model_proba,
                    name=f"probas[{index}]",
                    owner=owner,
                    min_columns=min_columns,
                )
                for index, model_proba in enumerate(raw)
            ]
        elif raw.ndim == 2:
            arrays = [
                check_scores(raw, name="probas", owner=owner, min_columns=min_columns)
            ]
        else:
            raise ValueError(
                f"{owner}: probas must be a list of (n_samples, n_classes) arrays, "
                "a 2-D array (one model) or a 3-D array (n_models, n_samples, "
                f"n_classes); got {raw.ndim}-D with shape {raw.shape}. Reshape "
                "your data, e.g. with array.reshape(1, -1) for a single sample."
            )
    stacked = np.stack(arrays)
    if np.any(stacked < 0):
        model_index = int(np.flatnonzero((stacked < 0).any(axis=(1, 2)))[0])
        raise ValueError(
            f"{owner}: Negative values in data: probas[{model_index}] has min "
            f"{float(stacked[model_index].min())!r}; it must hold probabilities. "
            "Pass probabilities (e.g. np.exp(log_proba)), not logits."
        )
    stacked = np.clip(stacked, PROBA_CLIP, None)
    return stacked / stacked.sum(axis=2, keepdims=True)


def _best_single_weights(
    stacked: NDArray[np.float64],
    labels: NDArray[np.intp],
    weights: NDArray[np.float64],
) -> tuple[NDArray[np.float64], float]:
    """One-hot blend weights of the best input model, and its log loss."""
    losses = [multiclass_log_loss(labels, proba, weights) for proba in stacked]
    best_index = int(np.argmin(losses))
    one_hot = np.zeros(len(stacked))
    one_hot[best_index] = 1.0
    return one_hot, losses[best_index]


def _best_candidate(scores: Mapping[str, float]) -> str:
    """The candidate with the lowest log loss; a tie keeps the simpler one.

    Strict improvement is needed, in the order best_single, blend, logreg.
    """
    chosen = "best_single"
    for candidate in ("blend", "logreg"):
        if candidate in scores and scores[candidate] < scores[chosen]:
            chosen = candidate
    return chosen


def _log_features(stacked: NDArray[np.float64]) -> NDArray[np.float64]:
    """(M, n, K) probabilities -> (n, M * K) log-probabilities, model-major."""
    n_models, n_samples, n_classes = stacked.shape
    return np.log(stacked).transpose(1, 0, 2).reshape(n_samples, n_models * n_classes)


def _fit_blend_weights(
    stacked: NDArray[np.float64],
    labels: NDArray[np.intp],
    weights: NDArray[np.float64],
    start: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Simplex weights minimising the weighted log loss of the blend.

    The loss is convex in the weights; SLSQP starts at `start` (the best single
    model) and its result is only kept when it scores better than the start.
    """
    if stacked.shape[0] == 1:
        return start.copy()
    n_samples = labels.size
    # Only the probability of the true class enters the log loss.
    true_class = stacked[:, np.arange(n_samples), labels].T
    normalised = weights / weights.sum()

    def objective(blend: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        mixed = np.maximum(true_class @ blend, PROBA_CLIP)
        loss = -float(normalised @ np.log(mixed))
        return loss, -(normalised / mixed) @ true_class

    result = minimize(
        objective,
        start,
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * start.size,
        constraints=[
            {
                "type": "eq",
                "fun": lambda blend: blend.sum() - 1.0,
                "jac": lambda blend: np.ones_like(blend),
            }
        ],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    blend = np.clip(result.x, 0.0, None)
    if not np.all(np.isfinite(blend)) or blend.sum() <= 0:
        return start.copy()
    blend /= blend.sum()
    return blend if objective(blend)[0] < objective(start)[0] else start.copy()


def _fit_logreg(
    features: NDArray[np.float64],
    labels: NDArray[np.intp],
    weights: NDArray[np.float64],
    C: float,
    n_classes: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fit a multinomial logistic regression; return softmax-form (coef, intercept).

    Every class must occur in `labels`.
    """
    model = LogisticRegression(C=C, max_iter=_LOGREG_MAX_ITER)
    # The design matrix has only n_models * n_classes columns, so BLAS threads
    # add synchronisation cost and no speed (about 18x slower on 2 busy cores);
    # one thread also keeps the coefficients bit-identical across machines.
    with single_blas_thread():
        model.fit(features, labels, sample_weight=weights)
    coef, intercept = model.coef_, model.intercept_
    if n_classes == 2:
        # Binary models output one row: sigmoid(z) == softmax([0, z])[1].
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.r_[0.0, intercept]
    return coef.astype(np.float64), intercept.astype(np.float64)


def _cross_validated_logreg_proba(
    features: NDArray[np.float64],
    labels: NDArray[np.intp],
    weights: NDArray[np.float64],
    C: float,
    n_classes: int,
) -> NDArray[np.float64] | None:
    """Out-of-fold logistic-regression probabilities (None when too few samples).

    Uses up to 5 stratified folds with a fixed seed; never more folds than the
    rarest class has samples, so every training fold sees every class.
    """
    n_splits = min(_CV_FOLDS, int(np.bincount(labels, minlength=n_classes).min()))
    if n_splits < 2:
        return None
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=_CV_SEED)
    proba = np.empty((labels.size, n_classes))
    for train, test in folds.split(features, labels):
        coef, intercept = _fit_logreg(
            features[train], labels[train], weights[train], C, n_classes
        )
        proba[test] = np.exp(log_softmax(features[test] @ coef.T + intercept))
    return proba
