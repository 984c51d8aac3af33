"""Tune workers sharing one Optuna study: the budget holds, a dead trial is rerun.

Two measurements with real processes on one storage (PostgreSQL from the
section's ``--storage URL`` or ``ARENA_TEST_POSTGRES_URL``; SQLite works too):

- **shared study**: 2 ``python -m pipelines.tune_worker`` processes and the
  ``python -m pipelines.train_gbdt --storage URL`` leader, started together,
  run a study of 40 trials (8 with ``--quick``). It must end with exactly
  that many complete and pruned trials, no trial number or parameter set
  twice, and none left running.
- **killed worker**: a victim worker hangs in its second trial (a hook in a
  ``python -c`` wrapper of ``pipelines.tune_worker.main``, as in
  ``tests/pipelines/test_tune_worker.py``); a plain second worker joins, and
  once it has finished a trial the victim is SIGKILLed. The survivor must
  complete the study, the dead trial end FAIL (its heartbeat stopped) and no
  number count twice.

Each run writes a tiny lengths + flags LightGBM profile and a few hundred demo
battles to a folder of its own, with a study prefix of its own, so runs never
resume each other's studies. The folder is removed after a run that worked
and kept (its logs named in the error) after one that did not.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._report import REPO_ROOT, Table, Target, python_module

if TYPE_CHECKING:
    import optuna

    from benchmarks._context import BenchOptions

__all__ = [
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "NOT_MEASURED",
    "POSTGRES_ENV",
    "TRIALS",
    "KilledWorkerRun",
    "SharedStudyRun",
    "StudyCount",
    "TuneWorkersPart",
    "measure_tune_workers",
    "run_killed_worker",
    "run_shared_study",
    "storage_url",
    "tune_argv",
    "tune_workers_part",
    "write_profile",
]

POSTGRES_ENV = "ARENA_TEST_POSTGRES_URL"
"""Environment variable with the PostgreSQL URL (``.ci/postgres.sh`` sets it)."""

TRIALS = {"full": 40, "quick": 8}
"""Trial budget of each study: the issue's 40, and 8 with ``--quick``."""

HEARTBEAT_INTERVAL = 1
GRACE_PERIOD = 3
"""Heartbeat settings of the runs' profile (seconds); the defaults are 10 and 60."""

DEMO_ROWS = 300
NOT_MEASURED = (
    "not measured: no PostgreSQL URL (run under `bash .ci/postgres.sh python -m "
    "benchmarks.run --only distributed`)"
)
_PROCESS_TIMEOUT = 600.0
_POLL_SECONDS = 0.1
_HANG_AT = 2
_DONE_STATES = ("COMPLETE", "PRUNED")
_BACKENDS = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}

_PROFILE = """
seed: 5
features:
  store: {root}/store
  n_jobs: null
  blocks:
    lengths: {{}}
    flags: {{}}
training:
  n_folds: 3
  boosters: [lightgbm]
  booster_params:
    lightgbm: {{num_boost_round: 15, early_stopping_rounds: 5, num_threads: 1}}
  out: {root}/model
tuning:
  n_trials: 40
  storage: sqlite:///{root}/unused.db
  study_prefix: {prefix}
  n_folds: 2
  max_rows: null
  heartbeat_interval: {heartbeat}
  grace_period: {grace}
  search_spaces:
    lightgbm:
      learning_rate: {{low: 0.05, high: 0.3, log: true}}
      num_leaves: {{low: 4, high: 31, log: true, type: int}}
"""

_HANGING_WORKER = """
import os, sys, time
from pathlib import Path
import models.tuning as tuning

signal_file = Path({signal_file!r})
objective = tuning._Objective.__call__
calls = []

def hang(self, trial):
    # Trial {hang_at} of this process never ends, so the kill finds it running.
    calls.append(trial.number)
    if len(calls) == {hang_at}:
        partial = signal_file.with_suffix(".tmp")
        partial.write_text(str(trial.number))
        os.replace(partial, signal_file)
        time.sleep(3600)
    return objective(self, trial)

tuning._Objective.__call__ = hang
from pipelines.tune_worker import main
sys.exit(main({argv!r}))
"""


