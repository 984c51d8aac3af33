"""Optuna studies shared by processes on any number of machines.

A leader (``pipelines.train_gbdt --storage URL``) and any number of tune
workers (``pipelines.tune_worker``) run trials of the same studies in one RDB
storage: PostgreSQL across machines, SQLite on one. Each computes the study
names from its own inputs (``models.tuning``), so processes with the same
profile and data join the same studies. Three rules keep the guarantees of a
study run by one process:

- **The budget holds.** A process starts a trial only while the complete,
  pruned and running trials of the study are fewer than its target, then
  checks its claim: it keeps the trial only if fewer than `target` trials
  numbered before it are complete, pruned or running. Optuna numbers the
  trials of a study under a lock on its row, so the claims are ordered and
  the budget is not overshot; a claim that lost (two processes asked at the
  same moment) is told FAIL untrained, with the user attribute ``surplus``.
- **A dead worker's trial is run again.** A running trial records a
  heartbeat every `heartbeat_interval` seconds; one whose heartbeat is older
  than `grace_period` is failed by the next process that looks
  (``optuna.storages.fail_stale_trials``). A failed trial does not count
  toward the budget, so a survivor takes its place. A trial left running
  without a heartbeat (by a run that had the study to itself) is failed once
  it is `grace_period` seconds old.
- **No duplicate work.** Trial ``k`` samples with a TPE sampler seeded with
  ``seed + k`` and the constant liar, so no two trials share a seed and
  running trials push new samples away from theirs.

A process returns once every study has its target of complete and pruned
trials, waiting (polling) for the trials other processes still run, or when
its time is up. Resuming after a kill is what joining is: finished trials
stay, the killed one goes stale and is run again.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from tqdm.auto import tqdm

from features.errors import InvalidParameterError

__all__ = [
    "DISTRIBUTED_HINT",
    "POLL_SECONDS",
    "TrialSeededSampler",
    "check_heartbeat",
    "open_rdb_storage",
    "run_shared_studies",
    "shown_url",
]

logger = logging.getLogger(__name__)

DISTRIBUTED_HINT = (
    "install the `distributed` extra: pip install 'arena-preference[distributed]'"
)
POLL_SECONDS = 1.0
"""How often a process with nothing to claim looks at the studies again."""

_DONE = (TrialState.COMPLETE, TrialState.PRUNED)
_LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
_WORKER_ATTR = "worker"
_SURPLUS_ATTR = "surplus"
_CONNECT_TRIES = 5


def check_heartbeat(heartbeat_interval: Any, grace_period: Any) -> None:
    """Check the heartbeat settings of shared studies.

    Raises
    ------
    InvalidParameterError
        If either is not an integer >= 1, or `grace_period` is not longer than
        `heartbeat_interval` (live trials would then look dead).

    Examples
    --------
    >>> check_heartbeat(10, 60)
    """
    for name, value in (
        ("heartbeat_interval", heartbeat_interval),
        ("grace_period", grace_period),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidParameterError(
                f"{name} must be a whole number of seconds >= 1. Got {value!r}."
            )
    if grace_period <= heartbeat_interval:
        raise InvalidParameterError(
            f"grace_period ({grace_period!r} s) must be longer than "
            f"heartbeat_interval ({heartbeat_interval!r} s), or trials that are "
            f"alive look dead between two heartbeats. Use e.g. grace_period = "
            f"6 * heartbeat_interval."
        )


def _require_driver(url: str) -> None:
    """Fail with the install hint when the database driver is missing."""
    try:
        make_url(url).get_dialect().import_dbapi()
    except ImportError as err:
        raise ImportError(
            f"storage {shown_url(url)!r} needs the database driver {err.name!r}; "
            f"{DISTRIBUTED_HINT}."
        ) from err


def shown_url(url: str) -> str:
    """A storage URL as it may be logged or shown: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def open_rdb_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
) -> Iterator[optuna.storages.RDBStorage]:
    """The Optuna RDB storage at `url`, closed on exit.

    A SQLite file's folder is made. With a heartbeat the storage is one that
    other processes share: connecting is retried (processes that start
    together race to create the tables), SQLite waits up to a minute for a
    lock instead of five seconds, and PostgreSQL checks pooled connections
    before use.

    Parameters
    ----------
    url : str
        Database URL, e.g. ``sqlite:///artifacts/optuna.db`` or
        ``postgresql://user@host/db``.
    heartbeat_interval, grace_period : int, default=None
        Seconds between the heartbeats of a running trial, and the age of
        the last one past which the trial counts as dead; None for a study
        that one process has to itself.

    Raises
    ------
    ImportError
        The database driver is missing (PostgreSQL needs the `distributed`
        extra).
    ConnectionError
        The database cannot be reached or opened.
    """
    parsed = make_url(url)
    database = parsed.database or ""
    backend = parsed.get_backend_name()
    if backend == "sqlite" and database not in ("", ":memory:"):
        if not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    shared = heartbeat_interval is not None
    if not shared:
        storage = optuna.storages.RDBStorage(url)
    else:
        _require_driver(url)
        engine_kwargs: dict[str, Any] = (
            {"connect_args": {"timeout": 60}}
            if backend == "sqlite"
            else {"pool_pre_ping": True}
        )
        storage = _connect(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
        )
    try:
        yield storage
    finally:
        storage.engine.dispose()


