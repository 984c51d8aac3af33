"""Accuracy on the real corpus: baselines and profiles, per source, across sources.

Four tables:

- out-of-fold scores on the same prompt-grouped, label-stratified 5 folds
  (``models.folds``) for the class prior, a length-only logistic regression
  and each profile (``PreferenceModel`` with the profile's params): log loss,
  accuracy and the AUC of ``P(A) / (P(A) + P(B))`` on decisive rows;
- the log loss per source family and per fine source (``pipelines.report``);
- leave-one-source-out: train on all other source families, score the held-out
  one; the honest estimate of transfer to data the model has not seen;
- ``python -m pipelines.train_gbdt --trials N`` on the corpus: wall time, OOF
  log loss overall and per source, next to the baselines.

Run alone::

    python -m benchmarks.bench_accuracy [--quick] [--profiles lite,default,embeddings]
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from benchmarks._context import (
    FAST_BOOSTERS_TEXT,
    BenchContext,
    fast_booster_params,
)
from benchmarks._report import (
    Section,
    Table,
    Target,
    optuna_trial_counts,
    python_module,
    relative,
    run_child,
    trials_summary,
)
from models import multiclass_log_loss
from models.baselines import length_features, length_logreg_oof, prior_oof
from models.metrics import decisive_auc
from pipelines import per_source_table
from pipelines.estimator import model_from_config
from pipelines.transfer_report import seed_stateless_blocks

__all__ = ["run", "main", "seed_stateless_blocks"]

logger = logging.getLogger(__name__)


def _scores(labels: NDArray, proba: NDArray) -> dict[str, float]:
    return {
        "log loss": multiclass_log_loss(labels, proba),
        "accuracy": float(np.mean(proba.argmax(axis=1) == labels)),
        "decisive AUC": decisive_auc(labels, proba),
    }


# ------------------------------------------------------------------ 5-fold OOF
def _oof_tables(
    ctx: BenchContext,
) -> tuple[Table, Table, Table, dict[str, NDArray], list[Target]]:
    labels, folds, table = ctx.labels, ctx.folds, ctx.corpus
    columns: dict[str, NDArray] = {
        "class_prior": prior_oof(labels, folds),
        "length_logreg": length_logreg_oof(table, labels, folds),
    }
    fit_seconds: dict[str, float | None] = {"class_prior": None, "length_logreg": None}
    train_prior = np.bincount(labels, minlength=3) / len(labels)
    for profile in ctx.options.profiles:
        fitted = ctx.profile_model(profile)
        columns[profile] = fitted.model.oof_proba_
        fit_seconds[profile] = fitted.seconds
    overall = Table(
        title="Out-of-fold scores, prompt-grouped 5-fold (real corpus)",
        columns=["method", "log loss", "accuracy", "decisive AUC", "fit seconds"],
    )
    names = {
        "class_prior": "class prior",
        "length_logreg": "length-only logistic regression",
    }
    for name, proba in columns.items():
        row = {"method": names.get(name, f"{name} profile"), **_scores(labels, proba)}
        row["fit seconds"] = fit_seconds[name]
        overall.rows.append(row)
    overall.notes += [
        f"{len(labels):,} battles; the same folds (models.folds.make_folds, grouped by "
        "prompt, seed of the profile) for every method. Profiles are fitted with "
        "their config params (no tuning); fit seconds include feature blocks not "
        "yet in the store.",
        "decisive AUC: ROC AUC of P(A)/(P(A)+P(B)) for 'A won' on rows where A or B "
        "won (ties left out).",
    ]
    best = ctx.options.profiles[-1]
    per_family = _per_source(
        table.assign(source=ctx.families), labels, columns, train_prior, best
    )
    per_family.title = "Out-of-fold log loss per source family"
    per_fine = _per_source(table, labels, columns, train_prior, best)
    per_fine.title = "Out-of-fold log loss per source"
    targets = []
    for profile in ctx.options.profiles:
        ll = multiclass_log_loss(labels, columns[profile])
        targets.append(
            Target(
                name=f"{profile} profile beats the length-only baseline (OOF log loss)",
                goal=f"< {multiclass_log_loss(labels, columns['length_logreg']):.4f}",
                measured=f"{ll:.4f}",
                met=ll < multiclass_log_loss(labels, columns["length_logreg"]),
            )
        )
    return overall, per_family, per_fine, columns, targets


def _per_source(
    table: pd.DataFrame,
    labels: NDArray,
    columns: dict[str, NDArray],
    train_prior: NDArray,
    model_key: str,
) -> Table:
    frame = per_source_table(table, labels, columns, train_prior, model_key=model_key)
    frame = frame.rename(columns={c: c.replace("_", " ") for c in frame.columns})
    result = Table(title="", columns=list(frame.columns))
    result.rows = frame.to_dict(orient="records")
    result.notes.append(
        f"log loss per column; '{model_key.replace('_', ' ')} em prior' re-targets the "
        "model to the source's class prior estimated by EM from its own "
        "predictions (no labels)."
    )
    return result


# ---------------------------------------------------------- leave one source out
def _loso_table(
    ctx: BenchContext, oof: dict[str, NDArray], profiles: Sequence[str]
) -> tuple[Table, list[str]]:
    table, labels, families = ctx.corpus, ctx.labels, ctx.families
    names = sorted(set(families))
    result = Table(
        title="Leave-one-source-out: train on the other sources, score this one",
        columns=[
            "held-out source",
            "n",
            "tie rate",
            "class prior",
            "length-only",
            *[f"{p}" for p in profiles],
            *[f"{p} 5-fold OOF" for p in profiles],
        ],
    )
    seeded_all: set[str] = set()
    for profile in profiles:
        config = ctx.config(profile)
        subsets = []
        for family in names:
            subsets.append((np.flatnonzero(families != family), "fit"))
            subsets.append((np.flatnonzero(families == family), "transform"))
        seeded_all |= set(
            seed_stateless_blocks(
                ctx.store,
                dict(config.features.blocks),
                table,
                subsets,
                config.data.max_chars,
            )
        )
    rows: dict[str, dict[str, Any]] = {}
    for family in names:
        train = families != family
        test = ~train
        y_train, y_test = labels[train], labels[test]
        prior = np.bincount(y_train, minlength=3) / len(y_train)
        length = LogisticRegression(max_iter=1000).fit(
            length_features(table[train]), y_train
        )
        length_proba = np.zeros((test.sum(), 3))
        length_proba[:, length.classes_] = length.predict_proba(
            length_features(table[test])
        )
        row = {
            "held-out source": family,
            "n": int(test.sum()),
            "tie rate": float(np.mean(y_test == 2)),
            "class prior": multiclass_log_loss(
                y_test, np.tile(prior, (len(y_test), 1))
            ),
            "length-only": multiclass_log_loss(y_test, length_proba),
        }
        for profile in profiles:
            row[f"{profile} 5-fold OOF"] = multiclass_log_loss(
                y_test, oof[profile][test]
            )
        rows[family] = row
    for profile in profiles:
        config = ctx.config(profile)
        booster_params = {
            name: fast_booster_params(dict(params))
            for name, params in config.training.booster_params.items()
        }
        for family in names:
            train = families != family
            model = model_from_config(
                config, booster_params=booster_params, n_folds=ctx.options.loso_folds
            )
            started = time.perf_counter()
            model.fit(table[train], store=ctx.store)
            proba = model.predict_proba(table[~train])
            logger.info(
                "LOSO %s without %s: %.1f s",
                profile,
                family,
                time.perf_counter() - started,
            )
            rows[family][profile] = multiclass_log_loss(labels[~train], proba)
    result.rows = [rows[family] for family in names]
    result.notes += [
        "Each row trains on every other source family (stateful blocks such as "
        "TF-IDF and Word2Vec are fitted on those sources only) with "
        f"{ctx.options.loso_folds} folds and faster boosters ({FAST_BOOSTERS_TEXT}), "
        "and scores the held-out family; "
        "the class prior "
        "and length-only columns are fitted on the same training sources.",
        "'5-fold OOF' is the same rows' log loss when their source is in training "
        "(from the table above); the difference is the cost of a new source.",
    ]
    if seeded_all:
        result.notes.append(
            "Stateless block outputs were sliced from the corpus run "
            f"({', '.join(sorted(seeded_all))}; row-wise, spot-checked) instead of "
            "being recomputed per split."
        )
    return result, sorted(seeded_all)


# ------------------------------------------------------------- train_gbdt run
def _train_gbdt_tables(ctx: BenchContext) -> tuple[list[Table], Target | None]:
    options = ctx.options
    profile = "default" if "default" in options.profiles else options.profiles[-1]
    budget = options.gbdt_tuning_budget
    shown = (
        f"python -m pipelines.train_gbdt --config configs/{profile}.yaml --data "
        f"{relative(ctx.corpus_csv)} --trials {options.gbdt_trials}"
        + (f" --timeout {budget:.0f}" if budget else "")
        + "".join(f" --set {o}" for o in options.overrides)
    )
    title = (
        f"train_gbdt --trials {options.gbdt_trials} on the corpus ({profile} profile)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        out, database = Path(tmp) / "model", Path(tmp) / "optuna.db"
        argv = python_module(
            "pipelines.train_gbdt",
            *ctx.cli_args(profile),
            "--data",
            str(ctx.corpus_csv),
            "--trials",
            str(options.gbdt_trials),
            "--store",
            str(options.store),
            "--out",
            str(out),
            "--quiet",
            "--set",
            f"tuning.storage=sqlite:///{database}",
        )
        if budget:
            argv += ["--timeout", f"{budget:.0f}"]
        run = run_child(argv, timeout=options.timeout)
        counts = optuna_trial_counts(database)
        report_path = out / "report" / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    minutes = run.seconds / 60
    trials_text, all_trials = trials_summary(
        counts, options.gbdt_trials, minutes, budget
    )
    summary = Table(
        title=title,
        columns=[
            "wall time (min)",
            "peak RSS (GB)",
            "OOF log loss",
            "class prior",
            "length-only",
            "accuracy",
            "trials",
        ],
        command=shown,
    )
    row: dict[str, Any] = {
        "wall time (min)": minutes,
        "peak RSS (GB)": run.peak_rss_gb,
        "trials": trials_text,
    }
    if report is None:
        row["OOF log loss"] = (
            f"stopped after {minutes:.0f} min (--child-timeout-min)"
            if run.timed_out
            else f"failed (exit {run.returncode})"
        )
        summary.notes.append(
            " ".join(run.stderr.strip().splitlines()[-3:])[:400] or "no output"
        )
    else:
        row.update(
            {
                "OOF log loss": report["log_loss"],
                "class prior": report["class_prior"],
                "length-only": report["length_logreg"],
                "accuracy": report["accuracy"],
            }
        )
    summary.rows.append(row)
    summary.notes.append(
        "Wall time of the whole command (read, repair report, tuning with pruning, "
        "5-fold training of the stack, calibration, report, save). Feature blocks "
        "come from the benchmark store, filled earlier in this run; the study is "
        "fresh (a temporary Optuna storage), so every trial runs"
        + (
            f"; tuning stops after {budget / 60:.0f} min (train_gbdt --timeout) "
            "so the run stays bounded, and the trials done in that time are counted."
            if budget
            else "."
        )
    )
    tables = [summary]
    if report is not None:
        summary.notes.append(
            "Tuned params: "
            + json.dumps((report.get("tuning") or {}).get("best_params", {}))
        )
        per_source = pd.DataFrame(report["per_source"])
        wanted = (
            "source",
            "n",
            "tie_rate",
            "class_prior",
            "length_logreg",
            "model",
            "model+em_prior",
        )
        keep = [c for c in wanted if c in per_source.columns]
        tables.append(
            Table(
                title="train_gbdt: OOF log loss per source",
                columns=[c.replace("_", " ") for c in keep],
                rows=[
                    {c.replace("_", " "): row[c] for c in keep}
                    for row in per_source.to_dict(orient="records")
                ],
            )
        )
    ok = report is not None and report["log_loss"] < report["length_logreg"]
    target = Target(
        name=f"train_gbdt --trials {options.gbdt_trials} ({profile}) on the corpus",
        goal="runs on 2 cores, all trials; beats the length-only baseline",
        measured=(
            f"{report['log_loss']:.4f} in {minutes:.1f} min; {trials_text}"
            if report is not None
            else f"no model after {minutes:.0f} min; {trials_text}"
        ),
        met=ok and all_trials,
    )
    if not target.met:
        target.cause = (
            "tuning budget ran out (see the trials column)"
            if report is not None and not all_trials
            else "see the train_gbdt table"
        )
    return tables, target


# ------------------------------------------------------------------------ run
def run(ctx: BenchContext) -> Section:
    """All accuracy tables for the run's profiles."""
    started = time.perf_counter()
    section = Section(key="accuracy", title="Accuracy on the real corpus")
    overall, per_family, per_fine, oof, targets = _oof_tables(ctx)
    section.tables += [overall, per_family]
    section.targets += targets
    loso_profiles = [
        p
        for p in (ctx.options.loso_profiles or ctx.options.profiles)
        if p in ctx.options.profiles
    ]
    if ctx.options.loso and loso_profiles:
        loso, _ = _loso_table(ctx, oof, loso_profiles)
        section.tables.append(loso)
    section.tables.append(per_fine)
    gbdt_tables, gbdt_target = _train_gbdt_tables(ctx)
    section.tables += gbdt_tables
    if gbdt_target is not None:
        section.targets.append(gbdt_target)
    corpus = relative(ctx.corpus_csv)
    section.notes.append(
        f"Data: `{corpus}` ({len(ctx.corpus):,} human-labelled battles from "
        f"{len(set(ctx.families))} public sets; ties "
        f"{np.mean(ctx.labels == 2):.1%}). Log loss is 3-class (lower is better)."
    )
    section.seconds = time.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Run this section alone and print its markdown."""
    from benchmarks.run import section_main

    return section_main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
