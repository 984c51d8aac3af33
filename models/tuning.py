"""Optuna tuning of the boosters, one persistent and resumable study each.

Every booster gets its own study in an RDB storage (SQLite by default), named
``{study_prefix}-{booster}-{key}``, so a stopped run resumes where it stopped
and ``optuna-dashboard`` can read the studies. The key is a hash of everything
a trial's score depends on (the feature values, labels and folds, the
booster's base params, its search space and the seed), so a rerun resumes a
study only when its finished trials were scored the same way; any change
starts a new study. A trial trains the booster on the tuning folds with
sampled parameters merged over the base parameters and is scored by the
out-of-fold log loss; after each fold it reports the running mean of the fold
log losses, so a median pruner can stop trials that are clearly worse than
earlier ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import optuna
import scipy.sparse as sp
import sqlalchemy.exc
from numpy.typing import NDArray
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from features.errors import InvalidParameterError
from models.gbdt import THREAD_PARAMS, check_booster_names, train_folds
from models.metrics import multiclass_log_loss
from models.search_space import suggest
from models.study_workers import (
    TrialSeededSampler,
    check_heartbeat,
    open_rdb_storage,
    run_shared_studies,
    shown_url,
)

if TYPE_CHECKING:
    from features.blocks.base import FeatureMatrix

__all__ = [
    "PRUNER_STARTUP_TRIALS",
    "PRUNER_WARMUP_STEPS",
    "TRIAL_MAX_BOOST_ROUND",
    "check_booster_share",
    "check_storage_url",
    "plan_trials",
    "split_trials",
    "tune_boosters",
]

logger = logging.getLogger(__name__)

PRUNER_STARTUP_TRIALS = 5
"""Complete trials a study needs before the median pruner stops any trial."""

PRUNER_WARMUP_STEPS = 0
"""Folds before pruning may start (steps are 0-based fold indices): 0 lets the
median pruner stop a trial after its first fold, a third of a 3-fold trial."""

TRIAL_MAX_BOOST_ROUND = 1000
"""Cap on the base params' ``num_boost_round`` inside tuning trials.

Early stopping ends most trials well before it; the cap only bounds the cost of
the slowest learning rates. Final training uses the uncapped value.
"""

_DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
_KEY_LENGTH = 12


def split_trials(
    n_trials: int,
    boosters: Sequence[str],
    share: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Split a total trial budget between boosters by their shares.

    Shares are normalised over the boosters in use, quotas are rounded by the
    largest remainder so the split sums to `n_trials`, and when the budget
    allows it every booster gets at least one trial.

    Parameters
    ----------
    n_trials : int
        Total number of trials, >= 0.
    boosters : sequence of str
        Boosters in use, in order; duplicates count once.
    share : mapping of str to float, default=None
        Relative share per booster (``tuning.booster_share``).

        - A booster missing from it weighs ``1 / len(boosters)``.
        - Shares of boosters not in use are ignored.
        - All shares zero (or None) split equally.

    Returns
    -------
    dict of str to int
        Trials per booster, in the order of `boosters`.

    Raises
    ------
    InvalidParameterError
        If `n_trials` is negative, `boosters` is empty or a share is negative
        or not finite.

    Examples
    --------
    >>> split_trials(20, ["lightgbm", "xgboost"], {"lightgbm": 0.6, "xgboost": 0.4})
    {'lightgbm': 12, 'xgboost': 8}
    >>> split_trials(3, ["lightgbm", "xgboost"], {"lightgbm": 1.0, "xgboost": 0.0})
    {'lightgbm': 2, 'xgboost': 1}
    """
    if n_trials < 0:
        raise InvalidParameterError(
            f"n_trials must be >= 0 (the total over all boosters). Got {n_trials!r}."
        )
    names = list(dict.fromkeys(boosters))
    if not names:
        raise InvalidParameterError(
            "boosters must name at least one booster to tune. Got none."
        )
    share = dict(share or {})
    weights = []
    for name in names:
        weight = share.get(name, 1.0 / len(names))
        _check_share(name, weight)
        weights.append(float(weight))
    total = sum(weights)
    if total == 0:
        weights, total = [1.0] * len(names), float(len(names))
    quotas = [n_trials * weight / total for weight in weights]
    counts = [math.floor(quota) for quota in quotas]
    by_remainder = sorted(
        range(len(names)), key=lambda i: (-(quotas[i] - counts[i]), i)
    )
    for i in by_remainder[: n_trials - sum(counts)]:
        counts[i] += 1
    if n_trials >= len(names):
        # Starved boosters take a trial from the one most above its quota.
        for i in sorted(range(len(names)), key=lambda i: (-quotas[i], i)):
            if counts[i] == 0:
                donor = max(
                    (j for j in range(len(names)) if counts[j] > 1),
                    key=lambda j: (counts[j] - quotas[j], counts[j]),
                )
                counts[donor] -= 1
                counts[i] = 1
    return dict(zip(names, counts, strict=True))