class _RunFailed(RuntimeError):
    """A process of a measurement failed, hung or the study is not as expected."""


# ----------------------------------------------------------------- results
@dataclass(frozen=True)
class StudyCount:
    """What a shared study holds at the end of a run.

    ``failed`` counts trials that were run and failed (a dead worker's);
    ``surplus`` the claims given up untrained because the budget was full.
    ``per_process`` maps each process's role to its complete and pruned trials.
    """

    study_name: str
    budget: int
    complete: int
    pruned: int
    failed: int
    surplus: int
    running: int
    duplicated_numbers: int
    duplicated_params: int
    per_process: dict[str, int]

    @property
    def done(self) -> int:
        """Complete plus pruned trials: what the budget counts."""
        return self.complete + self.pruned

    @property
    def each_trial_once(self) -> bool:
        """No number or parameter set twice among done trials, none running."""
        return self.duplicated_numbers == 0 == self.duplicated_params == self.running


@dataclass(frozen=True)
class SharedStudyRun:
    """2 workers and the leader on one study: its count and the wall time."""

    count: StudyCount
    wall_seconds: float

    @property
    def met(self) -> bool:
        """The budget reached exactly, each trial run once."""
        return self.count.done == self.count.budget and self.count.each_trial_once


@dataclass(frozen=True)
class KilledWorkerRun:
    """A worker killed mid-trial and what the survivor made of the study.

    ``killed_mid_trial``: the killed trial was RUNNING and the victim's at the
    kill. ``failed_after_kill``: seconds from the SIGKILL to the trial's FAIL
    time; ``done_after_kill``: to the survivor's exit with the study done.
    """

    count: StudyCount
    wall_seconds: float
    killed_trial: int
    killed_mid_trial: bool
    state_after: str
    killed_counted: bool
    failed_after_kill: float | None
    done_after_kill: float

    @property
    def met(self) -> bool:
        """The survivor completed the study; the dead trial FAIL, not counted."""
        count = self.count
        return (
            count.done == count.budget
            and count.each_trial_once
            and self.killed_mid_trial
            and self.state_after == "FAIL"
            and not self.killed_counted
        )


@dataclass
class TuneWorkersPart:
    """The tables and targets of the measurement, with the runs behind them."""

    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    shared: SharedStudyRun | None = None
    killed: KilledWorkerRun | None = None


# --------------------------------------------------------------- processes
@dataclass
class _Child:
    role: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def worker(self) -> str:
        """The ``worker`` user attribute ``models.study_workers`` sets on its trials."""
        return f"{socket.gethostname()}:{self.process.pid}"

    def failure(self, what: str) -> _RunFailed:
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        shown = shlex.join(["python", *self.argv[1:]])
        return _RunFailed(f"{self.role} {what}: {shown} (log {self.log})\n{tail}")


def _start(role: str, argv: list[str], log: Path) -> _Child:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return _Child(role, argv, log, process)


@contextmanager
def _children() -> Iterator[list[_Child]]:
    """A list to start children into; those still running at the end are killed."""
    children: list[_Child] = []
    try:
        yield children
    finally:
        for child in children:
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait()


def _finish(children: Sequence[_Child], deadline: float) -> None:
    for child in children:
        try:
            code = child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired as err:
            raise child.failure("still running at the time limit") from err
        if code != 0:
            raise child.failure(f"exited with code {code}")


def _wait_for(
    condition: Callable[[], bool], watched: _Child, deadline: float, what: str
) -> None:
    """Poll `condition`; fail if `watched` exits first or `deadline` passes."""
    while not condition():
        if watched.process.poll() is not None:
            raise watched.failure(f"exited (code {watched.process.returncode}) {what}")
        if time.monotonic() > deadline:
            raise watched.failure(f"timed out {what}")
        time.sleep(_POLL_SECONDS)


