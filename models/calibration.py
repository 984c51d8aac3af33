"""Temperature scaling of out-of-fold logits, with an optional per-class bias.

Gradient-boosted trees averaged over folds are usually over- or under-confident.
One temperature ``T`` (and, optionally, one bias per class) fitted on out-of-fold
logits fixes most of that without changing the ranking of the classes:
``proba = softmax(logits / T + bias)``.

The module also holds the two numeric helpers the models share:
:func:`log_softmax` and :func:`multiclass_log_loss` (the competition metric).
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize, minimize_scalar
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Tags, TransformerTags
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)

PROBA_CLIP = 1e-15
"""Smallest probability used inside a log loss, as in the Kaggle metric."""

_LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))
# A coarse scalar search is enough: L-BFGS-B refines to `tol` afterwards.
_SCALAR_XATOL = 1e-4
# Bias bounds keep the optimiser finite when a class is absent from y.
_BIAS_BOUND = 30.0
_FORMAT_VERSION = 1

# (accepted types, predicate on the value, description used in error messages)
_ParameterRule = tuple[tuple[type, ...], Callable[[Any], bool], str]


def log_softmax(logits: ArrayLike) -> NDArray[np.float64]:
    """Row-wise log-softmax, computed stably by subtracting each row's maximum.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        Un-normalised log-probabilities.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Log-probabilities; ``np.exp`` of each row sums to 1.

    Examples
    --------
    >>> import numpy as np
    >>> np.exp(log_softmax([[0.0, 0.0], [1000.0, 0.0]])).round(3)
    array([[0.5, 0.5],
           [1. , 0. ]])
    """
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def multiclass_log_loss(
    y: ArrayLike,
    proba: ArrayLike,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Weighted multi-class log loss with probabilities clipped at ``1e-15``.

    This is the competition metric; every model and blend is scored with it so
    that numbers are comparable.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Integer labels in ``0 .. n_classes - 1`` (columns of `proba`).
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities; rows are used as given after clipping.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights; None weighs every sample 1.

    Returns
    -------
    float
        Mean of ``-log(proba[i, y[i]])``, weighted by `sample_weight`.

    Raises
    ------
    ValueError
        If shapes disagree, labels are out of range or weights are invalid.

    Examples
    --------
    >>> round(multiclass_log_loss([0, 1], [[0.5, 0.5], [0.2, 0.8]]), 4)
    0.4581
    """
    owner = "multiclass_log_loss"
    proba_array = _check_scores(proba, name="proba", owner=owner, min_columns=1)
    n_samples, n_classes = proba_array.shape
    labels = _check_labels(y, n_samples=n_samples, n_classes=n_classes, owner=owner)
    weights = _check_sample_weight(sample_weight, n_samples=n_samples, owner=owner)
    picked = np.clip(proba_array[np.arange(n_samples), labels], PROBA_CLIP, 1.0)
    return float(-np.sum(weights * np.log(picked)) / weights.sum())


