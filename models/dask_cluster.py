"""One way to name, start and reach a Dask cluster, for every distributed part.

``local`` starts a ``distributed.LocalCluster`` of single-threaded worker
processes on this machine (``local:N`` for N of them, default one per usable
core); ``tcp://host:port`` connects to a running scheduler (``dask
scheduler``, with ``dask worker tcp://host:port`` on each machine). The
``--scheduler`` option of ``build_features``/``predict`` and
``training.scheduler`` of the booster engine both use it; dask is imported
only when a cluster is opened.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.errors import InvalidParameterError, UserInputError
from features.parallel import usable_cores

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "CONNECT_TIMEOUT",
    "INSTALL_HINT",
    "SCHEDULER_FORMS",
    "ClusterError",
    "SchedulerSpec",
    "dask_client",
    "environ_kept",
    "is_scheduler",
    "parse_scheduler",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a scheduler, and for its first worker, by default."""

INSTALL_HINT = (
    "install the `distributed` extra: pip install 'arena-preference[distributed]'"
)

SCHEDULER_FORMS = (
    "'local' (a LocalCluster of one single-threaded worker process per core), "
    "'local:N' (N of them) or 'tcp://host:port' (a running `dask scheduler`)"
)
"""The accepted scheduler values, in words (for messages)."""

_LOCAL = re.compile(r"local(?::(\d+))?")
_TCP = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d+)")
_FORMS = "'local', 'local:N' (N >= 1 worker processes) or 'tcp://host:port'"


class ClusterError(UserInputError, ConnectionError):
    """The Dask scheduler cannot be reached, or has no worker, in time."""


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed scheduler value.

    Attributes
    ----------
    text : str
        As given.
    address : str or None
        ``tcp://host:port`` of a running scheduler; None for a local cluster.
    n_workers : int or None
        Worker processes of a local cluster (None: one per usable core).
    """

    text: str
    address: str | None = None
    n_workers: int | None = None

    @property
    def is_local(self) -> bool:
        """Whether this run starts its own cluster."""
        return self.address is None


def parse_scheduler(text: str, *, setting: str = "--scheduler") -> SchedulerSpec:
    """Parse ``local``, ``local:N`` or ``tcp://host:port``.

    ``setting`` names the option or config key in messages.

    Raises
    ------
    InvalidParameterError
        Any other value; the message lists the forms.

    Examples
    --------
    >>> parse_scheduler("local:2").n_workers
    2
    >>> parse_scheduler("tcp://10.0.0.5:8786").address
    'tcp://10.0.0.5:8786'
    """
    local = _LOCAL.fullmatch(text)
    if local:
        n_workers = None if local[1] is None else int(local[1])
        if n_workers is not None and n_workers < 1:
            raise InvalidParameterError(
                f"{setting} {text!r}: a local cluster needs at least 1 worker; "
                f"use {_FORMS}."
            )
        return SchedulerSpec(text, n_workers=n_workers)
    tcp = _TCP.fullmatch(text)
    if tcp and 1 <= int(tcp["port"]) <= 65535:
        return SchedulerSpec(text, address=text)
    raise InvalidParameterError(
        f"{setting} must be {_FORMS}, e.g. tcp://10.0.0.5:8786 for a scheduler "
        f"started with `dask scheduler`. Got {text!r}."
    )


def is_scheduler(value: Any) -> bool:
    """Whether ``value`` names a cluster: ``local``, ``local:N`` or ``tcp://host:port``.

    >>> is_scheduler("local:2"), is_scheduler("tcp://10.0.0.5:8786")
    (True, True)
    >>> is_scheduler("local:0"), is_scheduler("spark://x:7077")
    (False, False)
    """
    if not isinstance(value, str):
        return False
    try:
        parse_scheduler(value)
    except InvalidParameterError:
        return False
    return True


def _restore_worker_heaps(client: Client) -> None:
    """Undo the nanny's ``MALLOC_TRIM_THRESHOLD_`` on every worker (see ``_heap``)."""
    from models._heap import HeapReuse

    client.register_plugin(HeapReuse())


@contextmanager
def environ_kept() -> Iterator[None]:
    """Give this process its environment back after the block.

    Starting a ``LocalCluster`` writes the nanny's settings into the starting
    process's ``os.environ`` (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
    ``OPENBLAS_NUM_THREADS`` = 1, a fixed ``PYTHONHASHSEED``,
    ``MALLOC_TRIM_THRESHOLD_``) and leaves them there, so every process it
    started afterwards ran with one BLAS thread and one hash seed. The
    workers, already started, keep their settings.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def dask_client(
    spec: SchedulerSpec,
    *,
    timeout: float = CONNECT_TIMEOUT,
    remedy: str = "check the host and port, or use --scheduler local",
    timeout_setting: str = "--scheduler-timeout",
) -> Iterator[Client]:
    """A client with at least one worker, open for the ``with`` block.

    A local cluster is started (single-threaded worker processes) and closed
    after the block; a remote scheduler is only connected to. Every worker,
    local or remote, gets glibc's heap thresholds back (``models._heap``: the
    nanny's ``MALLOC_TRIM_THRESHOLD_`` cost 40% CPU per row). ``remedy`` and
    ``timeout_setting`` finish the error messages in the caller's terms.

    Raises
    ------
    ClusterError
        The scheduler cannot be reached, or has no worker, within ``timeout``.
    ImportError
        dask.distributed is not installed (the message names the extra).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise ImportError(
            f"a Dask cluster needs dask.distributed: {INSTALL_HINT}"
        ) from err
    started = time.perf_counter()
    cluster: Any = None
    if spec.is_local:
        with environ_kept():
            cluster = LocalCluster(
                n_workers=spec.n_workers or usable_cores(),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # No dashboard; its HTTP server (health, metrics) on any free
                # port, not 8787, so several runs on one machine do not collide.
                scheduler_kwargs={"dashboard_address": ":0"},
                silence_logs=logging.WARNING,
            )
        client = Client(cluster)
    else:
        try:
            client = Client(spec.address, timeout=timeout)
        except (OSError, TimeoutError) as err:
            raise ClusterError(
                f"could not reach the Dask scheduler at {spec.address!r} within "
                f"{timeout:g} s ({type(err).__name__}: {err}). Start it with `dask "
                f"scheduler` and `dask worker {spec.address}` on each machine, "
                f"{remedy}."
            ) from err
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError as err:
            raise ClusterError(
                f"the Dask scheduler at {client.scheduler.address!r} has no worker "
                f"after {timeout:g} s. Start one with `dask worker "
                f"{client.scheduler.address}`, or raise {timeout_setting}."
            ) from err
        _restore_worker_heaps(client)
        threads = client.nthreads()
        logger.info(
            "dask cluster %s: %d workers, %d threads, ready in %.1f s",
            client.scheduler.address,
            len(threads),
            sum(threads.values()),
            time.perf_counter() - started,
        )
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
