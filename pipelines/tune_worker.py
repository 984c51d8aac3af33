"""Run trials of shared Optuna studies: one tune worker of many.

    python -m pipelines.tune_worker --config configs/lite.yaml --data train.csv \
        --storage postgresql://user:pass@host/optuna --trials 200

Start any number of workers, on any machines, next to one
``python -m pipelines.train_gbdt --storage URL`` with the same profile, data,
``--set`` overrides and ``--trials``. A worker builds (or reads) the same
features, so it computes the same study names, and runs trials until each
study has its budget of complete and pruned trials, counted over every
process; the trial count holds exactly. It waits for the trials others still
run, reruns one whose process died (no heartbeat for ``tuning.grace_period``
seconds), then exits; ``train_gbdt`` trains the final model. A killed worker
loses only its running trial; start it again to rejoin.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from features.store import FeatureStore
from pipelines._cli import base_parser, load_inputs, run_cli
from pipelines.estimator import check_tuning_plan, training_rows, tune_on_rows

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="database of the shared studies, as given to train_gbdt --storage, "
        "e.g. postgresql://user:pass@host/db (default: tuning.storage)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="the budget over all processes and boosters, as given to "
        "train_gbdt --trials (default: tuning.n_trials of the config)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop after this many seconds (default: tuning.timeout)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="feature store directory (default: features.store of the config)",
    )
    return parser


def _main(args: argparse.Namespace) -> int:
    config, battles, _ = load_inputs(args, labelled=True)
    n_trials = config.tuning.n_trials if args.trials is None else args.trials
    storage = config.tuning.storage if args.storage is None else args.storage
    check_tuning_plan(config, n_trials, storage)  # before any feature is built
    if n_trials == 0:
        print("tune worker: a budget of 0 trials; nothing to run")
        return 0
    rows = training_rows(config, battles)
    summary = tune_on_rows(
        config,
        rows,
        FeatureStore(args.store or config.features.store),
        n_trials=n_trials,
        timeout=args.timeout,
        verbose=not args.quiet,
        storage=storage,
        shared=True,
    )
    done = ", ".join(
        f"{name} {counts['complete'] + counts['pruned']}/{summary['split'][name]} "
        f"(best {_best(summary['best_value'][name])})"
        for name, counts in summary["n_trials"].items()
        if summary["split"][name]
    )
    print(f"tune worker: studies in {summary['storage']}: {done} trials done")
    return 0


def _best(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.tune_worker``."""
    return run_cli(_main, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
