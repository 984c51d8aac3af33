"""Temperature scaling of out-of-fold logits, with an optional per-class bias.

Gradient-boosted trees averaged over folds are usually over- or under-confident.
One temperature ``T`` (and, optionally, one bias per class) fitted on out-of-fold
logits fixes most of that without changing the ranking of the classes:
``proba = softmax(logits / T + bias)``.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeResult, minimize, minimize_scalar
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Tags, TransformerTags
from sklearn.utils.validation import check_is_fitted

from features.validation import Interval, ParameterTable, check_parameters
from models._blas import single_blas_thread
from models._inputs import (
    check_n_columns,
    check_scores,
    check_state_header,
    check_targets,
)
from models.metrics import log_softmax, multiclass_log_loss

logger = logging.getLogger(__name__)

_LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))
# A coarse scalar search is enough: L-BFGS-B refines to `tol` afterwards.
_SCALAR_XATOL = 1e-4
# Bias bounds keep the optimiser finite when a class is absent from y.
_BIAS_BOUND = 30.0
_FORMAT_VERSION = 1


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
    probabilities first, e.g. with :func:`models.metrics.clipped_log`.

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
    _allowed_values: ClassVar[ParameterTable] = {
        "per_class_bias": [bool],
        "max_iter": [Interval(numbers.Integral, 1, None)],
        "tol": [Interval(numbers.Real, 0, 1, closed="neither")],
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
        InvalidParameterError
            If a parameter is outside its allowed values.
        TypeError
            If the input has the wrong type (e.g. sparse).
        ValueError
            If the logits are not a finite 2-D array, or `y`/`sample_weight` do
            not match them.
        """
        check_parameters(self)
        owner = f"{type(self).__name__}.fit"
        logit_array = check_scores(logits, name="logits", owner=owner)
        n_samples, n_classes = logit_array.shape
        labels, weights = check_targets(
            y, sample_weight, n_samples=n_samples, n_classes=n_classes, owner=owner
        )
        problem = _ScalingProblem.build(
            logit_array, labels, weights, per_class_bias=bool(self.per_class_bias)
        )
        # The optimiser works on 1 + n_classes numbers: BLAS threads only add
        # synchronisation cost, which dominates on a busy machine, and would
        # make the temperature depend on the thread count in its last bits.
        with single_blas_thread():
            start = problem.coarse_start(max_iter=int(self.max_iter))
            result = problem.refine(
                start, max_iter=int(self.max_iter), tol=float(self.tol)
            )
        if result.status == 1:
            warnings.warn(
                f"{owner} did not converge in max_iter={self.max_iter} iterations "
                f"(loss {float(result.fun):.6f}). Increase max_iter or check the "
                "logits for extreme values.",
                ConvergenceWarning,
                stacklevel=2,
            )
        log_temperature, bias = problem.best_solution(result.x, result.fun, start)
        self._set_fitted_state(log_temperature, bias, int(result.nit), problem)
        return self

    def _set_fitted_state(
        self,
        log_temperature: float,
        bias: NDArray[np.float64],
        n_iter: int,
        problem: _ScalingProblem,
    ) -> None:
        """Store the solution and score it against the uncalibrated logits."""
        n_classes = problem.logits.shape[1]
        self.temperature_ = float(np.exp(log_temperature))
        self.bias_ = bias
        self.n_classes_ = n_classes
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = n_classes
        self.n_iter_ = n_iter
        self.log_loss_before_ = multiclass_log_loss(
            problem.labels, np.exp(log_softmax(problem.logits)), problem.weights
        )
        self.log_loss_after_ = multiclass_log_loss(
            problem.labels,
            np.exp(self._calibrated_log_proba(problem.logits)),
            problem.weights,
        )
        logger.info(
            "temperature scaling: T=%.4f, log loss %.5f -> %.5f on %d samples",
            self.temperature_,
            self.log_loss_before_,
            self.log_loss_after_,
            problem.labels.size,
        )

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
        logit_array = check_scores(
            logits,
            name="logits",
            owner=f"{type(self).__name__}.transform",
            min_columns=1,
        )
        check_n_columns(logit_array, self.n_classes_, type(self).__name__)
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
        check_state_header(state, cls.__name__, _FORMAT_VERSION)
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


