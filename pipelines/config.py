"""Profiles: one YAML file each, loaded once into typed, validated dataclasses.

An unknown key anywhere is an error naming the key and the file, and so is a
bad value: every value is checked at load by the rule of the code that will
read it (the blocks' and the estimator's parameter tables, the booster,
search-space, fold and storage checks of ``models``; see
:func:`pipelines.estimator.check_config`), so nothing is computed from a
profile that would fail later. A ``--set section.key=value`` override is
applied before validation, so it is checked the same way.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from features.errors import ConfigError, InvalidParameterError

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "FeaturesConfig",
    "TrainingConfig",
    "TuningConfig",
    "apply_overrides",
    "load_config",
]

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


@dataclass(frozen=True)
class DataConfig:
    """How battles are read and bounded before features see them."""

    max_chars: int | None = 50_000
    """Per field, in characters; older text is cut first. None = no limit."""


@dataclass(frozen=True)
class FeaturesConfig:
    """Feature blocks (name -> params), where their cache lives, and how many
    worker processes run the row-parallel blocks (null: serial, -1: all cores)."""

    store: str = "artifacts/features"
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_jobs: int | None = None


@dataclass(frozen=True)
class TrainingConfig:
    """Folds, boosters and the post-processing of their predictions; where the
    boosters train (``engine``: local or dask, on the ``scheduler`` cluster)."""

    n_folds: int = 5
    boosters: list[str] = field(default_factory=lambda: ["lightgbm"])
    booster_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    stack_method: str = "auto"
    calibrate: bool = True
    per_class_bias: bool = False
    swap_augment: bool = False
    swap_average: bool = True
    degenerate_rules: bool | str = False
    group_by: str = "prompt"
    source_weights: str | dict[str, float] | None = None
    anchor: bool = False
    tie_head: str = "model"
    target: str | None = None
    target_other_weight: float | str = 1.0
    target_density_weights: bool = False
    anchor_per_source: bool = False
    target_head: bool = True
    target_tie: bool = True
    target_tie_features: bool = False
    engine: str = "local"
    scheduler: str | None = None
    compare_swap_augment: bool = True
    out: str = "artifacts/model"


@dataclass(frozen=True)
class TuningConfig:
    """The Optuna studies: budget, split between boosters, search spaces."""

    n_trials: int = 20
    timeout: float | None = None
    booster_share: dict[str, float] = field(default_factory=dict)
    storage: str = "sqlite:///artifacts/optuna.db"
    study_prefix: str = "arena"
    n_folds: int | None = None
    max_rows: int | None = None
    search_spaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    heartbeat_interval: int = 10
    grace_period: int = 60


@dataclass(frozen=True)
class Config:
    """A whole profile. ``source`` is the file it came from (for messages)."""

    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON/YAML safe), without ``source``."""
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _build(cls: type, data: Any, where: str, source: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: '{where or 'top level'}' must be a mapping, got "
            f"{type(data).__name__}."
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - fields)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(
            f"{source}: unknown key {key!r}. Valid keys"
            f"{' in ' + repr(where) if where else ''} are {sorted(fields)}."
        )
    kwargs = {}
    for name, value in data.items():
        annotation = hints[name]
        path = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _build(annotation, value, path, source)
            continue
        if not _type_ok(value, annotation):
            raise ConfigError(
                f"{source}: {path!r} must be of type {annotation}, got {value!r}."
            )
        kwargs[name] = value
    return cls(**kwargs)


def _validate(config: Config) -> None:
    """Check every value against the rules of the code that will read it."""
    from features.blocks import make_block
    from features.validation import check_parameters
    from pipelines.estimator import check_config

    for name, params in config.features.blocks.items():
        try:
            block = make_block(name, params or {})
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{config.source}: features.blocks: {err}") from err
        try:
            check_parameters(block)
        except InvalidParameterError as err:
            raise ConfigError(
                f"{config.source}: features.blocks.{name}: {err}"
            ) from err
    check_config(config)


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text) if text.strip() else ""


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[str], source: str
) -> None:
    """Apply ``section.key=value`` overrides (values parsed as YAML) in place."""
    for override in overrides:
        if "=" not in override:
            raise ConfigError(
                f"override {override!r} must look like section.key=value "
                "(e.g. training.n_folds=3)."
            )
        dotted, _, raw = override.partition("=")
        keys = dotted.strip().split(".")
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"{source}: override {override!r}: {key!r} is not a section."
                )
            node = child
        node[keys[-1]] = _parse_value(raw)


def _drop_null_blocks(data: dict[str, Any]) -> None:
    """``features.blocks.NAME: null`` (e.g. ``--set features.blocks.tfidf=null``)
    removes the block, so one override turns a block off."""
    blocks = (data.get("features") or {}).get("blocks")
    if isinstance(blocks, dict):
        for name in [name for name, params in blocks.items() if params is None]:
            del blocks[name]


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = ()
) -> Config:
    """Load, override and validate a profile.

    Parameters
    ----------
    path : str or Path, default=None
        A YAML profile; None loads ``configs/default.yaml``.
    overrides : sequence of str
        ``section.key=value`` strings, applied in order.

    Raises
    ------
    ConfigError
        Unknown key, wrong type or invalid value; the message names the key
        and the file.
    FileNotFoundError
        No such profile.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.exists():
        raise FileNotFoundError(
            f"config file {str(path)!r} does not exist; profiles live in configs/."
        )
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from err
    data = json.loads(json.dumps(data))  # private deep copy
    apply_overrides(data, overrides, source)
    _drop_null_blocks(data)
    config = _build(Config, data, "", source)
    config = dataclasses.replace(config, source=source)
    _validate(config)
    return config
