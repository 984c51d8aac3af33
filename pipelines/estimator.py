"""From a loaded profile to the models: the estimator, its tuning, their checks.

The config contract lives here and only here: ``models/`` takes plain
arguments and never reads a profile. :func:`model_from_config` maps profile
keys to :class:`~models.PreferenceModel` parameters, :func:`recipe_from_config`
gives that model's training recipe (:func:`training_rows` the rows it makes,
for every command), :func:`tune_from_config` runs the Optuna studies a
profile describes, and :func:`check_config` checks every key they read
against the models' own rules at load time, so a bad value fails before any
feature is built, naming the key and the file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.blocks import FeatureMatrix
from features.errors import ConfigError, InvalidParameterError
from features.pipeline import FeaturePipeline
from features.store import FeatureStore
from features.validation import check_parameters
from models.folds import check_n_folds, check_tuning_rows
from models.gbdt import check_booster_names, check_booster_params
from models.preference import PreferenceModel
from models.recipe import TrainingRecipe, TrainingRows
from models.search_space import parse_search_space
from models.study_workers import check_heartbeat
from models.tuning import (
    check_booster_share,
    check_storage_url,
    plan_trials,
    tune_boosters,
)

if TYPE_CHECKING:
    from pipelines.config import Config

__all__ = [
    "check_config",
    "check_tuning_plan",
    "model_from_config",
    "recipe_from_config",
    "training_rows",
    "tune_from_config",
    "tune_on_rows",
]

_MODEL_KEYS: dict[str, str] = {
    "blocks": "features.blocks",
    "n_jobs": "features.n_jobs",
    "max_chars": "data.max_chars",
    "seed": "seed",
    "boosters": "training.boosters",
    "booster_params": "training.booster_params",
    "n_folds": "training.n_folds",
    "stack_method": "training.stack_method",
    "calibrate": "training.calibrate",
    "per_class_bias": "training.per_class_bias",
    "swap_augment": "training.swap_augment",
    "swap_average": "training.swap_average",
    "degenerate_rules": "training.degenerate_rules",
    "group_by": "training.group_by",
    "source_weights": "training.source_weights",
    "anchor": "training.anchor",
    "tie_head": "training.tie_head",
    "target": "training.target",
    "target_other_weight": "training.target_other_weight",
    "target_density_weights": "training.target_density_weights",
    "anchor_per_source": "training.anchor_per_source",
    "target_head": "training.target_head",
    "target_tie": "training.target_tie",
    "target_tie_features": "training.target_tie_features",
    "engine": "training.engine",
    "scheduler": "training.scheduler",
}
"""PreferenceModel parameter -> the profile key it is read from."""


def _lookup(config: Config, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return copy.deepcopy(node)


def _model_params(config: Config) -> dict[str, Any]:
    params = {param: _lookup(config, key) for param, key in _MODEL_KEYS.items()}
    params["boosters"] = tuple(params["boosters"])
    return params


def model_from_config(config: Config, **overrides: Any) -> PreferenceModel:
    """A :class:`~models.PreferenceModel` with the params of a loaded profile.

    Parameters
    ----------
    config : Config
        A profile from :func:`pipelines.config.load_config`.
    **overrides
        PreferenceModel params that replace the profile's (e.g. tuned
        ``booster_params``, ``verbose``).

    Returns
    -------
    PreferenceModel
        Unfitted; the profile's dicts are copied, never shared.

    Examples
    --------
    >>> from pipelines.config import load_config
    >>> model = model_from_config(load_config("configs/lite.yaml"), n_folds=3)
    >>> model.n_folds, model.stack_method
    (3, 'auto')
    """
    return PreferenceModel(**{**_model_params(config), **overrides})


def recipe_from_config(config: Config) -> TrainingRecipe:
    """The :class:`~models.recipe.TrainingRecipe` of a loaded profile.

    It is the recipe of :func:`model_from_config`'s model, so the rows a
    command prepares, tunes on and reports on are those the model fits on.

    Examples
    --------
    >>> from pipelines.config import load_config
    >>> recipe_from_config(load_config("configs/lite.yaml")).source_weights
    'balanced'
    """
    return model_from_config(config).training_recipe()


def training_rows(config: Config, battles: pd.DataFrame) -> TrainingRows:
    """The training rows of labelled battles under a loaded profile."""
    return recipe_from_config(config).rows(battles)


def tune_on_rows(
    config: Config,
    rows: TrainingRows,
    store: FeatureStore,
    *,
    n_trials: int,
    timeout: float | None = None,
    verbose: bool = False,
    storage: str | None = None,
    shared: bool | None = None,
) -> dict[str, Any]:
    """Build (or read) the features of training rows, then tune on them.

    The studies are shared with tune workers when `shared`, by default when
    a `storage` is given (:func:`tune_from_config` has the rest).
    """
    matrix = FeaturePipeline(
        config.features.blocks,
        store=store,
        verbose=verbose,
        n_jobs=config.features.n_jobs,
    ).fit_transform(rows.table)
    return tune_from_config(
        config,
        matrix,
        rows.labels,
        rows.groups,
        weight=rows.weight,
        families=rows.families,
        n_trials=n_trials,
        timeout=timeout,
        verbose=verbose,
        storage=storage,
        shared=storage is not None if shared is None else shared,
    )


def _tuning_n_folds(config: Config) -> int:
    # A profile may leave tuning.n_folds null: trials then use the final folds.
    return config.tuning.n_folds or config.training.n_folds


def _search_spaces(config: Config) -> dict[str, Any]:
    spaces = {}
    for booster, spec in config.tuning.search_spaces.items():
        spaces[booster] = _checked(
            config, f"tuning.search_spaces.{booster}", parse_search_space, spec
        )
    return spaces


def _tuning_arguments(
    config: Config, n_trials: int | None, storage: str | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``tune_boosters`` but the data, checked as a plan."""
    if storage is not None:
        check_storage_url(storage)
    arguments = {
        "boosters": list(config.training.boosters),
        "search_spaces": _search_spaces(config),
        "base_params": copy.deepcopy(config.training.booster_params),
        "n_trials": config.tuning.n_trials if n_trials is None else n_trials,
        "storage": config.tuning.storage if storage is None else storage,
        "study_prefix": config.tuning.study_prefix,
        "booster_share": dict(config.tuning.booster_share),
        "seed": config.seed,
    }
    _checked(
        config,
        "tuning",
        plan_trials,
        arguments["n_trials"],
        arguments["boosters"],
        arguments["booster_share"],
        arguments["search_spaces"],
    )
    return arguments


