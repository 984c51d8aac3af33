"""Optuna tuning of the boosters, one persistent and resumable study each.

Every booster gets its own study in an RDB storage (SQLite by default), named
``{study_prefix}-{booster}-{study_key}``, so a stopped run resumes where it
stopped and ``optuna-dashboard`` can read the studies. A trial trains the
booster on the tuning folds with sampled parameters merged over the config's
parameters and is scored by the out-of-fold log loss; after each fold it reports
the running mean of the fold log losses, so a median pruner can stop trials that
are clearly worse than earlier ones.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import sqlalchemy.exc
from numpy.typing import NDArray
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from models.calibration import multiclass_log_loss
from models.gbdt import BOOSTERS, train_folds

if TYPE_CHECKING:
    from features.blocks.base import FeatureMatrix
    from pipelines.config import TuningConfig

__all__ = [
    "PRUNER_STARTUP_TRIALS",
    "PRUNER_WARMUP_STEPS",
    "TRIAL_MAX_BOOST_ROUND",
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
"""Cap on the config's ``num_boost_round`` inside tuning trials.

Early stopping ends most trials well before it; the cap only bounds the cost of
the slowest learning rates. Final training uses the config's value.
"""

_DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
_RANGE_KEYS = frozenset({"low", "high", "log", "type"})
_RANGE_TYPES = ("float", "int")
_CHOICE_TYPES = (type(None), bool, int, float, str)


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
    ValueError
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
        raise ValueError(
            f"n_trials must be >= 0 (the total over all boosters). Got {n_trials!r}."
        )
    names = list(dict.fromkeys(boosters))
    if not names:
        raise ValueError("boosters must name at least one booster to tune. Got none.")
    share = dict(share or {})
    weights = []
    for name in names:
        weight = share.get(name, 1.0 / len(names))
        if not (isinstance(weight, int | float) and math.isfinite(weight)) or (
            weight < 0
        ):
            raise ValueError(
                f"tuning.booster_share[{name!r}] must be a finite number >= 0. "
                f"Got {weight!r}; fix it in the config."
            )
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


def _search_space(booster: str, spec: Any) -> dict[str, BaseDistribution]:
    """Optuna distributions from ``tuning.search_spaces[booster]``."""
    where = f"tuning.search_spaces.{booster}"
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(
            f"{where} is missing or empty, but {booster!r} is tuned. Add a search "
            f"space for it to the config (see configs/lite.yaml) or give it no "
            f"trials in tuning.booster_share."
        )
    space: dict[str, BaseDistribution] = {}
    for param, entry in spec.items():
        at = f"{where}.{param}"
        if not isinstance(entry, Mapping):
            raise ValueError(
                f"{at} must be a mapping like {{low: 0.01, high: 0.1}} or "
                f"{{choices: [...]}}. Got {entry!r}; fix the config."
            )
        if "choices" in entry:
            choices = entry["choices"]
            if set(entry) != {"choices"} or not isinstance(choices, list | tuple):
                raise ValueError(
                    f"{at}: a categorical parameter takes only 'choices', a "
                    f"non-empty list. Got {dict(entry)!r}; fix the config."
                )
            bad = [c for c in choices if not isinstance(c, _CHOICE_TYPES)]
            if not choices or bad:
                raise ValueError(
                    f"{at}: choices must be a non-empty list of null, bool, int, "
                    f"float or str. Got {list(choices)!r}; fix the config."
                )
            space[param] = CategoricalDistribution(tuple(choices))
            continue
        unknown = sorted(set(entry) - _RANGE_KEYS)
        kind = entry.get("type", "float")
        if unknown or "low" not in entry or "high" not in entry:
            raise ValueError(
                f"{at}: a range takes 'low' and 'high' (and optional 'log', "
                f"'type'); unknown keys {unknown!r} in {dict(entry)!r}. Fix the "
                f"config."
            )
        if kind not in _RANGE_TYPES:
            raise ValueError(
                f"{at}: type must be one of {list(_RANGE_TYPES)}. Got {kind!r}; "
                f"fix the config."
            )
        log = entry.get("log", False)
        if not isinstance(log, bool):
            raise ValueError(f"{at}: log must be true or false. Got {log!r}.")
        try:
            if kind == "int":
                space[param] = IntDistribution(
                    int(entry["low"]), int(entry["high"]), log=log
                )
            else:
                space[param] = FloatDistribution(
                    float(entry["low"]), float(entry["high"]), log=log
                )
        except (TypeError, ValueError) as err:
            raise ValueError(f"{at}: invalid range ({err}). Fix the config.") from err
    return space


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, log=distribution.log
        )
    return trial.suggest_float(
        name, distribution.low, distribution.high, log=distribution.log
    )


def _make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


def _n_done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=_DONE_STATES))


def _make_pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_STEPS
    )


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def _open_storage(url: str) -> tuple[optuna.storages.RDBStorage, str]:
    """The RDB storage and its URL with any password hidden (for messages)."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError as err:
        raise ValueError(
            f"tuning.storage {url!r} is not a database URL. Use e.g. "
            f"sqlite:///artifacts/optuna.db."
        ) from err
    shown = parsed.render_as_string(hide_password=True)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        if not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url), shown


