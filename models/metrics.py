"""The competition metric, the decisive scores and the numeric helpers.

One home for the probability clip, so that every log loss, blend and
calibration in the project takes logs the same way: the Kaggle metric clips
probabilities at :data:`PROBA_CLIP` before taking logs.

The decisive scores judge a model on the rows A or B won, by
``q = P(A) / (P(A) + P(B))`` (:func:`decisive_auc`,
:func:`decisive_log_loss`, :func:`length_difference_auc` for the raw length
difference), and how it ranks ties by ``P(tie)`` (:func:`tie_auc`), whatever
tie share it predicts: a source without ties is judged by how well the model
tells the winner.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import roc_auc_score

from features.battles import TIE
from models._inputs import check_labels, check_scores, check_targets

__all__ = [
    "PROBA_CLIP",
    "clipped_log",
    "decisive_auc",
    "decisive_log_loss",
    "length_difference_auc",
    "log_softmax",
    "multiclass_log_loss",
    "target_scores",
    "tie_auc",
]

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


# ------------------------------------------------------- decisive scores
def _decisive(
    labels: ArrayLike, proba: ArrayLike, owner: str
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Rows A or B won, and q = P(A) / (P(A) + P(B)) on them."""
    scores = check_scores(proba, name="proba", owner=owner, min_columns=2)
    y = check_labels(labels, n_samples=len(scores), n_classes=3, owner=owner)
    decisive = y != TIE
    total = np.maximum(scores[decisive, 0] + scores[decisive, 1], PROBA_CLIP)
    return y[decisive] == 0, scores[decisive, 0] / total


def _score_auc(a_won: NDArray[np.bool_], score: NDArray[np.float64]) -> float:
    if a_won.all() or not a_won.any():
        return float("nan")
    return float(roc_auc_score(a_won, score))


def decisive_auc(labels: ArrayLike, proba: ArrayLike) -> float:
    """ROC AUC of ``P(A) / (P(A) + P(B))`` for "A won" on rows A or B won.

    It measures how well a model tells the winner, whatever tie share it
    predicts. NaN when the decisive rows do not hold both winners.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        0 = A won, 1 = B won, 2 = tie.
    proba : array-like of shape (n, 3)
        Probabilities of A, B, tie (a third column may be absent).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Shapes disagree, labels are not 0, 1, 2, or `proba` is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> decisive_auc(np.array([0, 1, 2]), np.array([[.6, .3, .1], [.2, .7, .1],
    ...                                             [.3, .3, .4]]))
    1.0
    """
    a_won, q = _decisive(labels, proba, "decisive_auc")
    return _score_auc(a_won, q)


def tie_auc(labels: ArrayLike, proba: ArrayLike) -> float:
    """ROC AUC of ``P(tie)`` for "tie" against the rows A or B won.

    Whether the model tells which battles are ties, whatever tie share it
    predicts on average; 0.5 is no better than a constant. NaN without both
    ties and decisive rows. Arguments and errors as :func:`decisive_log_loss`.

    >>> tie_auc([0, 2, 1, 2], [[.6, .3, .1], [.3, .3, .4], [.2, .5, .3],
    ...                        [.4, .4, .2]])
    0.75
    """
    scores = check_scores(proba, name="proba", owner="tie_auc", min_columns=3)
    y = check_labels(labels, n_samples=len(scores), n_classes=3, owner="tie_auc")
    return _score_auc(y == TIE, scores[:, TIE])


def decisive_log_loss(labels: ArrayLike, proba: ArrayLike) -> float:
    """Binary log loss of ``q = P(A) / (P(A) + P(B))`` on rows A or B won.

    The number to judge a source without ties by (a coin scores
    ``log 2 = 0.6931``). ``q`` is clipped to ``[PROBA_CLIP, 1 - PROBA_CLIP]``.
    NaN when no row is decisive.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        0 = A won, 1 = B won, 2 = tie.
    proba : array-like of shape (n, 3)
        Probabilities of A, B, tie.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Shapes disagree, labels are not 0, 1, 2, or `proba` is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> round(decisive_log_loss([0, 1, 2], [[.5, .5, 0], [.2, .6, .2],
    ...                                     [.1, .1, .8]]), 4)
    0.4904
    """
    a_won, q = _decisive(labels, proba, "decisive_log_loss")
    if not len(q):
        return float("nan")
    q = np.clip(q, PROBA_CLIP, 1.0 - PROBA_CLIP)
    return float(-np.mean(np.where(a_won, np.log(q), np.log1p(-q))))


def length_difference_auc(labels: ArrayLike, difference: ArrayLike) -> float:
    """Decisive AUC of the raw length difference (A's minus B's) as the score.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        0 = A won, 1 = B won, 2 = tie.
    difference : array-like of shape (n,)
        E.g. :func:`length_difference` of the battles.

    Returns
    -------
    float
        NaN when the decisive rows do not hold both winners.

    Raises
    ------
    ValueError
        Shapes disagree or labels are not 0, 1, 2.

    Examples
    --------
    >>> length_difference_auc([0, 1, 2, 1], [120.0, -30.0, 0.0, 5.0])
    1.0
    """
    score = np.asarray(difference, dtype=np.float64).reshape(-1, 1)
    owner = "length_difference_auc"
    y = check_labels(labels, n_samples=len(score), n_classes=3, owner=owner)
    check_scores(score, name="difference", owner=owner, min_columns=1)
    decisive = y != TIE
    return _score_auc(y[decisive] == 0, score[decisive, 0])


def target_scores(labels: ArrayLike, proba: ArrayLike) -> dict[str, float]:
    """3-class log loss, decisive AUC and decisive accuracy: a target's scores.

    Decisive accuracy: on rows whose label is A or B, how often P(A) > P(B)
    picks the winner.

    Examples
    --------
    >>> import numpy as np
    >>> s = target_scores(np.array([0, 1, 2]), np.array([[.6, .3, .1],
    ...                                                  [.3, .6, .1],
    ...                                                  [.3, .3, .4]]))
    >>> round(s["decisive_accuracy"], 2), round(s["decisive_auc"], 2)
    (1.0, 1.0)
    """
    labels, proba = np.asarray(labels), np.asarray(proba)
    decisive = labels < 2
    picked_a = proba[decisive, 0] > proba[decisive, 1]
    return {
        "log_loss": multiclass_log_loss(labels, proba),
        "decisive_auc": decisive_auc(labels, proba),
        "decisive_accuracy": float(np.mean(picked_a == (labels[decisive] == 0))),
    }
