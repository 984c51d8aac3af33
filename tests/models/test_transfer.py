"""Transfer metrics and the held-out-source table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.battles import as_battles
from features.errors import BattleFormatError, InvalidParameterError
from models import PreferenceModel
from models.sources import source_families
from models.transfer import (
    TRANSFER_COLUMNS,
    WITHIN_SET_COLUMNS,
    length_difference,
    model_fit_predict,
    predict_with_prior,
    transfer_table,
    within_set_cv,
)
from pipelines.make_demo_data import make_demo_battles

FAKE_SOURCES = ("alpha:one", "alpha:two", "beta", "gamma:x")


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    """Synthetic battles with four fine sources in three families."""
    battles = as_battles(make_demo_battles(n_rows=160, seed=3))
    battles["source"] = [FAKE_SOURCES[i % 4] for i in range(len(battles))]
    return battles


def _oracle(train, test, class_prior=None):
    """Puts 0.9 on the true class: a model that transfers perfectly."""
    proba = np.full((len(test), 3), 0.05)
    proba[np.arange(len(test)), test["label"].to_numpy()] = 0.9
    return proba


def _uniform(train, test, class_prior=None):
    return np.full((len(test), 3), 1 / 3)


def test_length_difference_counts_tokens_of_a_minus_b(hand_battles):
    difference = length_difference(hand_battles)
    assert difference.shape == (len(hand_battles),)
    # Battle "3" has identical answers; battle "7" has an empty and a blank one.
    assert difference[2] == 0.0 and difference[6] == 0.0
    assert difference[0] < 0  # "2+2 = **4**." is shorter than the sentence


# ---------------------------------------------------------------- priors
class _PriorAware:
    train_prior_ = np.array([0.4, 0.4, 0.2])

    def predict_proba(self, battles, *, class_prior=None):
        self.seen = class_prior
        return np.full((len(battles), 3), 1 / 3)


class _PriorBlind:
    train_prior_ = np.array([0.25, 0.25, 0.5])

    def predict_proba(self, battles):
        return np.tile([0.25, 0.25, 0.5], (len(battles), 1))


def test_predict_with_prior_passes_the_prior_to_a_model_that_takes_it():
    model = _PriorAware()
    predict_with_prior(model, [1, 2], class_prior=np.array([0.5, 0.5, 0.0]))
    np.testing.assert_array_equal(model.seen, [0.5, 0.5, 0.0])


def test_predict_with_prior_shifts_other_models_like_fit_prior():
    proba = predict_with_prior(_PriorBlind(), [1, 2], class_prior=[0.4, 0.4, 0.2])
    np.testing.assert_allclose(proba, [[0.4, 0.4, 0.2]] * 2)
    np.testing.assert_allclose(
        predict_with_prior(_PriorBlind(), [1], None), [[0.25, 0.25, 0.5]]
    )


def test_predict_with_prior_refuses_a_model_without_a_training_prior():
    class NoPrior:
        def predict_proba(self, battles):
            return np.full((len(battles), 3), 1 / 3)

    with pytest.raises(InvalidParameterError, match="has no train_prior_"):
        predict_with_prior(NoPrior(), [1], class_prior=[0.4, 0.4, 0.2])


def test_model_fit_predict_fits_once_per_training_set():
    fits = []

    class Counting(_PriorBlind):
        def fit(self, battles, **params):
            fits.append((len(battles), params))
            return self

    fit_predict = model_fit_predict(Counting, fit_params={"store": "s"})
    train, other = pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [1, 2]})
    test = pd.DataFrame({"x": [3]})
    fit_predict(train, test)
    fit_predict(train, test, class_prior=np.array([0.3, 0.3, 0.4]))
    assert fits == [(2, {"store": "s"})]
    fit_predict(other, test)
    assert len(fits) == 2


# ------------------------------------------------------------------ table
def test_transfer_table_holds_out_every_family_and_each_external_set(demo):
    external = demo.iloc[:30].assign(id=lambda t: "ext-" + t["id"])
    seen = []

    def recording(train, test, class_prior=None):
        seen.append((set(source_families(train["source"])), len(test), class_prior))
        return _uniform(train, test)

    table = transfer_table(demo, recording, external={"arena": external})
    assert list(table.columns) == list(TRANSFER_COLUMNS)
    assert table["source"].tolist() == ["alpha", "beta", "gamma", "arena"]
    assert table["kind"].tolist() == ["family"] * 3 + ["external"]
    families = source_families(demo["source"])
    for row in table.itertuples():
        if row.kind == "family":
            assert row.n == int(np.sum(families == row.source))
            assert row.n_train == len(demo) - row.n
        else:
            assert (row.n, row.n_train) == (30, len(demo))
    # Each family's fit saw every other family and never the held-out one.
    for train_families, _, _ in seen[:2]:
        assert len(train_families) == 2
    assert {"alpha", "beta", "gamma"} == seen[-1][0]
    # The own prior is passed once per source with ties, and it is that source's.
    priors = [prior for _, _, prior in seen if prior is not None]
    alpha = demo["label"].to_numpy()[families == "alpha"]
    np.testing.assert_allclose(priors[0], np.bincount(alpha, minlength=3) / len(alpha))


def test_transfer_table_scores_a_uniform_model_like_a_coin(demo):
    table = transfer_table(demo, _uniform)
    np.testing.assert_allclose(table["decisive_log_loss"], math.log(2))
    np.testing.assert_allclose(table["log_loss"], math.log(3))
    assert (table["decisive_auc"] == 0.5).all()
    assert not table["ok"].any()
    assert table["missed"].str.contains("< raw length").all()


def test_transfer_table_says_ok_for_a_model_that_transfers(demo):
    table = transfer_table(demo, _oracle)
    assert table["ok"].tolist() == [True, True, True]
    assert (table["missed"] == "").all()
    assert (table["log_loss_own_prior"] < table["own_prior_log_loss"]).all()


def test_transfer_table_judges_a_tie_free_source_by_its_decisive_rows(demo):
    decisive = demo[demo["label"] != 2].copy()
    decisive.loc[decisive["source"] == "beta", "label"] = 0  # one winner: no AUC
    table = transfer_table(decisive, _oracle).set_index("source")
    assert (table["tie_rate"] == 0).all()
    assert table["log_loss_own_prior"].isna().all()
    assert table.loc["alpha", "ok"] is True
    assert table.loc["beta", "ok"] is None
    assert "not judged" in table.loc["beta", "missed"]


def test_transfer_table_reports_how_well_the_ties_are_ranked(demo):
    table = transfer_table(demo, _oracle).set_index("source")
    assert (table["tie_auc"] == 1.0).all()  # the oracle puts its mass on each tie
    decisive = demo[demo["label"] != 2]
    assert transfer_table(decisive, _oracle)["tie_auc"].isna().all()


def test_transfer_table_holds_out_only_the_families_asked_for(demo):
    table = transfer_table(demo, _uniform, holdout=["beta"])
    assert table["source"].tolist() == ["beta"]
    assert transfer_table(demo, _uniform, holdout=[]).empty


def test_transfer_table_rejects_battles_without_a_source_column(demo):
    with pytest.raises(BattleFormatError, match="no 'source' column"):
        transfer_table(demo.drop(columns="source"), _uniform)


def test_transfer_table_rejects_an_unlabelled_external_set(demo):
    external = demo.drop(columns="label").iloc[:5]
    with pytest.raises(BattleFormatError, match="external set 'x' has no 'label'"):
        transfer_table(demo, _uniform, external={"x": external})


def test_transfer_table_needs_two_families(demo):
    with pytest.raises(InvalidParameterError, match="at least 2 source families"):
        transfer_table(demo.assign(source="alpha:one"), _uniform)


def test_transfer_table_rejects_an_unknown_holdout_family(demo):
    with pytest.raises(InvalidParameterError, match=r"unknown source families \['x'\]"):
        transfer_table(demo, _uniform, holdout=["x"])


@pytest.mark.slow
def test_transfer_table_fits_a_preference_model_on_training_families_only(demo):
    def small_model() -> PreferenceModel:
        return PreferenceModel(
            n_folds=2,
            booster_params={
                "lightgbm": {
                    "num_boost_round": 20,
                    "early_stopping_rounds": 5,
                    "learning_rate": 0.3,
                    "min_data_in_leaf": 5,
                    "verbose": -1,
                }
            },
        )

    table = transfer_table(demo, model_fit_predict(small_model), holdout=["alpha"])
    row = table.iloc[0]
    assert row["source"] == "alpha" and row["n_train"] == len(demo) - row["n"]
    for key in ("log_loss", "log_loss_own_prior", "decisive_auc", "length_auc"):
        assert math.isfinite(row[key]), key
    assert row["ok"] in (True, False)


# --------------------------------------------------------------- within set
def test_within_set_cv_predicts_every_row_once_per_seed_from_other_folds(demo):
    calls = []

    def recording(train, test, class_prior=None):
        assert class_prior is None
        calls.append((set(train["id"]), list(test["id"])))
        return _uniform(train, test)

    table = within_set_cv(demo, recording, n_folds=3, seeds=(0, 1))
    assert list(table.columns) == list(WITHIN_SET_COLUMNS)
    assert table["seed"].tolist() == [0, 1] and (table["n"] == len(demo)).all()
    assert len(calls) == 6
    for seed_calls in (calls[:3], calls[3:]):
        tested = [i for _, test in seed_calls for i in test]
        assert sorted(tested) == sorted(demo["id"])  # each row scored once
        for train, test in seed_calls:
            assert not train & set(test)  # never scored by a fit that saw it
    # Fold seeds move the split (same prompts stay together within each seed).
    assert {frozenset(t) for _, t in calls[:3]} != {frozenset(t) for _, t in calls[3:]}


def test_within_set_cv_scores_an_oracle_perfectly_and_a_uniform_model_as_a_coin(demo):
    oracle = within_set_cv(demo, _oracle, n_folds=2, seeds=(0,)).iloc[0]
    uniform = within_set_cv(demo, _uniform, n_folds=2, seeds=(0,)).iloc[0]
    assert oracle["decisive_auc"] == 1.0
    assert uniform["decisive_auc"] == 0.5
    assert uniform["decisive_log_loss"] == pytest.approx(math.log(2))
    assert uniform["log_loss"] == pytest.approx(math.log(3))
    assert oracle["length_auc"] == uniform["length_auc"]  # the data's, not the model's


def test_within_set_cv_rejects_no_seeds_and_unlabelled_battles(demo):
    with pytest.raises(InvalidParameterError, match="at least one seed"):
        within_set_cv(demo, _uniform, seeds=())
    with pytest.raises(
        BattleFormatError, match="within_set_cv: battles has no 'label'"
    ):
        within_set_cv(demo.drop(columns="label"), _uniform)
