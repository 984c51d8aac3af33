"""Tests for models.tuning: budget split, persistent resumable studies, pruning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import scipy.sparse as sp
from optuna.trial import TrialState

from features.blocks.base import FeatureMatrix
from models import tuning
from models.calibration import multiclass_log_loss
from models.gbdt import train_folds
from models.tuning import split_trials, tune_boosters
from pipelines.config import TuningConfig

N_ROWS = 300
N_FOLDS = 3
# Small, single-threaded boosters: the suite runs on a loaded 2-core machine.
BASE_PARAMS = {
    "lightgbm": {"num_boost_round": 30, "early_stopping_rounds": 5, "num_threads": 1},
    "xgboost": {"num_boost_round": 30, "early_stopping_rounds": 5, "nthread": 1},
}
SPACES = {
    "lightgbm": {
        "learning_rate": {"low": 0.05, "high": 0.3, "log": True},
        "num_leaves": {"low": 4, "high": 16, "log": True, "type": "int"},
    },
    "xgboost": {
        "max_depth": {"low": 2, "high": 4, "type": "int"},
        "subsample": {"choices": [0.7, 1.0]},
    },
}


@pytest.fixture(scope="module")
def data() -> tuple[FeatureMatrix, np.ndarray, np.ndarray]:
    """300 battles x 5 features; feature 0 favours A, feature 1 favours B."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(N_ROWS, 5)).astype(np.float32)
    logits = np.stack([2 * values[:, 0], 2 * values[:, 1], np.zeros(N_ROWS)], axis=1)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = (proba.cumsum(axis=1)[:, :-1] < rng.random((N_ROWS, 1))).sum(axis=1)
    folds = np.arange(N_ROWS, dtype=np.int64) % N_FOLDS
    matrix = FeatureMatrix(values, tuple(f"d_{i}" for i in range(5)))
    return matrix, labels.astype(np.int64), folds


def _config(tmp_path: Path, **changes) -> TuningConfig:
    settings = {
        "storage": f"sqlite:///{tmp_path / 'studies' / 'optuna.db'}",
        "study_prefix": "test",
        "booster_share": {"lightgbm": 0.6, "xgboost": 0.4},
        "search_spaces": SPACES,
        **changes,
    }
    return TuningConfig(**settings)


def _tune(data, config: TuningConfig, n_trials: int, **changes) -> dict:
    matrix, labels, folds = data
    arguments = {
        "boosters": ["lightgbm"],
        "base_params": BASE_PARAMS,
        "tuning": config,
        "n_trials": n_trials,
        "timeout": None,
        "study_key": "key",
        "seed": 0,
        "verbose": False,
        **changes,
    }
    return tune_boosters(matrix, labels, folds, **arguments)


def _load(config: TuningConfig, booster: str = "lightgbm") -> optuna.Study:
    return optuna.load_study(
        study_name=f"{config.study_prefix}-{booster}-key", storage=config.storage
    )


def _states(study: optuna.Study) -> list[TrialState]:
    return [trial.state for trial in study.get_trials(deepcopy=False)]


@pytest.mark.parametrize(
    ("n_trials", "boosters", "share", "expected"),
    [
        (20, ["lightgbm", "xgboost"], {"lightgbm": 0.6, "xgboost": 0.4}, [12, 8]),
        (5, ["lightgbm", "xgboost"], {"lightgbm": 0.6, "xgboost": 0.4}, [3, 2]),
        (7, ["lightgbm", "xgboost"], {}, [4, 3]),
        (10, ["xgboost"], {"lightgbm": 0.9, "xgboost": 0.1}, [10]),
        (2, ["lightgbm", "xgboost"], {"lightgbm": 1.0, "xgboost": 0.0}, [1, 1]),
        (9, ["lightgbm", "xgboost"], {"lightgbm": 1.0, "xgboost": 0.0}, [8, 1]),
        (1, ["lightgbm", "xgboost"], {"lightgbm": 0.3, "xgboost": 0.7}, [0, 1]),
        (0, ["lightgbm", "xgboost"], {}, [0, 0]),
        (6, ["lightgbm", "xgboost", "catboost"], {"lightgbm": 2.0}, [4, 1, 1]),
    ],
)
def test_split_trials_sums_to_budget_and_respects_shares(
    n_trials, boosters, share, expected
):
    split = split_trials(n_trials, boosters, share)
    assert list(split) == boosters
    assert list(split.values()) == expected
    assert sum(split.values()) == n_trials


@pytest.mark.parametrize(
    ("n_trials", "share", "match"),
    [
        (-1, {}, "n_trials must be >= 0"),
        (4, {"lightgbm": -0.5}, r"booster_share\['lightgbm'\] must be a finite"),
        (4, {"lightgbm": float("nan")}, "must be a finite number"),
    ],
)
def test_split_trials_rejects_bad_budget_or_share(n_trials, share, match):
    with pytest.raises(ValueError, match=match):
        split_trials(n_trials, ["lightgbm", "xgboost"], share)


