"""The target table: accuracy on the target's own voters, cross-fitted.

    python -m benchmarks.bench_target                  # the corpus, kaggle-lmsys
    python -m benchmarks.bench_target --quick          # synthetic sources, ~1 min
    python -m benchmarks.run --only target             # the same, into BENCHMARKS.md

K folds (grouped by prompt) over the target family's rows, every other source
always in training: each target row is predicted by a model that never saw it
(:func:`models.target.target_cross_fit`). Per configuration: 3-class log loss,
decisive AUC and decisive accuracy, beside the target-only fit, all sources
without a target, a length-only logistic regression and the class prior on the
same folds. Then a learning curve over subsamples of the target's training rows,
with and without the other sources, and a fitted ``a + b n^-c`` projected to the
57,477 rows of the full Kaggle train.csv (a projection, not a measurement).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from benchmarks._context import (
    FAST_BOOSTERS_TEXT,
    BenchContext,
    BenchOptions,
    fast_training_overrides,
)
from benchmarks._report import Section, Table, Target, relative
from features import FeaturePipeline, FeatureStore, read_battles, truncate_battles
from features.battles import battle_fingerprint
from features.blocks.base import FeatureMatrix
from models.baselines import length_logreg_oof, prior_oof
from models.metrics import target_scores
from models.target import (
    FitPredict,
    fit_learning_curve,
    target_cross_fit,
    target_folds,
    target_rows,
)
from models.transfer import source_families
from pipelines.config import Config, load_config
from pipelines.estimator import model_from_config
from pipelines.make_demo_data import make_demo_battles

__all__ = ["CONFIGURATIONS", "TargetData", "load_target_data", "run", "score"]

logger = logging.getLogger("benchmarks.bench_target")  # also when run as __main__

FULL_KAGGLE_ROWS = 57_477
"""Rows of the full Kaggle train.csv: where the learning curve is projected."""

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "all sources, no target (profile)": {},
    "all sources, unweighted, no target": {
        "source_weights": None,
        "group_by": "prompt",
        "tie_head": "model",
    },
    "target: weights only (w=1)": {"target_head": False, "target_tie": False},
    "target: + head on target rows": {"target_tie": False},
    "target: + tie head (w=1)": {},
    "target: + tie head, w=0.3": {"target_other_weight": 0.3},
    "target: + tie head, w=0.1": {"target_other_weight": 0.1},
    "target: + weight search (w=auto)": {"target_other_weight": "auto"},
    "target: + family weight search (auto-family)": {
        "target_other_weight": "auto-family"
    },
    "target: + density-ratio weights": {"target_density_weights": True},
    "target: + per-source anchor": {"anchor_per_source": True},
    "target: + tie head with features": {"target_tie_features": True},
    "target: + tie head with features, w=0.3": {
        "target_tie_features": True,
        "target_other_weight": 0.3,
    },
    "target: + tie head with features, w=auto": {
        "target_tie_features": True,
        "target_other_weight": "auto",
    },
    "target: + per-source anchor, w=auto": {
        "anchor_per_source": True,
        "target_other_weight": "auto",
    },
}
"""Rows of the target table: PreferenceModel params over the profile's. Those
starting "target" also set ``target`` to the run's target family."""

TARGET_ONLY = "target-only fit"
_CURVE_CONFIG = "target: + tie head (w=1)"


class TargetData:
    """The battles of a target run, their labels, and the target's outer folds.

    Battle ids must be unique (:func:`load_target_data` numbers the rows: the
    files may share ids). ``feature_battles`` (default: ``battles``) is the
    table the feature blocks are fitted on, a superset of ``battles``.
    """

    def __init__(
        self,
        battles: pd.DataFrame,
        target: str,
        n_folds: int,
        seed: int,
        feature_battles: pd.DataFrame | None = None,
    ) -> None:
        self.battles = battles.reset_index(drop=True)
        self.feature_battles = (
            self.battles if feature_battles is None else feature_battles
        )
        self.labels = self.battles["label"].to_numpy(dtype=np.int64)
        self.target = target
        self.is_target = target_rows(self.battles, target)
        self.folds = target_folds(
            self.battles, self.labels, self.is_target, n_folds, seed
        )
        self.features: dict[str, _Precomputed] = {}
        """Feature rows of every battle, by profile."""


