"""Profiles: one YAML file each, loaded once into typed, validated dataclasses.

An unknown key anywhere is an error naming the key and the file; a
``--set section.key=value`` override is applied before validation, so it is
checked the same way.
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

from features.errors import ConfigError

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
    """Folds, boosters and the post-processing of their predictions."""

    n_folds: int = 5
    boosters: list[str] = field(default_factory=lambda: ["lightgbm"])
    booster_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    stack_method: str = "auto"
    calibrate: bool = True
    per_class_bias: bool = False
    swap_augment: bool = False
    swap_average: bool = True
    degenerate_rules: bool | str = False
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
    from features.blocks import make_block

    for name, params in config.features.blocks.items():
        try:
            make_block(name, params or {})
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{config.source}: features.blocks: {err}") from err
    n_jobs = config.features.n_jobs
    if n_jobs is not None and (n_jobs == 0 or n_jobs < -1):
        raise ConfigError(
            f"{config.source}: features.n_jobs must be null or 1 (serial), -1 (one "
            f"worker per core) or an int >= 2; got {n_jobs!r}."
        )
    training = config.training
    if training.n_folds < 2:
        raise ConfigError(
            f"{config.source}: training.n_folds must be >= 2, got {training.n_folds}."
        )
    valid_boosters = ("lightgbm", "xgboost")
    for booster in training.boosters:
        if booster not in valid_boosters:
            raise ConfigError(
                f"{config.source}: unknown booster {booster!r} in training.boosters; "
                f"valid boosters are {list(valid_boosters)}."
            )
    if not training.boosters:
        raise ConfigError(f"{config.source}: training.boosters must not be empty.")
    if training.degenerate_rules not in (True, False, "auto"):
        raise ConfigError(
            f"{config.source}: training.degenerate_rules must be true, false or "
            f"auto, got {training.degenerate_rules!r}."
        )
    if config.tuning.max_rows is not None and config.tuning.max_rows < 100:
        raise ConfigError(
            f"{config.source}: tuning.max_rows must be null (all rows) or >= 100, "
            f"got {config.tuning.max_rows!r}."
        )
    if config.tuning.n_trials < 0:
        raise ConfigError(f"{config.source}: tuning.n_trials must be >= 0.")


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
        Unknown key, wrong type or invalid value; the message names the file.
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
    config = _build(Config, data, "", source)
    config = dataclasses.replace(config, source=source)
    _validate(config)
    return config
