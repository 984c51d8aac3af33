"""The package shortens OpenMP spin-waits before libgomp loads, keeping a user value."""

import os
import subprocess
import sys

import pytest

from features._openmp import OPENMP_SPIN_COUNT


def _spin_count_after_import(module: str, env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if env_value is not None:
        env["GOMP_SPINCOUNT"] = env_value
    code = (
        f"import {module}, os, lightgbm, xgboost; "
        "print(os.environ.get('GOMP_SPINCOUNT'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize("module", ["features", "models"])
def test_importing_the_package_sets_a_short_spin_count(module):
    assert _spin_count_after_import(module, None) == OPENMP_SPIN_COUNT


def test_a_spin_count_the_user_set_is_kept():
    assert _spin_count_after_import("models", "250000") == "250000"