def test_split_trials_rejects_empty_boosters():
    with pytest.raises(ValueError, match="at least one booster"):
        split_trials(3, [], {})


def test_tune_boosters_summary_names_best_params_of_each_space(data, tmp_path):
    config = _config(tmp_path)
    verbosity = optuna.logging.get_verbosity()
    summary = _tune(data, config, 3, boosters=["lightgbm", "xgboost"])

    assert summary["split"] == {"lightgbm": 2, "xgboost": 1}
    assert summary["studies"] == {
        "lightgbm": "test-lightgbm-key",
        "xgboost": "test-xgboost-key",
    }
    assert summary["storage"] == config.storage
    for booster in ("lightgbm", "xgboost"):
        assert set(summary["best_params"][booster]) == set(SPACES[booster])
        assert 0 < summary["best_value"][booster] < np.log(3)
        assert summary["n_trials"][booster] == {
            "complete": summary["split"][booster],
            "pruned": 0,
            "failed": 0,
        }
    assert isinstance(summary["best_params"]["lightgbm"]["num_leaves"], int)
    assert summary["best_params"]["xgboost"]["subsample"] in (0.7, 1.0)
    assert json.loads(json.dumps(summary)) == summary
    assert (tmp_path / "studies" / "optuna.db").is_file()
    assert optuna.logging.get_verbosity() == verbosity


def test_rerun_of_finished_study_adds_no_trials(data, tmp_path):
    config = _config(tmp_path)
    first = _tune(data, config, 2)
    second = _tune(data, config, 2)

    assert len(_load(config).trials) == 2
    assert second == first


def test_interrupted_study_runs_only_remaining_trials(data, tmp_path):
    config = _config(tmp_path)
    _tune(data, config, 3)
    # A trial asked for but never told: what a killed process leaves behind.
    _load(config).ask()

    summary = _tune(data, config, 5)

    states = _states(_load(config))
    assert states.count(TrialState.COMPLETE) == 5
    assert states.count(TrialState.FAIL) == 1
    assert TrialState.RUNNING not in states
    assert summary["n_trials"]["lightgbm"] == {"complete": 5, "pruned": 0, "failed": 1}


def test_resumed_study_draws_new_parameters(data, tmp_path):
    config = _config(tmp_path)
    _tune(data, config, 2)
    _tune(data, config, 4)

    params = [tuple(t.params.values()) for t in _load(config).trials]
    assert len(set(params)) == 4


@pytest.mark.parametrize(
    "space",
    [
        {"learning_rate": {"low": 0.05, "high": 0.3, "log": True}},
        {
            "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
            "num_leaves": {"low": 4, "high": 16, "log": True, "type": "int"},
        },
    ],
    ids=["other_params", "other_range"],
)
def test_study_with_another_search_space_raises(data, tmp_path, space):
    config = _config(tmp_path)
    _tune(data, config, 1)
    changed = _config(tmp_path, search_spaces={"lightgbm": space})

    with pytest.raises(ValueError, match="another search space") as error:
        _tune(data, changed, 2)
    assert "Study 'test-lightgbm-key' in sqlite:///" in str(error.value)
    assert "Use a new study_prefix" in str(error.value)
    assert len(_load(config).trials) == 1


def test_sparse_csr_matrix_is_tuned_like_dense(data, tmp_path):
    matrix, labels, folds = data
    sparse = FeatureMatrix(sp.csr_matrix(matrix.values), matrix.columns)

    summary = _tune(
        (sparse, labels, folds), _config(tmp_path), 2, boosters=["lightgbm", "xgboost"]
    )

    for booster in ("lightgbm", "xgboost"):
        assert set(summary["best_params"][booster]) == set(SPACES[booster])
        assert summary["n_trials"][booster]["complete"] == 1


def test_trials_report_running_mean_of_fold_log_losses(data, tmp_path):
    matrix, labels, folds = data
    config = _config(tmp_path)
    _tune(data, config, 1)

    trial = _load(config).trials[0]
    assert sorted(trial.intermediate_values) == list(range(N_FOLDS))
    fold_losses = []
    result = train_folds(
        "lightgbm",
        {**BASE_PARAMS["lightgbm"], **trial.params},
        matrix.values,
        labels,
        folds,
        seed=0,
        on_fold=lambda fold, loss: fold_losses.append(loss),
    )
    running = np.cumsum(fold_losses) / np.arange(1, N_FOLDS + 1)
    np.testing.assert_allclose(
        [trial.intermediate_values[step] for step in range(N_FOLDS)], running
    )
    assert trial.value == pytest.approx(multiclass_log_loss(labels, result.oof))


