"""Short OpenMP spin-waits, set before any OpenMP library loads.

LightGBM links the system ``libgomp`` and XGBoost (like scikit-learn) ships
its own copy, so a prediction that calls both runs two OpenMP thread pools.
After each parallel region libgomp's idle threads spin for a while
(``GOMP_SPINCOUNT``, default 300,000 iterations) before sleeping; the other
pool's threads then fight them for the cores. On 2 cores that made the lite
booster stage 4x slower at batch 1 (8.0 ms against 1.9 ms with 10,000 spins)
and about 25% slower at batch 1,000 (BENCHMARKS.md, speed section). libgomp
reads the variable once, when it loads, so importing this module sets it:
``features`` and ``models`` import it before anything else. A value the user
set is kept; a process that loaded libgomp before importing the package keeps
the default.
"""

from __future__ import annotations

import os

__all__ = ["OPENMP_SPIN_COUNT"]

OPENMP_SPIN_COUNT = "10000"
"""Spin iterations before an idle OpenMP thread sleeps (a few microseconds)."""

os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)