# -------------------------------------------------------------- the study
def write_profile(root: Path, prefix: str) -> Path:
    """``root/profile.yaml``: a tiny lengths + flags LightGBM profile whose
    studies (prefix ``prefix``) finish in seconds; its store and model in ``root``.
    The tune-worker tests share it."""
    profile = root / "profile.yaml"
    profile.write_text(
        _PROFILE.format(
            root=root, prefix=prefix, heartbeat=HEARTBEAT_INTERVAL, grace=GRACE_PERIOD
        )
    )
    return profile


def _prepare(work_dir: Path, kind: str) -> tuple[Path, Path, str]:
    """A run folder with its profile (own study prefix) and demo battles."""
    from pipelines.make_demo_data import make_demo_battles

    work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work_dir))
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    profile = write_profile(root, prefix)
    data = root / "train.csv"
    make_demo_battles(n_rows=DEMO_ROWS, seed=3).to_csv(data, index=False)
    return root, profile, prefix


def tune_argv(profile: Path, data: Path, storage: str, n_trials: int) -> list[str]:
    """Arguments a tune worker and the leader share (config, data, storage, trials)."""
    return [
        "--config",
        str(profile),
        "--data",
        str(data),
        "--storage",
        storage,
        "--trials",
        str(n_trials),
        "--quiet",
    ]


@contextmanager
def _open_study(storage: str, prefix: str) -> Iterator[optuna.Study]:
    """The one study whose name starts with ``prefix-``."""
    import optuna

    from models.study_workers import open_rdb_storage

    with open_rdb_storage(storage) as rdb:
        names = [
            study.study_name
            for study in rdb.get_all_studies()
            if study.study_name.startswith(f"{prefix}-")
        ]
        if len(names) != 1:
            raise _RunFailed(
                f"expected one study named {prefix}-* in the storage, found {names}."
            )
        yield optuna.load_study(study_name=names[0], storage=rdb)


def _count(study: optuna.Study, budget: int, roles: Mapping[str, str]) -> StudyCount:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name in _DONE_STATES]
    states = Counter(t.state.name for t in trials)
    surplus = sum(bool(t.user_attrs.get("surplus")) for t in trials)
    numbers = [t.number for t in done]
    params = [tuple(sorted(t.params.items())) for t in done]
    per_process = Counter(
        roles.get(t.user_attrs.get("worker", ""), "other") for t in done
    )
    return StudyCount(
        study_name=study.study_name,
        budget=budget,
        complete=states["COMPLETE"],
        pruned=states["PRUNED"],
        failed=states["FAIL"] - surplus,
        surplus=surplus,
        running=states["RUNNING"],
        duplicated_numbers=len(numbers) - len(set(numbers)),
        duplicated_params=len(params) - len(set(params)),
        per_process={
            role: per_process[role]
            for role in [*roles.values(), "other"]
            if role != "other" or per_process[role]
        },
    )


# ------------------------------------------------------------------- runs
def run_shared_study(
    storage: str, n_trials: int, work_dir: Path, *, timeout: float = _PROCESS_TIMEOUT
) -> SharedStudyRun:
    """2 tune workers and the train_gbdt leader, started together, on one study.

    Raises
    ------
    RuntimeError
        A process failed or ran past `timeout` seconds (its log tail is shown).
    """
    root, profile, prefix = _prepare(work_dir, "shared")
    argv = tune_argv(profile, root / "train.csv", storage, n_trials)
    started = time.monotonic()
    with _children() as children:
        for role in ("worker-1", "worker-2"):
            worker = python_module("pipelines.tune_worker", *argv)
            children.append(_start(role, worker, root / f"{role}.log"))
        leader = python_module("pipelines.train_gbdt", *argv, "--no-transfer-report")
        children.append(_start("leader", leader, root / "leader.log"))
        _finish(children, started + timeout)
    wall = time.monotonic() - started
    with _open_study(storage, prefix) as study:
        count = _count(study, n_trials, {c.worker: c.role for c in children})
    shutil.rmtree(root, ignore_errors=True)
    return SharedStudyRun(count=count, wall_seconds=wall)


