"""Transfer: each source family held out of fit, and external sets never seen.

A model fitted on some sources is scored on a source it never saw (tuning,
feature vocabularies and every other fitted piece come from the training
sources only), next to the training sources' class prior, the raw difference
of answer lengths and a length-only logistic regression fitted on the same
rows (``models.transfer.transfer_table``). ``arena.csv`` (real Chatbot Arena
votes, no ties) is scored by a model fitted on the whole corpus.

Each mechanism is a config switch; ``--transfer-variants`` measures several
as rows of one comparison, e.g.::

    python -m benchmarks.bench_transfer --profiles lite \
        --transfer-variants "no-tfidf=features.blocks.tfidf.svd_components=8;\
slow=training.booster_params.lightgbm.learning_rate=0.03"

Run alone::

    python -m benchmarks.bench_transfer [--quick] [--profiles lite] \
        [--transfer-holdout autoj] [--transfer-folds 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._context import (
    FAST_BOOSTERS_TEXT,
    QUICK_OVERRIDES,
    BenchContext,
    BenchOptions,
    fast_booster_params,
)
from benchmarks._report import (
    REPO_ROOT,
    Section,
    Table,
    Target,
    portable_paths,
    relative,
)
from features import InvalidParameterError, read_battles, truncate_battles
from models import model_fit_predict, source_families, transfer_table, within_set_cv
from pipelines import Config, load_config
from pipelines.estimator import model_from_config
from pipelines.transfer_report import TRANSFER_COLUMNS, seed_stateless_blocks

__all__ = [
    "ARENA_TARGETS",
    "add_transfer_arguments",
    "main",
    "parse_variants",
    "run",
    "transfer_option_changes",
]

logger = logging.getLogger(__name__)

BASE_VARIANT = "as configured"
"""Name of the row that runs each profile with no variant overrides."""

ARENA_TARGETS: dict[str, float] = {"decisive_auc": 0.655, "decisive_log_loss": 0.665}
"""Goals on ``arena.csv`` held out (raw length AUC 0.644, a coin 0.6931)."""

_NEXT_OVERRIDE = re.compile(r",(?=\s*[A-Za-z_][\w-]*(?:\.[\w-]+)+\s*=)")
"""A comma that starts the next ``section.key=value`` (not one inside a list)."""

_DISPLAY: dict[str, str] = {
    **TRANSFER_COLUMNS,
    "source": "held-out source",
    "length_lr_decisive_log_loss": "length LR (decisive)",
    "seconds": "fit seconds",
}
"""Table column -> heading, in table order."""


# ---------------------------------------------------------------- options
def parse_variants(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``name=key=value,key=value;name2=...`` as ``((name, overrides), ...)``.

    A comma inside a value (``training.boosters=[lightgbm,xgboost]``) stays
    in it: only a comma followed by the next ``section.key=`` splits.

    Raises
    ------
    argparse.ArgumentTypeError
        A variant without a name, a repeated name, or an override that is not
        ``section.key=value``.

    Examples
    --------
    >>> parse_variants("a=training.n_folds=3,training.boosters=[lightgbm,xgboost];b=")
    (('a', ('training.n_folds=3', 'training.boosters=[lightgbm,xgboost]')), ('b', ()))
    """
    variants: list[tuple[str, tuple[str, ...]]] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, rest = part.partition("=")
        name = name.strip()
        if not sep or not name or "." in name:
            raise argparse.ArgumentTypeError(
                f"variant {part!r} must look like name=section.key=value[,...] "
                "(e.g. slow=training.booster_params.lightgbm.learning_rate=0.03)."
            )
        overrides = tuple(o.strip() for o in _NEXT_OVERRIDE.split(rest) if o.strip())
        bad = [o for o in overrides if "=" not in o or "." not in o.partition("=")[0]]
        if bad:
            raise argparse.ArgumentTypeError(
                f"variant {name!r}: {bad[0]!r} is not a section.key=value override "
                "(e.g. training.n_folds=3)."
            )
        if name in (BASE_VARIANT, *(v[0] for v in variants)):
            raise argparse.ArgumentTypeError(
                f"variant name {name!r} is used twice (or is reserved for the "
                "profile with no overrides); give each variant its own name."
            )
        variants.append((name, overrides))
    return tuple(variants)


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_transfer_arguments(parser: argparse.ArgumentParser) -> None:
    """The transfer section's options (``benchmarks.run`` and this module)."""
    group = parser.add_argument_group("transfer section")
    add = group.add_argument
    add(
        "--transfer-profiles",
        type=_names,
        help="profiles of the transfer table (default: the first of --profiles)",
    )
    add(
        "--transfer-variants",
        type=parse_variants,
        metavar="NAME=KEY=VALUE[,KEY=VALUE];...",
        help="config variants measured next to each profile as configured, e.g. "
        "'slow=training.booster_params.lightgbm.learning_rate=0.03'",
    )
    add(
        "--transfer-external",
        type=Path,
        action="append",
        metavar="PATH",
        help="labelled set scored by a fit on the whole corpus (repeatable; "
        "default: ../shared/data/corpus/arena.csv)",
    )
    add(
        "--no-transfer-external",
        action="store_true",
        help="hold out corpus families only",
    )
    add(
        "--transfer-holdout",
        type=_names,
        help="source families to hold out, e.g. autoj,tulu1 (default: each in turn)",
    )
    add(
        "--transfer-folds",
        type=int,
        help="folds of every transfer fit (default 3; --quick: 2)",
    )
    add(
        "--transfer-within-seeds",
        type=int,
        metavar="N",
        help="also cross-validate the profile inside each external set, N fold "
        "seeds (default 3; --quick: 1; 0: skip): what the set's own battles teach",
    )
    add(
        "--transfer-config-boosters",
        action="store_true",
        help="fit with the profile's booster params (default: fast boosters, "
        f"{FAST_BOOSTERS_TEXT})",
    )


