"""How building features and training grow with the number of battles.

Scale sets come from ``benchmarks.make_scale_set`` (corpus texts recombined in
the Kaggle layout): the 57,477-row set (the Kaggle training size) and its
first 8k and 32k rows, and a 4x set of 229,908 rows. At each size the real
command-line entry points run as child processes, each measured for wall time,
CPU time (``os.wait4``) and peak RSS (its VmHWM, polled in ``/proc``):

- ``python -m pipelines.build_features`` into a fresh feature store;
- ``python -m pipelines.train_gbdt --trials 0`` on that store: by default a
  fast fit (LightGBM alone on 3 folds, learning rate >= 0.1, at most 400
  rounds; then calibration and the report), because the config's 5-fold
  two-booster fit at its own learning rates would take hours at 229,908 rows on 2
  cores; ``--scale-config-train`` trains with the config's params instead.

A fitted growth exponent ``b`` of ``time ~ rows^b`` summarises each curve, and
a PNG plots them. Then the target run: ``train_gbdt --trials 200`` on the 57k
set (under py-spy at a low sampling rate, so the profile is at hand if it
misses its 60-minute target).

Run alone::

    python -m benchmarks.bench_scale [--quick] [--scale-rows 8000,32000]
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks._context import (
    FAST_BOOSTERS_TEXT,
    BenchContext,
    fast_training_overrides,
)
from benchmarks._profile import profile_child, summarise_profile
from benchmarks._report import (
    ChildRun,
    Section,
    Table,
    Target,
    growth_exponent,
    optuna_trial_counts,
    python_module,
    relative,
    run_child,
    trials_summary,
)
from benchmarks.make_scale_set import KAGGLE_ROWS
from pipelines import write_csv_atomic

__all__ = [
    "TARGET_MINUTES",
    "TARGET_RSS_GB",
    "generate_scale_set",
    "main",
    "run",
    "scale_sets",
]

logger = logging.getLogger(__name__)

TARGET_MINUTES = 60.0
"""train_gbdt --trials 200 on the 57k set, on 2 cores."""

TARGET_RSS_GB = 6.0
"""Peak RSS of building features and of training on the 57k set."""


def _generator_tag() -> str:
    source = Path(__file__).with_name("make_scale_set.py").read_bytes()
    return hashlib.sha256(source).hexdigest()[:8]


def generate_scale_set(ctx: BenchContext, n_rows: int) -> tuple[Path, ChildRun | None]:
    """The scale set of ``n_rows`` battles, made once per generator version and
    seed; the generating child's measurements when it was made now."""
    options = ctx.options
    path = (
        options.work_dir
        / "scale"
        / f"scale-{n_rows}-s{options.seed}-{_generator_tag()}.csv"
    )
    if path.exists():
        return path, None
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = python_module(
        "benchmarks.make_scale_set",
        "--out",
        str(path),
        "--n-rows",
        str(n_rows),
        "--seed",
        str(options.seed),
        "--corpus",
        str(options.corpus),
        "--quiet",
    )
    return path, run_child(argv, timeout=options.timeout).check()


def base_rows(points: Sequence[int]) -> int:
    """The base set's size: 57,477, or the largest point below it.

    >>> base_rows([8000, 32000, 57477, 229908]), base_rows([2000, 4000])
    (57477, 4000)
    """
    below = [n for n in points if n <= KAGGLE_ROWS]
    return max(below) if below else min(points)


def scale_sets(
    ctx: BenchContext, *, only_base: bool = False
) -> tuple[dict[int, Path], Table]:
    """The CSV of every scale point, generated (or reused) on first use.

    Points up to the base size (57,477, or the largest point below it) are the
    first rows of the base set; larger points are sets of their own.
    ``only_base`` makes (and returns) the base set alone.
    """
    points = sorted(ctx.options.scale_rows)
    base = base_rows(points)
    if only_base:
        points = [base]
    paths: dict[int, Path] = {}
    made = Table(
        title="Scale sets",
        columns=["rows", "file", "generated in (s)", "size (MB)"],
    )
    base_path, base_run = generate_scale_set(ctx, base)
    for n in points:
        if n > base:
            path, child = generate_scale_set(ctx, n)
        elif n == base:
            path, child = base_path, base_run
        else:
            path = base_path.with_name(f"{base_path.stem}-head{n}.csv")
            child = None
            if not path.exists():
                head = pd.read_csv(
                    base_path, dtype={"id": str}, keep_default_na=False, nrows=n
                )
                write_csv_atomic(head, path)
        paths[n] = path
        made.rows.append(
            {
                "rows": n,
                "file": relative(path),
                "generated in (s)": None if child is None else child.seconds,
                "size (MB)": path.stat().st_size / 1e6,
            }
        )
    made.command = (
        "python -m benchmarks.make_scale_set --out PATH --n-rows N "
        f"--seed {ctx.options.seed}"
    )
    made.notes.append(
        "Each battle recombines corpus texts: a random corpus battle as the template "
        "(lengths and turn counts kept), 25-50 % of the words of every turn of 4+ "
        "words "
        "replaced by a run of words from the same column and source, the template's "
        "label kept with its response (A/B swapped with the label half the time). "
        "Smaller points are the first rows of the base set; files are reused while "
        "make_scale_set.py is unchanged ('generated in' is empty then)."
    )
    return paths, made


