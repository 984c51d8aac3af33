"""Label shift: prior adjustment and the EM estimate of a target prior."""

from __future__ import annotations

import numpy as np
import pytest

from models.label_shift import adjust_to_prior, estimate_prior_em


def _calibrated_posteriors(prior, n, seed=0):
    """Labels drawn from ``prior`` and exact posteriors under a uniform prior."""
    rng = np.random.default_rng(seed)
    means = np.array([[1.5, 0, 0], [0, 1.5, 0], [0, 0, 1.5]])
    labels = rng.choice(3, size=n, p=prior)
    x = means[labels] + rng.normal(size=(n, 3))
    log_lik = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(axis=2)
    posterior = np.exp(log_lik - log_lik.max(axis=1, keepdims=True))
    return labels, posterior / posterior.sum(axis=1, keepdims=True)


def test_adjusting_to_the_training_prior_changes_nothing():
    proba = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    np.testing.assert_allclose(adjust_to_prior(proba, [1, 1, 1], [1, 1, 1]), proba)


def test_plain_em_recovers_a_shifted_prior_from_calibrated_posteriors():
    true_prior = np.array([0.45, 0.45, 0.10])
    _, posterior = _calibrated_posteriors(true_prior, 20_000)
    estimate = estimate_prior_em(posterior, [1 / 3] * 3, prior_strength=0)
    np.testing.assert_allclose(estimate, true_prior, atol=0.02)


def test_map_em_moves_part_way_toward_the_shifted_prior():
    true_prior = np.array([0.45, 0.45, 0.10])
    _, posterior = _calibrated_posteriors(true_prior, 20_000)
    estimate = estimate_prior_em(posterior, [1 / 3] * 3, prior_strength=1.0)
    assert 0.10 < estimate[2] < 1 / 3


def test_em_never_runs_to_an_extreme_prior_on_uninformative_posteriors():
    rng = np.random.default_rng(1)
    noise = rng.dirichlet([50, 50, 50], size=500)  # all close to uniform
    estimate = estimate_prior_em(noise, [0.4, 0.4, 0.2])
    assert estimate.min() > 0.05


def test_bad_priors_are_clear_errors():
    proba = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"class_prior must be 3 positive numbers"):
        adjust_to_prior(proba, [1, 1, 1], [1, 0, 1])
    with pytest.raises(ValueError, match=r"prior_strength must be >= 0"):
        estimate_prior_em(proba, [1, 1, 1], prior_strength=-1)