def run_killed_worker(
    storage: str, n_trials: int, work_dir: Path, *, timeout: float = _PROCESS_TIMEOUT
) -> KilledWorkerRun:
    """A worker SIGKILLed mid-trial while a second one works; the survivor finishes.

    Raises
    ------
    RuntimeError
        A process failed, the victim never hung, or a wait passed `timeout`.
    """
    root, profile, prefix = _prepare(work_dir, "killed")
    argv = tune_argv(profile, root / "train.csv", storage, n_trials)
    signal_file = root / "hanging"
    started = time.monotonic()
    deadline = started + timeout
    with _children() as children:
        script = _HANGING_WORKER.format(
            signal_file=str(signal_file), hang_at=_HANG_AT, argv=argv
        )
        victim = _start("victim", [sys.executable, "-c", script], root / "victim.log")
        children.append(victim)
        _wait_for(signal_file.exists, victim, deadline, "before hanging in a trial")
        killed = int(signal_file.read_text())
        plain = python_module("pipelines.tune_worker", *argv)
        survivor = _start("survivor", plain, root / "survivor.log")
        children.append(survivor)
        roles = {victim.worker: victim.role, survivor.worker: survivor.role}
        with _open_study(storage, prefix) as study:

            def survivor_done() -> bool:
                return any(
                    t.state.name in _DONE_STATES
                    and t.user_attrs.get("worker") == survivor.worker
                    for t in study.get_trials(deepcopy=False)
                )

            _wait_for(survivor_done, survivor, deadline, "before finishing a trial")
            at_kill = _trial(study, killed)
            mid_trial = (
                at_kill.state.name == "RUNNING"
                and at_kill.user_attrs.get("worker") == victim.worker
            )
            killed_at, kill_clock = datetime.now(), time.monotonic()
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(timeout=60)
            _finish([survivor], deadline)
            done_after = time.monotonic() - kill_clock
            count = _count(study, n_trials, roles)
            after = _trial(study, killed)
            done_numbers = {
                t.number
                for t in study.get_trials(deepcopy=False)
                if t.state.name in _DONE_STATES
            }
    failed_after = None
    if after.state.name == "FAIL" and after.datetime_complete is not None:
        failed_after = (after.datetime_complete - killed_at).total_seconds()
    shutil.rmtree(root, ignore_errors=True)
    return KilledWorkerRun(
        count=count,
        wall_seconds=time.monotonic() - started,
        killed_trial=killed,
        killed_mid_trial=mid_trial,
        state_after=after.state.name,
        killed_counted=killed in done_numbers,
        failed_after_kill=failed_after,
        done_after_kill=done_after,
    )


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