def transfer_option_changes(args: argparse.Namespace) -> dict[str, Any]:
    """``BenchOptions`` fields set by the options of :func:`add_transfer_arguments`."""
    changes: dict[str, Any] = {}
    for name in ("transfer_profiles", "transfer_variants", "transfer_holdout"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    unknown = [
        p
        for p in changes.get("transfer_profiles", ())
        if not (REPO_ROOT / "configs" / f"{p}.yaml").exists()
    ]
    if unknown:
        raise SystemExit(
            f"error: unknown --transfer-profiles {unknown}; profiles live in configs/."
        )
    if getattr(args, "transfer_folds", None) is not None:
        if args.transfer_folds < 2:
            raise SystemExit(
                f"error: --transfer-folds must be >= 2; got {args.transfer_folds}."
            )
        changes["transfer_folds"] = args.transfer_folds
    within = getattr(args, "transfer_within_seeds", None)
    if within is not None:
        if within < 0:
            raise SystemExit(
                f"error: --transfer-within-seeds must be >= 0; got {within}."
            )
        changes["transfer_within_seeds"] = within
    if getattr(args, "transfer_external", None):
        changes["transfer_external"] = tuple(args.transfer_external)
    if getattr(args, "no_transfer_external", False):
        changes["transfer_external"] = ()
    if getattr(args, "transfer_config_boosters", False):
        changes["transfer_fast"] = False
    return changes


# ------------------------------------------------------------------- data
def _shown(path: Path) -> str:
    """``path`` as commands show it: relative to the repository when beside it."""
    return relative(path)


def _externals(ctx: BenchContext, max_chars: int | None) -> dict[str, pd.DataFrame]:
    """The external sets that exist, read once; a subsample of ``n_rows`` when set."""
    options = ctx.options
    found: dict[str, pd.DataFrame] = {}
    for path in options.transfer_external:
        if not Path(path).exists():
            logger.warning("transfer: external set %s not found; skipped", path)
            continue
        table = truncate_battles(read_battles(path, labelled=True), max_chars)
        if options.n_rows is not None and options.n_rows < len(table):
            table = table.sample(n=options.n_rows, random_state=options.seed)
        found[Path(path).name] = table.reset_index(drop=True)
    return found


def _profiles(options: BenchOptions) -> list[str]:
    return list(options.transfer_profiles or options.profiles[:1])


def _config(ctx: BenchContext, profile: str, overrides: Sequence[str]) -> Config:
    return load_config(ctx.config_path(profile), (*ctx.options.overrides, *overrides))


# ------------------------------------------------------------------- fits
def _seed_store(
    ctx: BenchContext, config: Config, holdout: Sequence[str], external: bool
) -> None:
    """Slice the corpus's stateless block outputs into every split's cache."""
    families = ctx.families
    subsets = []
    for family in holdout:
        subsets.append((np.flatnonzero(families != family), "fit"))
        subsets.append((np.flatnonzero(families == family), "transform"))
    if external:
        subsets.append((np.arange(len(families)), "fit"))
    seed_stateless_blocks(
        ctx.store,
        dict(config.features.blocks),
        ctx.corpus,
        subsets,
        config.data.max_chars,
    )


def _fit_predict(ctx: BenchContext, config: Config) -> Any:
    """Fits of ``config`` as every transfer row makes them (folds, boosters, store)."""
    options = ctx.options
    booster_params = {
        name: fast_booster_params(dict(params)) if options.transfer_fast else params
        for name, params in config.training.booster_params.items()
    }
    return model_fit_predict(
        lambda: model_from_config(
            config, booster_params=booster_params, n_folds=options.transfer_folds
        ),
        fit_params={"store": ctx.store},
    )


def _variant_frame(
    ctx: BenchContext, config: Config, externals: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    options = ctx.options
    fit_predict = _fit_predict(ctx, config)
    holdout = (
        list(options.transfer_holdout)
        if options.transfer_holdout is not None
        else sorted(set(ctx.families))
    )
    unknown = sorted(set(holdout) - set(ctx.families))
    if unknown:
        raise InvalidParameterError(
            f"--transfer-holdout names unknown source families {unknown}; the "
            f"corpus has {sorted(set(ctx.families))}."
        )
    _seed_store(ctx, config, holdout, bool(externals))
    return transfer_table(
        ctx.corpus,
        fit_predict,
        external=externals,
        holdout=holdout,
        verbose=logger.isEnabledFor(logging.DEBUG),
    )


# ----------------------------------------------------------------- tables
def _command(options: BenchOptions, profile: str) -> str:
    argv = ["python", "-m", "benchmarks.bench_transfer"]
    if options.quick:
        argv.append("--quick")
    argv += ["--corpus", os.path.abspath(options.corpus)]
    if options.n_rows is not None:
        argv += ["--n-rows", str(options.n_rows)]
    if options.seed:
        argv += ["--seed", str(options.seed)]
    argv += ["--profiles", profile, "--transfer-folds", str(options.transfer_folds)]
    if options.transfer_external:
        for path in options.transfer_external:
            argv += ["--transfer-external", os.path.abspath(path)]
    else:
        argv.append("--no-transfer-external")
    if options.transfer_holdout is not None:
        argv += ["--transfer-holdout", ",".join(options.transfer_holdout)]
    if not options.transfer_fast:
        argv.append("--transfer-config-boosters")
    if options.transfer_external:
        argv += ["--transfer-within-seeds", str(options.transfer_within_seeds)]
    if options.transfer_variants:
        argv += [
            "--transfer-variants",
            ";".join(f"{n}={','.join(o)}" for n, o in options.transfer_variants),
        ]
    overrides = list(options.overrides)
    if options.quick and tuple(overrides[: len(QUICK_OVERRIDES)]) == QUICK_OVERRIDES:
        overrides = overrides[len(QUICK_OVERRIDES) :]
    for override in overrides:
        argv += ["--set", override]
    # Paths after quoting, so that `$TMPDIR/...` stays unquoted and expands.
    return portable_paths(shlex.join(argv))


def _display_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for record in frame.to_dict(orient="records"):
        row = {_DISPLAY[key]: record[key] for key in _DISPLAY}
        if record["kind"] == "external":
            row["held-out source"] = f"{record['source']} (external)"
        row["ok"] = None if record["ok"] is None else bool(record["ok"])
        row["n"] = int(record["n"])
        rows.append(row)
    return rows


def _variant_table(
    frame: pd.DataFrame, profile: str, variant: str, overrides: Sequence[str]
) -> Table:
    title = f"Transfer: {profile} profile, each source held out"
    if variant != BASE_VARIANT:
        title += f" (variant {variant})"
    table = Table(title=title, columns=list(_DISPLAY.values()))
    table.rows = _display_rows(frame)
    if overrides:
        table.notes.append(
            "Variant overrides: " + ", ".join(f"`{o}`" for o in overrides)
        )
    return table


def _comparison(frames: dict[str, pd.DataFrame], profile: str) -> Table:
    columns = [
        "held-out source",
        "variant",
        "decisive AUC",
        "raw length AUC",
        "decisive log loss",
        "log loss",
        "training prior",
        "with own prior",
        "ok",
    ]
    table = Table(
        title=f"Transfer variants compared ({profile} profile)", columns=columns
    )
    records = []
    for variant, frame in frames.items():
        for row in _display_rows(frame):
            records.append({**{c: row.get(c) for c in columns}, "variant": variant})
    order = {name: i for i, name in enumerate(frames)}
    records.sort(key=lambda r: (str(r["held-out source"]), order[r["variant"]]))
    table.rows = records
    table.notes.append(
        "Same held-out splits and references for every variant; a variant is kept "
        "on by default only where it helps on this table."
    )
    return table


WITHIN_FOLDS = {"full": 5, "quick": 2}
"""Folds of the within-set cross-validation (prompt-grouped)."""


def _within_table(
    ctx: BenchContext,
    profile: str,
    name: str,
    external: pd.DataFrame,
    transfer_row: dict[str, Any],
) -> Table:
    """The profile cross-validated inside one external set, beside its transfer row."""
    options = ctx.options
    n_folds = WITHIN_FOLDS["quick" if options.quick else "full"]
    frame = within_set_cv(
        external,
        _fit_predict(ctx, _config(ctx, profile, ())),
        n_folds=n_folds,
        seeds=range(options.transfer_within_seeds),
        verbose=logger.isEnabledFor(logging.DEBUG),
    )
    rows: list[dict[str, Any]] = [
        {
            "fitted on": "the corpus, never this set (transfer table)",
            "decisive AUC": transfer_row["decisive_auc"],
            "decisive log loss": transfer_row["decisive_log_loss"],
            "raw length AUC": transfer_row["length_auc"],
        }
    ]
    for record in frame.to_dict(orient="records"):
        rows.append(
            {
                "fitted on": f"{n_folds - 1} of {n_folds} folds of this set, fold "
                f"seed {record['seed']}",
                "decisive AUC": record["decisive_auc"],
                "decisive log loss": record["decisive_log_loss"],
                "raw length AUC": record["length_auc"],
                "fit seconds": record["seconds"],
            }
        )
    if len(frame) > 1:
        rows.append(
            {
                "fitted on": "this set, median over the fold seeds",
                "decisive AUC": float(frame["decisive_auc"].median()),
                "decisive log loss": float(frame["decisive_log_loss"].median()),
                "raw length AUC": float(frame["length_auc"].median()),
            }
        )
    table = Table(
        title=f"Inside {name}: the {profile} profile fitted on the set's own battles",
        columns=[
            "fitted on",
            "decisive AUC",
            "decisive log loss",
            "raw length AUC",
            "fit seconds",
        ],
        rows=rows,
    )
    table.notes.append(
        f"{n_folds} prompt-grouped folds of the {len(external):,} battles, the same "
        "profile and fits as the transfer rows (models.transfer.within_set_cv): "
        "the model learns from this set's own battles only. The gap to the "
        "transfer row is the part of the set's signal that the corpus does not "
        "teach."
    )
    return table


def _targets(frame: pd.DataFrame, profile: str) -> list[Target]:
    targets = []
    arena = frame[(frame["kind"] == "external") & (frame["source"] == "arena.csv")]
    for _, row in arena.iterrows():
        for key, goal in ARENA_TARGETS.items():
            value = float(row[key])
            better = value >= goal if key == "decisive_auc" else value <= goal
            sign = ">=" if key == "decisive_auc" else "<="
            targets.append(
                Target(
                    name=f"arena.csv held out, {profile}: {key.replace('_', ' ')}",
                    goal=f"{sign} {goal}",
                    measured=f"{value:.4f}",
                    met=bool(better),
                )
            )
    families = frame[frame["kind"] == "family"]
    if len(families):
        judged = families[families["ok"].notna()]
        n_ok = int(sum(bool(v) for v in judged["ok"]))
        missed = families[families["ok"].map(lambda v: v is not True)]
        target = Target(
            name=f"every held-out family meets the bar, {profile}",
            goal="decisive AUC >= raw length; log loss <= training prior "
            "(decisive log loss for tie-free families)",
            measured=f"{n_ok} of {len(families)}",
            met=n_ok == len(families),
        )
        if len(missed):
            target.cause = "; ".join(
                f"{r.source}: {r.missed}" for r in missed.itertuples()
            )
        targets.append(target)
    tied = frame[frame["log_loss_own_prior"].notna()]
    if len(tied):
        beats = tied["log_loss_own_prior"] < tied["own_prior_log_loss"]
        targets.append(
            Target(
                name=f"with its own class prior, each tied source beats that prior, "
                f"{profile}",
                goal="log loss with class_prior= < the prior's own log loss",
                measured=f"{int(beats.sum())} of {len(tied)}",
                met=bool(beats.all()),
            )
        )
    return targets


def _notes(options: BenchOptions, corpus_rows: int, externals: dict) -> list[str]:
    boosters = (
        f"fast boosters ({FAST_BOOSTERS_TEXT})"
        if options.transfer_fast
        else "the profile's booster params"
    )
    external_text = (
        ", ".join(f"`{name}` ({len(t):,} battles)" for name, t in externals.items())
        or "none"
    )
    return [
        f"Corpus: {corpus_rows:,} battles. Each row fits the profile (with its "
        f"params, no tuning) on every other source family, {options.transfer_folds} "
        f"prompt-grouped folds and {boosters}; every fitted piece (TF-IDF and "
        "Word2Vec vocabularies, boosters, stacker, temperature) sees the training "
        f"families only. External sets, scored by a fit on the whole corpus: "
        f"{external_text}.",
        "log loss is 3-class; 'training prior' is the training rows' class shares "
        "as a prediction; 'with own prior' gives the model the held-out source's "
        "own class shares (predict_proba(class_prior=...)), next to 'own prior', "
        "those shares alone (sources with ties only).",
        "Decisive columns score q = P(A)/(P(A)+P(B)) on rows A or B won: ROC AUC "
        "and binary log loss (a coin: 0.6931). 'raw length AUC' ranks by the "
        "difference of answer token counts, no model; 'length LR' is a 3-class "
        "logistic regression on log character counts, fitted on the training rows.",
        "ok: decisive AUC >= raw length AUC and log loss <= training prior; a "
        "source without ties is judged by its decisive log loss against the "
        "training prior's instead (its 3-class log loss mostly measures the tie "
        "share).",
    ]


# -------------------------------------------------------------------- run
def run(ctx: BenchContext) -> Section:
    """The transfer tables of the run's transfer profiles and variants."""
    started = time.perf_counter()
    options = ctx.options
    section = Section(key="transfer", title="Transfer to sources never seen in fit")
    if not Path(options.corpus).exists():
        section.notes.append(
            f"Skipped: corpus `{_shown(options.corpus)}` not found; pass --corpus "
            "PATH (a Kaggle-layout train.csv with a 'source' column)."
        )
        return section
    if len(set(ctx.families)) < 2:
        section.notes.append(
            "Skipped: the corpus has fewer than 2 source families "
            f"({sorted(set(ctx.families))}); nothing to hold out."
        )
        return section
    variants = ((BASE_VARIANT, ()), *options.transfer_variants)
    for profile in _profiles(options):
        externals = _externals(ctx, ctx.config(profile).data.max_chars)
        frames: dict[str, pd.DataFrame] = {}
        command = _command(options, profile)
        for name, overrides in variants:
            began = time.perf_counter()
            frame = _variant_frame(ctx, _config(ctx, profile, overrides), externals)
            logger.info(
                "transfer %s %s: %d sources in %.1f s",
                profile,
                name,
                len(frame),
                time.perf_counter() - began,
            )
            frames[name] = frame
            table = _variant_table(frame, profile, name, overrides)
            table.command = command
            section.tables.append(table)
        if len(frames) > 1:
            comparison = _comparison(frames, profile)
            comparison.command = command
            section.tables.append(comparison)
        section.targets += _targets(frames[BASE_VARIANT], profile)
        if options.transfer_within_seeds > 0:
            base = frames[BASE_VARIANT].set_index("source")
            for name, external in externals.items():
                table = _within_table(
                    ctx, profile, name, external, base.loc[name].to_dict()
                )
                table.command = command
                section.tables.append(table)
    section.notes = _notes(options, len(ctx.corpus), externals)
    families = source_families(ctx.corpus["source"])
    tie_free = sorted(
        f for f in set(families) if not np.any(ctx.labels[families == f] == 2)
    )
    section.notes.append(
        f"Source families: {', '.join(sorted(set(families)))}; without ties: "
        f"{', '.join(tie_free) or 'none'}."
    )
    section.seconds = time.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Run this section alone and print its markdown."""
    from benchmarks.run import section_main

    return section_main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