@pytest.mark.slow
def test_median_pruner_stops_trials_worse_than_earlier_ones(data, tmp_path):
    space = {"learning_rate": {"low": 1e-4, "high": 0.3, "log": True}}
    config = _config(tmp_path, search_spaces={"lightgbm": space})
    (tmp_path / "studies").mkdir()
    study = optuna.create_study(
        study_name="test-lightgbm-key", storage=config.storage, direction="minimize"
    )
    # Five good trials set the median; a nearly frozen learning rate is worse.
    for learning_rate in (0.2, 0.25, 0.3, 0.2, 0.25, 1e-4, 1e-4):
        study.enqueue_trial({"learning_rate": learning_rate})

    summary = _tune(data, config, 7)

    trials = _load(config).trials
    assert [t.state for t in trials[5:]] == [TrialState.PRUNED] * 2
    assert all(len(t.intermediate_values) < N_FOLDS for t in trials[5:])
    assert summary["n_trials"]["lightgbm"] == {"complete": 5, "pruned": 2, "failed": 0}
    assert summary["best_params"]["lightgbm"]["learning_rate"] >= 0.2


def test_all_pruned_study_has_empty_best_params_and_counts_as_done(
    data, tmp_path, monkeypatch
):
    monkeypatch.setattr(
        tuning, "_make_pruner", lambda: optuna.pruners.ThresholdPruner(upper=0.0)
    )
    config = _config(tmp_path)

    summary = _tune(data, config, 2)
    rerun = _tune(data, config, 2)

    assert summary["best_params"] == {"lightgbm": {}}
    assert summary["best_value"] == {"lightgbm": None}
    assert summary["n_trials"]["lightgbm"] == {"complete": 0, "pruned": 2, "failed": 0}
    assert rerun == summary
    assert len(_load(config).trials) == 2


def test_used_up_timeout_runs_no_trials(data, tmp_path):
    summary = _tune(data, _config(tmp_path), 2, timeout=1e-9)

    assert summary["best_params"] == {"lightgbm": {}}
    assert summary["n_trials"]["lightgbm"] == {"complete": 0, "pruned": 0, "failed": 0}


def test_zero_trials_touch_no_storage(data, tmp_path):
    summary = _tune(data, _config(tmp_path), 0, boosters=["lightgbm", "xgboost"])

    assert summary["split"] == {"lightgbm": 0, "xgboost": 0}
    assert summary["best_params"] == {"lightgbm": {}, "xgboost": {}}
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"boosters": ["catboost"]}, r"unknown booster\(s\) \['catboost'\]"),
        ({"timeout": 0.0}, "timeout must be > 0 seconds"),
    ],
)
def test_bad_arguments_raise(data, tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        _tune(data, _config(tmp_path), 2, **changes)


def test_mismatched_lengths_raise(data, tmp_path):
    matrix, labels, folds = data
    with pytest.raises(ValueError, match="300 rows but labels has 299"):
        _tune((matrix, labels[:-1], folds), _config(tmp_path), 2)


def test_single_fold_raises(data, tmp_path):
    matrix, labels, folds = data
    with pytest.raises(ValueError, match="at least 2 distinct fold"):
        _tune((matrix, labels, np.zeros_like(folds)), _config(tmp_path), 2)


def test_storage_that_is_not_a_url_raises(data, tmp_path):
    verbosity = optuna.logging.get_verbosity()
    with pytest.raises(ValueError, match="is not a database URL"):
        _tune(data, _config(tmp_path, storage="optuna.db"), 2)
    assert optuna.logging.get_verbosity() == verbosity


def test_summary_hides_storage_password(data, tmp_path):
    config = _config(tmp_path, storage="postgresql://user:secret@db.example/optuna")
    summary = _tune(data, config, 0)

    assert summary["storage"] == "postgresql://user:***@db.example/optuna"


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({}, r"tuning.search_spaces.lightgbm is missing or empty"),
        ({"num_leaves": 31}, r"lightgbm.num_leaves must be a mapping"),
        ({"num_leaves": {"low": 4, "hi": 9}}, r"unknown keys \['hi'\]"),
        ({"num_leaves": {"low": 4, "high": 9, "type": "long"}}, "type must be one"),
        ({"num_leaves": {"low": 4, "high": 9, "log": "yes"}}, "log must be true"),
        ({"learning_rate": {"low": 0.0, "high": 0.3, "log": True}}, "invalid range"),
        ({"learning_rate": {"low": 0.3, "high": 0.1}}, "invalid range"),
        ({"boosting": {"choices": []}}, "non-empty list"),
        ({"boosting": {"choices": [[1]]}}, "non-empty list of null"),
        ({"boosting": {"choices": ["gbdt"], "low": 1}}, "takes only 'choices'"),
    ],
)
def test_bad_search_space_raises_before_training(data, tmp_path, space, match):
    config = _config(tmp_path, search_spaces={"lightgbm": space})
    with pytest.raises(ValueError, match=match):
        _tune(data, config, 2)
    assert not (tmp_path / "studies").exists()
