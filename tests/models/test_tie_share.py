"""The tie share apart from the direction: target tie rates and fit_prior."""

from __future__ import annotations

import numpy as np
import pytest

from features.battles import as_battles, read_battles
from features.errors import InvalidParameterError
from models import PreferenceModel
from models.label_shift import estimate_tie_share, tie_confusion, tie_only_prior
from pipelines.make_demo_data import make_demo_battles

BLOCKS = {"lengths": {}, "style": {}, "flags": {}}
FAST = {"lightgbm": {"num_boost_round": 60, "learning_rate": 0.1}}


def _direction(proba):
    return proba[:, 0] / (proba[:, 0] + proba[:, 1])


def test_tie_only_prior_keeps_the_training_a_to_b_ratio():
    prior = tie_only_prior([0.35, 0.34, 0.31], 0.1)
    assert prior.sum() == pytest.approx(1.0) and prior[2] == pytest.approx(0.1)
    assert prior[0] / prior[1] == pytest.approx(0.35 / 0.34)
    with pytest.raises(
        InvalidParameterError, match=r"tie_rate must be a share in \[0, 1\]"
    ):
        tie_only_prior([0.35, 0.34, 0.31], 1.5)


def test_bbse_follows_predictions_that_separate_ties():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=2000, p=[0.4, 0.4, 0.2])
    tie = np.where(labels == 2, 0.6, 0.1) + rng.normal(0, 0.02, len(labels))
    proba = np.column_stack([(1 - tie) / 2, (1 - tie) / 2, tie])
    confusion = tie_confusion(proba, labels)
    no_ties = proba[labels < 2]
    only_ties = proba[labels == 2]
    assert estimate_tie_share(confusion, no_ties) == pytest.approx(0.0, abs=0.02)
    assert estimate_tie_share(confusion, only_ties) == pytest.approx(1.0, abs=0.02)
    assert estimate_tie_share(confusion, proba) == pytest.approx(0.2, abs=0.02)


def test_bbse_keeps_the_training_share_when_predictions_carry_no_tie_signal():
    labels = np.array([0, 1, 2, 0, 1, 2])
    proba = np.tile([0.4, 0.4, 0.2], (6, 1))
    share = estimate_tie_share(tie_confusion(proba, labels), proba)
    assert share == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def demo_model():
    battles = as_battles(make_demo_battles(n_rows=500, seed=4))
    model = PreferenceModel(blocks=BLOCKS, booster_params=FAST, n_folds=3)
    return model.fit(battles), battles


def test_a_target_tie_rate_moves_only_the_tie_share(demo_model):
    model, battles = demo_model
    base = model.predict_proba(battles)
    for rate in (0.0, 0.05, 0.5):
        shifted = model.predict_proba(battles, tie_rate=rate)
        np.testing.assert_allclose(shifted.sum(axis=1), 1.0)
        np.testing.assert_allclose(_direction(shifted), _direction(base), rtol=1e-9)
    assert model.predict_proba(battles, tie_rate=0.05)[:, 2].mean() < base[:, 2].mean()
    assert model.predict_proba(battles, tie_rate=0.5)[:, 2].mean() > base[:, 2].mean()


def test_class_prior_and_tie_rate_together_are_refused(demo_model):
    model, battles = demo_model
    with pytest.raises(
        InvalidParameterError, match="class_prior or tie_rate, not both"
    ):
        model.predict_proba(battles, class_prior=[0.4, 0.4, 0.2], tie_rate=0.1)


def test_fit_prior_lowers_the_tie_share_on_battles_without_ties(demo_model):
    model, battles = demo_model
    decisive = battles[battles["label"] < 2]
    model.fit_prior(decisive)
    try:
        assert model.target_prior_[2] < model.train_prior_[2]
        np.testing.assert_allclose(
            model.target_prior_[0] / model.target_prior_[1],
            model.train_prior_[0] / model.train_prior_[1],
        )
    finally:
        model.target_prior_ = None


def test_fit_prior_rejects_an_unknown_method(demo_model):
    model, battles = demo_model
    with pytest.raises(InvalidParameterError, match="'method' parameter of fit_prior"):
        model.fit_prior(battles, method="mle")


@pytest.mark.slow
@pytest.mark.realdata
def test_fit_prior_lowers_the_tie_share_on_real_arena_battles(corpus_path):
    arena_path = corpus_path.parent / "arena.csv"
    if not arena_path.exists():
        pytest.skip(f"arena battles not found at {arena_path}")
    corpus, arena = read_battles(corpus_path), read_battles(arena_path)
    model = PreferenceModel(
        blocks=BLOCKS, booster_params=FAST, group_by="source", n_folds=7, n_jobs=-1
    ).fit(corpus)
    model.fit_prior(arena)
    assert model.target_prior_[2] < model.train_prior_[2]