def _check_share(name: str, weight: Any) -> None:
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not math.isfinite(weight)
        or weight < 0
    ):
        raise InvalidParameterError(
            f"booster_share[{name!r}] must be a finite number >= 0. Got {weight!r}."
        )


def check_booster_share(share: Mapping[str, Any] | None) -> None:
    """Check a booster share: booster names mapped to finite numbers >= 0.

    Raises
    ------
    InvalidParameterError
        If a key is not a booster or a share is negative, not finite or not a
        number.

    Examples
    --------
    >>> check_booster_share({"lightgbm": 0.6, "xgboost": 0.4})
    """
    share = dict(share or {})
    check_booster_names(share)
    for name, weight in share.items():
        _check_share(name, weight)


def plan_trials(
    n_trials: int,
    boosters: Sequence[str],
    booster_share: Mapping[str, float] | None,
    search_spaces: Mapping[str, Mapping[str, BaseDistribution]],
) -> dict[str, int]:
    """Trials per booster (:func:`split_trials`), each with a space to search.

    Cheap and free of I/O, so callers can check a tuning run before they
    build features for it; :func:`tune_boosters` starts with it.

    Parameters
    ----------
    n_trials : int
        Total number of trials, >= 0.
    boosters : sequence of str
        Boosters to tune (keys of ``models.gbdt.BOOSTERS``).
    booster_share : mapping of str to float or None
        Relative share of the trials per booster.
    search_spaces : mapping of str to mapping
        Parsed search space per booster (``models.search_space.parse_search_space``).

    Returns
    -------
    dict of str to int
        Trials per booster, in the order of `boosters`.

    Raises
    ------
    InvalidParameterError
        If a booster is unknown, the budget or a share is invalid, or a
        booster that gets trials has no (or an empty) search space.

    Examples
    --------
    >>> from models.search_space import parse_search_space
    >>> space = parse_search_space({"learning_rate": {"low": 0.05, "high": 0.3}})
    >>> plan_trials(4, ["lightgbm"], None, {"lightgbm": space})
    {'lightgbm': 4}
    """
    check_booster_names(boosters)
    check_booster_share(booster_share)
    split = split_trials(n_trials, boosters, booster_share)
    missing = [
        name for name, target in split.items() if target and not search_spaces.get(name)
    ]
    if missing:
        raise InvalidParameterError(
            f"booster(s) {missing!r} get trials but have no search space (spaces "
            f"are given for {sorted(search_spaces)}). Add a non-empty search space "
            f"for each, or tune fewer boosters."
        )
    return split


def check_storage_url(url: Any) -> None:
    """Check that `url` is a database URL Optuna can store studies in.

    Raises
    ------
    InvalidParameterError
        If `url` is not a string that parses as a database URL.

    Examples
    --------
    >>> check_storage_url("sqlite:///artifacts/optuna.db")
    """
    try:
        make_url(url)
    except (sqlalchemy.exc.ArgumentError, TypeError, AttributeError) as err:
        raise InvalidParameterError(
            f"storage {url!r} is not a database URL. Use e.g. "
            f"sqlite:///artifacts/optuna.db or postgresql://user@host/db."
        ) from err


def _without_thread_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in params.items() if name not in THREAD_PARAMS}


def _key_json(value: Any) -> Any:
    if isinstance(value, BaseDistribution):
        return json.loads(distribution_to_json(value))
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"no study-key form for {type(value).__name__}: {value!r}")