def _stored_trials(
    storage: optuna.storages.RDBStorage, study_name: str
) -> tuple[int | None, list[FrozenTrial]]:
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None, []
    return study_id, storage.get_all_trials(study_id, deepcopy=False)


def _check_space(
    trials: Sequence[FrozenTrial],
    space: Mapping[str, BaseDistribution],
    study_name: str,
    shown_url: str,
) -> None:
    for trial in trials:
        if trial.state not in _DONE_STATES or trial.distributions == space:
            continue
        changed = sorted(
            set(trial.distributions).symmetric_difference(space)
            | {
                name
                for name in set(space) & set(trial.distributions)
                if space[name] != trial.distributions[name]
            }
        )
        raise ValueError(
            f"Study {study_name!r} in {shown_url} has another search space "
            f"(trial {trial.number} differs in {changed}). Use a new study_prefix."
        )


def _fail_running(
    storage: optuna.storages.RDBStorage,
    study_id: int | None,
    trials: Sequence[FrozenTrial],
) -> int:
    """Mark trials left RUNNING (by a killed run) as FAIL; return how many."""
    n_failed = 0
    for trial in trials:
        if trial.state != TrialState.RUNNING or study_id is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            study_id, trial.number
        )
        if storage.set_trial_state_values(trial_id, TrialState.FAIL):
            n_failed += 1
    return n_failed


def _objective(
    booster: str,
    space: Mapping[str, BaseDistribution],
    base: Mapping[str, Any],
    X: Any,
    labels: NDArray[np.int64],
    folds: NDArray[np.int64],
    seed: int,
) -> Callable[[optuna.Trial], float]:
    n_folds = int(folds.max()) + 1

    def objective(trial: optuna.Trial) -> float:
        sampled = {name: _suggest(trial, name, dist) for name, dist in space.items()}
        params = {**base, **sampled}
        if "num_boost_round" not in sampled:
            params["num_boost_round"] = min(
                int(params.get("num_boost_round", TRIAL_MAX_BOOST_ROUND)),
                TRIAL_MAX_BOOST_ROUND,
            )
        fold_losses: list[float] = []

        def on_fold(fold: int, fold_log_loss: float) -> None:
            fold_losses.append(fold_log_loss)
            running = float(np.mean(fold_losses))
            trial.report(running, step=fold)
            # After the last fold the trial is complete: keep its value.
            if fold < n_folds - 1 and trial.should_prune():
                raise optuna.TrialPruned(
                    f"{booster} trial {trial.number}: mean log loss {running:.4f} "
                    f"after {fold + 1} of {n_folds} folds"
                )

        result = train_folds(
            booster, params, X, labels, folds, seed=seed, on_fold=on_fold
        )
        trial.set_user_attr(
            "best_iterations", [int(m.best_iteration_) for m in result.models]
        )
        return multiclass_log_loss(labels, result.oof)

    return objective


def _json_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _check_inputs(
    matrix: FeatureMatrix,
    labels: NDArray[np.int64],
    folds: NDArray[np.int64],
    boosters: Sequence[str],
    timeout: float | None,
) -> None:
    unknown = [name for name in boosters if name not in BOOSTERS]
    if unknown:
        raise ValueError(
            f"tune_boosters: unknown booster(s) {unknown!r}; valid boosters are "
            f"{sorted(BOOSTERS)}. Fix training.boosters."
        )
    n_rows = int(matrix.values.shape[0])
    if len(labels) != n_rows or len(folds) != n_rows:
        raise ValueError(
            f"tune_boosters: the matrix has {n_rows} rows but labels has "
            f"{len(labels)} and folds {len(folds)}; pass one label and one fold "
            f"per row."
        )
    if len(np.unique(folds)) < 2:
        raise ValueError(
            "tune_boosters: folds must hold at least 2 distinct fold indices. "
            f"Got {np.unique(folds).tolist()!r}; build them with make_folds."
        )
    if timeout is not None and not timeout > 0:
        raise ValueError(
            f"tune_boosters: timeout must be > 0 seconds or None (no limit). "
            f"Got {timeout!r}."
        )


