"""The command-line entry points and the helpers they share.

Each module is one command (``python -m pipelines.train_gbdt`` and so on).
The names below can be imported from here (``from pipelines import
load_config``). Each loads on first use (PEP 562), so starting a command, or
``--help``, imports only what that command needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DEFAULT_CONFIG": "pipelines.config",
    "Config": "pipelines.config",
    "build_report": "pipelines.report",
    "calibration_table": "pipelines.report",
    "feature_importance": "pipelines.report",
    "load_config": "pipelines.config",
    "make_demo_battles": "pipelines.make_demo_data",
    "per_source_table": "pipelines.report",
    "read_feature_parts": "pipelines.distributed.parts",
    "read_parts": "pipelines.distributed.parts",
    "swap_consistency": "pipelines.report",
    "write_csv_atomic": "pipelines._files",
    "write_demo_data": "pipelines.make_demo_data",
    "write_report": "pipelines.report",
    "write_submission": "pipelines.predict",
}
"""Public name -> the module that defines it."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