def tune_from_config(
    config: Config,
    matrix: FeatureMatrix,
    labels: NDArray[np.int64],
    groups: NDArray[np.int64],
    *,
    weight: NDArray[np.float64] | None = None,
    families: NDArray[np.object_] | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    verbose: bool = False,
    storage: str | None = None,
    shared: bool = False,
) -> dict[str, Any]:
    """Run the tuning studies a profile describes on a feature matrix.

    The trials see whole prompt groups of at most ``tuning.max_rows`` rows
    with ``tuning.n_folds`` folds of their own and an anchor fitted on them,
    as the profile's training recipe makes them
    (:meth:`models.recipe.TrainingRecipe.tuning_rows`); the studies, their
    budget split and their search spaces come from ``tuning``, the base
    params from ``training.booster_params``. :func:`tune_on_rows` builds the
    matrix of :func:`training_rows` and calls this.

    Parameters
    ----------
    config : Config
        A loaded profile.
    matrix : FeatureMatrix
        Features of every labelled battle.
    labels : ndarray of int64 of shape (n_rows,)
        0 = A wins, 1 = B wins, 2 = tie.
    groups : ndarray of int64 of shape (n_rows,)
        Prompt group per row (:func:`models.prompt_groups`).
    weight : ndarray of shape (n_rows,), default=None
        Source weights (``training.source_weights``), as the final fit uses.
    families : ndarray of str, default=None
        Source family per row when the final folds group by source (needed
        with ``training.group_by: source``): the trial folds then hold out
        whole families as the final folds do.
    n_trials : int, default=None
        Trials over all boosters; None uses ``tuning.n_trials``.
    timeout : float, default=None
        Seconds for the whole run; None uses ``tuning.timeout``.
    verbose : bool, default=False
        One progress bar of trials per booster.
    storage : str, default=None
        Database URL of the studies; None uses ``tuning.storage``.
    shared : bool, default=False
        Share the studies with tune workers (``tune_boosters(shared=True)``),
        with the heartbeat of ``tuning.heartbeat_interval`` and
        ``tuning.grace_period``. Every process with the same profile and data
        computes the same study names.

    Returns
    -------
    dict
        The summary of :func:`models.tuning.tune_boosters`, plus ``rows``:
        the number of rows the trials saw.

    Raises
    ------
    ConfigError
        A booster gets trials but has no search space.
    InvalidParameterError
        ``training.group_by`` is "source" and no `families` are given.
    """
    arguments = _tuning_arguments(config, n_trials, storage)
    sample = recipe_from_config(config).tuning_rows(
        matrix.values,
        matrix.columns,
        labels,
        groups,
        weight=weight,
        families=families,
        max_rows=config.tuning.max_rows,
        n_folds=_tuning_n_folds(config),
    )
    summary = tune_boosters(
        FeatureMatrix(sample.values, matrix.columns),
        sample.labels,
        sample.folds,
        **arguments,
        weight=sample.weight,
        init_score=sample.init_score,
        timeout=config.tuning.timeout if timeout is None else timeout,
        verbose=verbose,
        shared=shared,
        heartbeat_interval=config.tuning.heartbeat_interval,
        grace_period=config.tuning.grace_period,
    )
    summary["rows"] = len(sample.rows)
    return summary


