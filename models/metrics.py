"""The competition metric and the numeric helpers every model shares.

One home for the probability clip, so that every log loss, blend and
calibration in the project takes logs the same way: the Kaggle metric clips
probabilities at :data:`PROBA_CLIP` before taking logs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models._inputs import check_scores, check_targets

__all__ = ["PROBA_CLIP", "clipped_log", "log_softmax", "multiclass_log_loss"]

PROBA_CLIP = 1e-15
"""Smallest probability used inside a log loss, as in the Kaggle metric."""


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


def clipped_log(proba: ArrayLike) -> NDArray[np.float64]:
    """Logs of probabilities clipped to ``[PROBA_CLIP, 1]``, so always finite.

    This turns probabilities into the finite logits that
    :class:`~models.calibration.TemperatureScaler` takes.

    Parameters
    ----------
    proba : array-like
        Probabilities, of any shape.

    Returns
    -------
    ndarray
        ``np.log(np.clip(proba, PROBA_CLIP, 1))``, the shape of `proba`.

    Examples
    --------
    >>> clipped_log([[1.0, 0.0]]).round(2)
    array([[  0.  , -34.54]])
    """
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), PROBA_CLIP, 1.0))


def multiclass_log_loss(
    y: ArrayLike,
    proba: ArrayLike,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Weighted multi-class log loss with probabilities clipped at `PROBA_CLIP`.

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
    proba_array = check_scores(proba, name="proba", owner=owner, min_columns=1)
    n_samples, n_classes = proba_array.shape
    labels, weights = check_targets(
        y, sample_weight, n_samples=n_samples, n_classes=n_classes, owner=owner
    )
    picked = np.clip(proba_array[np.arange(n_samples), labels], PROBA_CLIP, 1.0)
    return float(-np.sum(weights * np.log(picked)) / weights.sum())
