"""Train the GBDT stack: tune, fit fold boosters, stack, calibrate, report.

    python -m pipelines.train_gbdt --config configs/lite.yaml --data train.csv \
        --trials 50

Features come from the store (built by ``pipelines.build_features`` or here
on first use). ``--trials`` is the Optuna budget across both boosters;
studies persist in SQLite, so a stopped run resumes where it stopped, and each
is keyed by what its trials' scores depend on, so a changed profile or data
starts a new one. A bad profile fails before any feature is built.

``--storage URL`` (PostgreSQL, or SQLite on one machine) shares the studies
with tune workers (``python -m pipelines.tune_worker``, same profile and
data): everyone runs trials until the budget is reached, this command waits
for the workers' last trials (a dead worker's trial is rerun), then trains
the final model on the best params.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from features.store import FeatureStore
from models import PreferenceModel
from models.metrics import target_scores
from models.recipe import TrainingRows
from models.target import held_out_target_proba, target_rows
from pipelines._cli import base_parser, load_inputs, run_cli
from pipelines.estimator import (
    check_tuning_plan,
    model_from_config,
    training_rows,
    tune_on_rows,
)
from pipelines.report import build_report, write_report
from pipelines.transfer_report import add_transfer_report_arguments, transfer_report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="Optuna trials in total across the boosters (default: tuning.n_trials "
        "of the config; 0 trains with the config's params, no tuning)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop tuning after this many seconds (default: tuning.timeout)",
    )
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="database of the Optuna studies, shared with tune workers, e.g. "
        "postgresql://user:pass@host/db or sqlite:///optuna.db (default: "
        "tuning.storage, not shared)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="feature store directory (default: features.store of the config)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="model directory to write (default: training.out, artifacts/model)",
    )
    parser.add_argument(
        "--target",
        default=None,
        metavar="FAMILY",
        help="source family the model predicts for, e.g. kaggle-lmsys (default: "
        "training.target of the config; the same as --set training.target=FAMILY)",
    )
    parser.add_argument(
        "--target-estimate-folds",
        type=int,
        default=0,
        metavar="K",
        help="with a target: also fit K more models, each without one prompt-grouped "
        "fold of the target's rows, for a held-out estimate on new battles of the "
        "target's voters (0: none; K+1 fits in all)",
    )
    add_transfer_report_arguments(parser)
    return parser


def _main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.target is not None:
        args.overrides = [*args.overrides, f"training.target={args.target}"]
    config, battles, data_path = load_inputs(args, labelled=True)
    n_trials = config.tuning.n_trials if args.trials is None else args.trials
    check_tuning_plan(config, n_trials, args.storage)  # before any feature is built
    data = training_rows(config, battles)
    store = FeatureStore(args.store or config.features.store)
    verbose = not args.quiet
    booster_params, tuning = copy.deepcopy(config.training.booster_params), None
    if n_trials > 0:
        tuning = tune_on_rows(
            config,
            data,
            store,
            n_trials=n_trials,
            timeout=args.timeout,
            verbose=verbose,
            storage=args.storage,
        )
        booster_params = _with_best_params(booster_params, tuning["best_params"])
    model = model_from_config(config, booster_params=booster_params, verbose=verbose)
    model.fit(data.table, store=store, folds=data.folds)
    extra = {
        "data": str(data_path),
        "config": config.source,
        **_model_summary(model),
        "tuning": tuning,
        "swap_augment_oof_log_loss": (
            _swap_augment_effect(model, data, store)
            if config.training.compare_swap_augment
            else None
        ),
        "transfer": transfer_report(
            data.table,
            config,
            booster_params,
            enabled=args.transfer_report,
            n_folds=args.transfer_folds,
            store=store,
            verbose=verbose,
        ),
        "target": _target_report(
            model, data.table, store, args.target_estimate_folds, config.seed
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    report = build_report(
        model, data.table, data.labels, model.oof_proba_, data.folds, extra
    )
    out = args.out or Path(config.training.out)
    _save(model, report, data, out, f"Out-of-fold report: {data_path.name}")
    print(
        f"out-of-fold log loss {report['log_loss']:.4f} (class prior "
        f"{report['class_prior']:.4f}, length-only {report['length_logreg']:.4f}); "
        f"model: {out}; report: {out / 'report' / 'report.md'}"
    )
    if report.get("target"):
        print(_target_summary(report["target"]))
    return 0


def _target_summary(target: dict[str, Any]) -> str:
    """One line on the target's rows: the numbers that matter for its voters."""
    line = (
        f"target {target['family']} ({target['n_rows']:,} battles): out-of-fold "
        f"log loss {target['out_of_fold']['log_loss']:.4f}"
    )
    held_out = target.get("held_out")
    if held_out:
        line += (
            f", held out {held_out['log_loss']:.4f} (the estimate for new battles "
            f"of these voters; decisive accuracy {held_out['decisive_accuracy']:.3f})"
        )
    return line


