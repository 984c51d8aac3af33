"""Label shift: move predictions from the training class prior to another.

Tie rates drift between sources and over time. Given a target prior, the
posterior is re-weighted by prior ratios; without one, the target prior is
estimated on unlabelled battles by EM (Saerens, Latinne & Decaestecker, 2002).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["adjust_to_prior", "estimate_prior_em"]


def _as_prior(prior: ArrayLike, name: str) -> NDArray[np.float64]:
    values = np.asarray(prior, dtype=np.float64)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
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
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> NDArray[np.float64]:
    """EM estimate of the class prior of the battles behind ``proba``.

    Alternates between re-weighting the posteriors to the current prior and
    setting the prior to their mean, until the prior moves less than ``tol``.
    """
    train = _as_prior(train_prior, "train prior")
    prior = train.copy()
    for _ in range(max_iter):
        posterior = adjust_to_prior(proba, train, prior)
        new_prior = posterior.mean(axis=0)
        new_prior = np.clip(new_prior, 1e-6, None)
        new_prior /= new_prior.sum()
        if np.max(np.abs(new_prior - prior)) < tol:
            return new_prior
        prior = new_prior
    return prior
