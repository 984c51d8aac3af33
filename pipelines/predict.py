"""Predict with a trained model and write a submission in the Kaggle layout.

    python -m pipelines.predict --model artifacts/model --data test.csv \
        --out submission.csv

The output has ``id, winner_model_a, winner_model_b, winner_tie``; each row's
probabilities sum to 1. It is written to a temporary file and renamed, so an
interrupted run leaves no partial submission.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features.battles import CLASSES
from models import PreferenceModel
from pipelines._cli import base_parser, load_inputs, run_cli
from pipelines._files import write_csv_atomic

__all__ = ["main", "write_submission"]


def write_submission(ids: Sequence[str], proba: np.ndarray, path: Path) -> None:
    """Write ``id`` + the three class probabilities as CSV, atomically."""
    frame = pd.DataFrame(proba, columns=list(CLASSES))
    frame.insert(0, "id", list(ids))
    write_csv_atomic(frame, path)


def _parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=Path("artifacts/model"), help="model directory"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("artifacts/predictions.csv"),
        help="submission CSV",
    )
    parser.add_argument(
        "--class-prior",
        default=None,
        metavar="A,B,TIE",
        help="shift predictions to this class prior, e.g. 0.45,0.45,0.10 "
        "(default: the model's own)",
    )
    parser.add_argument(
        "--fit-prior",
        action="store_true",
        help="estimate the class prior of --data by EM (no labels needed) and "
        "shift predictions to it",
    )
    return parser


def _main(args: argparse.Namespace) -> int:
    _, battles, data_path = load_inputs(args, labelled=False)
    model = PreferenceModel.load(args.model)
    model.verbose = not args.quiet
    prior = None
    if args.class_prior:
        try:
            prior = [float(v) for v in args.class_prior.split(",")]
        except ValueError as err:
            raise ValueError(
                f"--class-prior must be three numbers like 0.45,0.45,0.10; got "
                f"{args.class_prior!r}."
            ) from err
    if args.fit_prior:
        model.fit_prior(battles)
    proba = model.predict_proba(battles, class_prior=prior)
    write_submission(battles["id"], proba, args.out)
    print(f"wrote {len(proba):,} predictions to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.predict``."""
    return run_cli(_main, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
