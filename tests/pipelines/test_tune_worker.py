"""tune_worker: processes sharing a study in an RDB finish it to the exact budget.

The processes are real (``python -c`` running the entry points), on SQLite and
on the PostgreSQL server of ``ARENA_TEST_POSTGRES_URL`` (``.ci/run`` starts a
throwaway one; the PostgreSQL cases skip when it is unset). Each test uses a
study prefix of its own, so runs never resume each other's studies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from benchmarks._tune_workers import tune_argv, write_profile
from models import study_workers
from pipelines import train_gbdt, tune_worker
from pipelines.make_demo_data import make_demo_battles

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("ARENA_TEST_POSTGRES_URL")
RUNNER = """
import os, sys, time
from pathlib import Path
import models.tuning as tuning

sync = Path({sync!r})
run_shared_studies = tuning.run_shared_studies

def together(*args, **kwargs):
    # Every process starts its trials at the same moment, so all share the work.
    (sync / f"ready-{{os.getpid()}}").touch()
    deadline = time.monotonic() + 120
    while len(list(sync.glob("ready-*"))) < {n_processes}:
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return run_shared_studies(*args, **kwargs)

tuning.run_shared_studies = together
hang_at = {hang_at!r}
if hang_at is not None:
    objective = tuning._Objective.__call__
    calls = []

    def hang(self, trial):
        # The hang_at-th trial of this process never ends: a kill finds it running.
        calls.append(trial.number)
        if len(calls) == hang_at:
            (sync / "hanging").write_text(str(trial.number))
            time.sleep(3600)
        return objective(self, trial)

    tuning._Objective.__call__ = hang