class TemperatureScaler(BaseEstimator):
    """Calibrate logits with one temperature and, optionally, one bias per class.

    Fits ``T > 0`` (and ``bias``) minimising the weighted multinomial log loss
    of ``softmax(logits / T + bias)`` on held-out (out-of-fold) logits. A single
    temperature keeps the arg-max of every row; the per-class bias can also fix
    a class that is predicted too often overall (such as ties).

    Parameters
    ----------
    per_class_bias : bool, default=False
        - False: fit the temperature only; ``bias_`` is all zeros.
        - True: fit a bias vector jointly with the temperature; ``bias_[0]`` is
          fixed at 0 so the solution is unique.
    max_iter : int, default=100
        Iteration limit of each optimiser stage (a coarse bounded scalar search
        over ``log T``, then an L-BFGS-B refinement).
    tol : float, default=1e-10
        Tolerance (``ftol`` and ``gtol``) of the L-BFGS-B refinement.

    Attributes
    ----------
    temperature_ : float
        Fitted temperature, within ``[0.05, 20]``.
    bias_ : ndarray of shape (n_classes,)
        Fitted per-class bias (zeros when `per_class_bias` is False). A class
        other than 0 with no weight in `y` gets the lower bound, -30.
    n_classes_ : int
        Number of classes, the number of columns of the logits.
    classes_ : ndarray of shape (n_classes,)
        ``np.arange(n_classes_)``: column ``k`` is the probability of label ``k``.
    n_features_in_ : int
        Same as `n_classes_`.
    log_loss_before_ : float
        Log loss of ``softmax(logits)`` on the fitting data.
    log_loss_after_ : float
        Log loss of the calibrated probabilities on the fitting data; never
        above `log_loss_before_`.
    n_iter_ : int
        Iterations used by the L-BFGS-B stage.

    See Also
    --------
    log_softmax : Turn logits into log-probabilities.

    Notes
    -----
    Logits must be finite: when they are logs of probabilities, clip the
    probabilities first, e.g. ``np.log(np.clip(proba, 1e-15, 1))``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(scale=3.0, size=(5000, 3))
    >>> true_proba = np.exp(log_softmax(logits / 2.0))
    >>> cumulative = true_proba.cumsum(axis=1)
    >>> labels = (cumulative[:, :-1] < rng.random((5000, 1))).sum(axis=1)
    >>> scaler = TemperatureScaler().fit(logits, labels)
    >>> round(scaler.temperature_, 1)
    2.0
    >>> scaler.predict_proba(logits).sum(axis=1).round(12).min()
    np.float64(1.0)
    """

    # Allowed values per parameter, checked first in fit.
    _parameter_rules: ClassVar[dict[str, _ParameterRule]] = {
        "per_class_bias": ((bool, np.bool_), lambda value: True, "a bool"),
        "max_iter": ((numbers.Integral,), lambda value: value >= 1, "an int >= 1"),
        "tol": ((numbers.Real,), lambda value: 0 < value < 1, "a float in (0, 1)"),
    }

    def __init__(
        self,
        *,
        per_class_bias: bool = False,
        max_iter: int = 100,
        tol: float = 1e-10,
    ) -> None:
        self.per_class_bias = per_class_bias
        self.max_iter = max_iter
        self.tol = tol

    def __sklearn_tags__(self) -> Tags:
        """Declare that `fit` needs `y` and `transform` exists (estimator tags)."""
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags = TransformerTags()
        return tags

    def fit(
        self,
        logits: ArrayLike,
        y: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> TemperatureScaler:
        """Fit the temperature (and bias) on held-out logits.

        Parameters
        ----------
        logits : array-like of shape (n_samples, n_classes)
            Finite un-normalised log-probabilities, ``n_classes >= 2``.
        y : array-like of shape (n_samples,)
            Integer labels in ``0 .. n_classes - 1``.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; None weighs every sample 1.

        Returns
        -------
        TemperatureScaler
            The fitted scaler (``self``).

        Raises
        ------
        TypeError
            If a parameter or the input has the wrong type (e.g. sparse).
        ValueError
            If a parameter value is invalid, or the logits are not a finite
            2-D array, or `y`/`sample_weight` do not match them.
        """
        _check_params(self, self._parameter_rules)
        owner = f"{type(self).__name__}.fit"
        logit_array = _check_scores(logits, name="logits", owner=owner)
        n_samples, n_classes = logit_array.shape
        labels = _check_labels(y, n_samples=n_samples, n_classes=n_classes, owner=owner)
        weights = _check_sample_weight(sample_weight, n_samples=n_samples, owner=owner)
        weights = weights / weights.sum()
        # bias_[0] stays 0 so the solution is unique. A class with no weight in y
        # has its optimum at the lower bound: fix it there, since the loss is
        # flat in that direction and a free bias would stop anywhere on it.
        fixed_bias = np.zeros(n_classes)
        free_classes = np.arange(1 if self.per_class_bias else n_classes, n_classes)
        absent = np.bincount(labels, weights=weights, minlength=n_classes) == 0
        fixed_bias[free_classes[absent[free_classes]]] = -_BIAS_BOUND
        free_classes = free_classes[~absent[free_classes]]

        def unpack(params: NDArray[np.float64]) -> tuple[float, NDArray]:
            bias = fixed_bias.copy()
            bias[free_classes] = params[1:]
            return float(params[0]), bias

        def objective(params: NDArray[np.float64]) -> tuple[float, NDArray]:
            log_temperature, bias = unpack(params)
            return _scaled_nll(
                log_temperature, bias, logit_array, labels, weights, free_classes
            )

        # The optimiser works on 1 + n_classes numbers: BLAS threads only add
        # synchronisation cost, which dominates on a busy machine.
        with threadpool_limits(limits=1, user_api="blas"):
            # Stage 1: the loss is unimodal in log T, so a coarse bounded scalar
            # search gives a good start for the joint (T, bias) problem.
            zero_bias = np.zeros(free_classes.size)
            scalar = minimize_scalar(
                lambda log_t: objective(np.r_[log_t, zero_bias])[0],
                bounds=_LOG_T_BOUNDS,
                method="bounded",
                options={"xatol": _SCALAR_XATOL, "maxiter": int(self.max_iter)},
            )
            start = np.r_[scalar.x, zero_bias]
            bounds = [_LOG_T_BOUNDS] + [(-_BIAS_BOUND, _BIAS_BOUND)] * zero_bias.size
            # Stage 2: refine with gradients (and fit the bias, if any).
            result = minimize(
                objective,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={
                    "maxiter": int(self.max_iter),
                    "ftol": float(self.tol),
                    "gtol": float(self.tol),
                },
            )
        if result.status == 1:
            warnings.warn(
                f"{owner} did not converge in max_iter={self.max_iter} iterations "
                f"(loss {float(result.fun):.6f}). Increase max_iter or check the "
                "logits for extreme values.",
                ConvergenceWarning,
                stacklevel=2,
            )
        best = result.x if result.fun <= objective(start)[0] else start
        log_temperature, bias = unpack(best)
        # T = 1 and zero bias is always feasible, so never return anything worse.
        identity_loss = _scaled_nll(
            0.0, np.zeros(n_classes), logit_array, labels, weights, free_classes
        )[0]
        if identity_loss < objective(best)[0]:
            log_temperature, bias = 0.0, np.zeros(n_classes)

        self.temperature_ = float(np.exp(log_temperature))
        self.bias_ = bias
        self.n_classes_ = n_classes
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = n_classes
        self.n_iter_ = int(result.nit)
        self.log_loss_before_ = multiclass_log_loss(
            labels, np.exp(log_softmax(logit_array)), weights
        )
        self.log_loss_after_ = multiclass_log_loss(
            labels, np.exp(self._calibrated_log_proba(logit_array)), weights
        )
        logger.info(
            "temperature scaling: T=%.4f, log loss %.5f -> %.5f on %d samples",
            self.temperature_,
            self.log_loss_before_,
            self.log_loss_after_,
            n_samples,
        )
        return self

    def fit_transform(
        self,
        logits: ArrayLike,
        y: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> NDArray[np.float64]:
        """Fit on `logits`, then return their calibrated logits.

        Parameters
        ----------
        logits : array-like of shape (n_samples, n_classes)
            Finite un-normalised log-probabilities, ``n_classes >= 2``.
        y : array-like of shape (n_samples,)
            Integer labels in ``0 .. n_classes - 1``.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; None weighs every sample 1.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            ``self.fit(logits, y, sample_weight).transform(logits)``.
        """
        return self.fit(logits, y, sample_weight).transform(logits)

    def transform(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Return calibrated logits, as log-probabilities.

        Parameters
        ----------
        logits : array-like of shape (n_samples, n_classes)
            Finite logits with the same columns as in `fit`.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            ``log_softmax(logits / temperature_ + bias_)``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before `fit`.
        ValueError
            If the logits are not a finite 2-D array with `n_classes_` columns.
        """
        check_is_fitted(self)
        logit_array = _check_scores(
            logits,
            name="logits",
            owner=f"{type(self).__name__}.transform",
            min_columns=1,
        )
        _check_n_columns(logit_array, self.n_classes_, type(self).__name__)
        return self._calibrated_log_proba(logit_array)

    def predict_proba(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Return calibrated probabilities; each row sums to 1.

        Parameters
        ----------
        logits : array-like of shape (n_samples, n_classes)
            Finite logits with the same columns as in `fit`.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            ``softmax(logits / temperature_ + bias_)``, columns in `classes_`
            order.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before `fit`.
        ValueError
            If the logits are not a finite 2-D array with `n_classes_` columns.
        """
        return np.exp(self.transform(logits))

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters and fitted state as a JSON-serialisable dict.

        Returns
        -------
        dict
            Plain Python values only; :meth:`from_dict` rebuilds the scaler.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If called before `fit`.

        Examples
        --------
        >>> import json
        >>> scaler = TemperatureScaler().fit([[2.0, 0.0], [0.0, 2.0]], [1, 0])
        >>> rebuilt = TemperatureScaler.from_dict(json.loads(json.dumps(
        ...     scaler.to_dict())))
        >>> rebuilt.temperature_ == scaler.temperature_
        True
        """
        check_is_fitted(self)
        return {
            "estimator": type(self).__name__,
            "format_version": _FORMAT_VERSION,
            "params": {
                "per_class_bias": bool(self.per_class_bias),
                "max_iter": int(self.max_iter),
                "tol": float(self.tol),
            },
            "temperature": self.temperature_,
            "bias": [float(value) for value in self.bias_],
            "n_iter": self.n_iter_,
            "log_loss_before": self.log_loss_before_,
            "log_loss_after": self.log_loss_after_,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> TemperatureScaler:
        """Rebuild a fitted scaler from the output of :meth:`to_dict`.

        Parameters
        ----------
        state : mapping
            A dict produced by :meth:`to_dict` (for example read back from JSON).

        Returns
        -------
        TemperatureScaler
            A fitted scaler whose predictions equal the original's.

        Raises
        ------
        ValueError
            If `state` is not a saved TemperatureScaler of a known format.
        """
        _check_state_header(state, cls.__name__, _FORMAT_VERSION)
        try:
            scaler = cls(**state["params"])
            temperature = float(state["temperature"])
            bias = np.asarray(state["bias"], dtype=np.float64)
            scaler.n_iter_ = int(state["n_iter"])
            scaler.log_loss_before_ = float(state["log_loss_before"])
            scaler.log_loss_after_ = float(state["log_loss_after"])
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"saved {cls.__name__} state is missing or has a bad field ({err}). "
                "Pass the unchanged output of to_dict()."
            ) from err
        if not (temperature > 0 and np.isfinite(temperature)):
            raise ValueError(
                f"The 'temperature' of {cls.__name__} must be > 0. "
                f"Got {temperature!r}. Pass the unchanged output of to_dict()."
            )
        if bias.ndim != 1 or bias.size < 2 or not np.all(np.isfinite(bias)):
            raise ValueError(
                f"The 'bias' of saved {cls.__name__} must be a finite list of at "
                f"least 2 numbers. Got {state['bias']!r}. Pass the unchanged output "
                "of to_dict()."
            )
        scaler.temperature_ = temperature
        scaler.bias_ = bias
        scaler.n_classes_ = int(bias.size)
        scaler.classes_ = np.arange(bias.size)
        scaler.n_features_in_ = int(bias.size)
        return scaler

    def _calibrated_log_proba(
        self, logit_array: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        return log_softmax(logit_array / self.temperature_ + self.bias_)


def _scaled_nll(
    log_temperature: float,
    bias: NDArray[np.float64],
    logits: NDArray[np.float64],
    labels: NDArray[np.intp],
    weights: NDArray[np.float64],
    free_classes: NDArray[np.intp],
) -> tuple[float, NDArray[np.float64]]:
    """Weighted NLL of softmax(logits / T + bias) and its gradient.

    The gradient is with respect to ``[log T, bias[free_classes]]``; `weights`
    sum to 1.
    """
    inverse_temperature = np.exp(-log_temperature)
    log_proba = log_softmax(logits * inverse_temperature + bias)
    rows = np.arange(labels.size)
    # Elementwise products, not BLAS dot: faster on busy machines for this size.
    loss = -float((weights * log_proba[rows, labels]).sum())
    # d loss / d scaled logits = w_i * (p_ik - [k == y_i])
    residual = np.exp(log_proba)
    residual[rows, labels] -= 1.0
    residual *= weights[:, None]
    gradient = np.empty(1 + free_classes.size)
    gradient[0] = -inverse_temperature * float(np.sum(residual * logits))
    gradient[1:] = residual[:, free_classes].sum(axis=0)
    return loss, gradient


def _check_params(
    estimator: BaseEstimator,
    rules: Mapping[str, _ParameterRule],
) -> None:
    """Check each parameter of `estimator` against its (types, predicate, text) rule.

    Shared with :mod:`models.stacking`.
    """
    name = type(estimator).__name__
    for param, (types, predicate, description) in rules.items():
        value = getattr(estimator, param)
        is_bool = isinstance(value, (bool, np.bool_))
        if not isinstance(value, types) or (is_bool and bool not in types):
            raise TypeError(
                f"The {param!r} parameter of {name} must be {description}. "
                f"Got {value!r} of type {type(value).__name__}. "
                f"Pass {param}=... with {description}."
            )
        if not predicate(value):
            raise ValueError(
                f"The {param!r} parameter of {name} must be {description}. "
                f"Got {value!r}. Pass {param}=... with {description}."
            )


def _check_scores(
    values: ArrayLike,
    *,
    name: str,
    owner: str,
    min_columns: int = 2,
) -> NDArray[np.float64]:
    """Return `values` as a finite float64 (n_samples, n_columns) array, or raise.

    `name` and `owner` say where the bad input went, e.g. ``logits`` and
    ``TemperatureScaler.fit``. Shared with :mod:`models.stacking`.
    """
    if scipy.sparse.issparse(values):
        raise TypeError(
            f"{owner}: {name} is a sparse matrix, which is not supported. "
            "Convert it with .toarray() first."
        )
    raw = np.asarray(values)
    if np.iscomplexobj(raw):
        raise ValueError(
            f"{owner}: Complex data not supported in {name}. Pass real numbers."
        )
    if raw.ndim != 2:
        raise ValueError(
            f"{owner}: {name} must be a 2-D array of shape (n_samples, n_classes); "
            f"got {raw.ndim}-D with shape {raw.shape}. Reshape your data, e.g. "
            "with array.reshape(1, -1) for a single sample."
        )
    try:
        array = raw.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise type(err)(
            f"{owner}: {name} must hold numbers ({err}). Convert it to floats."
        ) from err
    n_samples, n_columns = array.shape
    if n_samples == 0:
        raise ValueError(
            f"{owner}: {name} has 0 sample(s) (shape={array.shape}) while a "
            "minimum of 1 is required. Pass at least one row."
        )
    if n_columns < min_columns:
        raise ValueError(
            f"{owner}: {name} has {n_columns} feature(s) (shape={array.shape}) "
            f"while a minimum of {min_columns} is required. Pass one column per "
            "class."
        )
    if not np.all(np.isfinite(array)):
        bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise ValueError(
            f"{owner}: {name} contains NaN or infinity in row(s) "
            f"{bad_rows[:5].tolist()}. Clip probabilities before taking logs, "
            "e.g. np.log(np.clip(proba, 1e-15, 1))."
        )
    return array


def _check_n_columns(array: NDArray, n_expected: int, name: str) -> None:
    """Raise when `array` has another number of columns than seen in fit."""
    if array.shape[1] != n_expected:
        raise ValueError(
            f"X has {array.shape[1]} features, but {name} is expecting "
            f"{n_expected} features as input. Pass one column per class, in the "
            "same order as in fit."
        )


def _check_labels(
    y: ArrayLike | None,
    *,
    n_samples: int,
    n_classes: int,
    owner: str,
) -> NDArray[np.intp]:
    """Return `y` as integer labels in ``0 .. n_classes - 1``, or raise."""
    if y is None:
        raise ValueError(
            f"{owner} requires y to be passed, but the target y is None. "
            "Pass integer labels 0 .. n_classes - 1."
        )
    raw = np.asarray(y)
    if raw.ndim != 1:
        raise ValueError(
            f"{owner}: y should be a 1d array; got shape {raw.shape}. "
            "Pass one integer label per row, e.g. y.ravel()."
        )
    if raw.shape[0] != n_samples:
        raise ValueError(
            f"{owner}: y has {raw.shape[0]} labels but there are {n_samples} rows "
            "(inconsistent numbers of samples). Pass one label per row."
        )
    try:
        numeric = raw.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{owner}: y must hold integer labels 0 .. {n_classes - 1} ({err}). "
            "Encode the classes as integers in column order."
        ) from err
    valid = np.isfinite(numeric) & (numeric == np.round(numeric))
    valid &= (numeric >= 0) & (numeric <= n_classes - 1)
    if not np.all(valid):
        bad = np.unique(raw[~valid])[:5].tolist()
        raise ValueError(
            f"{owner}: y must hold integer labels 0 .. {n_classes - 1} (one per "
            f"column); got {bad!r}. Encode the classes as integers in column order."
        )
    return numeric.astype(np.intp)


def _check_sample_weight(
    sample_weight: ArrayLike | None,
    *,
    n_samples: int,
    owner: str,
) -> NDArray[np.float64]:
    """Return finite non-negative weights with a positive sum (ones for None)."""
    if sample_weight is None:
        return np.ones(n_samples)
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_samples,):
        raise ValueError(
            f"{owner}: sample_weight has shape {weights.shape} but expected "
            f"({n_samples},). Pass one weight per row."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            f"{owner}: sample_weight must be finite and non-negative; got min "
            f"{np.nanmin(weights)!r}. Fix or drop the bad weights."
        )
    if weights.sum() <= 0:
        raise ValueError(
            f"{owner}: sample_weight sums to zero (every weight is zero). Give at "
            "least one row a positive weight."
        )
    return weights


def _check_state_header(
    state: Mapping[str, Any], estimator_name: str, format_version: int
) -> None:
    """Check that `state` is a saved `estimator_name` of a known format version."""
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{estimator_name}.from_dict expects a dict from to_dict(); got "
            f"{type(state).__name__}. Pass the parsed JSON object."
        )
    found = (state.get("estimator"), state.get("format_version"))
    if found != (estimator_name, format_version):
        raise ValueError(
            f"{estimator_name}.from_dict: state is for estimator {found[0]!r} "
            f"format {found[1]!r}, expected {estimator_name!r} format "
            f"{format_version}. Save it again with {estimator_name}.to_dict()."
        )
