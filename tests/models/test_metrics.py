"""Tests for models.metrics: the competition log loss, log-softmax and the clip."""

from __future__ import annotations

import numpy as np
import pytest

import models
from models.metrics import PROBA_CLIP, clipped_log, log_softmax, multiclass_log_loss


def test_log_softmax_rows_exponentiate_to_one_even_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0], [-5.0, 3.0, 1.0]])
    log_proba = log_softmax(logits)
    assert np.all(np.isfinite(log_proba))
    np.testing.assert_allclose(np.exp(log_proba).sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.exp(log_proba[1]), 1 / 3)


def test_multiclass_log_loss_matches_hand_computation_with_weights():
    proba = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    labels = np.array([0, 2])
    expected = (1 * -np.log(0.5) + 3 * -np.log(0.3)) / 4
    assert multiclass_log_loss(labels, proba, [1, 3]) == pytest.approx(expected)


def test_multiclass_log_loss_clips_zero_probability_at_1e_15():
    assert PROBA_CLIP == 1e-15  # the Kaggle metric's clip
    assert multiclass_log_loss([1], [[1.0, 0.0]]) == pytest.approx(-np.log(1e-15))


def test_multiclass_log_loss_is_the_one_exported_by_the_models_package():
    assert models.multiclass_log_loss is multiclass_log_loss


def test_multiclass_log_loss_rejects_labels_outside_the_columns():
    with pytest.raises(ValueError, match=r"integer labels 0 \.\. 1 .*got \[2\]"):
        multiclass_log_loss([0, 2], [[0.5, 0.5], [0.5, 0.5]])


def test_multiclass_log_loss_rejects_one_weight_too_few():
    with pytest.raises(
        ValueError, match=r"multiclass_log_loss: sample_weight has shape \(1,\)"
    ):
        multiclass_log_loss([0, 1], [[0.5, 0.5], [0.5, 0.5]], [1.0])


def test_multiclass_log_loss_names_itself_when_proba_holds_nan():
    with pytest.raises(
        ValueError, match=r"multiclass_log_loss: proba contains NaN .*clipped_log"
    ):
        multiclass_log_loss([0], [[np.nan, 1.0]])


def test_clipped_log_is_finite_at_zero_and_exact_elsewhere():
    logs = clipped_log(np.array([[0.0, 0.25, 1.0]]))
    assert logs.shape == (1, 3)
    np.testing.assert_allclose(logs, [[np.log(PROBA_CLIP), np.log(0.25), 0.0]])


def test_clipped_log_never_goes_above_zero():
    assert clipped_log([1.5]).tolist() == [0.0]
