"""Which row weights the stacker and the temperature fit with, by fold kind."""

from __future__ import annotations

import numpy as np
import pytest

from features.battles import read_battles
from models import PreferenceModel, calibration
from models.sources import row_weights
from pipelines.make_demo_data import make_demo_battles

FAST = {
    "lightgbm": {
        "num_boost_round": 30,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "num_threads": 1,
    }
}


@pytest.fixture(scope="module")
def sourced():
    battles = read_battles(make_demo_battles(n_rows=300, seed=5))
    # Unequal families, so that balanced weights are not all equal.
    names = np.array(["alpha:x"] * 180 + ["beta"] * 90 + ["gamma"] * 30)
    return battles.assign(source=names)


@pytest.fixture
def head_weights(monkeypatch):
    """The sample weights each temperature fit receives (the real fit still runs)."""
    seen: list = []
    real_fit = calibration.TemperatureScaler.fit

    def recording_fit(self, logits, y, sample_weight=None):
        seen.append(None if sample_weight is None else np.asarray(sample_weight))
        return real_fit(self, logits, y, sample_weight=sample_weight)

    monkeypatch.setattr(calibration.TemperatureScaler, "fit", recording_fit)
    return seen


def _fit(battles, group_by, source_weights):
    return PreferenceModel(
        blocks={"lengths": {}, "style": {}},
        booster_params=FAST,
        n_folds=3,
        group_by=group_by,
        source_weights=source_weights,
    ).fit(battles)


def test_folds_that_hold_out_sources_calibrate_with_the_source_weights(
    sourced, head_weights
):
    _fit(sourced, "source", "balanced")
    expected = row_weights(sourced, "balanced")
    assert np.ptp(expected) > 0  # the families differ in size
    np.testing.assert_allclose(head_weights[-1], expected)


def test_prompt_grouped_folds_calibrate_on_the_rows_as_they_come(sourced, head_weights):
    """Their out-of-fold rows stand for battles like the training ones."""
    model = _fit(sourced, "prompt", "balanced")
    np.testing.assert_allclose(head_weights[-1], 1.0)
    assert np.isfinite(model.metrics_["oof_log_loss"])


def test_a_source_weighed_zero_stays_out_of_the_head(sourced, head_weights):
    _fit(sourced, "prompt", {"gamma": 0.0})
    gamma = (sourced["source"] == "gamma").to_numpy()
    np.testing.assert_array_equal(head_weights[-1][gamma], 0.0)
    np.testing.assert_array_equal(head_weights[-1][~gamma], 1.0)