def tune_boosters(
    matrix: FeatureMatrix,
    labels: NDArray[np.int64],
    folds: NDArray[np.int64],
    *,
    boosters: Sequence[str],
    base_params: Mapping[str, Mapping[str, Any]],
    tuning: TuningConfig,
    n_trials: int,
    timeout: float | None,
    study_key: str,
    seed: int,
    verbose: bool,
) -> dict[str, Any]:
    """Tune each booster in its own persistent Optuna study; return a summary.

    `n_trials` is split between the boosters with :func:`split_trials`. Each
    study only runs the trials it still lacks: its target minus its complete
    and pruned trials, so a rerun of a finished study runs nothing and a killed
    run resumes.

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
    base_params : mapping of str to mapping
        Config parameters per booster; sampled parameters override them.
        ``num_boost_round`` is capped at :data:`TRIAL_MAX_BOOST_ROUND` inside
        trials unless it is itself searched; ``early_stopping_rounds`` applies
        as given.
    tuning : TuningConfig
        Uses ``booster_share``, ``storage``, ``study_prefix`` and
        ``search_spaces``.
    n_trials : int
        Target number of finished (complete or pruned) trials, over all boosters.
    timeout : float or None
        Seconds for the whole call, or None for no limit. Boosters run one
        after another; each gets the time still left in proportion to the
        trials it still has to run among the boosters not yet run, so time one
        booster leaves unused passes to the next. The limit is checked
        between trials, so a call can overrun it by one trial.
    study_key : str
        Identifies the data, features and space; part of the study names.
    seed : int
        Seed of the boosters and of the TPE sampler. Each trial samples with
        ``seed + k``, where ``k`` is the number of trials finished before it,
        so its parameters depend only on the seed and the finished trials: a
        run killed and resumed (the killed trial is marked FAIL and rerun)
        draws the same trials as one uninterrupted run, and a rerun with a
        larger budget continues the sequence of a single long run.
    verbose : bool
        Show one progress bar of trials per booster.

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
    ValueError
        Unknown booster, mismatched lengths, fewer than 2 folds, a bad timeout,
        share, search space or storage URL, or a stored study whose trials used
        another search space.

    Notes
    -----
    One process per study: trials found RUNNING when a call starts are taken to
    be left by a killed run and marked FAIL (they do not count as done). Do not
    share a study between processes running at the same time.

    Examples
    --------
    >>> summary = tune_boosters(matrix, labels, folds, boosters=["lightgbm"],
    ...     base_params={}, tuning=config.tuning, n_trials=10, timeout=None,
    ...     study_key="demo", seed=0, verbose=False)  # doctest: +SKIP
    >>> summary["best_params"]["lightgbm"]  # doctest: +SKIP
    {'learning_rate': 0.041, 'num_leaves': 23, ...}
    """
    split = split_trials(n_trials, boosters, tuning.booster_share)
    _check_inputs(matrix, labels, folds, list(split), timeout)
    spaces = {
        name: _search_space(name, tuning.search_spaces.get(name))
        for name, target in split.items()
        if target > 0
    }
    studies = {name: f"{tuning.study_prefix}-{name}-{study_key}" for name in split}
    summary: dict[str, Any] = {
        "best_params": {name: {} for name in split},
        "best_value": {name: None for name in split},
        "n_trials": {name: {"complete": 0, "pruned": 0, "failed": 0} for name in split},
        "storage": _hide_password(tuning.storage),
        "studies": studies,
        "split": split,
    }
    if not spaces:
        return summary
    deadline = None if timeout is None else time.monotonic() + timeout
    storage, summary["storage"] = _open_storage(tuning.storage)
    previous_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        # Open and check every study first: a bad space fails before any training.
        opened = {}
        for name in spaces:
            study_id, trials = _stored_trials(storage, studies[name])
            _check_space(trials, spaces[name], studies[name], summary["storage"])
            stale = _fail_running(storage, study_id, trials)
            if stale:
                logger.info(
                    "tune %s: marked %d trial(s) left running as failed", name, stale
                )
            study = optuna.create_study(
                storage=storage,
                study_name=studies[name],
                direction="minimize",
                sampler=_make_sampler(seed),
                pruner=_make_pruner(),
                load_if_exists=True,
            )
            done = len(study.get_trials(deepcopy=False, states=_DONE_STATES))
            opened[name] = (study, done, max(split[name] - done, 0))
        with logging_redirect_tqdm():
            for position, name in enumerate(opened):
                study, done, remaining = opened[name]
                budget = None
                if deadline is not None and remaining:
                    still_to_run = sum(
                        r for _, _, r in list(opened.values())[position:]
                    )
                    budget = (deadline - time.monotonic()) * remaining / still_to_run
                _run_study(
                    study,
                    _objective(
                        name,
                        spaces[name],
                        base_params.get(name, {}),
                        matrix.values,
                        labels,
                        folds,
                        seed,
                    ),
                    name,
                    seed=seed,
                    target=split[name],
                    done=done,
                    remaining=remaining,
                    budget=budget,
                    verbose=verbose,
                )
                _summarise(study, name, summary)
    finally:
        storage.engine.dispose()
        optuna.logging.set_verbosity(previous_verbosity)
    return summary


def _run_study(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    name: str,
    *,
    seed: int,
    target: int,
    done: int,
    remaining: int,
    budget: float | None,
    verbose: bool,
) -> None:
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
        "failed": sum(t.state == TrialState.FAIL for t in trials),
    }


def _summarise(study: optuna.Study, name: str, summary: dict[str, Any]) -> None:
    summary["n_trials"][name] = _counts(study)
    best = _best_trial(study)
    if best is not None:
        summary["best_params"][name] = {
            key: _json_value(value) for key, value in best.params.items()
        }
        summary["best_value"][name] = float(best.value)
