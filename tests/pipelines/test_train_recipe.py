"""train_gbdt and PreferenceModel.fit train on the same rows: the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.battles import read_battles
from features.store import FeatureStore
from models import PreferenceModel
from pipelines import train_gbdt
from pipelines.config import load_config
from pipelines.estimator import model_from_config, recipe_from_config
from pipelines.make_demo_data import make_demo_battles

# Every step of the recipe switched on: source weights, source folds, the
# anchor and swapped copies.
PROFILE = """
seed: 5
features:
  store: {root}/store
  blocks:
    lengths: {{}}
    style: {{}}
    flags: {{}}
training:
  n_folds: 3
  boosters: [lightgbm, xgboost]
  booster_params:
    lightgbm: {{num_boost_round: 20, early_stopping_rounds: 5, num_threads: 1}}
    xgboost: {{num_boost_round: 20, early_stopping_rounds: 5, nthread: 1}}
  group_by: auto
  source_weights: {{beta: 2.0}}
  anchor: true
  swap_augment: true
  tie_head: auto
  out: {root}/model
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("recipe")
    battles = make_demo_battles(n_rows=180, seed=2)
    battles["source"] = np.array(["alpha:x", "alpha:y", "beta", "gamma"])[
        np.arange(len(battles)) % 4
    ]
    data = root / "train.csv"
    battles.to_csv(data, index=False)
    profile = root / "profile.yaml"
    profile.write_text(PROFILE.format(root=root))
    argv = ["--config", str(profile), "--data", str(data), "--quiet", "--trials", "0"]
    assert train_gbdt.main(argv) == 0
    return profile, data


def test_train_gbdt_fits_the_model_fit_would(trained):
    profile, data = trained
    config = load_config(profile)
    saved = PreferenceModel.load(config.training.out)

    direct = model_from_config(config).fit(
        read_battles(data), store=FeatureStore(config.features.store)
    )

    np.testing.assert_array_equal(saved.folds_, direct.folds_)
    np.testing.assert_array_equal(saved.oof_proba_, direct.oof_proba_)
    assert saved.metrics_ == direct.metrics_
    assert saved.anchor_.to_dict() == direct.anchor_.to_dict()
    assert saved.tie_head_ == direct.tie_head_ == "constant"


def test_train_gbdt_folds_are_the_recipe_folds(trained):
    profile, data = trained
    config = load_config(profile)
    rows = recipe_from_config(config).rows(read_battles(data))

    saved = PreferenceModel.load(config.training.out)

    np.testing.assert_array_equal(saved.folds_, rows.folds)
    assert rows.group_by == "source" and rows.holds_out_sources
    assert rows.families is not None
    np.testing.assert_array_equal(
        saved.train_prior_, np.bincount(rows.labels, minlength=3) / len(rows)
    )