def _target_report(
    model: PreferenceModel,
    table: pd.DataFrame,
    store: FeatureStore,
    estimate_folds: int,
    seed: int,
) -> dict[str, Any] | None:
    """The target's out-of-fold scores and, when asked, the held-out estimate."""
    if model.target is None:
        return None
    table = table.reset_index(drop=True)
    labels = table["label"].to_numpy(dtype=np.int64)
    is_target = target_rows(table, model.target)
    report: dict[str, Any] = {
        "family": model.target,
        "n_rows": int(is_target.sum()),
        "out_of_fold": target_scores(labels[is_target], model.oof_proba_[is_target]),
        "held_out": None,
    }
    if estimate_folds > 1:
        proba = held_out_target_proba(
            model, table, n_folds=estimate_folds, seed=seed, store=store
        )
        report["held_out"] = {
            "n_folds": estimate_folds,
            **target_scores(labels[is_target], proba[is_target]),
        }
    return report


def _with_best_params(
    booster_params: dict[str, dict[str, Any]], best_params: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The profile's params per booster with the tuned ones over them."""
    return {
        name: {**booster_params.get(name, {}), **best_params.get(name, {})}
        for name in {**booster_params, **best_params}
    }


def _model_summary(model: PreferenceModel) -> dict[str, Any]:
    metrics = model.metrics_
    return {
        "boosters": metrics["boosters"],
        "stacked": metrics["stacked"],
        "stack_method": metrics["stack_method"],
        "temperature": metrics["temperature"],
        "degenerate_rules": {
            "used": metrics["degenerate_rules_used"],
            "oof_log_loss_with_rules": metrics["oof_log_loss_with_rules"],
        },
    }


def _swap_augment_effect(
    model: PreferenceModel, data: TrainingRows, store: FeatureStore
) -> dict[str, float]:
    """OOF log loss with swap augmentation off and on: the model, then a
    clone with the switch flipped, fitted on the same folds."""
    flipped = clone(model).set_params(swap_augment=not model.swap_augment)
    flipped.fit(data.table, store=store, folds=data.folds)
    scores = {
        model.swap_augment: model.metrics_["oof_log_loss"],
        flipped.swap_augment: flipped.metrics_["oof_log_loss"],
    }
    return {"off": scores[False], "on": scores[True]}


def _save(
    model: PreferenceModel,
    report: dict[str, Any],
    data: TrainingRows,
    out: Path,
    title: str,
) -> None:
    """Write the model directory with the report and the folds attached."""
    with tempfile.TemporaryDirectory() as tmp:
        write_report(report, Path(tmp), title)
        pd.DataFrame({"id": data.table["id"], "fold": data.folds}).to_csv(
            Path(tmp) / "folds.csv", index=False
        )
        model.save(out, attachments=Path(tmp))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.train_gbdt``."""
    return run_cli(_main, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
