"""Micro-batching: concurrent requests share one ``predict_proba`` call.

A model call has a fixed cost (feature blocks, every fold booster on both A/B
orders) that dominates small batches, so one call on 128 rows costs far less
than eight calls on 16. The batcher collects the requests that arrive within a
short window (or that queued up while the previous call ran), up to a row
budget, predicts them in one call on its own thread and hands each request its
rows. The model is only ever used from that one thread.

The window closes as soon as every client of the previous call is back: those
it answered plus those that queued while it ran. A lone client's request goes
at once (nothing to wait for). Under load, a call waits (up to the window) for
the clients the last call answered rather than going with whoever queued
meanwhile: otherwise the clients split into groups that alternate on the
model, each call half as large, and a call on 64 battles costs far less than
two on 32.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.battles import TEXT_COLUMNS

__all__ = ["BatchResult", "BatcherStopped", "MicroBatcher"]

logger = logging.getLogger(__name__)

PredictFunction = Callable[[pd.DataFrame, Any], NDArray[np.float64]]
ExplainFunction = Callable[[pd.DataFrame, int], pd.DataFrame]


class BatcherStopped(RuntimeError):
    """The batcher is not running (not started yet, or shutting down)."""


@dataclass
class BatchResult:
    """What one request gets back: its probabilities and explanations."""

    proba: NDArray[np.float64]
    explanation: pd.DataFrame | None = None
    batch_rows: int = 0


@dataclass
class _Job:
    battles: pd.DataFrame
    class_prior: tuple[float, float, float] | None
    explain: int | None
    future: asyncio.Future


class MicroBatcher:
    """Collect concurrent prediction requests into shared model calls.

    Parameters
    ----------
    predict : callable
        ``predict(battles, class_prior) -> ndarray (n, 3)``; called on the
        batcher's thread only.
    explain : callable
        ``explain(battles, top) -> DataFrame`` (see
        :meth:`models.PreferenceModel.explain`); same thread.
    max_rows : int
        Rows per model call; a request is never split, so one larger request
        runs alone.
    max_wait_s : float
        Longest wait of a batch, from when it starts collecting, for the
        clients of the previous call; it ends early once they are all in.
    on_batch : callable, default=None
        ``on_batch(n_rows, seconds)`` after each model call (metrics).
    """

    def __init__(
        self,
        predict: PredictFunction,
        explain: ExplainFunction,
        *,
        max_rows: int,
        max_wait_s: float,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.predict = predict
        self.explain = explain
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._carry: _Job | None = None
        self._stopping = False
        self._clients = 0  # requests answered by the last call + queued during it

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the collecting task and the model thread."""
        self._queue = asyncio.Queue()
        self._stopping = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="predict")
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Finish every queued request, then stop (graceful shutdown)."""
        if self._task is None or self._queue is None:
            return
        self._stopping = True
        await self._queue.put(None)
        with contextlib.suppress(Exception):  # _run logged it when it happened
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = None

    async def submit(
        self,
        battles: pd.DataFrame,
        *,
        class_prior: tuple[float, float, float] | None = None,
        explain: int | None = None,
    ) -> BatchResult:
        """Probabilities of ``battles`` (in order), predicted in a shared batch."""
        if not self.running or self._stopping or self._queue is None:
            raise BatcherStopped(
                "the micro-batcher is not running (starting or stopping)"
            )
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(battles, class_prior, explain, future))
        return await future

    # ------------------------------------------------------------ internals
    async def _next_batch(self) -> tuple[list[_Job], bool]:
        """The jobs of the next model call, and whether to stop afterwards."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first = self._carry or await self._queue.get()
        self._carry = None
        if first is None:
            return [], True
        jobs, rows = [first], len(first.battles)
        deadline = loop.time() + self.max_wait_s
        while rows < self.max_rows:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                # Every client of the last call is back: waiting longer only
                # adds latency.
                if remaining <= 0 or len(jobs) >= self._clients:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if job is None:
                return jobs, True
            if rows + len(job.battles) > self.max_rows:
                self._carry = job
                break
            jobs.append(job)
            rows += len(job.battles)
        return jobs, False

    def _waiting(self) -> int:
        """Requests queued for the next call (a stop marker counts as one)."""
        assert self._queue is not None
        return self._queue.qsize() + (self._carry is not None)

    async def _run(self) -> None:
        try:
            await self._serve_queue()
        except BaseException as err:
            # A bug (or cancellation) in the loop itself: no request may hang.
            if not isinstance(err, asyncio.CancelledError):
                logger.exception("the micro-batcher stopped")
            self._stopping = True
            self._fail_waiting(_failure())
            raise

    def _fail_waiting(self, error: Exception) -> None:
        assert self._queue is not None
        waiting = [self._carry] if self._carry is not None else []
        self._carry = None
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for job in waiting:
            if job is not None and not job.future.done():
                job.future.set_exception(error)

    async def _serve_queue(self) -> None:
        assert self._queue is not None
        while True:
            jobs, stop = await self._next_batch()
            await self._dispatch(jobs)
            if stop:
                break
        # Requests queued behind the stop marker still get their answers.
        leftovers = []
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                leftovers.append(job)
        if leftovers:
            await self._dispatch(leftovers)

    async def _dispatch(self, jobs: Sequence[_Job]) -> None:
        jobs = [job for job in jobs if not job.future.done()]
        if not jobs:
            self._clients = self._waiting()
            return
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(
                self._executor, self._predict_jobs, jobs
            )
        except Exception as err:  # a bug: every job of the call learns of it
            results = [err] * len(jobs)
        # The clients answered now come back; those that queued meanwhile wait.
        self._clients = len(jobs) + self._waiting()
        for job, result in zip(jobs, results, strict=True):
            if job.future.done():  # the client went away
                continue
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _predict_jobs(self, jobs: Sequence[_Job]) -> list[BatchResult | Exception]:
        """One model call per class prior among ``jobs`` (model thread)."""
        results: list[BatchResult | Exception | None] = [None] * len(jobs)
        groups: dict[Any, list[int]] = {}
        for position, job in enumerate(jobs):
            groups.setdefault(job.class_prior, []).append(position)
        for prior, positions in groups.items():
            members = [jobs[p] for p in positions]
            try:
                probas = self._predict_together(members, prior)
            except Exception:
                if len(members) == 1:
                    logger.exception("predict_proba failed on a request")
                    results[positions[0]] = _failure()
                    continue
                # Find the request that fails; the others still get answers.
                probas = []
                for job in members:
                    try:
                        probas.extend(self._predict_together([job], prior))
                    except Exception:
                        logger.exception("predict_proba failed on a request")
                        probas.append(None)
            n_rows = sum(len(job.battles) for job in members)
            for position, job, proba in zip(positions, members, probas, strict=True):
                if proba is None:
                    results[position] = _failure()
                    continue
                result = BatchResult(proba, batch_rows=n_rows)
                if job.explain:
                    try:
                        result.explanation = self.explain(job.battles, job.explain)
                    except Exception:
                        logger.exception("explain failed on a request")
                        results[position] = _failure()
                        continue
                results[position] = result
        return results  # type: ignore[return-value]

    def _predict_together(
        self, jobs: Sequence[_Job], prior: Any
    ) -> list[NDArray[np.float64]]:
        started = time.perf_counter()
        if len(jobs) == 1:
            table = jobs[0].battles
        else:
            # Ids need only be unique within a request: number the rows instead.
            table = pd.concat(
                [job.battles[list(TEXT_COLUMNS)] for job in jobs], ignore_index=True
            )
            table.insert(0, "id", [str(i) for i in range(len(table))])
        proba = self.predict(table, prior)
        if self.on_batch is not None:
            self.on_batch(len(table), time.perf_counter() - started)
        bounds = np.cumsum([0] + [len(job.battles) for job in jobs])
        return [
            proba[start:stop]
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
        ]


def _failure() -> Exception:
    return RuntimeError("the model failed on this request; see the server log")