def load_target_data(options: BenchOptions, max_chars: int | None) -> TargetData:
    """The corpus files (every CSV beside ``options.corpus``) or, quick, demo data."""
    if options.quick:
        raw = make_demo_battles(options.target_quick_rows, seed=options.seed)
        battles = read_battles(raw, labelled=True)
    else:
        files = sorted(Path(options.corpus).parent.glob("*.csv"))
        if not files:
            raise FileNotFoundError(
                f"no CSV files beside {str(options.corpus)!r}; pass --corpus PATH "
                "inside the corpus directory."
            )
        battles = pd.concat(
            [read_battles(path, labelled=True) for path in files], ignore_index=True
        )
    battles = truncate_battles(battles, max_chars).reset_index(drop=True)
    battles["id"] = [str(i) for i in range(len(battles))]
    everything = battles
    cap = options.target_other_rows
    if cap is not None:
        families = source_families(battles["source"]).astype(str)
        keep = families == options.target_family
        rng = np.random.default_rng(options.seed)
        for family in sorted(set(families) - {options.target_family}):
            rows = np.flatnonzero(families == family)
            keep[rng.choice(rows, size=min(cap, len(rows)), replace=False)] = True
        battles = battles[keep].reset_index(drop=True)
    return TargetData(
        battles, options.target_family, options.target_folds, 0, everything
    )


score = target_scores
"""3-class log loss, decisive AUC and decisive accuracy (models.metrics)."""


_QUICK_EXTRA = ("features.blocks.tfidf.svd_components=16",)
"""Quick runs fit target-only models on a few dozen battles: fewer SVD
components than answers."""


def _config(ctx: BenchContext, profile: str) -> Config:
    overrides = ctx.options.overrides
    if ctx.options.quick:
        overrides = (*overrides, *_QUICK_EXTRA)
    config = load_config(ctx.config_path(profile), overrides)
    if ctx.options.target_fast:
        fast = fast_training_overrides(config, ("lightgbm",), 3)
        config = load_config(ctx.config_path(profile), (*overrides, *fast))
    return config


class _Precomputed:
    """Stands in for :class:`features.FeaturePipeline`: rows of one matrix, by id.

    The feature blocks are fitted once on every battle's text (no labels are
    read: TF-IDF vocabulary, SVD and word2vec see the held-out rows' text, as a
    model fitted on a corpus that includes unlabelled test text would), so
    that the many cross-fitted models of the table cost only their boosters.
    """

    def __init__(self, matrix: FeatureMatrix, ids: Sequence[str]) -> None:
        self.matrix = matrix
        self.row_of = {battle_id: row for row, battle_id in enumerate(ids)}
        self.n_jobs = None

    def __call__(self, *args: Any, **kwargs: Any) -> _Precomputed:
        return self

    def fit_transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        return self.transform(battles)

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        rows = [self.row_of[battle_id] for battle_id in battles["id"]]
        return FeatureMatrix(self.matrix.values[rows], self.matrix.columns)


def _features(
    ctx: BenchContext, data: TargetData, profile: str, config: Config
) -> _Precomputed:
    if profile not in data.features:
        started = time.perf_counter()
        matrix = FeaturePipeline(
            config.features.blocks,
            store=FeatureStore(ctx.options.store),
            n_jobs=config.features.n_jobs,
        ).fit_transform(data.feature_battles)
        data.features[profile] = _Precomputed(
            matrix, data.feature_battles["id"].tolist()
        )
        logger.info(
            "%s features of %d battles in %.1f s",
            profile,
            len(data.feature_battles),
            time.perf_counter() - started,
        )
    return data.features[profile]


def _fit_predict(
    ctx: BenchContext, data: TargetData, profile: str, changes: dict[str, Any]
) -> FitPredict:
    config = _config(ctx, profile)
    features = _features(ctx, data, profile, config)

    def fit_predict(train: NDArray[np.int64], test: NDArray[np.int64]) -> NDArray:
        model = model_from_config(config, **changes)
        with patch("models.preference.FeaturePipeline", features):
            model.fit(data.battles.iloc[train])
            return model.predict_proba(data.battles.iloc[test])

    return fit_predict


