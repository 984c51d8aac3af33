"""Tests for models.tuning: budget split, study keys, resumable studies, pruning."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import scipy.sparse as sp
from optuna.trial import TrialState

from features.blocks.base import FeatureMatrix
from features.errors import InvalidParameterError
from models import study_workers, tuning
from models.gbdt import train_folds
from models.metrics import multiclass_log_loss
from models.search_space import parse_search_space
from models.tuning import plan_trials, split_trials, tune_boosters

N_ROWS = 300
N_FOLDS = 3
# Small, single-threaded boosters: the suite runs on a loaded 2-core machine.
BASE_PARAMS = {
    "lightgbm": {"num_boost_round": 30, "early_stopping_rounds": 5, "num_threads": 1},
    "xgboost": {"num_boost_round": 30, "early_stopping_rounds": 5, "nthread": 1},
}
SPECS = {
    "lightgbm": {
        "learning_rate": {"low": 0.05, "high": 0.3, "log": True},
        "num_leaves": {"low": 4, "high": 16, "log": True, "type": "int"},
    },
    "xgboost": {
        "max_depth": {"low": 2, "high": 4, "type": "int"},
        "subsample": {"choices": [0.7, 1.0]},
    },
}
SPACES = {booster: parse_search_space(spec) for booster, spec in SPECS.items()}


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


def _storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies' / 'optuna.db'}"


def _tune(data, tmp_path: Path, n_trials: int, **changes) -> dict:
    matrix, labels, folds = data
    arguments = {
        "boosters": ["lightgbm"],
        "search_spaces": SPACES,
        "base_params": BASE_PARAMS,
        "n_trials": n_trials,
        "storage": _storage(tmp_path),
        "study_prefix": "test",
        "booster_share": {"lightgbm": 0.6, "xgboost": 0.4},
        "seed": 0,
        **changes,
    }
    return tune_boosters(matrix, labels, folds, **arguments)


def _load(tmp_path: Path, summary: dict, booster: str = "lightgbm") -> optuna.Study:
    return optuna.load_study(
        study_name=summary["studies"][booster], storage=_storage(tmp_path)
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
    verbosity = optuna.logging.get_verbosity()
    summary = _tune(data, tmp_path, 3, boosters=["lightgbm", "xgboost"])

    assert summary["split"] == {"lightgbm": 2, "xgboost": 1}
    for booster, name in summary["studies"].items():
        assert re.fullmatch(rf"test-{booster}-[0-9a-f]{{12}}", name)
    assert summary["storage"] == _storage(tmp_path)
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
    first = _tune(data, tmp_path, 2)
    second = _tune(data, tmp_path, 2)

    assert len(_load(tmp_path, first).trials) == 2
    assert second == first


def _other_values(data, arguments):
    matrix, labels, folds = data
    values = matrix.values.copy()
    values[0, 0] += 1.0
    return (FeatureMatrix(values, matrix.columns), labels, folds), arguments


def _other_labels(data, arguments):
    matrix, labels, folds = data
    return (matrix, np.roll(labels, 1), folds), arguments


def _other_folds(data, arguments):
    matrix, labels, folds = data
    return (matrix, labels, np.arange(N_ROWS, dtype=np.int64) % 2), arguments


def _other_base_params(data, arguments):
    lightgbm = {**BASE_PARAMS["lightgbm"], "max_bin": 63}
    return data, {**arguments, "base_params": {**BASE_PARAMS, "lightgbm": lightgbm}}


def _other_space(data, arguments):
    spec = {**SPECS["lightgbm"], "learning_rate": {"low": 0.01, "high": 0.3}}
    return data, {**arguments, "search_spaces": {"lightgbm": parse_search_space(spec)}}


def _other_seed(data, arguments):
    return data, {**arguments, "seed": 1}


@pytest.mark.parametrize(
    "change",
    [
        _other_values,
        _other_labels,
        _other_folds,
        _other_base_params,
        _other_space,
        _other_seed,
    ],
    ids=["feature_values", "labels", "folds", "base_params", "search_space", "seed"],
)
def test_changing_an_input_of_the_objective_starts_a_new_study(data, tmp_path, change):
    first = _tune(data, tmp_path, 1)
    changed_data, changes = change(data, {})

    second = _tune(changed_data, tmp_path, 1, **changes)

    assert second["studies"]["lightgbm"] != first["studies"]["lightgbm"]
    assert second["n_trials"]["lightgbm"]["complete"] == 1
    assert len(_load(tmp_path, first).trials) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {
            "base_params": {
                **BASE_PARAMS,
                "lightgbm": {**BASE_PARAMS["lightgbm"], "num_threads": 2},
            }
        },
        {"base_params": {**BASE_PARAMS, "xgboost": {"max_bin": 32}}},
        {"booster_share": {"lightgbm": 0.9, "xgboost": 0.1}},
        {"study_prefix": "test", "timeout": 600.0, "verbose": True},
    ],
    ids=["thread_count", "other_boosters_params", "booster_share", "timeout_verbose"],
)
def test_a_rerun_that_changes_no_score_resumes_the_study(data, tmp_path, changes):
    first = _tune(data, tmp_path, 2)

    second = _tune(data, tmp_path, 2, **changes)

    assert second["studies"] == first["studies"]
    assert len(_load(tmp_path, first).trials) == 2


def test_adding_a_booster_resumes_the_study_of_the_first(data, tmp_path):
    first = _tune(data, tmp_path, 2)

    both = _tune(
        data,
        tmp_path,
        3,
        boosters=["lightgbm", "xgboost"],
        booster_share={"lightgbm": 2, "xgboost": 1},
    )

    assert both["studies"]["lightgbm"] == first["studies"]["lightgbm"]
    assert len(_load(tmp_path, first).trials) == 2
    assert both["n_trials"]["xgboost"]["complete"] == 1


def test_interrupted_study_runs_only_remaining_trials(data, tmp_path):
    first = _tune(data, tmp_path, 3)
    # A trial asked for but never told: what a killed process leaves behind.
    _load(tmp_path, first).ask()

    summary = _tune(data, tmp_path, 5)

    states = _states(_load(tmp_path, first))
    assert states.count(TrialState.COMPLETE) == 5
    assert states.count(TrialState.FAIL) == 1
    assert TrialState.RUNNING not in states
    assert summary["n_trials"]["lightgbm"] == {"complete": 5, "pruned": 0, "failed": 1}


def test_resumed_study_draws_new_parameters(data, tmp_path):
    _tune(data, tmp_path, 2)
    summary = _tune(data, tmp_path, 4)

    params = [tuple(t.params.values()) for t in _load(tmp_path, summary).trials]
    assert len(set(params)) == 4


def test_sparse_csr_matrix_is_tuned_like_dense(data, tmp_path):
    matrix, labels, folds = data
    sparse = FeatureMatrix(sp.csr_matrix(matrix.values), matrix.columns)

    summary = _tune(
        (sparse, labels, folds), tmp_path, 2, boosters=["lightgbm", "xgboost"]
    )

    for booster in ("lightgbm", "xgboost"):
        assert set(summary["best_params"][booster]) == set(SPACES[booster])
        assert summary["n_trials"][booster]["complete"] == 1


def test_trials_report_running_mean_of_fold_log_losses(data, tmp_path):
    matrix, labels, folds = data
    summary = _tune(data, tmp_path, 1)

    trial = _load(tmp_path, summary).trials[0]
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
    space = parse_search_space(
        {"learning_rate": {"low": 1e-4, "high": 0.3, "log": True}}
    )
    changes = {"search_spaces": {"lightgbm": space}}
    # A budget of 0 names the study without opening the storage.
    name = _tune(data, tmp_path, 0, **changes)["studies"]["lightgbm"]
    (tmp_path / "studies").mkdir()
    study = optuna.create_study(
        study_name=name, storage=_storage(tmp_path), direction="minimize"
    )
    # Five good trials set the median; a nearly frozen learning rate is worse.
    for learning_rate in (0.2, 0.25, 0.3, 0.2, 0.25, 1e-4, 1e-4):
        study.enqueue_trial({"learning_rate": learning_rate})

    summary = _tune(data, tmp_path, 7, **changes)

    trials = _load(tmp_path, summary).trials
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

    summary = _tune(data, tmp_path, 2)
    rerun = _tune(data, tmp_path, 2)

    assert summary["best_params"] == {"lightgbm": {}}
    assert summary["best_value"] == {"lightgbm": None}
    assert summary["n_trials"]["lightgbm"] == {"complete": 0, "pruned": 2, "failed": 0}
    assert rerun == summary
    assert len(_load(tmp_path, summary).trials) == 2


def test_used_up_timeout_runs_no_trials(data, tmp_path):
    summary = _tune(data, tmp_path, 2, timeout=1e-9)

    assert summary["best_params"] == {"lightgbm": {}}
    assert summary["n_trials"]["lightgbm"] == {"complete": 0, "pruned": 0, "failed": 0}


def test_zero_trials_touch_no_storage(data, tmp_path):
    summary = _tune(data, tmp_path, 0, boosters=["lightgbm", "xgboost"])

    assert summary["split"] == {"lightgbm": 0, "xgboost": 0}
    assert summary["best_params"] == {"lightgbm": {}, "xgboost": {}}
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"boosters": ["catboost"]}, r"unknown booster\(s\) \['catboost'\]"),
        ({"timeout": 0.0}, "timeout must be > 0 seconds"),
        ({"booster_share": {"lightgbm": -1}}, r"booster_share\['lightgbm'\] must be"),
        ({"booster_share": {"catbost": 1}}, r"unknown booster\(s\) \['catbost'\]"),
        ({"search_spaces": {}}, r"\['lightgbm'\] get trials but have no search"),
        (
            {"search_spaces": {"lightgbm": {}}},
            r"\['lightgbm'\] get trials but have no search",
        ),
        ({"storage": "optuna.db"}, "is not a database URL"),
        (
            {"shared": True, "heartbeat_interval": 5, "grace_period": 5},
            r"grace_period \(5 s\) must be longer than heartbeat_interval",
        ),
    ],
)
def test_bad_arguments_raise_before_any_storage_or_training(
    data, tmp_path, changes, match
):
    verbosity = optuna.logging.get_verbosity()
    with pytest.raises(InvalidParameterError, match=match):
        _tune(data, tmp_path, 2, **changes)
    assert not (tmp_path / "studies").exists()
    assert optuna.logging.get_verbosity() == verbosity


def test_mismatched_lengths_raise(data, tmp_path):
    matrix, labels, folds = data
    with pytest.raises(InvalidParameterError, match="300 rows but labels has 299"):
        _tune((matrix, labels[:-1], folds), tmp_path, 2)


def test_single_fold_raises(data, tmp_path):
    matrix, labels, folds = data
    with pytest.raises(InvalidParameterError, match="at least 2 distinct fold"):
        _tune((matrix, labels, np.zeros_like(folds)), tmp_path, 2)


def test_summary_hides_storage_password(data, tmp_path):
    storage = "postgresql://user:secret@db.example/optuna"
    summary = _tune(data, tmp_path, 0, storage=storage)

    assert summary["storage"] == "postgresql://user:***@db.example/optuna"


def test_plan_trials_gives_a_booster_without_trials_no_space():
    space = {"lightgbm": SPACES["lightgbm"]}
    plan = plan_trials(1, ["lightgbm", "xgboost"], {"xgboost": 0.0}, space)
    assert plan == {"lightgbm": 1, "xgboost": 0}


SHARED_BEAT = {"heartbeat_interval": 1, "grace_period": 5}
SHARED = {"shared": True, **SHARED_BEAT}


def test_shared_study_has_the_same_name_runs_the_budget_and_resumes(data, tmp_path):
    alone = _tune(data, tmp_path / "alone", 3)

    shared = _tune(data, tmp_path, 3, **SHARED)
    rerun = _tune(data, tmp_path, 3, **SHARED)

    assert shared["studies"] == alone["studies"]
    assert shared["n_trials"]["lightgbm"] == {"complete": 3, "pruned": 0, "failed": 0}
    assert rerun == shared
    trials = _load(tmp_path, shared).trials
    assert len(trials) == 3
    assert len({t.params["learning_rate"] for t in trials}) == 3


def test_shared_study_counts_the_live_trials_of_other_processes(data, tmp_path):
    name = _tune(data, tmp_path, 0)["studies"]["lightgbm"]
    storage = study_workers.open_rdb_storage(_storage(tmp_path), **SHARED_BEAT)
    with storage as rdb:
        study = optuna.create_study(study_name=name, storage=rdb)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            other = study.ask()  # a tune worker's trial, alive throughout
        other.set_user_attr("worker", "elsewhere:7")
        other_id = rdb.get_trial_id_from_study_id_trial_number(
            rdb.get_study_id_from_name(name), other.number
        )
        with study_workers._heartbeat(rdb, other_id):
            summary = _tune(data, tmp_path, 2, timeout=3.0, **SHARED)

    # It ran the one trial left of the budget, then waited for the other one.
    assert summary["n_trials"]["lightgbm"] == {"complete": 1, "pruned": 0, "failed": 0}
    assert _states(_load(tmp_path, summary)) == [
        TrialState.RUNNING,
        TrialState.COMPLETE,
    ]