def _key_bytes(value: Any) -> bytes:
    """Bytes that identify `value` for the study key (arrays by content)."""
    if sp.issparse(value):
        csr = sp.csr_matrix(value)
        if not csr.has_canonical_format:  # a copy: the caller's matrix stays as is
            csr = csr.copy()
            csr.sum_duplicates()
        parts = [csr.data, csr.indices, csr.indptr]
        header = ("csr", csr.shape, str(csr.dtype))
    elif isinstance(value, np.ndarray):
        parts, header = [value], ("dense", value.shape, value.dtype.str)
    else:
        return json.dumps(value, sort_keys=True, default=_key_json).encode()
    digest = hashlib.blake2b(json.dumps(header).encode(), digest_size=32)
    for part in parts:
        digest.update(np.ascontiguousarray(part).data)
    return digest.digest()


@dataclass(frozen=True, eq=False)
class _Objective:
    """A booster's Optuna objective and everything its score depends on.

    A trial reads nothing but these fields, and :meth:`key` hashes every field,
    so a new input of the objective cannot be left out of the study key.
    Fields with ``metadata["key"]`` enter the key in that form.
    """

    booster: str
    space: Mapping[str, BaseDistribution]
    base_params: Mapping[str, Any] = field(
        metadata={"key": _without_thread_params}  # thread counts change no score
    )
    X: Any
    labels: NDArray[np.int64]
    folds: NDArray[np.int64]
    seed: int
    max_boost_round: int = TRIAL_MAX_BOOST_ROUND
    weight: NDArray[np.float64] | None = None
    init_score: NDArray[np.float64] | None = None

    def key(self) -> str:
        """Hex digest of every field: equal keys score trials the same way."""
        digest = hashlib.sha256()
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            value = spec.metadata.get("key", lambda v: v)(value)
            digest.update(spec.name.encode() + b"\0" + _key_bytes(value) + b"\0")
        return digest.hexdigest()[:_KEY_LENGTH]

    def params(self, trial: optuna.Trial) -> dict[str, Any]:
        """Base params with the trial's samples over them, rounds capped."""
        sampled = {name: suggest(trial, name, d) for name, d in self.space.items()}
        params = {**self.base_params, **sampled}
        if "num_boost_round" not in sampled:
            params["num_boost_round"] = min(
                int(params.get("num_boost_round", self.max_boost_round)),
                self.max_boost_round,
            )
        return params

    def __call__(self, trial: optuna.Trial) -> float:
        n_folds = int(self.folds.max()) + 1
        fold_losses: list[float] = []

        def on_fold(fold: int, fold_log_loss: float) -> None:
            fold_losses.append(fold_log_loss)
            running = float(np.mean(fold_losses))
            trial.report(running, step=fold)
            # After the last fold the trial is complete: keep its value.
            if fold < n_folds - 1 and trial.should_prune():
                raise optuna.TrialPruned(
                    f"{self.booster} trial {trial.number}: mean log loss "
                    f"{running:.4f} after {fold + 1} of {n_folds} folds"
                )

        result = train_folds(
            self.booster,
            self.params(trial),
            self.X,
            self.labels,
            self.folds,
            seed=self.seed,
            weight=self.weight,
            init_score=self.init_score,
            on_fold=on_fold,
        )
        trial.set_user_attr(
            "best_iterations", [int(m.best_iteration_) for m in result.models]
        )
        return multiclass_log_loss(self.labels, result.oof, sample_weight=self.weight)


def _make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


def _n_done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=_DONE_STATES))


def _make_pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_STEPS
    )


def _check_inputs(
    matrix: FeatureMatrix,
    labels: NDArray[np.int64],
    folds: NDArray[np.int64],
    timeout: float | None,
) -> None:
    n_rows = int(matrix.values.shape[0])
    if len(labels) != n_rows or len(folds) != n_rows:
        raise InvalidParameterError(
            f"tune_boosters: the matrix has {n_rows} rows but labels has "
            f"{len(labels)} and folds {len(folds)}; pass one label and one fold "
            f"per row."
        )
    if len(np.unique(folds)) < 2:
        raise InvalidParameterError(
            "tune_boosters: folds must hold at least 2 distinct fold indices. "
            f"Got {np.unique(folds).tolist()!r}; build them with make_folds."
        )
    if timeout is not None and not timeout > 0:
        raise InvalidParameterError(
            f"tune_boosters: timeout must be > 0 seconds or None (no limit). "
            f"Got {timeout!r}."
        )