def _connect(url: str, **kwargs: Any) -> optuna.storages.RDBStorage:
    for attempt in range(1, _CONNECT_TRIES + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except sqlalchemy.exc.SQLAlchemyError as err:
            if attempt == _CONNECT_TRIES:
                reason = str(getattr(err, "orig", None) or err).strip().splitlines()
                raise ConnectionError(
                    f"cannot open the study storage {shown_url(url)!r} after "
                    f"{attempt} tries: {reason[0] if reason else type(err).__name__}. "
                    f"Check the URL and that the database server is running."
                ) from err
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """TPE whose trial ``k`` samples with the seed ``seed + k``.

    Processes that share a study each hold one; since trial numbers are
    unique, no two trials draw with the same seed, whichever process runs
    them. The constant liar makes running trials count as bad ones, so that
    concurrent trials spread over the space.

    Parameters
    ----------
    seed : int
        Seed of trial 0.

    Examples
    --------
    >>> import optuna
    >>> study = optuna.create_study(sampler=TrialSeededSampler(seed=0))
    >>> study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    >>> len(study.trials)
    2
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._current: tuple[int, optuna.samplers.TPESampler] | None = None

    def _for(self, trial: FrozenTrial) -> optuna.samplers.TPESampler:
        if self._current is None or self._current[0] != trial.number:
            sampler = optuna.samplers.TPESampler(
                seed=self.seed + trial.number, constant_liar=True
            )
            self._current = (trial.number, sampler)
        return self._current[1]

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, Any]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: Any,
    ) -> Any:
        return self._for(trial).sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Any,
    ) -> None:
        self._for(trial).after_trial(study, trial, state, values)


def run_shared_studies(
    studies: Mapping[str, optuna.Study],
    objectives: Mapping[str, Callable[[optuna.Trial], float]],
    targets: Mapping[str, int],
    *,
    storage: optuna.storages.RDBStorage,
    deadline: float | None = None,
    verbose: bool = False,
) -> dict[str, int]:
    """Run trials of shared studies until each has its target; wait for others.

    Studies are filled in order: a process claims a trial in the first study
    that still has room, so it moves on to the next study while others finish
    the last trials of one. See the module docstring for the rules.

    Parameters
    ----------
    studies : mapping of str to optuna.Study
        Booster name to its study, opened on `storage`.
    objectives : mapping of str to callable
        Booster name to its objective.
    targets : mapping of str to int
        Booster name to its target of complete and pruned trials, counted over
        every process.
    storage : optuna.storages.RDBStorage
        The studies' storage, opened with a heartbeat (:func:`open_rdb_storage`).
    deadline : float, default=None
        ``time.monotonic()`` past which no trial is started and waiting stops;
        None for no limit.
    verbose : bool, default=False
        One progress bar of the trials finished by all processes.

    Returns
    -------
    dict of str to int
        Booster name to the number of trials this process finished.

    Raises
    ------
    InvalidParameterError
        If `storage` has no heartbeat.
    """
    interval = storage.get_heartbeat_interval()
    if interval is None:
        raise InvalidParameterError(
            "run_shared_studies: the storage has no heartbeat; open it with "
            "open_rdb_storage(url, heartbeat_interval=..., grace_period=...)."
        )
    grace = int(storage.grace_period or 2 * interval)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ran = dict.fromkeys(studies, 0)
    started = time.perf_counter()
    waiting = False
    bar = tqdm(
        total=sum(targets[name] for name in studies),
        desc=f"tune {'+'.join(studies)} (shared)",
        unit="trial",
        disable=not verbose,
    )
    with bar:
        while deadline is None or time.monotonic() < deadline:
            census = {
                name: _census(study, storage, grace) for name, study in studies.items()
            }
            bar.n = sum(min(done, targets[n]) for n, (done, _) in census.items())
            bar.refresh()
            unfinished = [n for n, (done, _) in census.items() if done < targets[n]]
            if not unfinished:
                break
            name = next((n for n in unfinished if sum(census[n]) < targets[n]), None)
            if name is None:
                if not waiting:
                    logger.info(
                        "tune: %d trial(s) of other processes still running; "
                        "waiting for them (a dead one is rerun after %d s)",
                        sum(census[n][1] for n in unfinished),
                        grace,
                    )
                waiting = True
                left = None if deadline is None else deadline - time.monotonic()
                time.sleep(
                    POLL_SECONDS if left is None else max(min(POLL_SECONDS, left), 0)
                )
                continue
            waiting = False
            finished = _run_claimed_trial(
                studies[name], objectives[name], targets[name], storage, worker
            )
            ran[name] += finished is not None
    for name, study in studies.items():
        logger.info(
            "tune %s: %d trial(s) run by %s in %.1f s; study %r has %d of %d "
            "trials done",
            name,
            ran[name],
            worker,
            time.perf_counter() - started,
            study.study_name,
            len(study.get_trials(deepcopy=False, states=_DONE)),
            targets[name],
        )
    return ran


def _study_id(storage: optuna.storages.RDBStorage, study: optuna.Study) -> int:
    return storage.get_study_id_from_name(study.study_name)


def _census(
    study: optuna.Study, storage: optuna.storages.RDBStorage, grace_period: int
) -> tuple[int, int]:
    """(done, running) trials of `study`, after failing those that are dead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    oldest = datetime.now() - timedelta(seconds=grace_period)
    running = 0
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        # No worker attribute: left by a run that had the study to itself, so
        # no heartbeat will ever say whether it is alive.
        silent = _WORKER_ATTR not in trial.user_attrs
        if silent and trial.datetime_start and trial.datetime_start < oldest:
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                _study_id(storage, study), trial.number
            )
            try:
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # it finished meanwhile; the next census counts it
            logger.info(
                "study %r: trial %d was left running without a heartbeat since "
                "%s; marked failed",
                study.study_name,
                trial.number,
                trial.datetime_start.isoformat(timespec="seconds"),
            )
            continue
        running += 1
    done = sum(trial.state in _DONE for trial in trials)
    return done, running


