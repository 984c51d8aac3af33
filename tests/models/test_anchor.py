"""The style anchor: signs, mirror symmetry, state, and its use by the boosters."""

from __future__ import annotations

import numpy as np
import pytest

from features.battles import SWAP_LABELS, as_battles, swap
from features.errors import InvalidParameterError, NotFittedError
from models import PreferenceModel
from models.anchor import ANCHOR_COVARIATES, StyleAnchor
from models.gbdt import train_folds
from pipelines.make_demo_data import make_demo_battles

COLUMNS = ["d_len_tokens_tanh", "d_flag_refusal", "s_len_prompt_chars"]
BLOCKS = {"lengths": {}, "style": {}, "flags": {}}


def _synthetic(n_rows: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, 3))
    X[:, 1] = rng.integers(-1, 2, n_rows)  # refusal difference in {-1, 0, 1}
    margin = 1.5 * X[:, 0] - 1.0 * X[:, 1]
    p_a = 1 / (1 + np.exp(-margin))
    labels = np.where(
        rng.random(n_rows) < 0.2, 2, np.where(rng.random(n_rows) < p_a, 0, 1)
    )
    return X, labels


def _mirror_X(X):
    out = X.copy()
    out[:, :2] *= -1  # d_ columns negate, s_ columns stay
    return out


def test_anchor_learns_the_known_directions_with_their_signs():
    X, labels = _synthetic()
    anchor = StyleAnchor().fit(X, COLUMNS, labels)
    assert anchor.columns_ == ["d_len_tokens_tanh", "d_flag_refusal"]
    assert anchor.coef_[0] > 0.5 and anchor.coef_[1] < -0.3
    assert anchor.coef_[0] * ANCHOR_COVARIATES["d_len_tokens_tanh"] >= 0


def test_anchor_cannot_learn_a_direction_against_its_sign():
    X, labels = _synthetic()
    flipped = np.where(labels == 2, 2, 1 - labels)  # longer answers now lose
    anchor = StyleAnchor().fit(X, COLUMNS, flipped)
    # Both data directions now oppose the known ones: each stops at its bound.
    np.testing.assert_array_equal(anchor.coef_, [0.0, 0.0])


def test_anchor_probabilities_mirror_exactly_under_a_swap_and_sum_to_one():
    X, labels = _synthetic()
    anchor = StyleAnchor().fit(X, COLUMNS, labels)
    proba = np.exp(anchor.log_proba(X, COLUMNS))
    mirrored = np.exp(anchor.log_proba(_mirror_X(X), COLUMNS))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(mirrored, proba[:, SWAP_LABELS])


def test_anchor_tie_share_matches_the_training_ties_at_zero_margin():
    X, labels = _synthetic()
    anchor = StyleAnchor().fit(np.zeros_like(X), COLUMNS, labels)
    tie = np.exp(anchor.log_proba(np.zeros((1, 3)), COLUMNS))[0, 2]
    assert tie == pytest.approx(np.mean(labels == 2), abs=1e-6)


def test_anchor_state_round_trips_through_json_data():
    X, labels = _synthetic()
    anchor = StyleAnchor().fit(X, COLUMNS, labels)
    again = StyleAnchor.from_dict(anchor.to_dict())
    np.testing.assert_array_equal(
        again.log_proba(X, COLUMNS), anchor.log_proba(X, COLUMNS)
    )


def test_anchor_errors_say_what_is_missing():
    with pytest.raises(NotFittedError, match="not fitted; call fit first"):
        StyleAnchor().log_proba(np.zeros((1, 3)), COLUMNS)
    with pytest.raises(
        InvalidParameterError, match="needs at least one of the columns"
    ):
        StyleAnchor().fit(np.zeros((3, 1)), ["s_other"], np.array([0, 1, 2]))
    anchor = StyleAnchor().fit(*_synthetic()[:1], COLUMNS, _synthetic()[1])
    with pytest.raises(InvalidParameterError, match="lacks the anchor's columns"):
        anchor.log_proba(np.zeros((1, 1)), ["s_len_prompt_chars"])


@pytest.mark.parametrize("booster", ["lightgbm", "xgboost"])
def test_fold_boosters_use_the_starting_score_identically_in_fit_and_predict(booster):
    X, labels = _synthetic()
    init = StyleAnchor().fit(X, COLUMNS, labels).log_proba(X, COLUMNS)
    folds = np.arange(len(labels)) % 3
    params = {"num_boost_round": 20, "learning_rate": 0.1}
    result = train_folds(
        booster, params, X.astype(np.float32), labels, folds, init_score=init
    )
    for fold, model in enumerate(result.models):
        rows = folds == fold
        np.testing.assert_allclose(
            model.predict_proba(X[rows].astype(np.float32), init[rows]),
            result.oof[rows],
            atol=1e-6,
        )
    # Without its starting score the same trees predict something else.
    plain = result.models[0].predict_proba(X[folds == 0].astype(np.float32))
    assert np.abs(plain - result.oof[folds == 0]).max() > 1e-3


