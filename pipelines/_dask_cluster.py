"""``--scheduler``: start a local Dask cluster or connect to one, with plain errors.

``local`` starts a ``distributed.LocalCluster`` of single-threaded worker
processes on this machine (``local:N`` for N of them, default one per usable
core); ``tcp://host:port`` connects to a running scheduler (``dask
scheduler``, with ``dask worker tcp://host:port`` on each machine). The
options are shared by ``build_features`` and ``predict``; dask is imported
only when a cluster is asked for.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.errors import InvalidParameterError, UserInputError
from features.partitions import DEFAULT_PARTITION_ROWS

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "CONNECT_TIMEOUT",
    "INSTALL_HINT",
    "ClusterError",
    "SchedulerSpec",
    "add_scheduler_options",
    "check_scheduler_options",
    "dask_client",
    "parse_scheduler",
    "positive_int",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a scheduler, and for its first worker, by default."""

INSTALL_HINT = (
    "install the `distributed` extra: pip install 'arena-preference[distributed]'"
)

_LOCAL = re.compile(r"local(?::(\d+))?")
_TCP = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d+)")
_FORMS = "'local', 'local:N' (N >= 1 worker processes) or 'tcp://host:port'"


class ClusterError(UserInputError, ConnectionError):
    """The Dask scheduler cannot be reached, or has no worker, in time."""


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed ``--scheduler`` value.

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


def parse_scheduler(text: str) -> SchedulerSpec:
    """Parse ``local``, ``local:N`` or ``tcp://host:port``.

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
                f"--scheduler {text!r}: a local cluster needs at least 1 worker; "
                f"use {_FORMS}."
            )
        return SchedulerSpec(text, n_workers=n_workers)
    tcp = _TCP.fullmatch(text)
    if tcp and 1 <= int(tcp["port"]) <= 65535:
        return SchedulerSpec(text, address=text)
    raise InvalidParameterError(
        f"--scheduler must be {_FORMS}, e.g. tcp://10.0.0.5:8786 for a scheduler "
        f"started with `dask scheduler`. Got {text!r}."
    )


def _scheduler_type(text: str) -> SchedulerSpec:
    """argparse type of ``--scheduler``."""
    try:
        return parse_scheduler(text)
    except InvalidParameterError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--scheduler ")) from err


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``_`` separators allowed)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds > 0; got {text!r}"
        )
    return value


def add_scheduler_options(parser: argparse.ArgumentParser, *, output: str) -> None:
    """Add ``--scheduler``, ``--partition-rows`` and ``--scheduler-timeout``.

    ``output`` says in the help what a distributed run writes.
    """
    parser.add_argument(
        "--scheduler",
        type=_scheduler_type,
        default=None,
        metavar="local[:N]|tcp://HOST:PORT",
        help="run the row-wise work per partition on a dask.distributed cluster: "
        "'local' starts N single-threaded worker processes here (default: one per "
        "core), tcp://host:port joins a running `dask scheduler`; --data may then "
        f"be a directory or glob of files; {output} (default: no cluster, one "
        "process)",
    )
    parser.add_argument(
        "--partition-rows",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --scheduler: most rows per partition; a CSV or parquet file "
        f"is split by rows (default: {DEFAULT_PARTITION_ROWS:,})",
    )
    parser.add_argument(
        "--scheduler-timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="with --scheduler: wait this long for the scheduler and its first "
        f"worker (default: {CONNECT_TIMEOUT:g})",
    )


def check_scheduler_options(args: argparse.Namespace, *others: str) -> None:
    """Refuse the cluster options (and ``others``) when ``--scheduler`` is not given.

    Raises
    ------
    InvalidParameterError
        Names the options given without ``--scheduler``.
    """
    if args.scheduler is not None:
        return
    options = ("--partition-rows", "--scheduler-timeout", *others)
    given = [
        option
        for option in options
        if getattr(args, option.removeprefix("--").replace("-", "_")) is not None
    ]
    if given:
        raise InvalidParameterError(
            f"{' and '.join(given)} only apply with --scheduler. Add --scheduler "
            "local (or tcp://host:port), or drop them."
        )


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def dask_client(
    spec: SchedulerSpec, *, timeout: float = CONNECT_TIMEOUT
) -> Iterator[Client]:
    """A client with at least one worker, open for the ``with`` block.

    A local cluster is started (single-threaded worker processes) and closed
    after the block; a remote scheduler is only connected to.

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
            f"--scheduler needs dask.distributed: {INSTALL_HINT}"
        ) from err
    started = time.perf_counter()
    cluster: Any = None
    if spec.is_local:
        n_workers = spec.n_workers or _usable_cores()
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # No dashboard; its HTTP server (health, metrics) on any free port,
            # not 8787, so several runs on one machine do not collide.
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
                f"scheduler` and `dask worker {spec.address}` on each machine, check "
                "the host and port, or use --scheduler local."
            ) from err
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError as err:
            raise ClusterError(
                f"the Dask scheduler at {client.scheduler.address!r} has no worker "
                f"after {timeout:g} s. Start one with `dask worker "
                f"{client.scheduler.address}`, or raise --scheduler-timeout."
            ) from err
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
