"""Train the fold boosters on a Dask cluster (``training.engine: dask``).

:func:`models.gbdt.train_folds` builds every fold's rows (swap augmentation,
anchor scores, row weights) the same way on either engine and hands them to
:meth:`DaskEngine.fit`, which partitions them across the workers and trains
with ``lightgbm.dask.DaskLGBMClassifier`` or ``xgboost.dask.train``. The
result is the library's native booster, set on the same booster object the
local engine fills, so prediction, stacking, calibration, saving (LightGBM
text, XGBoost JSON) and loading do not know which engine trained it.

What differs from the local engine (measured in the tests and the notes):

- The histogram bins come from the workers' own rows: LightGBM bins each
  feature on the rows of one worker, XGBoost merges the workers' quantile
  sketches. Row subsampling (``bagging_fraction``, ``subsample``) draws per
  worker. The trees, and so the numbers, are close to the local engine's but
  not equal.
- Early stopping: XGBoost's evaluation is global (an allreduce), so
  ``early_stopping_rounds`` works as on one machine. LightGBM's Dask
  interface does not support it (lightgbm-org/LightGBM#3712, #4189): each
  worker evaluates only the validation rows it holds, so workers can stop at
  different rounds and hang. Here every worker gets one full copy of the
  validation rows next to its training part, so every worker computes the
  same log loss and stops at the same round: the round count the local
  engine's rule finds on the whole validation fold.
- Threads: each worker uses its own thread count (``dask worker
  --nthreads``); the thread params of ``booster_params`` are dropped, as the
  Dask interfaces would ignore them.
- Determinism: XGBoost is repeatable on the same cluster. LightGBM's machine
  ranks come from the order of a set inside ``lightgbm.dask``, and the rank
  decides which worker's rows bin which feature, so two runs can differ
  slightly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from models.dask_cluster import (
    CONNECT_TIMEOUT,
    SCHEDULER_FORMS,
    dask_client,
    is_scheduler,
    parse_scheduler,
)
from models.gbdt import THREAD_PARAMS

if TYPE_CHECKING:
    from distributed import Client

    from models.gbdt import EvalSet, LightGBMBooster, Matrix, XGBoostBooster

__all__ = [
    "CONNECT_TIMEOUT",
    "ENGINES",
    "SCHEDULER_FORMS",
    "DaskEngine",
    "is_scheduler",
    "open_engine",
]

logger = logging.getLogger(__name__)

ENGINES = ("local", "dask")
"""Values of ``training.engine``: where the fold boosters train."""


class DaskEngine:
    """Fits boosters on a connected Dask cluster, one row part per worker.

    Use :func:`open_engine` to get one; it owns the client (and the cluster
    for ``local``) and closes them.

    Parameters
    ----------
    client : distributed.Client
        A client connected to a cluster with at least one worker.

    Attributes
    ----------
    workers : list of str
        Worker addresses, sorted: part ``k`` of every fold goes to
        ``workers[k]``, so runs on one cluster place rows alike.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.workers = sorted(client.scheduler_info()["workers"])

    def fit(
        self,
        booster: LightGBMBooster | XGBoostBooster,
        X: Matrix,
        y: NDArray,
        weight: NDArray | None = None,
        eval_set: EvalSet | None = None,
        init_score: NDArray | None = None,
    ) -> LightGBMBooster | XGBoostBooster:
        """Train ``booster`` on the cluster; the arguments of its own ``fit``.

        Sets ``booster.model_`` (a native ``lightgbm.Booster`` or
        ``xgboost.Booster``) and ``booster.best_iteration_`` as the local
        ``fit`` does, and returns ``booster``.
        """
        started = time.perf_counter()
        n_parts = max(1, min(len(self.workers), X.shape[0]))
        fit = _FITTERS[booster.library]
        fit(self, booster, n_parts, X, y, weight, eval_set, init_score)
        logger.debug(
            "%s on dask: %s rows in %d parts, best iteration %d, %.1f s",
            booster.library,
            f"{X.shape[0]:,}",
            n_parts,
            booster.best_iteration_,
            time.perf_counter() - started,
        )
        return booster

    def _parts(self, values: Any, n_parts: int) -> Any:
        """``values`` as a dask array of ``n_parts`` row blocks, block k on
        ``workers[k]``, the blocks scattered straight from this process."""
        bounds = np.linspace(0, values.shape[0], n_parts + 1).astype(int)
        blocks = [
            values[start:stop]
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return self._on_workers(blocks)

    def _copies(self, values: Any, n_parts: int) -> Any:
        """One full copy of ``values`` per part, copy k on ``workers[k]``."""
        return self._on_workers([values] * n_parts)

    def _on_workers(self, blocks: list[Any]) -> Any:
        import dask.array as da

        arrays = []
        for block, worker in zip(blocks, self.workers, strict=False):
            # hash=False: equal blocks (the validation copies) must stay
            # distinct keys, each on its own worker.
            future = self.client.scatter(block, workers=[worker], hash=False)
            arrays.append(
                da.from_delayed(
                    future, shape=block.shape, dtype=block.dtype, meta=block[:0]
                )
            )
        return da.concatenate(arrays, axis=0)


def _library_params(booster: LightGBMBooster | XGBoostBooster) -> dict[str, Any]:
    """The booster's own params less thread counts, which the workers set."""
    params = booster._library_params()
    return {name: value for name, value in params.items() if name not in THREAD_PARAMS}


def _fit_lightgbm(
    engine: DaskEngine,
    booster: LightGBMBooster,
    n_parts: int,
    X: Matrix,
    y: NDArray,
    weight: NDArray | None,
    eval_set: EvalSet | None,
    init_score: NDArray | None,
) -> None:
    import lightgbm as lgb
    from lightgbm.dask import DaskLGBMClassifier

    _route_lightgbm_messages(lgb)
    missing = sorted(set(range(3)) - set(np.unique(y).tolist()))
    if missing:
        # DaskLGBMClassifier encodes the labels it sees: a missing class would
        # shift the others and change num_class.
        raise ValueError(
            f"lightgbm on dask: a fold's training rows have no label {missing!r} "
            "(0 = A, 1 = B, 2 = tie); the sklearn-style Dask classifier needs all "
            "three. Use fewer folds, more rows, or training.engine: local."
        )
    params = _library_params(booster)
    model = DaskLGBMClassifier(
        client=engine.client, n_estimators=booster.num_boost_round, **params
    )
    fit_args: dict[str, Any] = {
        "sample_weight": None if weight is None else engine._parts(weight, n_parts),
        "init_score": None
        if init_score is None
        else engine._parts(init_score, n_parts),
    }
    if eval_set is not None:
        # One whole copy of the validation rows per training part (part k of
        # the eval set goes with training part k): every worker then sees the
        # same log loss and early stopping stops them all at the same round.
        X_valid, y_valid = eval_set[0], eval_set[1]
        init_valid = eval_set[2] if len(eval_set) > 2 else None
        w_valid = eval_set[3] if len(eval_set) > 3 else None
        fit_args["eval_X"] = (engine._copies(X_valid, n_parts),)
        fit_args["eval_y"] = (engine._copies(y_valid, n_parts),)
        if init_valid is not None:
            fit_args["eval_init_score"] = [engine._copies(init_valid, n_parts)]
        if w_valid is not None:
            fit_args["eval_sample_weight"] = [engine._copies(w_valid, n_parts)]
        fit_args["callbacks"] = [
            lgb.early_stopping(booster.early_stopping_rounds, verbose=False)
        ]
    model.fit(engine._parts(X, n_parts), engine._parts(y, n_parts), **fit_args)
    booster.model_ = model.booster_
    booster.best_iteration_ = int(
        booster.model_.best_iteration or booster.model_.num_trees() // 3
    )


def _fit_xgboost(
    engine: DaskEngine,
    booster: XGBoostBooster,
    n_parts: int,
    X: Matrix,
    y: NDArray,
    weight: NDArray | None,
    eval_set: EvalSet | None,
    init_score: NDArray | None,
) -> None:
    import xgboost as xgb
    from xgboost import dask as dxgb

    def matrix(
        values: Any, labels: NDArray, w: NDArray | None, init: NDArray | None
    ) -> Any:
        return dxgb.DaskDMatrix(
            engine.client,
            engine._parts(values, n_parts),
            engine._parts(labels, n_parts),
            weight=None if w is None else engine._parts(w, n_parts),
            base_margin=None if init is None else engine._parts(init, n_parts),
        )

    evals, stopping = [], None
    if eval_set is not None:
        init_valid = eval_set[2] if len(eval_set) > 2 else None
        w_valid = eval_set[3] if len(eval_set) > 3 else None
        # XGBoost reduces the metric over workers: plain parts suffice.
        evals = [(matrix(eval_set[0], eval_set[1], w_valid, init_valid), "valid")]
        stopping = booster.early_stopping_rounds
    # xgboost.dask applies the client's global config on the workers.
    with xgb.config_context(verbosity=0):
        output = dxgb.train(
            engine.client,
            _library_params(booster),
            matrix(X, y, weight, init_score),
            num_boost_round=booster.num_boost_round,
            evals=evals,
            early_stopping_rounds=stopping,
            verbose_eval=False,
        )
    booster.model_ = output["booster"]
    best = getattr(booster.model_, "best_iteration", None)
    booster.best_iteration_ = int(
        best + 1 if best is not None else booster.model_.num_boosted_rounds()
    )


_FITTERS = {"lightgbm": _fit_lightgbm, "xgboost": _fit_xgboost}
"""Booster library -> its Dask training function."""


class _DropThreadNotice(logging.Filter):
    """Drops lightgbm.dask's "Parameter n_jobs will be ignored." notice.

    The sklearn wrapper always carries ``n_jobs``, so the notice would come
    with every fit; the workers' thread counts are documented instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "n_jobs will be ignored" not in record.getMessage()


_LIGHTGBM_LOGGER = logging.getLogger("lightgbm")
_LIGHTGBM_LOGGER.addFilter(_DropThreadNotice())


def _route_lightgbm_messages(lgb: Any) -> None:
    # lightgbm.dask prints its progress ("Finding random open ports for
    # workers") through a print-based logger; send it to logging at DEBUG.
    lgb.register_logger(_LIGHTGBM_LOGGER, info_method_name="debug")


@contextmanager
def open_engine(
    engine: str,
    scheduler: str | None = None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Iterator[DaskEngine | None]:
    """The engine to train boosters with, open for the ``with`` block.

    Parameters
    ----------
    engine : {"local", "dask"}
        - "local": None (the boosters train in this process);
        - "dask": a :class:`DaskEngine` on the cluster ``scheduler`` names.
    scheduler : str, default=None
        Only with "dask":

        - "local" or None: a LocalCluster of one single-threaded worker
          process per usable core, closed after the block;
        - "local:N": the same with N workers;
        - "tcp://host:port": a running scheduler to connect to.
    connect_timeout : float, default=10.0
        Seconds to wait for the scheduler and its first worker.

    Raises
    ------
    ValueError
        An unknown engine or a scheduler in none of the forms above.
    ConnectionError
        The scheduler cannot be reached, or it has no worker, in time.
    ImportError
        dask or distributed is not installed (the `distributed` extra).

    Examples
    --------
    >>> with open_engine("local") as engine:
    ...     print(engine)
    None
    >>> with open_engine("dask", "local:2") as engine:  # doctest: +SKIP
    ...     len(engine.workers)
    2
    """
    if engine not in ENGINES:
        raise ValueError(
            f"unknown booster engine {engine!r}; valid engines are {list(ENGINES)}."
        )
    if engine == "local":
        yield None
        return
    spec = parse_scheduler(scheduler or "local", setting="training.scheduler")
    with dask_client(
        spec,
        timeout=connect_timeout,
        remedy="fix training.scheduler, or use 'local:N' for a cluster on this machine",
        timeout_setting="the connect timeout",
    ) as client:
        logger.info(
            "dask engine: %d workers at %s",
            len(client.nthreads()),
            client.scheduler.address,
        )
        yield DaskEngine(client)
