"""train_gbdt: a bad profile fails before any work; studies follow the profile."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from features.blocks import FeatureMatrix
from pipelines import train_gbdt
from pipelines.config import load_config
from pipelines.estimator import tune_from_config
from pipelines.make_demo_data import make_demo_battles

PROFILE = """
seed: 3
features:
  store: {root}/store
  blocks:
    lengths: {{}}
training:
  n_folds: 3
  boosters: [lightgbm, xgboost]
  booster_params:
    lightgbm: {{num_boost_round: 10, early_stopping_rounds: 5, num_threads: 1}}
    xgboost: {{num_boost_round: 10, early_stopping_rounds: 5, nthread: 1}}
  out: {root}/model
tuning:
  n_trials: 1
  storage: sqlite:///{root}/optuna.db
  study_prefix: test
  booster_share: {{lightgbm: 1.0, xgboost: 0.0}}
  n_folds: 2
  max_rows: null
  search_spaces:
    lightgbm:
      learning_rate: {{low: 0.05, high: 0.3, log: true}}
"""
N_ROWS = 240


@pytest.fixture
def profile(tmp_path) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE.format(root=tmp_path))
    return path


@pytest.fixture(scope="module")
def battles_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("battles") / "train.csv"
    make_demo_battles(n_rows=60, seed=1).to_csv(path, index=False)
    return path


def _train(profile: Path, battles_file: Path, *options: str) -> int:
    argv = ["--config", str(profile), "--data", str(battles_file), "--quiet"]
    return train_gbdt.main([*argv, *options])


def test_bad_stack_method_fails_before_any_feature_is_built(
    profile, battles_file, capsys
):
    started = time.perf_counter()
    code = _train(profile, battles_file, "--set", "training.stack_method=blnd")
    elapsed = time.perf_counter() - started

    assert code == 2
    error = capsys.readouterr().err
    assert f"{profile}: training.stack_method:" in error
    assert "must be one of 'auto', 'blend', 'logreg'. Got 'blnd'." in error
    assert not (profile.parent / "store").exists()
    assert not (profile.parent / "optuna.db").exists()
    assert elapsed < 2.0


def test_booster_with_trials_and_no_space_fails_before_any_feature_is_built(
    profile, battles_file, capsys
):
    share = "tuning.booster_share={lightgbm: 0.5, xgboost: 0.5}"
    code = _train(profile, battles_file, "--trials", "2", "--set", share)

    assert code == 2
    error = capsys.readouterr().err
    assert f"{profile}: tuning: booster(s) ['xgboost'] get trials but have no " in error
    assert not (profile.parent / "store").exists()


@pytest.fixture(scope="module")
def features() -> tuple[FeatureMatrix, np.ndarray, np.ndarray]:
    """240 battles in 120 prompt pairs; feature 0 favours A, feature 1 B."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(N_ROWS, 4)).astype(np.float32)
    labels = np.where(values[:, 0] > values[:, 1], 0, 1)
    labels[rng.random(N_ROWS) < 0.2] = 2
    groups = np.arange(N_ROWS, dtype=np.int64) // 2
    matrix = FeatureMatrix(values, tuple(f"d_{i}" for i in range(4)))
    return matrix, labels.astype(np.int64), groups


def _tune(profile: Path, features, *overrides: str, matrix=None) -> dict:
    config = load_config(profile, list(overrides))
    default_matrix, labels, groups = features
    matrix = default_matrix if matrix is None else matrix
    return tune_from_config(config, matrix, labels, groups)


def _n_trials(profile: Path, summary: dict) -> int:
    study = optuna.load_study(
        study_name=summary["studies"]["lightgbm"],
        storage=f"sqlite:///{profile.parent / 'optuna.db'}",
    )
    return len(study.trials)


def _other_features(features) -> FeatureMatrix:
    # What other data, blocks or data.max_chars give: other feature values.
    matrix = features[0]
    return FeatureMatrix(matrix.values[::-1].copy(), matrix.columns)


@pytest.mark.parametrize(
    "override",
    [
        "training.booster_params.lightgbm.max_bin=63",
        "training.booster_params.lightgbm.early_stopping_rounds=3",
        "tuning.n_folds=3",
        "tuning.n_folds=null",
        "tuning.max_rows=150",
        "seed=4",
        "tuning.search_spaces.lightgbm.learning_rate={low: 0.01, high: 0.3}",
        "other feature values",
    ],
)
def test_changing_what_the_trials_score_starts_a_new_study(profile, features, override):
    first = _tune(profile, features)
    if override == "other feature values":
        second = _tune(profile, features, matrix=_other_features(features))
    else:
        second = _tune(profile, features, override)

    assert second["studies"]["lightgbm"] != first["studies"]["lightgbm"]
    assert second["n_trials"]["lightgbm"]["complete"] == 1
    assert _n_trials(profile, first) == 1


@pytest.mark.parametrize(
    "override",
    [
        None,
        "training.booster_params.lightgbm.num_threads=2",
        "training.booster_params.xgboost.max_bin=32",
        "tuning.booster_share={lightgbm: 0.9, xgboost: 0.1}",
        "training.stack_method=blend",
        "training.n_folds=4",
    ],
)
def test_a_rerun_that_changes_no_trial_score_resumes(profile, features, override):
    first = _tune(profile, features)
    second = _tune(profile, features, *([override] if override else []))

    assert second["studies"]["lightgbm"] == first["studies"]["lightgbm"]
    assert second["n_trials"]["lightgbm"] == first["n_trials"]["lightgbm"]
    assert _n_trials(profile, first) == 1


def test_trials_see_at_most_max_rows_rows(profile, features):
    summary = _tune(profile, features, "tuning.max_rows=150")
    assert 100 <= summary["rows"] <= 150
