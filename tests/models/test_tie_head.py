"""tie_head: P(tie) from the boosters, or the training tie share for every battle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.battles import read_battles, swap
from features.errors import InvalidParameterError
from models import PreferenceModel
from models.label_shift import constant_tie_share
from pipelines import load_config
from pipelines.estimator import model_from_config
from pipelines.make_demo_data import make_demo_battles

LITE = Path(__file__).resolve().parents[2] / "configs" / "lite.yaml"

FAST = {
    "lightgbm": {
        "num_boost_round": 40,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "num_threads": 1,
    }
}


def _model(tie_head: str) -> PreferenceModel:
    return PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        booster_params=FAST,
        n_folds=3,
        tie_head=tie_head,
    )


@pytest.fixture(scope="module")
def battles():
    return read_battles(make_demo_battles(n_rows=400, seed=4))


@pytest.fixture(scope="module")
def both(battles):
    return {head: _model(head).fit(battles) for head in ("model", "constant")}


def _a_share(proba):
    return proba[:, 0] / (proba[:, 0] + proba[:, 1])


def test_a_constant_tie_head_predicts_the_training_tie_share_for_every_battle(
    both, battles
):
    proba = both["constant"].predict_proba(battles.iloc[:60])
    tie_share = np.mean(battles["label"] == 2)
    np.testing.assert_allclose(proba[:, 2], tie_share, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    # The out-of-fold predictions the metrics and fit_prior use are the same kind.
    np.testing.assert_allclose(both["constant"].oof_proba_[:, 2], tie_share)


def test_the_tie_head_leaves_who_wins_as_the_boosters_say(both, battles):
    # Same boosters (the head is the last step): P(A) / (P(A) + P(B)) is equal.
    head = {name: m.predict_proba(battles.iloc[:60]) for name, m in both.items()}
    np.testing.assert_allclose(
        _a_share(head["constant"]), _a_share(head["model"]), atol=1e-12
    )
    assert np.ptp(head["model"][:, 2]) > 0.01  # the boosters' tie share does vary


def test_a_constant_tie_head_keeps_the_swap_symmetry(both, battles):
    rows = battles.iloc[:60]
    direct = both["constant"].predict_proba(rows)
    swapped = both["constant"].predict_proba(swap(rows))
    np.testing.assert_allclose(swapped, direct[:, [1, 0, 2]], atol=1e-12)


def test_class_prior_and_tie_rate_still_move_a_constant_tie_share(both, battles):
    model, rows = both["constant"], battles.iloc[:60]
    low = model.predict_proba(rows, tie_rate=0.05)[:, 2]
    high = model.predict_proba(rows, tie_rate=0.5)[:, 2]
    assert np.ptp(low) < 1e-12 and np.ptp(high) < 1e-12  # still one share each
    assert low[0] < model.train_prior_[2] < high[0]
    shifted = model.predict_proba(rows, class_prior=[0.3, 0.3, 0.4])[:, 2]
    assert shifted.mean() > model.train_prior_[2]


def test_fit_prior_moves_a_constant_tie_share_by_the_boosters_behaviour(both, battles):
    model = both["constant"]
    decisive = battles[battles["label"] != 2].iloc[:80]
    try:
        model.fit_prior(decisive)  # bbse moves the tie share alone
        ties = model.predict_proba(decisive)[:, 2]
        assert np.ptp(ties) < 1e-12  # still one share for every battle
        assert ties[0] < model.train_prior_[2]  # a tie-free set: fewer ties
        model.fit_prior(decisive, method="em")  # all three shares; it runs
        assert model.target_prior_.shape == (3,)
    finally:
        model.target_prior_ = None  # the module's fixture is shared
    # The estimate reads the boosters' P(tie), so both heads estimate alike.
    both["model"].fit_prior(decisive)
    try:
        model.fit_prior(decisive)
        np.testing.assert_allclose(model.target_prior_, both["model"].target_prior_)
    finally:
        model.target_prior_ = both["model"].target_prior_ = None


def test_a_saved_constant_tie_head_loads_as_it_was(both, battles, tmp_path):
    directory = both["constant"].save(tmp_path / "model")
    loaded = PreferenceModel.load(directory)
    assert loaded.tie_head == "constant"
    np.testing.assert_array_equal(
        loaded.predict_proba(battles.iloc[:30]),
        both["constant"].predict_proba(battles.iloc[:30]),
    )


def test_an_unknown_tie_head_is_a_clear_error(battles):
    with pytest.raises(InvalidParameterError, match=r"'tie_head' parameter .*'model'"):
        _model("sometimes").fit(battles)


def test_the_profile_key_reaches_the_model():
    config = load_config(LITE, ["training.tie_head=constant"])
    assert model_from_config(config).tie_head == "constant"
    assert model_from_config(load_config(LITE)).tie_head == "auto"


def test_constant_tie_share_keeps_the_a_share_and_a_movable_tie():
    proba = constant_tie_share([[0.6, 0.2, 0.2], [0.0, 0.0, 1.0]], 0.0)
    np.testing.assert_allclose(proba[:, 2], 1e-4)  # never exactly 0: shifts still work
    np.testing.assert_allclose(_a_share(proba), [0.75, 0.5])  # no decisive mass: 50/50
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.fixture(scope="module")
def sourced(battles):
    return battles.assign(
        source=[("alpha:x", "beta", "gamma")[i % 3] for i in range(len(battles))]
    )


@pytest.mark.parametrize(
    ("group_by", "with_source", "resolved"),
    [
        ("auto", True, "constant"),  # 2+ families: folds hold out whole sources
        ("source", True, "constant"),
        ("prompt", True, "model"),  # in-source folds: the boosters' ties are scored
        ("auto", False, "model"),  # one source (a Kaggle train.csv)
    ],
)
def test_auto_tie_head_is_constant_only_when_folds_hold_out_whole_sources(
    battles, sourced, group_by, with_source, resolved
):
    model = PreferenceModel(
        blocks={"lengths": {}},
        booster_params=FAST,
        n_folds=3,
        group_by=group_by,
        tie_head="auto",
    ).fit(sourced if with_source else battles.drop(columns="source"))
    assert model.tie_head == "auto" and model.tie_head_ == resolved
    ties = model.oof_proba_[:, 2]
    assert (np.ptp(ties) < 1e-12) == (resolved == "constant")


def test_auto_tie_head_follows_folds_given_to_fit(sourced):
    model = PreferenceModel(
        blocks={"lengths": {}}, booster_params=FAST, n_folds=3, tie_head="auto"
    )
    mixed = (np.arange(len(sourced)) // 3) % 3  # every fold holds all three sources
    assert model.fit(sourced, folds=mixed).tie_head_ == "model"
    whole = np.arange(len(sourced)) % 3  # one source per fold
    assert model.fit(sourced, folds=whole).tie_head_ == "constant"


def test_the_saved_model_records_the_tie_head_it_used(both, tmp_path):
    import json

    for head, model in both.items():
        directory = model.save(tmp_path / head)
        assert json.loads((directory / "model.json").read_text())["tie_head"] == head
