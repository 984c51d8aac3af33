"""Predict with a trained model and write a submission in the Kaggle layout.

    python -m pipelines.predict --model artifacts/model --data test.csv \
        --out submission.csv

The output has ``id, winner_model_a, winner_model_b, winner_tie``; each row's
probabilities sum to 1. It is written to a temporary file and renamed, so an
interrupted run leaves no partial submission.

With ``--scheduler`` the partitions of ``--data`` are predicted on a Dask
cluster (:mod:`pipelines.distributed.rows`) into parquet parts: ``--out NAME.csv``
keeps them in ``NAME.parts/`` and joins them into the CSV at the end; any
other ``--out`` is the parts directory alone. A killed run resumes.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features.battles import CLASSES, battle_ids
from features.errors import InvalidParameterError
from models import PreferenceModel
from pipelines._cli import base_parser, read_data, resolve_data, run_cli
from pipelines._files import write_csv_atomic
from pipelines.config import load_config
from pipelines.distributed.cluster import add_scheduler_options, check_scheduler_options

__all__ = ["main", "write_submission"]


def write_submission(ids: Sequence[object], proba: np.ndarray, path: Path) -> None:
    """Write ``id`` + the three class probabilities as CSV, atomically.

    Ids are written as :func:`features.battles.battle_ids` gives them: an
    integral float id such as ``2299425.0`` as the integer ``2299425``.
    """
    frame = pd.DataFrame(proba, columns=list(CLASSES))
    frame.insert(0, "id", battle_ids(ids).tolist())
    write_csv_atomic(frame, path)


def _class_prior(text: str) -> list[float]:
    """``--class-prior A,B,TIE``: three positive numbers (argparse type)."""
    try:
        prior = [float(value) for value in text.split(",")]
    except ValueError:
        prior = []
    if len(prior) != 3 or not all(math.isfinite(p) and p > 0 for p in prior):
        raise argparse.ArgumentTypeError(
            f"must be three positive numbers A,B,TIE such as 0.45,0.45,0.10; got "
            f"{text!r}"
        )
    return prior


def _parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=Path("artifacts/model"), help="model directory"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("artifacts/predictions.csv"),
        help="submission CSV; with --scheduler, NAME.csv also keeps the parquet "
        "parts in NAME.parts/, and a path without .csv is the parts directory alone",
    )
    parser.add_argument(
        "--class-prior",
        type=_class_prior,
        default=None,
        metavar="A,B,TIE",
        help="shift predictions to this class prior, e.g. 0.45,0.45,0.10 "
        "(default: the model's own)",
    )
    parser.add_argument(
        "--fit-prior",
        action="store_true",
        help="estimate the tie share of --data by black-box shift estimation "
        "(no labels needed) and shift predictions to it",
    )
    add_scheduler_options(
        parser,
        output="predictions go to parquet parts (see --out), and a rerun resumes",
    )
    return parser


def _main_on_cluster(args: argparse.Namespace, model: PreferenceModel) -> int:
    from features.partitions import DEFAULT_PARTITION_ROWS, plan_partitions
    from pipelines.distributed.cluster import CONNECT_TIMEOUT, dask_client
    from pipelines.distributed.rows import predict_on_cluster, write_parts_csv

    if args.fit_prior:
        raise InvalidParameterError(
            "--fit-prior estimates one prior from every battle in one process; it "
            "does not run with --scheduler. Estimate it on a sample without "
            "--scheduler and pass that prior as --class-prior A,B,TIE."
        )
    data_path = resolve_data(args.data)
    partitions = plan_partitions(
        data_path, args.partition_rows or DEFAULT_PARTITION_ROWS
    )
    out = Path(args.out)
    csv = out if out.suffix.lower() == ".csv" else None
    parts_dir = out.with_suffix(".parts") if csv is not None else out
    timeout = args.scheduler_timeout or CONNECT_TIMEOUT
    with dask_client(args.scheduler, timeout=timeout) as client:
        summary = predict_on_cluster(
            client,
            partitions,
            args.model,
            out_dir=parts_dir,
            class_prior=args.class_prior,
            verbose=model.verbose,
        )
    if csv is not None:
        write_parts_csv(summary, csv)
    print(f"{data_path}: {summary.report}", file=sys.stderr)
    written = f"{csv} (parts: {parts_dir})" if csv is not None else f"{parts_dir}"
    print(
        f"wrote {summary.n_rows:,} predictions to {written} in "
        f"{len(summary.records)} partitions ({summary.computed} computed, "
        f"{summary.reused} reused)"
    )
    return 0


def _main(args: argparse.Namespace) -> int:
    check_scheduler_options(args)
    load_config(args.config, args.overrides)  # --config and --set are checked too
    # The model before the data: a wrong --model fails at once, not after the
    # whole data file has been read and repaired.
    model = PreferenceModel.load(args.model)
    model.verbose = not args.quiet
    if args.scheduler is not None:
        return _main_on_cluster(args, model)
    battles, _ = read_data(args, labelled=False)
    if args.fit_prior:
        model.fit_prior(battles)
    proba = model.predict_proba(battles, class_prior=args.class_prior)
    write_submission(battles["id"], proba, args.out)
    print(f"wrote {len(proba):,} predictions to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.predict``."""
    return run_cli(_main, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
