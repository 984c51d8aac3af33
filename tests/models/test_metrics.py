"""Tests for models.metrics: the competition log loss, log-softmax, the clip
and the decisive scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

import models
from models.metrics import (
    PROBA_CLIP,
    clipped_log,
    decisive_auc,
    decisive_log_loss,
    length_difference_auc,
    log_softmax,
    multiclass_log_loss,
    tie_auc,
)


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


# ---------------------------------------------------------- decisive scores
def test_decisive_auc_ignores_ties_and_ranks_by_the_a_share():
    labels = np.array([0, 1, 0, 1, 2, 2])
    # Ties are predicted "wrong" on purpose: they must not count.
    proba = np.array(
        [
            [0.3, 0.1, 0.6],  # q = 0.75
            [0.2, 0.2, 0.6],  # q = 0.5
            [0.5, 0.4, 0.1],  # q = 0.556
            [0.1, 0.8, 0.1],  # q = 0.111
            [0.9, 0.05, 0.05],
            [0.05, 0.9, 0.05],
        ]
    )
    assert decisive_auc(labels, proba) == 1.0
    # Swapping A and B flips the ranking.
    assert decisive_auc(1 - labels[:4], proba[:4]) == 0.0


def test_decisive_auc_is_nan_when_one_winner_only():
    assert math.isnan(decisive_auc([0, 0, 2], [[0.5, 0.3, 0.2]] * 3))


def test_decisive_log_loss_matches_the_hand_computed_value():
    labels = [0, 1, 2]
    proba = [[0.5, 0.5, 0.0], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]]
    expected = -(math.log(0.5) + math.log(0.75)) / 2
    assert decisive_log_loss(labels, proba) == pytest.approx(expected)


def test_decisive_log_loss_of_a_coin_is_log_two_whatever_the_tie_share():
    labels = [0, 1, 0, 1]
    for tie in (0.0, 0.5, 0.9):
        half = (1 - tie) / 2
        assert decisive_log_loss(labels, [[half, half, tie]] * 4) == pytest.approx(
            math.log(2)
        )


def test_decisive_log_loss_is_finite_for_certain_wrong_answers():
    value = decisive_log_loss([0], [[0.0, 1.0, 0.0]])
    assert math.isfinite(value) and value > 30


def test_decisive_log_loss_is_nan_without_decisive_rows():
    assert math.isnan(decisive_log_loss([2, 2], [[0.3, 0.3, 0.4]] * 2))


@pytest.mark.parametrize("metric", [decisive_auc, decisive_log_loss])
def test_decisive_metrics_reject_labels_out_of_range(metric):
    with pytest.raises(ValueError, match=r"y must hold integer labels 0 \.\. 2"):
        metric([0, 3], [[0.5, 0.5, 0.0]] * 2)


@pytest.mark.parametrize("metric", [decisive_auc, decisive_log_loss])
def test_decisive_metrics_reject_a_label_count_that_differs(metric):
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        metric([0, 1, 0], [[0.5, 0.5, 0.0]] * 2)


def test_length_difference_auc_ranks_the_longer_answer_first():
    assert length_difference_auc([0, 1, 2, 1], [120.0, -30.0, 0.0, 5.0]) == 1.0
    assert length_difference_auc([1, 0], [120.0, -30.0]) == 0.0
    assert math.isnan(length_difference_auc([2, 2], [1.0, 2.0]))


def test_length_difference_auc_rejects_one_label_per_row_missing():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        length_difference_auc([0, 1], [1.0, 2.0, 3.0])


def test_tie_auc_ranks_p_tie_of_ties_against_decisive_rows():
    labels = [0, 2, 1, 2]
    assert (
        tie_auc(
            labels, [[0.6, 0.3, 0.1], [0.3, 0.3, 0.4], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]]
        )
        == 0.75
    )
    flat = np.full((4, 3), 1 / 3)
    assert tie_auc(labels, flat) == 0.5  # a constant tie share tells nothing
    assert math.isnan(tie_auc([0, 1, 0], flat[:3]))  # no ties: nothing to rank
