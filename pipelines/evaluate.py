"""Score a trained model on labelled battles, with the same report as training.

python -m pipelines.evaluate --model artifacts/model --data holdout.csv \
    --out artifacts/eval
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from features.battles import truncate_battles
from models import PreferenceModel, make_folds, prompt_groups
from pipelines._cli import base_parser, read_data, run_cli
from pipelines.config import load_config
from pipelines.report import build_report, write_report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=Path("artifacts/model"), help="model directory"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("artifacts/evaluation"),
        help="directory for report.json, report.md and calibration.png",
    )
    return parser


def _main(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    # The model before the data: a wrong --model fails at once, not after the
    # whole data file has been read and repaired.
    model = PreferenceModel.load(args.model)
    model.verbose = not args.quiet
    battles, data_path = read_data(args, labelled=True)
    table = truncate_battles(battles, model.max_chars)
    labels = table["label"].to_numpy(dtype=np.int64)
    proba = model.predict_proba(table)
    # Baselines are fitted on the evaluation data's own folds (prompt-grouped).
    folds = make_folds(
        labels, prompt_groups(table), min(5, config.training.n_folds), config.seed
    )
    report = build_report(model, table, labels, proba, folds, {"data": str(data_path)})
    paths = write_report(report, args.out, f"Evaluation: {data_path.name}")
    print(
        f"log loss {report['log_loss']:.4f} (class prior {report['class_prior']:.4f}, "
        f"length-only {report['length_logreg']:.4f}); report: {paths['markdown']}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.evaluate``."""
    return run_cli(_main, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
