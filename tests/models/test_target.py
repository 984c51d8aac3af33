"""training.target: the target's rows, weights, cross-fitting and tie head."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.battles import read_battles, swap
from features.errors import InvalidParameterError, NotFittedError
from models import PreferenceModel
from models.metrics import multiclass_log_loss as log_loss
from models.target import (
    TargetTieHead,
    fit_learning_curve,
    target_cross_fit,
    target_folds,
    target_rows,
    target_weights,
)
from pipelines.make_demo_data import make_demo_battles

FAST = {
    "lightgbm": {
        "num_boost_round": 40,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "num_threads": 1,
    }
}


def _model(**params) -> PreferenceModel:
    return PreferenceModel(
        blocks={"lengths": {}, "flags": {}}, booster_params=FAST, n_folds=3, **params
    )


@pytest.fixture(scope="module")
def battles() -> pd.DataFrame:
    """Synthetic battles of three sources (chat, code, multilingual)."""
    return read_battles(make_demo_battles(n_rows=500, seed=4), labelled=True)


def test_target_rows_marks_the_family_and_its_subsources():
    table = pd.DataFrame({"source": ["kaggle-lmsys", "hh:base", "hh:online", "x"]})
    assert target_rows(table, "hh").tolist() == [False, True, True, False]


def test_unknown_target_names_the_families_there_are():
    table = pd.DataFrame({"source": ["arena-2023", "hh:base"], "label": [0, 1]})
    with pytest.raises(
        InvalidParameterError, match=r"'kaggle'.*\['arena-2023', 'hh'\]"
    ):
        target_rows(table, "kaggle")


def test_target_without_labelled_rows_is_an_error_naming_the_families():
    table = pd.DataFrame({"source": ["arena-2023", "kaggle"], "label": [0, None]})
    with pytest.raises(InvalidParameterError, match="no labelled battles.*'kaggle'"):
        target_rows(table, "kaggle")


def test_target_without_a_source_column_is_an_error():
    with pytest.raises(InvalidParameterError, match="needs a 'source' column"):
        target_rows(pd.DataFrame({"label": [0]}), "kaggle")


def test_target_weights_scale_the_other_rows_and_keep_mean_one():
    weight = target_weights(np.array([True, False, False, False]), None, 0.1)
    assert weight.mean() == pytest.approx(1.0)
    assert weight[0] == pytest.approx(10 * weight[1])


def test_target_weights_reject_a_weight_that_is_not_positive():
    with pytest.raises(InvalidParameterError, match="must be > 0. Got 0"):
        target_weights(np.array([True, False]), None, 0)


def test_target_folds_keep_prompts_together_and_leave_other_rows_out(battles):
    labels = battles["label"].to_numpy()
    is_target = target_rows(battles, "synthetic-code")
    folds = target_folds(battles, labels, is_target, n_folds=3)
    assert (folds[~is_target] == -1).all()
    assert set(folds[is_target].tolist()) == {0, 1, 2}
    prompts = battles["prompt"].map(tuple)[is_target]
    assert (pd.Series(folds[is_target]).groupby(prompts.values).nunique() == 1).all()


def test_cross_fitting_never_puts_a_target_row_in_its_own_fit(battles):
    labels = battles["label"].to_numpy()
    is_target = target_rows(battles, "synthetic-code")
    folds = target_folds(battles, labels, is_target, n_folds=4)
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def fit_predict(train, test):
        seen.append((train, test))
        return np.full((len(test), 3), 1 / 3)

    oof = target_cross_fit(folds, fit_predict)
    assert len(seen) == 4
    others = set(np.flatnonzero(~is_target).tolist())
    for train, test in seen:
        assert not set(train.tolist()) & set(test.tolist())
        assert others <= set(train.tolist())
        assert is_target[test].all()
    predicted = np.concatenate([test for _, test in seen])
    assert sorted(predicted.tolist()) == np.flatnonzero(is_target).tolist()
    assert np.isnan(oof[~is_target]).all() and not np.isnan(oof[is_target]).any()


def test_cross_fitting_without_others_or_with_a_subsample_trains_on_less(battles):
    labels = battles["label"].to_numpy()
    is_target = target_rows(battles, "synthetic-code")
    folds = target_folds(battles, labels, is_target, n_folds=3)
    keep = np.zeros(len(labels), bool)
    keep[np.flatnonzero(is_target)[:20]] = True
    trains = []

    def fit_predict(train, test):
        trains.append(train)
        return np.full((len(test), 3), 1 / 3)

    target_cross_fit(folds, fit_predict, include_others=False, keep=keep)
    for train in trains:
        assert keep[train].all() and is_target[train].all()


def test_tie_head_keeps_the_direction_and_learns_the_tie_rate():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 0.7, 400)
    proba = np.column_stack([a, 0.9 - a, np.full(400, 0.1)])
    labels = rng.choice([0, 1, 2], size=400, p=[0.35, 0.35, 0.3])
    out = TargetTieHead().fit(proba, labels).transform(proba)
    assert out.sum(axis=1) == pytest.approx(np.ones(400))
    assert out[:, 2].mean() == pytest.approx(0.3, abs=0.03)
    direction = out[:, 0] / (out[:, 0] + out[:, 1])
    assert direction == pytest.approx(proba[:, 0] / 0.9)


def test_tie_head_round_trips_through_its_dict():
    proba = np.tile([0.5, 0.3, 0.2], (30, 1))
    head = TargetTieHead().fit(proba, np.array([0, 1, 2] * 10))
    again = TargetTieHead.from_dict(head.to_dict())
    assert again.transform(proba) == pytest.approx(head.transform(proba))


def test_tie_head_before_fit_says_to_fit():
    with pytest.raises(NotFittedError, match="not fitted; call fit first"):
        TargetTieHead().transform(np.full((1, 3), 1 / 3))


def test_learning_curve_fit_recovers_a_power_law_and_needs_three_points():
    n = np.array([100, 200, 400, 800, 1600])
    a, b, c = fit_learning_curve(n, 0.95 + 1.5 * n**-0.4)
    assert (a, b, c) == pytest.approx((0.95, 1.5, 0.4), rel=1e-3)
    with pytest.raises(InvalidParameterError, match="at least 3 points.*got 2"):
        fit_learning_curve([1, 2], [1.0, 0.9])


def test_target_with_one_source_changes_nothing(battles):
    one = battles.assign(source="only")
    plain = _model().fit(one).predict_proba(one)
    targeted = _model(target="only").fit(one).predict_proba(one)
    np.testing.assert_allclose(targeted, plain)


def test_unknown_target_in_fit_names_the_families(battles):
    with pytest.raises(InvalidParameterError, match="synthetic-chat.*synthetic-code"):
        _model(target="kaggle-lmsys").fit(battles)


def test_target_model_fits_its_head_on_the_target_and_round_trips(battles, tmp_path):
    model = _model(target="synthetic-code", group_by="auto").fit(battles)
    is_target = target_rows(battles, "synthetic-code")
    assert model.metrics_["target"]["n_rows"] == int(is_target.sum())
    assert model.target_tie_ is not None
    # The tie head is fitted on the target's out-of-fold rows: their mean P(tie)
    # lands on the target's tie rate, not the training set's.
    tie_rate = float(np.mean(battles["label"].to_numpy()[is_target] == 2))
    assert model.oof_proba_[is_target, 2].mean() == pytest.approx(tie_rate, abs=0.02)
    proba = model.predict_proba(battles)
    mirrored = model.predict_proba(swap(battles))
    np.testing.assert_allclose(mirrored, proba[:, [1, 0, 2]], atol=1e-9)
    loaded = PreferenceModel.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(battles), proba)


def test_target_switches_off_leave_the_tie_to_the_boosters(battles):
    model = _model(target="synthetic-code", target_tie=False, target_head=False)
    model.fit(battles)
    assert model.target_tie_ is None


def test_target_other_weight_must_be_positive(battles):
    with pytest.raises(InvalidParameterError, match="target_other_weight"):
        _model(target="synthetic-code", target_other_weight=0.0).fit(battles)


def test_recipe_with_a_target_spreads_its_rows_and_fits_the_head_on_them(battles):
    from models.recipe import TrainingRecipe

    recipe = TrainingRecipe(
        source_weights="balanced",
        group_by="auto",
        n_folds=3,
        target="synthetic-code",
        target_other_weight=0.5,
    )
    rows = recipe.rows(battles)
    is_target = target_rows(battles, "synthetic-code")
    assert rows.group_by == "prompt"
    assert set(rows.folds[is_target].tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(rows.head_weight, is_target.astype(float))
    untargeted = TrainingRecipe(source_weights="balanced", group_by="auto").rows(
        battles
    )
    ratio = rows.weight / untargeted.weight
    assert ratio[is_target].std() < 1e-9 and ratio[~is_target].std() < 1e-9
    assert ratio[~is_target][0] == pytest.approx(0.5 * ratio[is_target][0])
    one = TrainingRecipe(target="only").rows(battles.assign(source="only"))
    assert one.is_target is None and one.weight is None


def test_tie_head_with_features_learns_a_tie_cue_and_round_trips():
    rng = np.random.default_rng(0)
    n = 1200
    cue = rng.random(n)  # e.g. how alike the two answers are
    is_tie = rng.random(n) < 0.1 + 0.5 * cue
    labels = np.where(is_tie, 2, rng.integers(0, 2, n))
    proba = np.tile([0.4, 0.4, 0.2], (n, 1))
    features = np.column_stack([cue, rng.normal(size=n)])
    plain = TargetTieHead().fit(proba, labels).transform(proba)
    head = TargetTieHead().fit(proba, labels, features=features)
    with_cue = head.transform(proba, features)
    assert head.n_features_ == 2 and head.C_ in head.Cs
    assert log_loss(labels, with_cue) < log_loss(labels, plain) - 0.02
    np.testing.assert_allclose(with_cue[:, 0], with_cue[:, 1])  # A/B kept even
    again = TargetTieHead.from_dict(head.to_dict())
    np.testing.assert_array_equal(again.transform(proba, features), with_cue)
    with pytest.raises(InvalidParameterError, match="fitted with feature columns"):
        head.transform(proba)


def test_target_tie_features_fit_predict_symmetrically_and_reload(battles, tmp_path):
    model = _model(target="synthetic-code", target_tie_features=True).fit(battles)
    assert model.target_tie_.n_features_ == sum(
        c.startswith("s_") for c in model.feature_names_out_
    )
    proba = model.predict_proba(battles)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    mirrored = model.predict_proba(swap(battles))
    np.testing.assert_allclose(mirrored, proba[:, [1, 0, 2]], atol=1e-9)
    loaded = PreferenceModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(battles), proba)
