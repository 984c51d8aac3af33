"""``--scheduler`` and its companion options for ``build_features`` and ``predict``.

The cluster itself (the forms, starting a LocalCluster, connecting, the
errors) is :mod:`models.dask_cluster`, shared with the booster engine; this
module adds the command-line options and their checks.
"""

from __future__ import annotations

import argparse

from features.errors import InvalidParameterError
from features.partitions import DEFAULT_PARTITION_ROWS
from models.dask_cluster import (
    CONNECT_TIMEOUT,
    INSTALL_HINT,
    ClusterError,
    SchedulerSpec,
    dask_client,
    parse_scheduler,
)

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
