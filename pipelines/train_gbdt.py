"""Train the GBDT stack: tune, fit fold boosters, stack, calibrate, report.

    python -m pipelines.train_gbdt --config configs/lite.yaml --data train.csv \
        --trials 50

Features come from the store (built by ``pipelines.build_features`` or here
on first use). ``--trials`` is the Optuna budget across both boosters;
studies persist in SQLite, so a stopped run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from features.battles import battle_fingerprint, truncate_battles
from features.blocks import FeatureMatrix
from features.pipeline import FeaturePipeline
from features.store import FeatureStore
from models import PreferenceModel, make_folds, prompt_groups, subsample_groups
from pipelines._cli import base_parser, load_inputs, run_cli
from pipelines.report import build_report, write_report

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
    return parser


def _study_fingerprint(config, data_fingerprint: str) -> str:
    payload = {
        "data": data_fingerprint,
        "features": dataclasses.asdict(config.features)["blocks"],
        "max_chars": config.data.max_chars,
        "search_spaces": config.tuning.search_spaces,
        "seed": config.seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    config, battles, data_path = load_inputs(args, labelled=True)
    table = truncate_battles(battles, config.data.max_chars)
    labels = table["label"].to_numpy(dtype=np.int64)
    store = FeatureStore(args.store or config.features.store)
    verbose = not args.quiet
    groups = prompt_groups(table)
    folds = make_folds(labels, groups, config.training.n_folds, config.seed)
    booster_params = {k: dict(v) for k, v in config.training.booster_params.items()}
    n_trials = config.tuning.n_trials if args.trials is None else args.trials
    tuning_summary = None
    if n_trials > 0:
        from models.tuning import tune_boosters

        features = FeaturePipeline(
            config.features.blocks,
            store=store,
            verbose=verbose,
            n_jobs=config.features.n_jobs,
        )
        matrix = features.fit_transform(table)
        # Trials run on whole prompt groups of at most tuning.max_rows rows,
        # with their own folds; the final fit below uses every row.
        rows = subsample_groups(groups, config.tuning.max_rows, config.seed)
        tuning_folds = make_folds(
            labels[rows],
            groups[rows],
            config.tuning.n_folds or config.training.n_folds,
            config.seed,
        )
        tuning_summary = tune_boosters(
            FeatureMatrix(matrix.values[rows], matrix.columns),
            labels[rows],
            tuning_folds,
            boosters=config.training.boosters,
            base_params=booster_params,
            tuning=config.tuning,
            n_trials=n_trials,
            timeout=args.timeout if args.timeout is not None else config.tuning.timeout,
            study_key=_study_fingerprint(config, battle_fingerprint(table.iloc[rows])),
            seed=config.seed,
            verbose=verbose,
        )
        tuning_summary["rows"] = len(rows)
        for name, best in tuning_summary["best_params"].items():
            booster_params[name] = {**booster_params.get(name, {}), **best}
    model = PreferenceModel.from_config(
        config, booster_params=booster_params, verbose=verbose
    )
    model.fit(table, store=store, folds=folds)
    swap_augment_effect = None
    if config.training.compare_swap_augment:
        flipped = clone(model).set_params(swap_augment=not model.swap_augment)
        flipped.fit(table, store=store, folds=folds)
        scores = {
            model.swap_augment: model.metrics_["oof_log_loss"],
            flipped.swap_augment: flipped.metrics_["oof_log_loss"],
        }
        swap_augment_effect = {"off": scores[False], "on": scores[True]}
    out = args.out or Path(config.training.out)
    extra = {
        "data": str(data_path),
        "config": config.source,
        "boosters": model.metrics_["boosters"],
        "stacked": model.metrics_["stacked"],
        "stack_method": model.metrics_["stack_method"],
        "temperature": model.metrics_["temperature"],
        "tuning": tuning_summary,
        "swap_augment_oof_log_loss": swap_augment_effect,
        "degenerate_rules": {
            "used": model.metrics_["degenerate_rules_used"],
            "oof_log_loss_with_rules": model.metrics_["oof_log_loss_with_rules"],
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    report = build_report(model, table, labels, model.oof_proba_, folds, extra)
    with tempfile.TemporaryDirectory() as tmp:
        write_report(report, Path(tmp), f"Out-of-fold report: {data_path.name}")
        pd.DataFrame({"id": table["id"], "fold": folds}).to_csv(
            Path(tmp) / "folds.csv", index=False
        )
        model.save(out, attachments=Path(tmp))
    print(
        f"out-of-fold log loss {report['log_loss']:.4f} (class prior "
        f"{report['class_prior']:.4f}, length-only {report['length_logreg']:.4f}); "
        f"model: {out}; report: {out / 'report' / 'report.md'}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.train_gbdt``."""
    return run_cli(_main, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
