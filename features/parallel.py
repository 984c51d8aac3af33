"""Row-parallel transform, and side-by-side fits, of feature blocks in forked workers.

Most blocks are single-threaded Python that computes each battle's features
from that battle alone, so a batch split into row chunks can run on every core
and be stacked back in order. The workers are forked once per call and inherit
the fitted blocks and the battle table (nothing is pickled on the way in);
each returns its chunk's matrices and the seconds each block took.

The stateful blocks' fits (TF-IDF vocabularies, Word2Vec training) are
single-threaded too, and independent of each other: :func:`fit_blocks` runs
them side by side, one worker each, and hands every fitted state back through
the block's own ``get_state``/``set_state`` (JSON values and numpy arrays).

Forking needs the ``fork`` start method (Linux; not Windows, and not the
default on macOS). Where it is missing, inside a daemonic process, or for
small batches, the blocks run serially in this process: same numbers, slower.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.blocks import FeatureBlock, FeatureMatrix
from features.errors import InvalidParameterError

__all__ = [
    "MIN_ROWS_PER_JOB",
    "effective_jobs",
    "fit_blocks",
    "transform_blocks",
    "usable_cores",
]

MIN_ROWS_PER_JOB = 200
"""Fewer rows per worker than this run serially: a fork round costs ~50 ms."""

_MAX_CHUNK_ROWS = 4000
"""Rows per task for big builds, so results stream back in moderate pieces."""

_work: tuple[Sequence[FeatureBlock], pd.DataFrame] | None = None
"""(blocks, battles) handed to the forked workers by inheritance."""


def effective_jobs(n_jobs: int | None, n_rows: int) -> int:
    """Worker processes to use for ``n_rows`` rows (1 means serial).

    ``None`` and 1 mean serial; -1 means one per usable core; a value above
    the core count is capped to it. Batches too small to pay for the fork
    round, platforms without ``fork`` and daemonic processes get 1.
    """
    if n_jobs is None:
        return 1
    if (
        not isinstance(n_jobs, int)
        or isinstance(n_jobs, bool)
        or n_jobs == 0
        or n_jobs < -1
    ):
        raise InvalidParameterError(
            f"n_jobs must be None, -1 (all cores) or an int >= 1. Got {n_jobs!r}."
        )
    cores = usable_cores()
    jobs = cores if n_jobs < 0 else min(n_jobs, cores)
    jobs = min(jobs, n_rows // MIN_ROWS_PER_JOB)
    if (
        jobs < 2
        or "fork" not in multiprocessing.get_all_start_methods()
        or multiprocessing.current_process().daemon
    ):
        return 1
    return jobs


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), else ``os.cpu_count``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _chunks(n_rows: int, n_jobs: int) -> list[tuple[int, int]]:
    n_chunks = max(n_jobs, math.ceil(n_rows / _MAX_CHUNK_ROWS))
    # Round up to a multiple of the workers so they finish together.
    n_chunks = math.ceil(n_chunks / n_jobs) * n_jobs
    bounds = np.linspace(0, n_rows, n_chunks + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _transform_chunk(
    rows: tuple[int, int],
) -> tuple[list[FeatureMatrix], list[float]]:
    blocks, battles = _work
    chunk = battles.iloc[rows[0] : rows[1]]
    matrices, seconds = [], []
    for block in blocks:
        started = time.perf_counter()
        matrices.append(block.transform(chunk))
        seconds.append(time.perf_counter() - started)
    return matrices, seconds


def _stack(parts: Sequence[FeatureMatrix]) -> FeatureMatrix:
    values = [part.values for part in parts]
    if any(sp.issparse(v) for v in values):
        stacked = sp.vstack([sp.csr_matrix(v) for v in values]).tocsr()
    else:
        stacked = np.concatenate(values, axis=0)
    return FeatureMatrix(stacked, parts[0].columns)


def transform_blocks(
    blocks: Sequence[FeatureBlock],
    battles: pd.DataFrame,
    n_jobs: int | None,
    *,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[list[FeatureMatrix], list[float]]:
    """Each fitted block's output for ``battles``, in row order.

    Parameters
    ----------
    blocks : sequence of FeatureBlock
        Fitted blocks whose ``transform`` treats rows independently.
    battles : DataFrame
        Canonical battle table.
    n_jobs : int or None
        Worker processes (see :func:`effective_jobs`).
    on_chunk : callable, default=None
        Called with the number of rows after each finished chunk (progress).

    Returns
    -------
    matrices : list of FeatureMatrix
        One per block, all rows.
    seconds : list of float
        Per block: its share of the wall time, by the worker time it took.
    """
    jobs = effective_jobs(n_jobs, len(battles))
    started = time.perf_counter()
    if jobs == 1:
        matrices, seconds = [], []
        for block in blocks:
            block_started = time.perf_counter()
            matrices.append(block.transform(battles))
            seconds.append(time.perf_counter() - block_started)
        if on_chunk is not None:
            on_chunk(len(battles))
        return matrices, seconds
    chunks = _chunks(len(battles), jobs)
    parts: list[list[FeatureMatrix]] = [[] for _ in blocks]
    worker_seconds = np.zeros(len(blocks))
    for (start, stop), (matrices, seconds) in zip(
        chunks,
        _forked_imap(_transform_chunk, chunks, jobs, blocks, battles),
        strict=True,
    ):
        for i, matrix in enumerate(matrices):
            parts[i].append(matrix)
        worker_seconds += seconds
        if on_chunk is not None:
            on_chunk(stop - start)
    return [_stack(p) for p in parts], _wall_shares(worker_seconds, started)


def _forked_imap(
    function: Callable[[Any], Any],
    items: Sequence[Any],
    jobs: int,
    blocks: Sequence[FeatureBlock],
    battles: pd.DataFrame,
) -> Iterator[Any]:
    """``function`` over ``items`` in ``jobs`` forked workers, results in order.

    The workers inherit ``(blocks, battles)`` through :data:`_work`, set only
    while the pool runs.
    """
    global _work
    _work = (blocks, battles)
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            yield from pool.imap(function, items)
    finally:
        _work = None


def _wall_shares(worker_seconds: Sequence[float], started: float) -> list[float]:
    """The wall time since ``started``, split in proportion to worker seconds."""
    wall = time.perf_counter() - started
    worker = np.asarray(worker_seconds, dtype=float)
    return (worker / max(worker.sum(), 1e-12) * wall).tolist()


def _fit_one(index: int) -> tuple[tuple[dict, dict[str, np.ndarray]], float]:
    blocks, battles = _work
    started = time.perf_counter()
    blocks[index].fit(battles)
    return blocks[index].get_state(), time.perf_counter() - started


def fit_blocks(
    blocks: Sequence[FeatureBlock], battles: pd.DataFrame, n_jobs: int | None
) -> list[float]:
    """Fit every block on ``battles``, several at once where that pays.

    Stateful row-parallel blocks (two or more, and a batch big enough for
    :func:`effective_jobs`) are fitted in forked workers, one block each, and
    their states set back here; the others are fitted in this process. The
    fitted blocks equal serially fitted ones (their states round-trip exactly).

    Returns
    -------
    list of float
        Per block: its share of the wall time, by the worker time it took.
    """
    side_by_side = [
        i for i, block in enumerate(blocks) if block.stateful and block.row_parallel
    ]
    jobs = min(effective_jobs(n_jobs, len(battles)), len(side_by_side))
    if jobs < 2:
        side_by_side = []
    seconds = [0.0] * len(blocks)
    for i, block in enumerate(blocks):
        if i not in side_by_side:
            started = time.perf_counter()
            block.fit(battles)
            seconds[i] = time.perf_counter() - started
    if not side_by_side:
        return seconds
    started = time.perf_counter()
    results = list(_forked_imap(_fit_one, side_by_side, jobs, blocks, battles))
    shares = _wall_shares([took for _, took in results], started)
    for i, ((state, arrays), _), share in zip(
        side_by_side, results, shares, strict=True
    ):
        blocks[i].set_state(state, arrays)
        seconds[i] = share
    return seconds