def _lost_claim(study: optuna.Study, number: int, target: int) -> bool:
    ahead = sum(
        trial.number < number and trial.state in _LIVE
        for trial in study.get_trials(deepcopy=False)
    )
    return ahead >= target


def _run_claimed_trial(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    target: int,
    storage: optuna.storages.RDBStorage,
    worker: str,
) -> FrozenTrial | None:
    """Ask a trial, keep it if its claim holds, run it under a heartbeat."""
    with warnings.catch_warnings():
        # Optuna's hint is for optimize(); this loop records the heartbeat.
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = study.ask()
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        _study_id(storage, study), trial.number
    )
    with _heartbeat(storage, trial_id):
        # The attribute comes after the first heartbeat: a trial killed in
        # between is found dead by one rule or the other.
        trial.set_user_attr(_WORKER_ATTR, worker)
        if _lost_claim(study, trial.number, target):
            trial.set_user_attr(_SURPLUS_ATTR, True)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            logger.debug(
                "study %r: trial %d came after the budget; not run",
                study.study_name,
                trial.number,
            )
            return None
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            frozen = study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        else:
            frozen = study.tell(trial, value, skip_if_finished=True)
    if frozen.state == TrialState.FAIL:
        logger.warning(
            "study %r: trial %d finished after another process had marked it "
            "failed (no heartbeat for %s s); its result is not kept. Raise "
            "tuning.grace_period if the machines are overloaded.",
            study.study_name,
            trial.number,
            storage.grace_period,
        )
        return None
    return frozen


@contextmanager
def _heartbeat(storage: optuna.storages.RDBStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat now and every interval until the block ends."""
    interval = storage.get_heartbeat_interval()
    storage.record_heartbeat(trial_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except sqlalchemy.exc.SQLAlchemyError as err:
                logger.warning("trial heartbeat not recorded (retrying): %s", err)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
