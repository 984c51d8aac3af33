"""What every command-line entry point shares: options, logging, user errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from features.battles import read_battles, repair_report
from features.errors import UserInputError
from pipelines.config import Config, load_config

logger = logging.getLogger(__name__)

USER_ERRORS = (UserInputError, OSError)
"""Exceptions reported as one clear line (exit code 2) instead of a traceback.

``UserInputError`` (``features.errors``) is what the project raises for bad
data files, configs, parameters and model directories, with a message saying
what to fix. ``OSError`` is what the operating system raises for the paths a
user names: a missing file or model directory, a directory given for a file,
no permission, a full disk; its message names the path, and no project type
could say more. Anything else, a bare ``ValueError``, ``TypeError`` or
``KeyError`` included, is a bug: it keeps its traceback (exit code 1) so that
it can be reported.
"""


def base_parser(description: str) -> argparse.ArgumentParser:
    """Parser with the options every pipeline takes."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML profile (configs/default.yaml when omitted; configs/lite.yaml "
        "fits twice as fast; configs/embeddings.yaml adds the MiniLM block)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="battles: Kaggle train/test CSV (also .csv.gz, or a .zip such as the "
        "Kaggle download, with ARCHIVE.zip::test.csv naming the member), parquet, "
        "JSON Lines, arena dump or chosen/rejected pairs (default: the synthetic "
        "demo set, written on first use to artifacts/demo/train.csv)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key (repeatable), e.g. --set training.n_folds=3",
    )
    add_verbosity_options(parser, quiet_help="warnings only, no progress bars")
    return parser


def add_verbosity_options(parser: argparse.ArgumentParser, *, quiet_help: str) -> None:
    """The mutually exclusive ``--verbose`` / ``--quiet`` pair every command takes."""
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("--quiet", action="store_true", help=quiet_help)


def setup_logging(args: argparse.Namespace) -> None:
    """Configure the root logger from --verbose/--quiet (entry points only)."""
    level = (
        logging.DEBUG
        if args.verbose
        else logging.WARNING
        if args.quiet
        else logging.INFO
    )
    if not args.verbose:
        # Third-party INFO lines (per-epoch gensim events...) drown our own.
        for noisy in (
            "gensim",
            "sentence_transformers",
            "optuna",
            "onnxruntime",
            "distributed",  # a LocalCluster's start and stop, line by line
        ):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


DEMO_DATA = Path("artifacts/demo/train.csv")


def resolve_data(path: Path | None) -> Path:
    """The battle file to use: ``path``, or the demo set (written when absent)."""
    if path is not None:
        return path
    if not DEMO_DATA.exists():
        from pipelines.make_demo_data import write_demo_data

        logger.info("no --data given: writing the synthetic demo set to %s", DEMO_DATA)
        write_demo_data(DEMO_DATA)
    return DEMO_DATA


def read_data(
    args: argparse.Namespace, *, labelled: bool | None
) -> tuple[pd.DataFrame, Path]:
    """Battles of ``--data`` (or the demo set); prints the repair report."""
    data_path = resolve_data(args.data)
    battles = read_battles(data_path, labelled=labelled)
    report = repair_report(battles)
    print(f"{data_path}: {report}", file=sys.stderr)
    return battles, data_path


def load_inputs(
    args: argparse.Namespace, *, labelled: bool | None
) -> tuple[Config, pd.DataFrame, Path]:
    """Config and battles from the common options; prints the repair report."""
    config = load_config(args.config, args.overrides)
    battles, data_path = read_data(args, labelled=labelled)
    return config, battles, data_path


def run_cli(
    main: Callable[[argparse.Namespace], int],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
) -> int:
    """Parse, set up logging, run; user errors become one line and exit code 2."""
    args = parser.parse_args(argv)
    setup_logging(args)
    try:
        return main(args)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; finished cache entries and trials are kept.", file=sys.stderr
        )
        return 130


__all__ = [
    "Config",
    "DEMO_DATA",
    "add_verbosity_options",
    "base_parser",
    "load_inputs",
    "read_data",
    "resolve_data",
    "run_cli",
    "setup_logging",
]