def _train_argv(
    ctx: BenchContext,
    data: Path,
    store: Path,
    trials: int,
    out_name: str,
    database: Path,
) -> list[str]:
    """``train_gbdt`` of the scale profile on ``data``, model and study in ``store``."""
    return python_module(
        "pipelines.train_gbdt",
        *ctx.cli_args(ctx.options.scale_profile),
        "--data",
        str(data),
        "--store",
        str(store),
        "--trials",
        str(trials),
        "--out",
        str(store / out_name),
        "--quiet",
        "--set",
        f"tuning.storage=sqlite:///{database}",
    )


def _scale_train_overrides(ctx: BenchContext) -> tuple[str, ...]:
    """The ``--set`` overrides of the scale points' train (none: config params)."""
    options = ctx.options
    if not options.scale_fast_train:
        return ()
    return fast_training_overrides(
        ctx.config(options.scale_profile), options.scale_boosters, options.scale_folds
    )


def _point(
    ctx: BenchContext, n_rows: int, data: Path, store: Path, skip_train: str | None
) -> dict[str, Any]:
    """Build, then (unless ``skip_train`` gives a reason) train at one size."""
    options = ctx.options
    profile = options.scale_profile
    build = run_child(
        python_module(
            "pipelines.build_features",
            *ctx.cli_args(profile),
            "--data",
            str(data),
            "--store",
            str(store),
            "--quiet",
        ),
        timeout=options.timeout,
    )
    # The features section reads the per-block table of this same build.
    ctx.children["build", profile, str(data), None] = build
    row: dict[str, Any] = {"rows": n_rows}
    row.update(_child_cells("build", build))
    if build.returncode == 0:
        row["build rows/s"] = n_rows / build.seconds
    if build.returncode != 0 or skip_train:
        row["train wall (s)"] = skip_train or "not run: the build failed"
        return row
    argv = _train_argv(
        ctx, data, store, options.scale_trials, "model", store / "optuna.db"
    )
    for override in _scale_train_overrides(ctx):
        argv += ["--set", override]
    train = run_child(argv, timeout=options.timeout)
    row.update(_child_cells("train", train))
    return row


def _child_cells(prefix: str, child: ChildRun) -> dict[str, Any]:
    if child.returncode != 0:
        reason = (
            f"> {child.seconds:,.0f} (stopped)"
            if child.timed_out
            else f"failed ({child.returncode})"
        )
        logger.warning("%s: %s\n%s", child.display, reason, child.stderr[-2000:])
        return {
            f"{prefix} wall (s)": reason,
            f"{prefix} peak RSS (GB)": child.peak_rss_gb,
        }
    return {
        f"{prefix} wall (s)": child.seconds,
        f"{prefix} CPU (s)": child.cpu_seconds,
        f"{prefix} peak RSS (GB)": child.peak_rss_gb,
    }


