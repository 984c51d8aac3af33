"""Tests for models.study_workers: claims, heartbeats, per-trial seeds, storage."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from features.errors import InvalidParameterError
from models import study_workers
from models.study_workers import (
    TrialSeededSampler,
    check_heartbeat,
    open_rdb_storage,
    run_shared_studies,
)


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'optuna.db'}"


def _objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0) ** 2


def _shared_study(storage, name: str = "s") -> optuna.Study:
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=TrialSeededSampler(seed=0),
        load_if_exists=True,
    )


def _ask(study: optuna.Study) -> optuna.Trial:
    """A trial another process asked for (Optuna hints at optimize(); quiet)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        return study.ask()


@pytest.mark.parametrize(
    ("interval", "grace", "match"),
    [
        (0, 60, "heartbeat_interval must be a whole number of seconds >= 1. Got 0."),
        (1.5, 60, r"heartbeat_interval must be a whole number .* Got 1\.5\."),
        (10, True, "grace_period must be a whole number of seconds >= 1. Got True."),
        (10, 10, r"grace_period \(10 s\) must be longer than heartbeat_interval"),
    ],
)
def test_check_heartbeat_rejects_bad_settings(interval, grace, match):
    with pytest.raises(InvalidParameterError, match=match):
        check_heartbeat(interval, grace)


def test_trial_seeded_sampler_draws_trial_k_with_seed_plus_k():
    studies = [
        optuna.create_study(sampler=TrialSeededSampler(seed=3)) for _ in range(2)
    ]
    for study in studies:
        study.optimize(_objective, n_trials=4)
    reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    reference.optimize(_objective, n_trials=1)

    first, second = ([t.params["x"] for t in s.trials] for s in studies)
    assert first == second
    assert len(set(first)) == 4
    # Trial 2 of seed 3 is a startup trial: random with the seed 3 + 2.
    assert first[2] == reference.trials[0].params["x"]


def test_shared_studies_run_the_budget_then_a_rerun_runs_nothing(tmp_path):
    with open_rdb_storage(_url(tmp_path), heartbeat_interval=1, grace_period=5) as rdb:
        studies = {"a": _shared_study(rdb, "a"), "b": _shared_study(rdb, "b")}
        objectives = {"a": _objective, "b": _objective}

        ran = run_shared_studies(studies, objectives, {"a": 3, "b": 2}, storage=rdb)
        again = run_shared_studies(studies, objectives, {"a": 3, "b": 2}, storage=rdb)

        assert ran == {"a": 3, "b": 2}
        assert again == {"a": 0, "b": 0}
        for name, target in (("a", 3), ("b", 2)):
            trials = studies[name].trials
            assert [t.state for t in trials] == [TrialState.COMPLETE] * target
            assert all(":" in t.user_attrs["worker"] for t in trials)


def test_a_claim_after_the_budget_is_given_up_untrained(tmp_path):
    calls = []

    def objective(trial: optuna.Trial) -> float:
        calls.append(trial.number)
        return 0.0

    with open_rdb_storage(_url(tmp_path), heartbeat_interval=1, grace_period=5) as rdb:
        study = _shared_study(rdb)
        _ask(study)  # another process's running trial holds the only place

        result = study_workers._run_claimed_trial(study, objective, 1, rdb, "me:1")

        assert result is None and calls == []
        claim = study.trials[1]
        assert claim.state == TrialState.FAIL
        assert claim.user_attrs == {"worker": "me:1", "surplus": True}


def test_waiting_for_the_running_trials_of_others_ends_at_the_deadline(tmp_path):
    with open_rdb_storage(_url(tmp_path), heartbeat_interval=1, grace_period=5) as rdb:
        study = _shared_study(rdb)
        other = _ask(study)
        other.set_user_attr("worker", "elsewhere:7")
        other_id = rdb.get_trial_id_from_study_id_trial_number(
            rdb.get_study_id_from_name("s"), other.number
        )
        with study_workers._heartbeat(rdb, other_id):  # alive throughout
            deadline = study_workers.time.monotonic() + 1.5
            ran = run_shared_studies(
                {"s": study},
                {"s": _objective},
                {"s": 1},
                storage=rdb,
                deadline=deadline,
            )

        assert ran == {"s": 0}
        assert [t.state for t in study.trials] == [TrialState.RUNNING]


def test_a_trial_left_running_without_a_heartbeat_is_failed_and_run_again(
    tmp_path, monkeypatch
):
    with open_rdb_storage(_url(tmp_path), heartbeat_interval=1, grace_period=2) as rdb:
        study = _shared_study(rdb)
        _ask(study)  # what a killed single-process run leaves behind
        # A clock 3 s ahead: the trial is past its 2 s grace period.
        later = study_workers.datetime.now() + study_workers.timedelta(seconds=3)
        monkeypatch.setattr(
            study_workers, "datetime", type("Clock", (), {"now": lambda: later})
        )

        ran = run_shared_studies({"s": study}, {"s": _objective}, {"s": 1}, storage=rdb)

        assert ran == {"s": 1}
        assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_run_shared_studies_needs_a_heartbeat(tmp_path):
    with open_rdb_storage(_url(tmp_path)) as rdb:
        study = _shared_study(rdb)
        with pytest.raises(InvalidParameterError, match="the storage has no heartbeat"):
            run_shared_studies({"s": study}, {"s": _objective}, {"s": 1}, storage=rdb)


def test_an_unreachable_server_is_a_connection_error(monkeypatch):
    pytest.importorskip("psycopg")
    monkeypatch.setattr(study_workers, "_CONNECT_TRIES", 2)
    monkeypatch.setattr(study_workers.time, "sleep", lambda seconds: None)
    url = "postgresql://u:pw@127.0.0.1:1/db"  # nothing listens on port 1

    with pytest.raises(ConnectionError, match=r"'postgresql://u:\*\*\*@127.0.0.1:1/db"):
        with open_rdb_storage(url, heartbeat_interval=1, grace_period=5):
            pass


@pytest.mark.skipif(
    importlib.util.find_spec("pymysql") is not None, reason="pymysql is installed"
)
def test_a_missing_database_driver_names_the_extra():
    with pytest.raises(
        ImportError, match=r"'pymysql'; install the `distributed` extra"
    ):
        with open_rdb_storage(
            "mysql+pymysql://u@127.0.0.1/db", heartbeat_interval=1, grace_period=5
        ):
            pass
