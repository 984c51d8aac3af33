"""One BLAS thread for the small solvers, so their results never depend on threads.

The stacker, the temperature and the style anchor minimise sums over every
training row (``X.T @ residual``, ``weights @ log_proba``). With several
threads OpenBLAS splits such a sum between them and adds the partial sums in
another order, so the solution moves in its last bits with the thread count,
and the thread count is not always the process's own choice (a Dask
``LocalCluster`` exports ``OPENBLAS_NUM_THREADS=1`` to every later child
process). These problems have a handful of parameters: one thread costs
nothing and makes them bit-identical everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

__all__ = ["single_blas_thread"]

_controllers: list[ThreadpoolController] = []


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run the block with every loaded BLAS library on one thread.

    The libraries are looked up once, on first use (``threadpool_limits``
    scans them on every call, a few milliseconds each); ``models`` has loaded
    numpy's and scipy's BLAS by then.

    Notes
    -----
    OpenBLAS's thread count is process-wide, and threadpoolctl lets one Python
    thread at a time change it: a block entered in another thread while that
    one holds a limit runs under that thread's limit.

    Examples
    --------
    >>> import numpy as np
    >>> with single_blas_thread():
    ...     total = np.ones(3) @ np.ones(3)
    >>> float(total)
    3.0
    """
    if not _controllers:
        _controllers.append(ThreadpoolController())
    # The limiter's own context manager, so that leaving the block also hands
    # the control of OpenBLAS back to whichever thread limits it next.
    with _controllers[0].limit(limits=1, user_api="blas"):
        yield