@dataclass(frozen=True)
class _ScalingProblem:
    """The weighted NLL of ``softmax(logits / T + bias)`` and how it is minimised.

    The optimiser's parameters are ``[log T, bias[free_classes]]``; the other
    biases stay at `fixed_bias`. `weights` sum to 1.
    """

    logits: NDArray[np.float64]
    labels: NDArray[np.intp]
    weights: NDArray[np.float64]
    fixed_bias: NDArray[np.float64]
    free_classes: NDArray[np.intp]

    @classmethod
    def build(
        cls,
        logits: NDArray[np.float64],
        labels: NDArray[np.intp],
        weights: NDArray[np.float64],
        *,
        per_class_bias: bool,
    ) -> _ScalingProblem:
        """Normalise the weights and choose which biases are free."""
        n_classes = logits.shape[1]
        weights = weights / weights.sum()
        # bias_[0] stays 0 so the solution is unique. A class with no weight in y
        # has its optimum at the lower bound: fix it there, since the loss is
        # flat in that direction and a free bias would stop anywhere on it.
        fixed_bias = np.zeros(n_classes)
        free_classes = np.arange(1 if per_class_bias else n_classes, n_classes)
        absent = np.bincount(labels, weights=weights, minlength=n_classes) == 0
        fixed_bias[free_classes[absent[free_classes]]] = -_BIAS_BOUND
        free_classes = free_classes[~absent[free_classes]]
        return cls(logits, labels, weights, fixed_bias, free_classes)

    def unpack(self, params: NDArray[np.float64]) -> tuple[float, NDArray]:
        """``(log T, full bias vector)`` from the optimiser's parameters."""
        bias = self.fixed_bias.copy()
        bias[self.free_classes] = params[1:]
        return float(params[0]), bias

    def objective(self, params: NDArray[np.float64]) -> tuple[float, NDArray]:
        """Loss and gradient at the optimiser's parameters."""
        log_temperature, bias = self.unpack(params)
        return self._nll(log_temperature, bias)

    def coarse_start(self, *, max_iter: int) -> NDArray[np.float64]:
        """Stage 1: a bounded scalar search over ``log T`` with zero bias.

        The loss is unimodal in ``log T``, so this gives a good start for the
        joint (T, bias) problem.
        """
        zero_bias = np.zeros(self.free_classes.size)
        scalar = minimize_scalar(
            lambda log_t: self.objective(np.r_[log_t, zero_bias])[0],
            bounds=_LOG_T_BOUNDS,
            method="bounded",
            options={"xatol": _SCALAR_XATOL, "maxiter": max_iter},
        )
        return np.r_[scalar.x, zero_bias]

    def refine(
        self, start: NDArray[np.float64], *, max_iter: int, tol: float
    ) -> OptimizeResult:
        """Stage 2: L-BFGS-B with gradients from `start` (fits the bias, if any)."""
        n_free = self.free_classes.size
        return minimize(
            self.objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=[_LOG_T_BOUNDS] + [(-_BIAS_BOUND, _BIAS_BOUND)] * n_free,
            options={"maxiter": max_iter, "ftol": tol, "gtol": tol},
        )

    def best_solution(
        self,
        refined: NDArray[np.float64],
        refined_loss: float,
        start: NDArray[np.float64],
    ) -> tuple[float, NDArray[np.float64]]:
        """``(log T, bias)`` of the best of the refined point, the start and T = 1.

        T = 1 and zero bias is always feasible, so never return anything worse.
        """
        best = refined if refined_loss <= self.objective(start)[0] else start
        log_temperature, bias = self.unpack(best)
        identity = np.zeros(self.logits.shape[1])
        if self._nll(0.0, identity)[0] < self.objective(best)[0]:
            return 0.0, identity
        return log_temperature, bias

    def _nll(
        self, log_temperature: float, bias: NDArray[np.float64]
    ) -> tuple[float, NDArray[np.float64]]:
        return _scaled_nll(
            log_temperature,
            bias,
            self.logits,
            self.labels,
            self.weights,
            self.free_classes,
        )


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