from pipelines.{command} import main
sys.exit(main({argv!r}))
"""
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            POSTGRES_URL is None,
            reason="ARENA_TEST_POSTGRES_URL is unset (.ci/run starts a server)",
        ),
    ),
]


@pytest.fixture(scope="module")
def battles_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("battles") / "train.csv"
    make_demo_battles(n_rows=240, seed=3).to_csv(path, index=False)
    return path


@pytest.fixture
def profile(tmp_path) -> Path:
    return write_profile(tmp_path, f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def storage(request, tmp_path) -> str:
    """The storage URL of a backend in BACKENDS (parametrized indirectly)."""
    if request.param == "postgresql":
        return POSTGRES_URL
    return f"sqlite:///{tmp_path / 'shared.db'}"


def _start(
    command: str,
    argv: list[str],
    sync: Path,
    log: Path,
    n_processes: int,
    hang_at: int | None = None,
) -> subprocess.Popen:
    script = RUNNER.format(
        sync=str(sync),
        n_processes=n_processes,
        hang_at=hang_at,
        command=command,
        argv=argv,
    )
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, stdout=out, stderr=out
        )


def _finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired as err:
        process.kill()
        process.wait()
        message = f"still running after {timeout} s:\n{log.read_text()}"
        raise AssertionError(message) from err
    assert code == 0, log.read_text()


def _wait_until(condition: Callable[[], bool], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _study(profile: Path, storage: str) -> optuna.Study:
    prefix = profile.read_text().split("study_prefix: ")[1].split()[0]
    (name,) = [
        summary.study_name
        for summary in optuna.get_all_study_summaries(storage)
        if summary.study_name.startswith(f"{prefix}-")
    ]
    return optuna.load_study(study_name=name, storage=storage)


def _done(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def _assert_each_trial_run_once(done: list[optuna.trial.FrozenTrial]) -> None:
    numbers = [trial.number for trial in done]
    assert len(set(numbers)) == len(numbers)
    params = [tuple(sorted(trial.params.items())) for trial in done]
    assert len(set(params)) == len(params)


@pytest.mark.slow
@pytest.mark.parametrize("storage", BACKENDS, indirect=True)
def test_two_workers_and_the_leader_finish_the_study_with_each_trial_run_once(
    profile, battles_file, storage, tmp_path
):
    n_trials = 40
    argv = tune_argv(profile, battles_file, storage, n_trials)
    sync = tmp_path / "sync"
    sync.mkdir()
    logs = [tmp_path / f"{name}.log" for name in ("worker-1", "worker-2", "leader")]
    workers = [_start("tune_worker", argv, sync, log, 3) for log in logs[:2]]
    leader = _start("train_gbdt", [*argv, "--no-transfer-report"], sync, logs[2], 3)
    for process, log in zip([*workers, leader], logs, strict=True):
        _finish(process, log)

    study = _study(profile, storage)
    done = _done(study)
    assert len(done) == n_trials
    _assert_each_trial_run_once(done)
    assert len({trial.user_attrs["worker"] for trial in done}) == 3
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    report = json.loads((tmp_path / "model" / "report" / "report.json").read_text())
    counts = report["tuning"]["n_trials"]["lightgbm"]
    assert counts["complete"] + counts["pruned"] == n_trials
    assert report["tuning"]["best_value"]["lightgbm"] == pytest.approx(study.best_value)

    # A worker started on a finished study runs nothing.
    assert tune_worker.main(argv) == 0
    assert len(study.get_trials(deepcopy=False)) == len(study.trials)
    assert len(_done(study)) == n_trials


@pytest.mark.slow
@pytest.mark.parametrize("storage", BACKENDS, indirect=True)
def test_a_worker_killed_mid_trial_leaves_a_study_the_survivor_completes(
    profile, battles_file, storage, tmp_path
):
    n_trials = 12
    argv = tune_argv(profile, battles_file, storage, n_trials)
    sync = tmp_path / "sync"
    sync.mkdir()
    victim_log, survivor_log = tmp_path / "victim.log", tmp_path / "survivor.log"
    victim = _start("tune_worker", argv, sync, victim_log, 2, hang_at=2)
    survivor = _start("tune_worker", argv, sync, survivor_log, 2)
    hanging = sync / "hanging"
    reached = _wait_until(lambda: hanging.exists() and hanging.read_text() != "")
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    assert reached, victim_log.read_text()
    killed = int(hanging.read_text())
    study = _study(profile, storage)
    assert study.trials[killed].state == TrialState.RUNNING  # killed mid-trial

    _finish(survivor, survivor_log)

    assert study.trials[killed].state == TrialState.FAIL
    done = _done(study)
    assert len(done) == n_trials
    _assert_each_trial_run_once(done)
    assert max(trial.number for trial in done) > killed  # its work was run again
    # The leader resumes the finished study: no trial is added, the model trains.
    n_before = len(study.trials)
    leader_argv = [*argv, "--no-transfer-report"]
    assert train_gbdt.main(leader_argv) == 0
    assert len(study.trials) == n_before
    assert (tmp_path / "model" / "report" / "report.json").is_file()


@pytest.mark.parametrize("command", [train_gbdt, tune_worker])
def test_a_bad_storage_url_fails_before_any_feature_is_built(
    command, profile, battles_file, capsys
):
    argv = tune_argv(profile, battles_file, "optuna.db", 4)

    assert command.main(argv) == 2
    error = capsys.readouterr().err
    assert "storage 'optuna.db' is not a database URL" in error
    assert not (profile.parent / "store").exists()


@pytest.mark.parametrize("command", [train_gbdt, tune_worker])
def test_a_grace_period_shorter_than_the_heartbeat_names_the_key_and_file(
    command, profile, battles_file, tmp_path, capsys
):
    argv = tune_argv(profile, battles_file, f"sqlite:///{tmp_path / 'x.db'}", 4)

    code = command.main([*argv, "--set", "tuning.grace_period=1"])

    assert code == 2
    error = capsys.readouterr().err
    assert f"{profile}: tuning: grace_period (1 s) must be longer than " in error
    assert not (profile.parent / "store").exists()


def test_an_unreachable_database_is_one_error_line(
    profile, battles_file, monkeypatch, capsys
):
    pytest.importorskip("psycopg")
    monkeypatch.setattr(study_workers, "_CONNECT_TRIES", 1)
    # Port 1 of the loopback: nothing listens there.
    argv = tune_argv(profile, battles_file, "postgresql://u:pw@127.0.0.1:1/db", 4)

    assert tune_worker.main(argv) == 2

    error = capsys.readouterr().err
    assert "cannot open the study storage 'postgresql://u:***@127.0.0.1:1/db'" in error
    assert "Check the URL and that the database server is running." in error


def test_a_worker_with_no_budget_runs_nothing(profile, battles_file, tmp_path, capsys):
    argv = tune_argv(profile, battles_file, f"sqlite:///{tmp_path / 'x.db'}", 0)

    assert tune_worker.main(argv) == 0

    assert "a budget of 0 trials; nothing to run" in capsys.readouterr().out
    assert not (tmp_path / "x.db").exists()