class _OpenStudy(NamedTuple):
    study: optuna.Study
    done: int
    """Complete and pruned trials when the study was opened."""
    remaining: int
    """Trials still to run to reach the target."""


def tune_boosters(
    matrix: FeatureMatrix,
    labels: NDArray[np.int64],
    folds: NDArray[np.int64],
    *,
    boosters: Sequence[str],
    search_spaces: Mapping[str, Mapping[str, BaseDistribution]],
    base_params: Mapping[str, Mapping[str, Any]],
    n_trials: int,
    storage: str,
    study_prefix: str = "arena",
    booster_share: Mapping[str, float] | None = None,
    timeout: float | None = None,
    seed: int = 0,
    weight: NDArray[np.float64] | None = None,
    init_score: NDArray[np.float64] | None = None,
    verbose: bool = False,
    shared: bool = False,
    heartbeat_interval: int = 10,
    grace_period: int = 60,
) -> dict[str, Any]:
    """Tune each booster in its own persistent Optuna study; return a summary.

    `n_trials` is split between the boosters with :func:`split_trials`. Each
    study only runs the trials it still lacks: its target minus its complete
    and pruned trials, so a rerun of a finished study runs nothing and a killed
    run resumes. A study is named by a key of everything its trials' scores
    depend on (see the module docstring), so changing any of it starts a new
    study instead of resuming one scored another way. Thread counts
    (``models.gbdt.THREAD_PARAMS``) are left out: they change no score.

    Parameters
    ----------
    matrix : FeatureMatrix
        Features; ``values`` may be a dense float32 array or a CSR matrix.
    labels : ndarray of int64 of shape (n_rows,)
        0 = A wins, 1 = B wins, 2 = tie.
    folds : ndarray of int64 of shape (n_rows,)
        Fold index per row (0 .. n_folds - 1); trials are scored out of fold.
    boosters : sequence of str
        Boosters to tune (keys of ``models.gbdt.BOOSTERS``).
    search_spaces : mapping of str to mapping of str to BaseDistribution
        Space per booster, as ``models.search_space.parse_search_space``
        returns it; every booster that gets trials needs a non-empty one.
    base_params : mapping of str to mapping
        Params per booster; sampled parameters override them.
        ``num_boost_round`` is capped at :data:`TRIAL_MAX_BOOST_ROUND` inside
        trials unless it is itself searched; ``early_stopping_rounds`` applies
        as given.
    n_trials : int
        Target number of finished (complete or pruned) trials, over all boosters.
    storage : str
        RDB URL of the studies, e.g. ``sqlite:///artifacts/optuna.db``.
    study_prefix : str, default="arena"
        First part of the study names.
    booster_share : mapping of str to float, default=None
        Relative share of the trials per booster (see :func:`split_trials`).
    weight : ndarray of shape (n_rows,), default=None
        Row weights (source weights), in the boosters and the trial score.
    init_score : ndarray of shape (n_rows, 3), default=None
        Starting log-score per row (the anchor), as the final fit uses it.
    timeout : float or None, default=None
        Seconds for the whole call, or None for no limit. Boosters run one
        after another; each gets the time still left in proportion to the
        trials it still has to run among the boosters not yet run, so time one
        booster leaves unused passes to the next. The limit is checked
        between trials, so a call can overrun it by one trial.
    seed : int, default=0
        Seed of the boosters and of the TPE sampler. Each trial samples with
        ``seed + k``, where ``k`` is the number of trials finished before it,
        so its parameters depend only on the seed and the finished trials: a
        run killed and resumed (the killed trial is marked FAIL and rerun)
        draws the same trials as one uninterrupted run, and a rerun with a
        larger budget continues the sequence of a single long run.
    verbose : bool, default=False
        Show one progress bar of trials per booster.
    shared : bool, default=False
        Share the studies with other processes on any machine
        (:mod:`models.study_workers`): trials are claimed so that the target
        holds over all of them, each trial samples with ``seed + its number``,
        a trial whose heartbeat stops is rerun, and the call returns once every
        study has its target, waiting for the others' trials, or at the
        timeout (one limit for all boosters, filled in order).
    heartbeat_interval, grace_period : int, default=10, 60
        With `shared`: seconds between a running trial's heartbeats, and the
        age of the last one past which the trial counts as dead.

    Returns
    -------
    dict
        JSON-safe summary:

        - ``best_params``: {booster: {param: value}}, the best complete trial's
          sampled params; {} for a booster with no trials or no complete trial.
        - ``best_value``: {booster: OOF log loss of that trial, or None}.
        - ``n_trials``: {booster: {"complete", "pruned", "failed"}} counted over
          the whole study (zeros for a booster given no trials).
        - ``storage``: the storage URL, password hidden.
        - ``studies``: {booster: study name}.
        - ``split``: {booster: target trials}.

    Raises
    ------
    InvalidParameterError
        Unknown booster, mismatched lengths, fewer than 2 folds, a bad timeout,
        share or storage URL, or a booster with trials and no search space.

    Notes
    -----
    Without `shared`, one process per study: trials found RUNNING when a call
    starts are taken to be left by a killed run and marked FAIL (they do not
    count as done). Use `shared` for studies that processes run at once.

    Examples
    --------
    >>> from models.search_space import parse_search_space
    >>> space = parse_search_space({"learning_rate": {"low": 0.05, "high": 0.3}})
    >>> summary = tune_boosters(matrix, labels, folds, boosters=["lightgbm"],
    ...     search_spaces={"lightgbm": space}, base_params={}, n_trials=10,
    ...     storage="sqlite:///optuna.db", seed=0)  # doctest: +SKIP
    >>> summary["best_params"]["lightgbm"]  # doctest: +SKIP
    {'learning_rate': 0.041}
    """
    split = plan_trials(n_trials, boosters, booster_share, search_spaces)
    _check_inputs(matrix, labels, folds, timeout)
    check_storage_url(storage)
    if shared:
        check_heartbeat(heartbeat_interval, grace_period)
    objectives = {
        name: _Objective(
            booster=name,
            space=dict(search_spaces.get(name) or {}),
            base_params=dict(base_params.get(name) or {}),
            X=matrix.values,
            labels=labels,
            folds=folds,
            seed=seed,
            weight=weight,
            init_score=init_score,
        )
        for name in split
    }
    studies = {
        name: f"{study_prefix}-{name}-{objective.key()}"
        for name, objective in objectives.items()
    }
    summary = _empty_summary(split, studies, shown_url(storage))
    tuned = [name for name, target in split.items() if target > 0]
    if not tuned:
        return summary
    deadline = None if timeout is None else time.monotonic() + timeout
    beat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period}
    with _quiet_optuna(), open_rdb_storage(storage, **(beat if shared else {})) as rdb:
        # Open every study first: a storage that fails does so before training.
        opened = {
            name: _open_study(rdb, studies[name], seed, split[name], shared)
            for name in tuned
        }
        if shared:
            with logging_redirect_tqdm():
                run_shared_studies(
                    {name: opened[name].study for name in tuned},
                    objectives,
                    split,
                    storage=rdb,
                    deadline=deadline,
                    verbose=verbose,
                )
            for name in tuned:
                _summarise(opened[name].study, name, summary)
            return summary
        with logging_redirect_tqdm():
            for position, name in enumerate(tuned):
                _run_study(
                    opened[name],
                    objectives[name],
                    seed=seed,
                    target=split[name],
                    budget=_time_budget(
                        deadline, [opened[n].remaining for n in tuned[position:]]
                    ),
                    verbose=verbose,
                )
                _summarise(opened[name].study, name, summary)
    return summary