# ----------------------------------------------------------------- report
def storage_url(
    extra: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> str | None:
    """The section's ``--storage URL``, else ``ARENA_TEST_POSTGRES_URL``, else None.

    >>> storage_url({"distributed_storage": "sqlite:///a.db"}, {POSTGRES_ENV: "x"})
    'sqlite:///a.db'
    >>> storage_url({}, {}) is None
    True
    """
    environ = os.environ if environ is None else environ
    return extra.get("distributed_storage") or environ.get(POSTGRES_ENV) or None


def _backend(storage: str | None) -> str:
    if storage is None:
        return "PostgreSQL"
    from sqlalchemy.engine import make_url

    name = make_url(storage).get_backend_name()
    return _BACKENDS.get(name, name)


def _target_names(backend: str, n_trials: int) -> tuple[str, str]:
    return (
        f"2 tune workers + leader on {backend}: {n_trials}-trial study, "
        "no trial run twice",
        "a worker killed mid-trial: the survivor completes the study",
    )


def _goals(n_trials: int) -> tuple[str, str]:
    return (
        f"{n_trials} complete + pruned, 0 duplicated numbers or params, 0 running",
        f"{n_trials} complete + pruned, the killed trial FAIL and not counted, "
        "0 duplicated",
    )


def _per_process(count: StudyCount) -> str:
    return ", ".join(f"{role} {n}" for role, n in count.per_process.items())


def _count_row(run: str, count: StudyCount, wall: float) -> dict[str, Any]:
    return {
        "run": run,
        "budget": count.budget,
        "complete": count.complete,
        "pruned": count.pruned,
        "failed": count.failed,
        "surplus claims": count.surplus,
        "left running": count.running,
        "duplicated numbers": count.duplicated_numbers,
        "duplicated params": count.duplicated_params,
        "trials per process": _per_process(count),
        "wall (s)": wall,
    }


def _shared_outcome(run: SharedStudyRun) -> tuple[dict[str, Any], str]:
    count = run.count
    measured = (
        f"{count.done} complete + pruned, {count.duplicated_numbers} duplicated "
        f"numbers, {count.duplicated_params} duplicated params, {count.running} "
        f"running ({_per_process(count)})"
    )
    return _count_row("2 workers + leader", count, run.wall_seconds), measured


def _killed_outcome(run: KilledWorkerRun) -> tuple[dict[str, Any], str]:
    count = run.count
    state = "RUNNING" if run.killed_mid_trial else "not running"
    row = {
        **_count_row("worker killed mid-trial", count, run.wall_seconds),
        "killed trial": f"#{run.killed_trial}: {state} at the kill, "
        f"then {run.state_after}",
        "failed after the kill (s)": run.failed_after_kill,
        "done after the kill (s)": run.done_after_kill,
    }
    later = (
        f"{run.state_after}"
        if run.failed_after_kill is None
        else f"{run.state_after} {run.failed_after_kill:.1f} s later"
    )
    measured = (
        f"{count.done} complete + pruned; trial #{run.killed_trial} {state} at the "
        f"kill, {later}, {'counted' if run.killed_counted else 'not counted'}; "
        f"{count.duplicated_numbers + count.duplicated_params} duplicated; study "
        f"done {run.done_after_kill:.1f} s after the kill"
    )
    return row, measured


_COLUMNS = [
    "run",
    "budget",
    "complete",
    "pruned",
    "failed",
    "surplus claims",
    "left running",
    "duplicated numbers",
    "duplicated params",
    "trials per process",
    "wall (s)",
    "killed trial",
    "failed after the kill (s)",
    "done after the kill (s)",
]


def measure_tune_workers(
    storage: str | None,
    *,
    n_trials: int,
    work_dir: Path,
    timeout: float = _PROCESS_TIMEOUT,
) -> TuneWorkersPart:
    """Both runs on `storage` as a table and two targets (not measured without it).

    A run that fails is reported, not raised: its row says so and its target
    is not met, with the error's first line as the cause.

    Parameters
    ----------
    storage : str or None
        Database URL of the studies (PostgreSQL; SQLite works too); None
        reports both targets as not measured.
    n_trials : int
        Budget of each study.
    work_dir : Path
        Where each run's folder (profile, battles, store, logs) is made.
    timeout : float, default=600
        Seconds each run may take.
    """
    backend = _backend(storage)
    names = _target_names(backend, n_trials)
    goals = _goals(n_trials)
    title = f"Tune workers sharing one Optuna study ({backend})"
    part = TuneWorkersPart()
    if storage is None:
        part.tables.append(Table(title=title, columns=[], markdown=NOT_MEASURED))
        part.targets += [
            Target(name, goal, "not measured: no PostgreSQL URL", None)
            for name, goal in zip(names, goals, strict=True)
        ]
        return part
    from models.study_workers import shown_url

    rows: list[dict[str, Any]] = []
    runs: tuple[tuple[str, Callable[..., Any], Callable[[Any], Any]], ...] = (
        ("2 workers + leader", run_shared_study, _shared_outcome),
        ("worker killed mid-trial", run_killed_worker, _killed_outcome),
    )
    for (label, measure, outcome), name, goal in zip(runs, names, goals, strict=True):
        try:
            run = measure(storage, n_trials, work_dir, timeout=timeout)
        except _RunFailed as err:
            first = str(err).splitlines()[0]
            rows.append({"run": f"{label} (failed)", "budget": n_trials})
            part.targets.append(Target(name, goal, f"failed: {first}", False, first))
            continue
        if isinstance(run, SharedStudyRun):
            part.shared = run
        else:
            part.killed = run
        row, measured = outcome(run)
        rows.append(row)
        part.targets.append(Target(name, goal, measured, run.met))
    notes = _notes(shown_url(storage), part)
    part.tables.append(Table(title=title, columns=_COLUMNS, rows=rows, notes=notes))
    return part


def _notes(storage: str, part: TuneWorkersPart) -> list[str]:
    notes = [
        f"Storage `{storage}`. Each run: a lengths + flags LightGBM profile "
        "(trials on 2 folds, 15 rounds, 1 thread) on "
        f"{DEMO_ROWS} demo battles (`make_demo_battles`), a study prefix of its "
        f"own, `heartbeat_interval` {HEARTBEAT_INTERVAL} s and `grace_period` "
        f"{GRACE_PERIOD} s (the defaults are 10 and 60 s: a dead trial is failed "
        "once its heartbeat is older than grace_period, so with the defaults its "
        "rerun comes about a minute after the kill).",
        "2 workers + leader: two `python -m pipelines.tune_worker` and one "
        "`python -m pipelines.train_gbdt --storage URL --trials N` started "
        "together; wall time from the start to the last exit (imports, features, "
        "trials, and the leader's final fit). Trials per process: complete and "
        "pruned trials by the `worker` user attribute (host:pid) that "
        "`models.study_workers` sets on each trial. Surplus claims: trials asked "
        "when the budget was already full, told FAIL untrained (user attribute "
        "`surplus`), never counted.",
        "Worker killed mid-trial: the victim (`pipelines.tune_worker.main` under "
        f"`python -c`, with a hook that makes its trial {_HANG_AT} sleep, as in "
        "tests/pipelines/test_tune_worker.py) runs alone until it hangs; then a "
        "plain `python -m pipelines.tune_worker` joins, and once it has finished a "
        "trial the victim is SIGKILLed. Failed after the kill: from the SIGKILL to "
        "the FAIL time the survivor gave the dead trial (its last heartbeat came up "
        "to heartbeat_interval before the kill, and the survivor looks about once "
        "a second, so this is about grace_period, give or take a second); done "
        "after the kill: to the survivor's exit with the study complete.",
        "Duplicated numbers and params: complete and pruned trials sharing a "
        "trial number or an identical parameter set (0 means no trial ran twice).",
    ]
    if part.shared is None or part.killed is None:
        notes.append(
            "A run failed; its target gives the first line of the error, and "
            "the run's folder with the process logs is kept."
        )
    return notes


def tune_workers_part(options: BenchOptions, work_dir: Path) -> TuneWorkersPart:
    """:func:`measure_tune_workers` with the section's options.

    Storage from ``--storage`` (``options.extra["distributed_storage"]``) or
    ``ARENA_TEST_POSTGRES_URL``; budget from ``--tune-trials``, else
    :data:`TRIALS` (40, or 8 with ``--quick``).
    """
    n_trials = (
        options.extra.get("distributed_tune_trials")
        or TRIALS["quick" if options.quick else "full"]
    )
    timeout = min(options.timeout or _PROCESS_TIMEOUT, _PROCESS_TIMEOUT)
    return measure_tune_workers(
        storage_url(options.extra),
        n_trials=int(n_trials),
        work_dir=work_dir / "tune-workers",
        timeout=timeout,
    )