def check_tuning_plan(
    config: Config, n_trials: int | None = None, storage: str | None = None
) -> None:
    """Check that every booster given trials has a search space (no I/O).

    Raises
    ------
    ConfigError
        A booster gets trials but has no search space, naming the file.
    InvalidParameterError
        `storage` (a ``--storage`` URL) is not a database URL.
    """
    _tuning_arguments(config, n_trials, storage)


def _checked(config: Config, key: str, check: Callable[..., Any], *args: Any) -> Any:
    """``check(*args)``, its error re-raised as a ConfigError naming key and file."""
    try:
        return check(*args)
    except InvalidParameterError as err:
        raise ConfigError(f"{config.source}: {key}: {err}") from err


def _check_model_params(config: Config) -> None:
    # One parameter at a time against the estimator's own table, so an error
    # names the key it came from; the other parameters keep their defaults.
    for param, key in _MODEL_KEYS.items():
        model = PreferenceModel(**{param: _lookup(config, key)})
        _checked(config, key, check_parameters, model)


def _check_booster_params(config: Config) -> None:
    booster_params = config.training.booster_params
    _checked(config, "training.booster_params", check_booster_names, booster_params)
    for booster, params in booster_params.items():
        key = f"training.booster_params.{booster}"
        _checked(config, key, check_booster_params, params)


def _check_tuning(config: Config) -> None:
    tuning = config.tuning
    if tuning.n_trials < 0:
        raise ConfigError(
            f"{config.source}: tuning.n_trials must be >= 0 (0: no tuning). Got "
            f"{tuning.n_trials!r}."
        )
    if tuning.timeout is not None and not tuning.timeout > 0:
        raise ConfigError(
            f"{config.source}: tuning.timeout must be null (no limit) or > 0 "
            f"seconds. Got {tuning.timeout!r}."
        )
    if not tuning.study_prefix:
        raise ConfigError(
            f"{config.source}: tuning.study_prefix must be a non-empty string (the "
            f"first part of the study names). Got {tuning.study_prefix!r}."
        )
    _checked(config, "tuning.storage", check_storage_url, tuning.storage)
    _checked(
        config,
        "tuning",
        check_heartbeat,
        tuning.heartbeat_interval,
        tuning.grace_period,
    )
    _checked(config, "tuning.booster_share", check_booster_share, tuning.booster_share)
    if tuning.n_folds is not None:
        _checked(config, "tuning.n_folds", check_n_folds, tuning.n_folds)
    _checked(config, "tuning.max_rows", check_tuning_rows, tuning.max_rows)
    _checked(config, "tuning.search_spaces", check_booster_names, tuning.search_spaces)
    _search_spaces(config)


def check_config(config: Config) -> None:
    """Check every profile key the estimator and the tuning read.

    Each value is checked by the rule of the models code that uses it: the
    estimator's parameter table, ``models.gbdt`` for booster names and params,
    ``models.search_space`` for search spaces, ``models.folds`` and
    ``models.tuning`` for the tuning sample, budget split and storage. Nothing
    is computed or written.

    Parameters
    ----------
    config : Config
        A profile built by :func:`pipelines.config.load_config`.

    Raises
    ------
    ConfigError
        The first invalid value; the message names the key and the file.
    """
    _check_model_params(config)
    _check_booster_params(config)
    _check_tuning(config)
