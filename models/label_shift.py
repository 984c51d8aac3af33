"""Label shift: move predictions from the training class prior to another.

Tie rates drift between sources and over time. Given a target prior, the
posterior is re-weighted by prior ratios; without one, the target prior is
estimated on unlabelled battles by EM (Saerens, Latinne & Decaestecker, 2002).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from features.errors import InvalidParameterError

__all__ = [
    "adjust_to_prior",
    "estimate_prior_em",
    "estimate_tie_share",
    "constant_tie_share",
    "tie_confusion",
    "tie_only_prior",
]


def _as_prior(prior: ArrayLike, name: str) -> NDArray[np.float64]:
    try:
        values = np.asarray(prior, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.empty(0)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InvalidParameterError(
            f"{name} must be 3 positive numbers (A, B, tie); got {prior!r}."
        )
    return values / values.sum()


def adjust_to_prior(
    proba: NDArray[np.float64], train_prior: ArrayLike, target_prior: ArrayLike
) -> NDArray[np.float64]:
    """Posteriors under ``target_prior`` from posteriors under ``train_prior``.

    >>> proba = np.array([[0.4, 0.4, 0.2]])
    >>> adjust_to_prior(proba, [1, 1, 1], [0.45, 0.45, 0.1]).round(3).tolist()
    [[0.474, 0.474, 0.053]]
    """
    ratio = _as_prior(target_prior, "class_prior") / _as_prior(
        train_prior, "train prior"
    )
    adjusted = proba * ratio
    return adjusted / adjusted.sum(axis=1, keepdims=True)


def estimate_prior_em(
    proba: NDArray[np.float64],
    train_prior: ArrayLike,
    *,
    prior_strength: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> NDArray[np.float64]:
    """EM estimate of the class prior of the battles behind ``proba``.

    Alternates between re-weighting the posteriors to the current prior and
    setting the prior to their mean (Saerens et al., 2002), with a Dirichlet
    prior centred on ``train_prior`` worth ``prior_strength * n`` pseudo-battles
    (maximum a posteriori EM).

    Parameters
    ----------
    proba : ndarray of shape (n, 3)
        Posteriors under the training prior.
    train_prior : array-like of shape (3,)
        Class shares the model was trained on.
    prior_strength : float, default=1.0
        Pseudo-counts of the training prior, relative to ``n``. 0 is plain EM.

    Notes
    -----
    Plain EM runs to extreme priors (a tie share of 1.0) when the posteriors
    are not calibrated for the target battles: on the corpus' sources it made
    log loss several times worse, while ``prior_strength=1`` never moved it by
    more than a few hundredths. Keep the default unless the posteriors are
    known to be well calibrated on the target data.

    >>> proba = np.array([[0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    >>> estimate_prior_em(proba, [0.4, 0.4, 0.2]).round(2).tolist()
    [0.43, 0.43, 0.13]
    """
    if prior_strength < 0:
        raise InvalidParameterError(
            f"prior_strength must be >= 0 (0 is plain EM). Got {prior_strength!r}."
        )
    train = _as_prior(train_prior, "train prior")
    pseudo_counts = prior_strength * len(proba) * train
    prior = train.copy()
    for _ in range(max_iter):
        posterior = adjust_to_prior(proba, train, prior)
        new_prior = (posterior.sum(axis=0) + pseudo_counts) / (
            len(proba) + pseudo_counts.sum()
        )
        new_prior = np.clip(new_prior, 1e-6, None)
        new_prior /= new_prior.sum()
        if np.max(np.abs(new_prior - prior)) < tol:
            return new_prior
        prior = new_prior
    return prior


def tie_only_prior(train_prior: ArrayLike, tie_share: float) -> NDArray[np.float64]:
    """The training prior with its tie share replaced, A:B kept.

    Shifting to this prior with :func:`adjust_to_prior` moves only the tie
    share of each prediction: P(A) / (P(A) + P(B)) stays as it was.

    >>> tie_only_prior([0.4, 0.4, 0.2], 0.0).round(4).tolist()
    [0.5, 0.5, 0.0001]
    """
    train = _as_prior(train_prior, "train prior")
    if not 0.0 <= tie_share <= 1.0:
        raise InvalidParameterError(
            f"tie_rate must be a share in [0, 1]. Got {tie_share!r}."
        )
    tie = min(max(float(tie_share), _MIN_SHARE), 1 - _MIN_SHARE)
    decisive = train[:2] / train[:2].sum() * (1 - tie)
    return np.array([decisive[0], decisive[1], tie])


_MIN_SHARE = 1e-4  # a prior of exactly 0 or 1 would make every shift degenerate


def constant_tie_share(proba: ArrayLike, tie_share: float) -> NDArray[np.float64]:
    """Every row's P(tie) set to ``tie_share``, its P(A) / (P(A) + P(B)) kept.

    The share is kept inside ``[1e-4, 1 - 1e-4]`` so that a later shift to
    another prior still has something to move.

    >>> constant_tie_share([[0.6, 0.2, 0.2], [0.1, 0.1, 0.8]], 0.5).round(4).tolist()
    [[0.375, 0.125, 0.5], [0.25, 0.25, 0.5]]
    """
    scores = np.asarray(proba, dtype=np.float64)
    tie = min(max(float(tie_share), _MIN_SHARE), 1 - _MIN_SHARE)
    decisive = scores[:, 0] + scores[:, 1]
    a_share = np.divide(
        scores[:, 0], decisive, out=np.full(len(scores), 0.5), where=decisive > 0
    )
    return np.column_stack(
        [a_share * (1 - tie), (1 - a_share) * (1 - tie), np.full(len(scores), tie)]
    )


def tie_confusion(
    proba: NDArray[np.float64],
    labels: NDArray[np.int64],
    sample_weight: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Soft joint confusion of (predicted, true) tie vs decisive, shape (2, 2).

    ``C[i, j]`` is the mean of P(predicted i) over rows whose label is j
    (0 = decisive, 1 = tie), times the share of such rows: the matrix that
    black-box shift estimation inverts (:func:`estimate_tie_share`).
    """
    weight = np.ones(len(labels)) if sample_weight is None else sample_weight
    weight = weight / weight.sum()
    tie_pred = proba[:, 2]
    is_tie = labels == 2
    return np.array(
        [
            [
                np.sum(weight * (1 - tie_pred) * ~is_tie),
                np.sum(weight * (1 - tie_pred) * is_tie),
            ],
            [np.sum(weight * tie_pred * ~is_tie), np.sum(weight * tie_pred * is_tie)],
        ]
    )


def estimate_tie_share(confusion: ArrayLike, proba: NDArray[np.float64]) -> float:
    """Tie share of unlabelled battles by black-box shift estimation.

    Solves ``confusion @ w = mu`` (Lipton, Wang & Smola, 2018), where ``mu`` is
    the mean predicted (decisive, tie) share on the battles and ``w`` the
    ratio of their class shares to the training ones. Unlike EM, which trusts
    the posteriors on the new battles, it only trusts how the predictions
    behaved on held-out training battles: when the out-of-fold predictions hold
    out whole sources, ``confusion`` records that on a new source a high
    predicted tie share does not mean more ties.

    Parameters
    ----------
    confusion : array-like of shape (2, 2)
        :func:`tie_confusion` of the model's out-of-fold predictions.
    proba : ndarray of shape (n, 3)
        Predictions on the battles, under the training prior.

    Returns
    -------
    float
        Estimated tie share in [0, 1].

    >>> C = tie_confusion(np.array([[.4, .5, .1], [.2, .2, .6]]), np.array([0, 2]))
    >>> round(estimate_tie_share(C, np.array([[.45, .45, .1]] * 4)), 3)
    0.0
    """
    matrix = np.asarray(confusion, dtype=np.float64)
    mu = np.array([1 - proba[:, 2].mean(), proba[:, 2].mean()])
    train = matrix.sum(axis=0)
    try:
        ratio = np.linalg.solve(matrix, mu)
    except np.linalg.LinAlgError:
        return float(train[1] / train.sum())
    shares = np.clip(ratio, 0.0, None) * train
    if shares.sum() <= 0:
        return float(train[1] / train.sum())
    return float(shares[1] / shares.sum())