def _empty_summary(
    split: Mapping[str, int], studies: Mapping[str, str], shown_storage: str
) -> dict[str, Any]:
    return {
        "best_params": {name: {} for name in split},
        "best_value": {name: None for name in split},
        "n_trials": {name: {"complete": 0, "pruned": 0, "failed": 0} for name in split},
        "storage": shown_storage,
        "studies": dict(studies),
        "split": dict(split),
    }


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial INFO lines off; our bar and log lines say it all."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _open_study(
    storage: optuna.storages.RDBStorage,
    study_name: str,
    seed: int,
    target: int,
    shared: bool = False,
) -> _OpenStudy:
    """Load or create a study; unless `shared`, trials a killed run left
    RUNNING become FAIL (shared studies fail them by heartbeat)."""
    stale = 0 if shared else _fail_running(storage, study_name)
    if stale:
        logger.info(
            "study %r: marked %d trial(s) left running as failed", study_name, stale
        )
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",
        sampler=TrialSeededSampler(seed) if shared else _make_sampler(seed),
        pruner=_make_pruner(),
        load_if_exists=True,
    )
    done = _n_done(study)
    return _OpenStudy(study, done, max(target - done, 0))


def _fail_running(storage: optuna.storages.RDBStorage, study_name: str) -> int:
    """Mark trials left RUNNING (by a killed run) as FAIL; return how many."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    n_failed = 0
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        if trial.state != TrialState.RUNNING:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            study_id, trial.number
        )
        if storage.set_trial_state_values(trial_id, TrialState.FAIL):
            n_failed += 1
    return n_failed


def _time_budget(deadline: float | None, remaining: Sequence[int]) -> float | None:
    """Seconds for the next booster: the time left times its share of the
    trials still to run (`remaining[0]` is its own, the rest come after it)."""
    if deadline is None or not remaining[0]:
        return None
    return (deadline - time.monotonic()) * remaining[0] / sum(remaining)


def _run_study(
    opened: _OpenStudy,
    objective: _Objective,
    *,
    seed: int,
    target: int,
    budget: float | None,
    verbose: bool,
) -> None:
    study, done, remaining = opened
    name = objective.booster
    started = time.perf_counter()
    if remaining == 0 or (budget is not None and budget <= 0):
        reason = "already done" if remaining == 0 else "no time left"
        logger.info(
            "tune %s: %d of %d trials done, running none (%s)",
            name,
            done,
            target,
            reason,
        )
        return
    bar = tqdm(
        total=target,
        initial=done,
        desc=f"tune {name}",
        unit="trial",
        disable=not verbose,
    )

    def show_best(study: optuna.Study, trial: FrozenTrial) -> None:
        bar.update(1)
        best = _best_trial(study)
        if best is not None:
            bar.set_postfix(best=f"{best.value:.4f}")

    n_before = len(study.get_trials(deepcopy=False))
    with bar:
        best = _best_trial(study)
        if best is not None:
            bar.set_postfix(best=f"{best.value:.4f}")
        deadline = None if budget is None else time.monotonic() + budget
        for _ in range(remaining):
            if deadline is not None and time.monotonic() >= deadline:
                break
            # One sampler per trial, seeded by the finished trials before it:
            # a resumed study then repeats an uninterrupted one exactly.
            study.sampler = _make_sampler(seed + _n_done(study))
            study.optimize(objective, n_trials=1, callbacks=[show_best])
    counts = _counts(study)
    best = _best_trial(study)
    logger.info(
        "tune %s: %d trial(s) run in %.1f s; study %r has %d complete, %d pruned, "
        "%d failed; best OOF log loss %s",
        name,
        len(study.get_trials(deepcopy=False)) - n_before,
        time.perf_counter() - started,
        study.study_name,
        counts["complete"],
        counts["pruned"],
        counts["failed"],
        "n/a" if best is None else f"{best.value:.4f}",
    )


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def _counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        # A shared study's claim that came after the budget ran nothing.
        "failed": sum(
            t.state == TrialState.FAIL and not t.user_attrs.get("surplus")
            for t in trials
        ),
    }


def _json_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _summarise(study: optuna.Study, name: str, summary: dict[str, Any]) -> None:
    summary["n_trials"][name] = _counts(study)
    best = _best_trial(study)
    if best is not None:
        summary["best_params"][name] = {
            key: _json_value(value) for key, value in best.params.items()
        }
        summary["best_value"][name] = float(best.value)