@pytest.mark.parametrize("booster", ["lightgbm", "xgboost"])
def test_boosters_that_learn_nothing_return_the_anchor(booster):
    X, labels = _synthetic()
    init = StyleAnchor().fit(X, COLUMNS, labels).log_proba(X, COLUMNS)
    folds = np.arange(len(labels)) % 2
    params = {"num_boost_round": 1, "learning_rate": 1e-9}
    if booster == "xgboost":
        params["base_score"] = 0.0
    result = train_folds(
        booster, params, X.astype(np.float32), labels, folds, init_score=init
    )
    np.testing.assert_allclose(result.oof, np.exp(init), atol=1e-5)


@pytest.fixture(scope="module")
def demo_battles():
    return as_battles(make_demo_battles(n_rows=500, seed=3))


@pytest.mark.slow
def test_anchored_model_is_exactly_swap_symmetric_and_reloads_identically(
    demo_battles, tmp_path
):
    model = PreferenceModel(
        blocks=BLOCKS,
        boosters=("lightgbm", "xgboost"),
        booster_params={
            "lightgbm": {"num_boost_round": 40},
            "xgboost": {"num_boost_round": 40},
        },
        n_folds=3,
        anchor=True,
    ).fit(demo_battles)
    proba = model.predict_proba(demo_battles)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(
        model.predict_proba(swap(demo_battles)), proba[:, SWAP_LABELS]
    )
    assert model.anchor_ is not None and model.anchor_.coef_[0] > 0
    loaded = PreferenceModel.load(model.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict_proba(demo_battles), proba)


def _two_families(seed: int = 0):
    """Family "kind" punishes refusals; family "odd" rewards them."""
    X, labels = _synthetic(n_rows=2000, seed=seed)
    families = np.array(["kind"] * 1600 + ["odd"] * 400, dtype=object)
    rng = np.random.default_rng(seed + 1)
    odd = np.flatnonzero(families == "odd")
    margin = 1.5 * X[odd, 0] + 1.5 * X[odd, 1]
    p_a = 1 / (1 + np.exp(-margin))
    labels[odd] = np.where(
        rng.random(len(odd)) < 0.5, 2, np.where(rng.random(len(odd)) < p_a, 0, 1)
    )
    return X, labels, families


def test_a_per_source_anchor_learns_each_familys_habit_and_keeps_the_shared_signs():
    X, labels, families = _two_families()
    anchor = StyleAnchor().fit(X, COLUMNS, labels, families=families)
    refusal = anchor.columns_.index("d_flag_refusal")
    assert (
        anchor.family_coef_["kind"][refusal] < 0 < anchor.family_coef_["odd"][refusal]
    )
    assert anchor.coef_[refusal] <= 0  # no target: the shared part, sign kept
    # Ties: the odd family's 50% share, shrunk toward the pooled share.
    tie = {
        name: np.exp(anchor.log_proba(np.zeros((1, 3)), COLUMNS, [name]))[0, 2]
        for name in ("kind", "odd")
    }
    assert tie["kind"] < np.mean(labels == 2) < tie["odd"] < 0.5


def test_a_per_source_anchor_predicts_with_its_targets_part_and_round_trips():
    X, labels, families = _two_families()
    anchor = StyleAnchor().fit(X, COLUMNS, labels, families=families, target="odd")
    np.testing.assert_array_equal(anchor.coef_, anchor.family_coef_["odd"])
    np.testing.assert_array_equal(
        anchor.log_proba(X, COLUMNS), anchor.log_proba(X, COLUMNS, ["odd"] * len(X))
    )
    mirrored = np.exp(anchor.log_proba(_mirror_X(X), COLUMNS, families))
    proba = np.exp(anchor.log_proba(X, COLUMNS, families))
    np.testing.assert_array_equal(mirrored, proba[:, SWAP_LABELS])
    again = StyleAnchor.from_dict(anchor.to_dict())
    np.testing.assert_array_equal(
        again.log_proba(X, COLUMNS, families), anchor.log_proba(X, COLUMNS, families)
    )


def test_a_per_source_model_fits_predicts_symmetrically_and_reloads(tmp_path):
    battles = as_battles(make_demo_battles(n_rows=400, seed=3))
    params = {"blocks": BLOCKS, "n_folds": 3, "anchor": True, "seed": 1}
    params["booster_params"] = {"lightgbm": {"num_boost_round": 30}}
    plain = PreferenceModel(**params).fit(battles)
    model = PreferenceModel(**params, anchor_per_source=True, target="synthetic-code")
    model.fit(battles)
    assert set(model.anchor_.family_coef_) == set(
        battles["source"].str.split(":").str[0]
    )
    proba = model.predict_proba(battles)
    assert not np.allclose(proba, plain.predict_proba(battles))
    np.testing.assert_allclose(
        model.predict_proba(swap(battles)), proba[:, SWAP_LABELS], atol=1e-9
    )
    loaded = PreferenceModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(battles), proba)