def _cached_cross_fit(
    ctx: BenchContext,
    data: TargetData,
    profile: str,
    changes: dict[str, Any],
    *,
    include_others: bool,
    keep: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float64], float | None]:
    """:func:`target_cross_fit`, its out-of-fold rows kept in the work dir.

    Keyed by everything they depend on (the models/ and features/ code,
    profile with overrides, params, battles, folds, subsample), so a rerun
    refits only what changed. Returns
    the rows and the seconds their fits took (when they were fitted; a copy
    kept from an earlier run reports that run's seconds).
    """
    config = _config(ctx, profile)
    key = json.dumps(
        [
            _code_digest(),
            config.to_dict(),
            changes,
            include_others,
            battle_fingerprint(data.battles),
            hashlib.sha256(data.folds.tobytes()).hexdigest(),
            None if keep is None else hashlib.sha256(keep.tobytes()).hexdigest(),
        ],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    path = Path(ctx.options.work_dir) / "target-oof" / f"{digest}.npy"
    timing = path.with_suffix(".json")
    if path.exists():
        seconds = json.loads(timing.read_text())["seconds"] if timing.exists() else None
        return np.load(path, allow_pickle=False), seconds
    started = time.perf_counter()
    oof = target_cross_fit(
        data.folds,
        _fit_predict(ctx, data, profile, changes),
        include_others=include_others,
        keep=keep,
    )
    seconds = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npy")
    np.save(partial, oof, allow_pickle=False)
    partial.replace(path)
    timing.write_text(json.dumps({"seconds": seconds}))
    return oof, seconds


def _code_digest() -> str:
    """sha256 of the code the out-of-fold rows depend on (models/, features/).

    Part of their cache key: a kept copy is reused only by the code that made
    it, so a changed model is always measured again.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in ("models", "features"):
        for path in sorted((root / package).rglob("*")):
            if path.suffix in {".py", ".json"} and path.is_file():
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _changes(name: str, params: dict[str, Any], target: str) -> dict[str, Any]:
    changes = dict(params)
    if name.startswith("target"):
        changes["target"] = target
    return changes


def _row(name: str, labels: NDArray, proba: NDArray, seconds: float) -> dict:
    return {"configuration": name, **score(labels, proba), "seconds": seconds}


def target_table(
    ctx: BenchContext, data: TargetData, profile: str, names: Sequence[str]
) -> tuple[list[dict[str, Any]], dict[str, NDArray]]:
    """One row per configuration and baseline, all on the same target folds."""
    on = data.is_target
    labels = data.labels[on]
    rows, oofs = [], {}
    fits = [(TARGET_ONLY, {}, False)] + [
        (name, _changes(name, CONFIGURATIONS[name], data.target), True)
        for name in names
    ]
    for name, changes, include_others in fits:
        oof, seconds = _cached_cross_fit(
            ctx, data, profile, changes, include_others=include_others
        )
        oof = oof[on]
        logger.info("target %s: %s in %s s", name, score(labels, oof), seconds)
        oofs[name] = oof
        rows.append(_row(name, labels, oof, seconds))
    target_battles = data.battles[on]
    folds = data.folds[on]
    for name, oof in (
        ("length-only logistic regression (target)", None),
        ("target's class prior", None),
    ):
        started = time.perf_counter()
        if name.startswith("length"):
            oof = length_logreg_oof(target_battles, labels, folds)
        else:
            oof = prior_oof(labels, folds)
        rows.append(_row(name, labels, oof, time.perf_counter() - started))
    return rows, oofs


def learning_curve(
    ctx: BenchContext, data: TargetData, profile: str, sizes: Sequence[int]
) -> list[dict[str, Any]]:
    """Loss on every target row when only ``n`` target rows may train.

    The target rows are subsampled (nested: a smaller sample is part of each
    larger one, seeded); every target row is still scored by its outer fold.
    """
    on = np.flatnonzero(data.is_target)
    order = np.random.default_rng(0).permutation(on)
    rows = []
    for size in sizes:
        keep = np.zeros(len(data.labels), bool)
        keep[order[: min(size, len(order))]] = True
        for include_others in (False, True):
            changes = (
                _changes(_CURVE_CONFIG, CONFIGURATIONS[_CURVE_CONFIG], data.target)
                if include_others
                else {}
            )
            oof, seconds = _cached_cross_fit(
                ctx, data, profile, changes, include_others=include_others, keep=keep
            )
            rows.append(
                {
                    "target rows": int(keep.sum()),
                    "other sources": "yes" if include_others else "no",
                    **score(data.labels[on], oof[on]),
                    "seconds": seconds,
                }
            )
            logger.info("curve %s", rows[-1])
    return rows


def _projection(rows: list[dict[str, Any]], folds: int) -> list[str]:
    notes = []
    for others in ("no", "yes"):
        points = [r for r in rows if r["other sources"] == others]
        if len(points) < 3:
            continue
        # Each fold trains on (K-1)/K of the rows it may use.
        n = [r["target rows"] * (folds - 1) / folds for r in points]
        try:
            a, b, c = fit_learning_curve(n, [r["log_loss"] for r in points])
        except (RuntimeError, ValueError) as err:
            notes.append(f"other sources {others}: no curve fitted ({err}).")
            continue
        at = a + b * FULL_KAGGLE_ROWS**-c
        notes.append(
            f"Projection, not a measurement (other sources {others}): log loss = "
            f"{a:.3f} + {b:.3f} n^-{c:.3f} over target training rows n; at "
            f"{FULL_KAGGLE_ROWS:,} rows it projects {at:.3f} (floor {a:.3f})."
        )
    return notes


def _command(options: BenchOptions) -> str:
    parts = ["python -m benchmarks.bench_target"]
    if options.quick:
        parts.append("--quick")
    else:
        parts.append(f"--corpus {relative(Path(options.corpus))}")
    if options.target_other_rows is not None:
        parts.append(f"--target-other-rows {options.target_other_rows}")
    if options.target_fast:
        parts.append("--target-fast")
    if options.target_profiles != ("lite",):
        parts.append(f"--target-profiles {','.join(options.target_profiles)}")
    if options.target_configs:
        parts.append(f"--target-configs {';'.join(options.target_configs)!r}")
    if not options.target_curve:
        parts.append("--target-curve 0")
    return " ".join(parts)


def _targets(rows: list[dict[str, Any]], chosen: str) -> list[Target]:
    by_name = {r["configuration"]: r for r in rows}
    if chosen not in by_name or TARGET_ONLY not in by_name:
        return []
    row, alone = by_name[chosen], by_name[TARGET_ONLY]
    gain = alone["log_loss"] - row["log_loss"]
    return [
        Target(
            "target log loss below the target-only fit",
            ">= 0.012",
            f"{gain:.3f}",
            bool(gain >= 0.012),
        ),
        Target(
            "target decisive accuracy",
            ">= 0.655",
            f"{row['decisive_accuracy']:.3f}",
            bool(row["decisive_accuracy"] >= 0.655),
        ),
        Target(
            "target decisive AUC",
            ">= 0.70",
            f"{row['decisive_auc']:.3f}",
            bool(row["decisive_auc"] >= 0.70),
        ),
    ]


def _table(
    options: BenchOptions,
    data: TargetData,
    profile: str,
    families: Sequence[str],
    rows: list[dict[str, Any]],
    command: str,
) -> Table:
    fast = (
        f", fast boosters (lightgbm only, 3 inner folds, {FAST_BOOSTERS_TEXT})"
        if options.target_fast
        else ""
    )
    others = (
        f", at most {options.target_other_rows} rows of each other family"
        if options.target_other_rows is not None
        else ""
    )
    return Table(
        title=f"Target `{data.target}`: {int(data.is_target.sum())} rows, "
        f"{options.target_folds} prompt-grouped folds, profile {profile}{fast}"
        f"{others}; {len(data.battles):,} battles in all",
        columns=[
            "configuration",
            "log_loss",
            "decisive_auc",
            "decisive_accuracy",
            "seconds",
        ],
        rows=rows,
        command=command,
        notes=[
            "Every row is scored on the same target rows, each predicted by a "
            "model that never saw it; the other sources are always in training.",
            f"Source families: {', '.join(families)}.",
            "w: weight factor on every non-target row (auto: searched by a fast "
            "LightGBM on the fit's own folds); head: stacker and temperature "
            "fitted on the target's out-of-fold rows; tie head: P(tie) refitted on "
            "them (models.target.TargetTieHead); density-ratio weights and the "
            "per-source anchor: docs/target.md. No class prior given. seconds: "
            "the cross-fit's fits (from the run that made them when kept).",
        ],
    )


def run(ctx: BenchContext) -> Section:
    """The target table and learning curve of the run's target family."""
    started = time.perf_counter()
    options = ctx.options
    section = Section(key="target", title="Accuracy for a named target population")
    profile = options.target_profiles[0]
    try:
        data = load_target_data(options, ctx.config(profile).data.max_chars)
    except (FileNotFoundError, ValueError) as err:
        section.notes.append(f"Skipped: {err}")
        return section
    families = sorted(set(source_families(data.battles["source"]).astype(str)))
    names = options.target_configs or tuple(CONFIGURATIONS)
    unknown = [name for name in names if name not in CONFIGURATIONS]
    if unknown:
        raise ValueError(
            f"unknown target configuration(s) {unknown!r}; the configurations are "
            f"{list(CONFIGURATIONS)!r}."
        )
    command = _command(options)
    for profile in options.target_profiles:
        rows, _ = target_table(ctx, data, profile, names)
        section.tables.append(_table(options, data, profile, families, rows, command))
        if profile == options.target_profiles[0]:
            section.targets += _targets(rows, options.target_default_config)
    if options.target_curve:
        curve = learning_curve(
            ctx, data, options.target_profiles[0], options.target_curve
        )
        section.tables.append(
            Table(
                title=f"Learning curve on `{data.target}` ({_CURVE_CONFIG} with "
                "the other sources; the target-only fit without)",
                columns=[
                    "target rows",
                    "other sources",
                    "log_loss",
                    "decisive_auc",
                    "decisive_accuracy",
                    "seconds",
                ],
                rows=curve,
                command=command,
                notes=_projection(curve, options.target_folds),
            )
        )
    section.seconds = time.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Run this section alone and print its markdown."""
    from benchmarks.run import section_main

    return section_main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