def _target_run(
    ctx: BenchContext, n_rows: int, data: Path, store: Path
) -> tuple[Table, list[Target], Table | None]:
    options = ctx.options
    profile = options.scale_profile
    budget = options.tuning_budget
    database = store / "optuna-target.db"
    argv = _train_argv(ctx, data, store, options.target_trials, "model-tuned", database)
    if budget:
        argv += ["--timeout", f"{budget:.0f}"]
    raw = (
        options.work_dir
        / "profiles"
        / f"train-gbdt-{n_rows}-trials{options.target_trials}.txt"
    )
    raw.unlink(missing_ok=True)
    child = None
    if options.profile_misses:
        child = profile_child(argv, raw, rate=2, timeout=options.timeout)
    if child is None:
        child = run_child(argv, timeout=options.timeout)
    shown = (
        f"python -m pipelines.train_gbdt --config configs/{profile}.yaml --data "
        f"{relative(data)} --trials {options.target_trials}"
        + (f" --timeout {budget:.0f}" if budget else "")
        + "".join(f" --set {o}" for o in options.overrides)
    )
    minutes = child.seconds / 60
    ok = child.returncode == 0
    trials_text, all_trials = trials_summary(
        optuna_trial_counts(database), options.target_trials, minutes, budget
    )
    report_path = store / "model-tuned" / "report" / "report.json"
    if ok and report_path.exists():
        # The model's own report, not the last stdout line (py-spy adds its own).
        report = json.loads(report_path.read_text())
        tuning = report.get("tuning") or {}
        result = (
            f"OOF log loss {report['log_loss']:.4f} (class prior "
            f"{report['class_prior']:.4f}, length-only {report['length_logreg']:.4f}); "
            f"trials on {tuning.get('rows', n_rows):,} rows"
        )
    elif ok:
        result = "finished, but wrote no report"
    elif child.timed_out:
        result = f"stopped after {minutes:.0f} min (--child-timeout-min)"
    else:
        result = f"failed (exit {child.returncode})"
    table = Table(
        title=f"train_gbdt --trials {options.target_trials} on the {n_rows:,}-row "
        "scale set",
        columns=["wall (min)", "CPU (min)", "peak RSS (GB)", "trials", "result"],
        command=shown,
    )
    table.rows.append(
        {
            "wall (min)": minutes,
            "CPU (min)": child.cpu_seconds / 60,
            "peak RSS (GB)": child.peak_rss_gb,
            "trials": trials_text,
            "result": result,
        }
    )
    table.notes.append(
        "Features come from the store the build above filled (the build's own time "
        "is in the scale table); the Optuna study is fresh, so all trials run"
        + (
            f"; tuning stops after {budget / 60:.0f} min (--timeout), so a miss shows "
            "as fewer trials than asked"
            if budget
            else ""
        )
        + (
            ". Run under py-spy at 2 samples/s (negligible overhead)."
            if raw.exists()
            else "."
        )
    )
    met = ok and all_trials and minutes <= TARGET_MINUTES
    target = Target(
        name=f"train_gbdt --trials {options.target_trials} on {n_rows:,} rows",
        goal=f"<= {TARGET_MINUTES:.0f} min on 2 cores, all trials",
        measured=f"{minutes:.1f} min; {trials_text}",
        met=met,
    )
    profile_table = None
    if raw.exists():
        profile_table = summarise_profile(
            raw,
            title=f"Profile: train_gbdt --trials {options.target_trials} on "
            f"{n_rows:,} rows",
            command=shown,
        )
        if not met:
            target.cause = f"see '{profile_table.title}'"
    return table, [target], profile_table


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4), dpi=80)
    for prefix, color in (("build", "C0"), ("train", "C1")):
        pairs = [
            (r["rows"], r[f"{prefix} wall (s)"])
            for r in rows
            if isinstance(r.get(f"{prefix} wall (s)"), float)
        ]
        if pairs:
            x, y = map(np.asarray, zip(*pairs, strict=True))
            b = growth_exponent(x, y)
            left.plot(x, y, "o", color=color, label=f"{prefix} (b = {b:.2f})")
            if len(pairs) >= 2:
                fit = np.polyfit(np.log(x), np.log(y), 1)
                grid = np.geomspace(x.min(), x.max(), 20)
                left.plot(
                    grid, np.exp(np.polyval(fit, np.log(grid))), "-", color=color, lw=1
                )
        rss = [
            (r["rows"], r[f"{prefix} peak RSS (GB)"])
            for r in rows
            if isinstance(r.get(f"{prefix} peak RSS (GB)"), float)
        ]
        if rss:
            right.plot(*zip(*rss, strict=True), "o-", color=color, label=prefix)
    right.axhline(TARGET_RSS_GB, color="grey", ls="--", lw=1, label="6 GB target")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("battles")
        ax.legend(fontsize=7)
    left.set_yscale("log")
    left.set_ylabel("wall time (s)")
    left.set_title("time ~ rows^b", fontsize=9)
    right.set_ylabel("peak RSS (GB)")
    right.set_title("peak memory", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def run(ctx: BenchContext) -> Section:
    """Scale table, growth exponents, plot and the 200-trial target run."""
    started = time.perf_counter()
    options = ctx.options
    section = Section(key="scale", title="Scale: build_features and train_gbdt")
    paths, made = scale_sets(ctx)
    rows = []
    target_rows = base_rows(list(paths))
    extra_tables: list[Table] = []
    work = options.work_dir / "stores"
    work.mkdir(parents=True, exist_ok=True)
    skip_train: str | None = None  # set when a train hit the child time limit
    not_asked = None if options.scale_train else "not run (--no-scale-train)"
    for n_rows, data in sorted(paths.items()):
        store = Path(tempfile.mkdtemp(prefix=f"scale-{n_rows}-", dir=work))
        try:
            row = _point(ctx, n_rows, data, store, skip_train or not_asked)
            rows.append(row)
            logger.info("scale %s: %s", n_rows, row)
            if skip_train is None and "(stopped)" in str(row.get("train wall (s)")):
                # Larger sets would only hit the same limit: say so, save hours.
                skip_train = (
                    f"not run: {n_rows:,} rows already exceeded the "
                    f"{options.timeout / 60:.3g}-min limit"
                )
            if n_rows == target_rows and options.target_trials > 0 and skip_train:
                extra_tables.append(
                    Table(
                        title=f"train_gbdt --trials {options.target_trials} on the "
                        f"{n_rows:,}-row scale set",
                        columns=["result"],
                        rows=[{"result": skip_train}],
                    )
                )
                section.targets.append(
                    Target(
                        name=f"train_gbdt --trials {options.target_trials} on "
                        f"{n_rows:,} rows",
                        goal=f"<= {TARGET_MINUTES:.0f} min on 2 cores, all trials",
                        measured=skip_train,
                        met=False,
                        cause="even --trials 0 did not finish; see the scale table",
                    )
                )
            elif n_rows == target_rows and options.target_trials > 0:
                table, targets, profile_table = _target_run(ctx, n_rows, data, store)
                extra_tables.append(table)
                section.targets += targets
                if profile_table is not None:
                    extra_tables.append(profile_table)
            if n_rows == target_rows:
                for prefix in ("build", "train"):
                    rss = row.get(f"{prefix} peak RSS (GB)")
                    if isinstance(rss, float):
                        section.targets.append(
                            Target(
                                name=f"{prefix} peak RSS at {n_rows:,} rows",
                                goal=f"<= {TARGET_RSS_GB:.0f} GB",
                                measured=f"{rss:.2f} GB",
                                met=rss <= TARGET_RSS_GB,
                            )
                        )
        finally:
            shutil.rmtree(store, ignore_errors=True)
    profile = options.scale_profile
    table = Table(
        title=f"Wall time and peak RSS by size ({profile} profile)",
        columns=[
            "rows",
            "build wall (s)",
            "build rows/s",
            "build peak RSS (GB)",
            "train wall (s)",
            "train CPU (s)",
            "train peak RSS (GB)",
        ],
        rows=rows,
        command=(
            f"python -m pipelines.build_features --config configs/{profile}.yaml "
            "--data SET --store FRESH; python -m pipelines.train_gbdt --config "
            f"configs/{profile}.yaml "
            f"--data SET --store FRESH --trials {options.scale_trials}"
            + "".join(f" --set {o}" for o in _scale_train_overrides(ctx))
        ),
    )
    growth = Table(
        title="Fitted growth exponents (time or memory ~ rows^b)",
        columns=["quantity", "b"],
    )
    for column in (
        "build wall (s)",
        "train wall (s)",
        "build peak RSS (GB)",
        "train peak RSS (GB)",
    ):
        pairs = [
            (r["rows"], r[column]) for r in rows if isinstance(r.get(column), float)
        ]
        if len(pairs) >= 2:
            growth.rows.append(
                {"quantity": column, "b": growth_exponent(*zip(*pairs, strict=True))}
            )
    growth.notes.append(
        "Least-squares fit of log(value) = a + b log(rows) over the sizes above; "
        "b = 1 is linear."
    )
    section.tables += [made, table, growth, *extra_tables]
    section.figures.append(_plot(rows, options.results_dir / "scale.png"))
    training = ctx.config(profile).training
    if options.scale_fast_train:
        how = (
            f"a fast fit ({'+'.join(options.scale_boosters)} on "
            f"{options.scale_folds} folds, {FAST_BOOSTERS_TEXT}; then calibration "
            "and the report): the config's "
            f"{training.n_folds}-fold {'+'.join(training.boosters)} fit at its own "
            "learning rates would take hours at the largest size on 2 cores; the "
            "200-trial run below uses the config's folds and boosters"
        )
    else:
        how = (
            f"the config's params ({training.n_folds} folds x "
            f"{'+'.join(training.boosters)}, stacking, calibration, report)"
        )
    section.notes.append(
        f"The {profile} profile (the embeddings profile's MiniLM step alone would take "
        "hours "
        "at these sizes on 2 CPU cores; its speed is in the speed section). train_gbdt "
        f"at every size uses --trials {options.scale_trials} with {how}; each child "
        "runs alone; wall and CPU time from os.wait4, peak RSS from the child's VmHWM "
        "(polled in /proc)."
    )
    section.seconds = time.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Run this section alone and print its markdown."""
    from benchmarks.run import section_main

    return section_main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
