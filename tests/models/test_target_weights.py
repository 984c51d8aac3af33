"""Learned target weights: the other-source factor search and density ratios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.battles import read_battles, swap
from models import PreferenceModel
from models.target_weights import (
    OTHER_WEIGHT_CANDIDATES,
    density_ratio_weights,
    search_family_weights,
    search_other_weight,
)
from pipelines.make_demo_data import make_demo_battles


def _sources(n_target: int, n_other: int, other_agrees: bool, seed: int = 0):
    """A target and another source whose voters agree with it or not."""
    rng = np.random.default_rng(seed)
    n = n_target + n_other
    X = rng.normal(size=(n, 4))
    is_target = np.zeros(n, bool)
    is_target[:n_target] = True
    margin = 2.0 * X[:, 0]
    if not other_agrees:
        margin[~is_target] *= -1  # the other voters reward the opposite
    p_a = 1 / (1 + np.exp(-margin))
    labels = np.where(rng.random(n) < p_a, 0, 1).astype(np.int64)
    folds = rng.integers(0, 3, n)
    return X, labels, folds, is_target


def test_the_search_drops_other_voters_who_disagree():
    X, labels, folds, is_target = _sources(300, 1500, other_agrees=False)
    best, losses = search_other_weight(X, labels, folds, is_target, None)
    assert set(losses) == set(OTHER_WEIGHT_CANDIDATES)
    assert best == min(OTHER_WEIGHT_CANDIDATES)
    assert losses[best] < losses[1.0]


def test_the_search_keeps_other_voters_who_agree():
    X, labels, folds, is_target = _sources(150, 1500, other_agrees=True)
    best, losses = search_other_weight(X, labels, folds, is_target, None)
    assert best >= 1.0
    assert losses[best] == min(losses.values())


def test_density_ratios_favour_other_rows_that_look_like_the_target():
    rng = np.random.default_rng(1)
    target = rng.normal(loc=2.0, size=(300, 3))
    near = rng.normal(loc=2.0, size=(300, 3))
    far = rng.normal(loc=-2.0, size=(300, 3))
    X = np.vstack([target, near, far])
    is_target = np.arange(900) < 300
    ratio = density_ratio_weights(X, is_target, rng.integers(0, 3, 900))
    assert np.all(ratio[is_target] == 1.0)
    assert ratio[300:600].mean() > 5 * ratio[600:].mean()
    assert ratio[~is_target].mean() == pytest.approx(1.0)
    assert ratio[~is_target].max() <= 10.0 / ratio[~is_target].min() + 1e-9


FAST = {"lightgbm": {"num_boost_round": 40, "learning_rate": 0.1, "num_threads": 1}}


@pytest.fixture(scope="module")
def battles() -> pd.DataFrame:
    return read_battles(make_demo_battles(n_rows=500, seed=4), labelled=True)


def _model(**params) -> PreferenceModel:
    return PreferenceModel(
        blocks={"lengths": {}, "flags": {}}, booster_params=FAST, n_folds=3, **params
    )


def test_auto_weight_is_searched_reported_and_used(battles):
    model = _model(target="synthetic-code", target_other_weight="auto").fit(battles)
    search = model.metrics_["target"]["weight_search"]
    assert search["chosen"] in OTHER_WEIGHT_CANDIDATES
    assert len(search["proxy_log_loss"]) == len(OTHER_WEIGHT_CANDIDATES)
    fixed = _model(target="synthetic-code", target_other_weight=search["chosen"])
    np.testing.assert_allclose(
        model.predict_proba(battles), fixed.fit(battles).predict_proba(battles)
    )


def test_density_weights_change_the_fit_and_keep_swap_symmetry(battles):
    plain = _model(target="synthetic-code").fit(battles).predict_proba(battles)
    model = _model(target="synthetic-code", target_density_weights=True).fit(battles)
    proba = model.predict_proba(battles)
    assert not np.allclose(proba, plain)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    mirrored = model.predict_proba(swap(battles))
    np.testing.assert_allclose(mirrored, proba[:, [1, 0, 2]], atol=1e-9)


def test_without_a_target_the_weight_switches_change_nothing(battles):
    plain = _model().fit(battles).predict_proba(battles)
    switched = _model(target_other_weight="auto", target_density_weights=True)
    np.testing.assert_allclose(switched.fit(battles).predict_proba(battles), plain)


def test_the_family_search_drops_the_family_that_disagrees_keeps_the_other():
    rng = np.random.default_rng(3)
    n_target, n_each = 200, 500
    X = rng.normal(size=(n_target + 2 * n_each, 4))
    families = np.array(
        ["target"] * n_target + ["agrees"] * n_each + ["disagrees"] * n_each
    )
    is_target = families == "target"
    margin = 2.0 * X[:, 0]
    margin[families == "disagrees"] *= -1
    labels = np.where(rng.random(len(X)) < 1 / (1 + np.exp(-margin)), 0, 1)
    folds = rng.integers(0, 3, len(X))
    factors, search = search_family_weights(
        X, labels, folds, is_target, None, families, candidates=(1.0,)
    )
    assert factors["disagrees"] == 0.0
    assert factors["agrees"] > 0.0
    assert search["final_proxy_log_loss"] < search["proxy_log_loss"]["1.0"]


def test_auto_family_weights_are_searched_per_family_and_reported(battles):
    model = _model(target="synthetic-code", target_other_weight="auto-family")
    model.fit(battles)
    search = model.metrics_["target"]["weight_search"]
    families = set(battles["source"].str.split(":").str[0]) - {"synthetic-code"}
    assert set(search["factors"]) == families
    assert search["final_proxy_log_loss"] <= min(search["proxy_log_loss"].values())
    np.testing.assert_allclose(model.predict_proba(battles).sum(axis=1), 1.0)
