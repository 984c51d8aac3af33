"""Inference speed of ``PreferenceModel.predict_proba`` on the CPU cores given.

For each profile a model is fitted on the corpus once, saved and loaded back
(as a server would), then timed on battles in the Kaggle layout (JSON strings,
so parsing is part of the cost):

- throughput (rows/s) at batch sizes 1, 32, 1,000 and 10,000 (median over
  calls; a batch larger than the corpus repeats rows with distinct ids and a
  marker appended to their texts, so no de-duplication makes it cheaper);
- single-row latency p50/p99 over many calls, each on a different row, and the
  cold start (load the model directory, predict one row);
- the time split by stage: parsing, each feature block, the boosters (every
  fold model, on both A/B orders), the stacker and calibration;
- for the embeddings profile, each embedding choice (sequence length, which
  texts are embedded, ONNX fp32/int8, the feature-store cache) with its effect
  on both speed and out-of-fold log loss.

Run alone::

    python -m benchmarks.bench_speed [--quick] [--profiles lite,default,embeddings]
"""

from __future__ import annotations

import argparse
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

from benchmarks._context import FAST_BOOSTERS_TEXT, BenchContext, BenchOptions
from benchmarks._profile import profile_child, summarise_profile
from benchmarks._report import (
    Section,
    Table,
    Target,
    available_cores,
    median,
    percentile,
    python_module,
    relative,
)
from models import PreferenceModel, multiclass_log_loss

__all__ = [
    "EMBEDDING_VARIANTS",
    "LLM_WINNER_ROWS_PER_S",
    "make_batch",
    "run",
    "staged_predict",
    "main",
]

logger = logging.getLogger(__name__)

LLM_WINNER_ROWS_PER_S = 0.77
"""What the 2024 LLM winners needed: >= 0.77 rows/s on two T4 GPUs."""

TARGETS = {
    "lite_rows_per_s": 1_000.0,
    "lite_p50_ms": 20.0,
    "embeddings_rows_per_s": 20.0,
}
_MAX_SECONDS_PER_POINT = 180.0
_MAX_SECONDS_PER_CALL = 600.0
"""A batch whose one call would take longer (estimated) is skipped, not run."""

_PYTORCH_256 = {"onnx": False, "max_seq_length": 256}

EMBEDDING_VARIANTS: dict[str, dict[str, Any]] = {
    "config (ONNX int8, 128 tokens, prompt + A + B)": {},
    "PyTorch, 256 tokens, prompt + A + B": _PYTORCH_256,
    "PyTorch, 128 tokens": {**_PYTORCH_256, "max_seq_length": 128},
    "PyTorch, responses only (no prompt)": {
        **_PYTORCH_256,
        "texts": ["response_a", "response_b"],
    },
    "ONNX fp32, 256 tokens": {**_PYTORCH_256, "onnx": True},
    "ONNX int8, 256 tokens": {**_PYTORCH_256, "onnx": "int8"},
    "ONNX int8, 128 tokens, responses only": {
        "onnx": "int8",
        "max_seq_length": 128,
        "texts": ["response_a", "response_b"],
    },
}
"""Embedding-block settings measured for the embeddings profile, each absolute
(over the profile's int8 at 128 tokens), so a label says what ran."""

VARIANT_BATCH = 300
"""Batch of the embedding-choice throughput: the transformer's cost per row is
flat beyond a few dozen rows, and 300 rows keep six choices affordable."""

VARIANT_BOOSTERS = ("lightgbm",)
VARIANT_FOLDS = 3
"""The embedding-choice fits: one fast booster on 3 folds, so that seven fits of
the embeddings profile stay affordable on 2 cores (the embeddings dominate)."""


# ---------------------------------------------------------------- batches
def _mark(field: str, round_: int) -> str:
    try:
        turns = json.loads(field)
    except (TypeError, json.JSONDecodeError):
        return f"{field} ({round_})"
    if isinstance(turns, list) and turns and isinstance(turns[-1], str):
        turns[-1] = f"{turns[-1]} ({round_})"
        return json.dumps(turns, ensure_ascii=False)
    return field


def make_batch(pool: pd.DataFrame, size: int, offset: int = 0) -> pd.DataFrame:
    """``size`` battles from ``pool`` starting at ``offset``, cycling as needed.

    Rows taken a second time get a distinct id and a marker appended to the
    last turn of each text, so they cost what new battles cost.

    >>> import pandas as pd
    >>> pool = pd.DataFrame({"id": ["1", "2"], "prompt": ['["q"]'] * 2,
    ...                      "response_a": ['["a"]'] * 2, "response_b": ['["b"]'] * 2})
    >>> make_batch(pool, 3)["id"].tolist()
    ['1', '2', '1-r1']
    """
    positions = offset + np.arange(size)
    batch = pool.iloc[positions % len(pool)].reset_index(drop=True).copy()
    rounds = positions // len(pool)
    repeated = np.flatnonzero(rounds > 0)
    if repeated.size:
        ids = batch["id"].astype(str).to_numpy(dtype=object)
        for i in repeated:
            ids[i] = f"{ids[i]}-r{rounds[i]}"
            for column in ("prompt", "response_a", "response_b"):
                batch.at[i, column] = _mark(batch.at[i, column], int(rounds[i]))
        batch["id"] = ids
    return batch


# ----------------------------------------------------------------- stages
def staged_predict(
    model: PreferenceModel, battles: pd.DataFrame
) -> tuple[np.ndarray, dict[str, float]]:
    """``predict_proba`` step by step, with the seconds of each stage.

    Mirrors :meth:`PreferenceModel.predict_proba` (without class-prior shift
    and rules): parse and truncate, each feature block (the concatenation
    included, parallel rounds split by worker time), the fold boosters on
    both A/B orders, then stacking and calibration.
    """
    stages: dict[str, float] = {}
    started = time.perf_counter()
    table = model._prepare(battles)
    stages["parse + truncate"] = time.perf_counter() - started
    # The blocks as predict_proba runs them (row-parallel ones together in
    # worker processes on big batches); the pipeline splits the wall time
    # of a parallel round between its blocks by the worker time each took.
    pipeline = model.pipeline_
    pipeline.n_jobs = model.n_jobs
    started = time.perf_counter()
    features = pipeline.transform(table)
    blocks_seconds = time.perf_counter() - started
    recorded = {s["block"]: s["seconds"] for s in pipeline.stats_}
    total = sum(recorded.values()) or 1.0
    for name, seconds in recorded.items():
        stages[f"block: {name}"] = blocks_seconds * seconds / total
    started = time.perf_counter()
    booster_proba = model._booster_proba(features.values)
    stages["boosters"] = time.perf_counter() - started
    started = time.perf_counter()
    proba = model._head(booster_proba)
    stages["stack + calibrate"] = time.perf_counter() - started
    return proba, stages


def _n_booster_models(model: PreferenceModel) -> str:
    parts = [f"{len(r.models)} {name}" for name, r in model.fold_results_.items()]
    orders = 2 if model.swap_average else 1
    return f"{' + '.join(parts)} fold models x {orders} A/B orders"


# ----------------------------------------------------------------- timing
def _served(model: PreferenceModel, directory: Path) -> tuple[PreferenceModel, float]:
    model.save(directory)
    started = time.perf_counter()
    loaded = PreferenceModel.load(directory)
    return loaded, time.perf_counter() - started


def _rates(
    model: PreferenceModel, pool: pd.DataFrame, size: int, calls: int, offset: int = 0
) -> list[float]:
    """Seconds of ``calls`` predictions of ``size`` rows each."""
    seconds = []
    for call in range(calls):
        batch = make_batch(pool, size, offset + call * size)
        started = time.perf_counter()
        model.predict_proba(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def _profile_measurements(
    ctx: BenchContext, profile: str, model: PreferenceModel, pool: pd.DataFrame
) -> dict[str, Any]:
    options = ctx.options
    result: dict[str, Any] = {"profile": profile}
    # Warm up (lazy encoder loads, first-call allocations) outside the timings.
    model.predict_proba(make_batch(pool, 32, 0))
    latencies = _rates(model, pool, 1, options.latency_calls, offset=7)
    result["latency_ms"] = [s * 1000 for s in latencies]
    throughput = {}
    per_row_estimate = median(latencies)
    for size in options.batch_sizes:
        if size == 1:
            throughput[1] = (1 / per_row_estimate, len(latencies), per_row_estimate)
            continue
        expected = per_row_estimate * size
        if expected > _MAX_SECONDS_PER_CALL:
            throughput[size] = (float("nan"), 0, expected)
            continue
        if size <= 32:
            calls = max(options.repeats, 10)
        else:
            calls = int(
                max(
                    1,
                    min(options.repeats, _MAX_SECONDS_PER_POINT // max(expected, 1e-9)),
                )
            )
        seconds = _rates(model, pool, size, calls, offset=size)
        med = median(seconds)
        throughput[size] = (size / med, calls, med)
        per_row_estimate = med / size
    result["throughput"] = throughput
    stage_runs: dict[int, list[dict[str, float]]] = {}
    for size in sorted({1, min(1000, max(options.batch_sizes))}):
        runs = []
        for call in range(max(options.repeats, 3 if size == 1 else 1)):
            _, stages = staged_predict(model, make_batch(pool, size, 3 + call * size))
            runs.append(stages)
        stage_runs[size] = runs
    result["stages"] = stage_runs
    return result


def _throughput_table(measured: list[dict[str, Any]]) -> Table:
    table = Table(
        title="Batch throughput of predict_proba",
        columns=[
            "profile",
            "batch",
            "calls",
            "rows/s (median)",
            "seconds per call",
            "x LLM winners (0.77 rows/s)",
        ],
    )
    for result in measured:
        for size, (rate, calls, seconds) in result["throughput"].items():
            if calls == 0:
                table.rows.append(
                    {
                        "profile": result["profile"],
                        "batch": size,
                        "calls": 0,
                        "rows/s (median)": f"skipped: ~{seconds / 60:.0f} min per call",
                    }
                )
                continue
            table.rows.append(
                {
                    "profile": result["profile"],
                    "batch": size,
                    "calls": calls,
                    "rows/s (median)": rate,
                    "seconds per call": seconds,
                    "x LLM winners (0.77 rows/s)": (
                        f"{rate / LLM_WINNER_ROWS_PER_S:,.0f}x"
                    ),
                }
            )
    table.notes.append(
        "Each call is a different slice of the corpus in the Kaggle layout; batch 1 "
        "is the median of the single-row latency calls. The LLM winners' bar is "
        "0.77 rows/s on two T4 GPUs. Slices wrap around the row pool, so batches "
        "larger than it repeat rows, and words seen in earlier calls hit the TF-IDF "
        "per-word n-gram cache: on unseen text, big batches run somewhat slower."
    )
    return table


def _latency_table(measured: list[dict[str, Any]]) -> Table:
    table = Table(
        title="Single-row latency of predict_proba",
        columns=[
            "profile",
            "calls",
            "p50 (ms)",
            "p99 (ms)",
            "mean (ms)",
            "cold start (s)",
        ],
    )
    for result in measured:
        latencies = result["latency_ms"]
        table.rows.append(
            {
                "profile": result["profile"],
                "calls": len(latencies),
                "p50 (ms)": percentile(latencies, 50),
                "p99 (ms)": percentile(latencies, 99),
                "mean (ms)": float(np.mean(latencies)),
                "cold start (s)": result.get("cold_start_s"),
            }
        )
    table.notes.append(
        "cold start: PreferenceModel.load of the saved model directory (sha256 "
        "check included) plus the first one-row prediction (lazy encoder load)."
    )
    return table


def _stage_table(measured: list[dict[str, Any]]) -> Table:
    table = Table(
        title="Where predict_proba spends its time",
        columns=["profile", "batch", "stage", "ms per call (median)", "share"],
    )
    for result in measured:
        for size, runs in result["stages"].items():
            names = list(runs[0])
            medians = {
                name: median(run.get(name, 0.0) for run in runs) for name in names
            }
            total = sum(medians.values()) or 1.0
            for name in names:
                table.rows.append(
                    {
                        "profile": result["profile"],
                        "batch": size,
                        "stage": name,
                        "ms per call (median)": medians[name] * 1000,
                        "share": f"{medians[name] / total:.1%}",
                    }
                )
        table.notes.append(f"{result['profile']}: boosters = {result['boosters']}.")
    return table


# ------------------------------------------------------- embedding variants
def _variant_table(ctx: BenchContext, pool: pd.DataFrame) -> tuple[Table, float, str]:
    options = ctx.options
    size = min(VARIANT_BATCH, max(options.batch_sizes))
    rate_column = f"rows/s at batch {size:,}"
    table = Table(
        title="Default profile: embedding choices, speed and accuracy",
        columns=[
            "choice",
            "OOF log loss",
            rate_column,
            "single-row p50 (ms)",
            "fit seconds",
            f"meets >= {TARGETS['embeddings_rows_per_s']:.0f} rows/s",
        ],
    )
    best_rate, best_name = 0.0, "-"
    for name, changes in EMBEDDING_VARIANTS.items():
        try:
            fitted = ctx.profile_model(
                "embeddings",
                {"embeddings": changes} if changes else None,
                fast=True,
                boosters=VARIANT_BOOSTERS,
                n_folds=VARIANT_FOLDS,
            )
            with tempfile.TemporaryDirectory(prefix="bench-variant-") as tmp:
                served, _ = _served(fitted.model, Path(tmp) / "model")
                served.predict_proba(make_batch(pool, 32, 0))
                seconds = _rates(
                    served, pool, size, max(1, min(options.repeats, 2)), offset=size
                )
                latency = _rates(
                    served, pool, 1, min(50, options.latency_calls), offset=11
                )
        except Exception as err:  # one failing engine must not sink the section
            logger.warning("embedding choice %r failed: %r", name, err)
            message = f"not run: {type(err).__name__}: {err}"
            table.rows.append({"choice": name, "OOF log loss": message[:200]})
            continue
        finally:
            ctx.release(
                "embeddings",
                {"embeddings": changes} if changes else None,
                fast=True,
                boosters=VARIANT_BOOSTERS,
                n_folds=VARIANT_FOLDS,
            )
        rate = size / median(seconds)
        if rate > best_rate:
            best_rate, best_name = rate, name
        table.rows.append(
            {
                "choice": name,
                "OOF log loss": multiclass_log_loss(
                    ctx.labels, fitted.model.oof_proba_
                ),
                rate_column: rate,
                "single-row p50 (ms)": percentile([s * 1000 for s in latency], 50),
                "fit seconds": fitted.seconds,
                f"meets >= {TARGETS['embeddings_rows_per_s']:.0f} rows/s": rate
                >= TARGETS["embeddings_rows_per_s"],
            }
        )
    # The feature store as a cache: a batch whose features are stored already.
    fitted = ctx.profile_model("embeddings")
    batch = make_batch(pool, size, 5 * size)
    fitted.model.predict_proba(batch)  # fills the store for this batch
    started = time.perf_counter()
    fitted.model.predict_proba(batch)
    cached_rate = size / (time.perf_counter() - started)
    table.rows.append(
        {
            "choice": "FeatureStore cache hit (battles seen before; config model)",
            rate_column: cached_rate,
        }
    )
    table.notes += [
        "Each choice is a separate default-profile model fitted on the whole corpus "
        "and timed after a save/load round trip. To keep these fits affordable on 2 "
        f"cores every row, the config row included, uses {'+'.join(VARIANT_BOOSTERS)} "
        f"only, {VARIANT_FOLDS} prompt-grouped folds and fast boosters "
        f"({FAST_BOOSTERS_TEXT}): log losses compare "
        "with each other, not with the accuracy section, and the booster share of "
        "the time is smaller than with the full stack.",
        "The cache row predicts a batch whose feature blocks are already in the "
        "store (a model fitted with a store uses it at prediction too): repeated "
        "battles cost only hashing, reading and the boosters.",
    ]
    table.notes.append(
        "fit seconds: features not yet in the benchmark store plus the boosters."
    )
    return table, best_rate, best_name


# -------------------------------------------------------------- profiling
def _profile_miss(
    ctx: BenchContext, model_dir: Path, profile: str, size: int, calls: int
) -> Table | None:
    raw = ctx.options.work_dir / "profiles" / f"speed-{profile}-batch{size}.txt"
    argv = python_module(
        "benchmarks.bench_speed",
        "--worker",
        "--model",
        str(model_dir),
        "--data",
        str(ctx.corpus_csv),
        "--batch",
        str(size),
        "--calls",
        str(calls),
    )
    child = profile_child(argv, raw, rate=50, timeout=ctx.options.timeout)
    if child is None:
        return None
    return summarise_profile(
        raw,
        title=f"Profile: {profile} predict_proba at batch {size}",
        command="py-spy record --format raw --subprocesses -- python -m "
        "benchmarks.bench_speed "
        f"--worker --model MODEL_DIR --data {relative(ctx.corpus_csv)} --batch {size} "
        f"--calls {calls}",
    )


def _worker(args: argparse.Namespace) -> int:
    model = PreferenceModel.load(args.model)
    raw = pd.read_csv(
        args.data, dtype={"id": str}, keep_default_na=False, na_values=[""]
    )
    pool = raw[["id", "prompt", "response_a", "response_b"]]
    model.predict_proba(make_batch(pool, 8, 0))
    for call in range(args.calls):
        model.predict_proba(make_batch(pool, args.batch, 100 + call * args.batch))
    return 0


def _plot(measured: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=80)
    for result in measured:
        sizes = sorted(s for s, v in result["throughput"].items() if v[1] > 0)
        ax.plot(
            sizes,
            [result["throughput"][s][0] for s in sizes],
            marker="o",
            label=f"{result['profile']} profile",
        )
    ax.axhline(
        TARGETS["lite_rows_per_s"], color="C0", ls=":", lw=1, label="lite target"
    )
    ax.axhline(
        TARGETS["embeddings_rows_per_s"],
        color="C1",
        ls=":",
        lw=1,
        label="embeddings target",
    )
    ax.axhline(
        LLM_WINNER_ROWS_PER_S, color="grey", ls="--", lw=1, label="LLM winners (2xT4)"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size (rows)")
    ax.set_ylabel("rows/s")
    ax.set_title(f"predict_proba throughput, {available_cores()} cores")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# -------------------------------------------------------------------- run
def run(ctx: BenchContext) -> Section:
    """Throughput, latency and stage tables for the run's profiles."""
    started = time.perf_counter()
    options = ctx.options
    section = Section(key="speed", title="Inference speed")
    pool = ctx.raw_corpus[["id", "prompt", "response_a", "response_b"]]
    measured = []
    profiles_tables: list[Table] = []
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        for profile in options.profiles:
            fitted = ctx.profile_model(profile)
            model_dir = Path(tmp) / profile
            started_cold = time.perf_counter()
            served, _ = _served(fitted.model, model_dir)
            served.predict_proba(make_batch(pool, 1, 1))
            cold = time.perf_counter() - started_cold
            result = _profile_measurements(ctx, profile, served, pool)
            result["cold_start_s"] = cold
            result["boosters"] = _n_booster_models(served)
            measured.append(result)
            _check_targets(ctx, section, result, model_dir, profiles_tables)
        section.tables += [
            _throughput_table(measured),
            _latency_table(measured),
            _stage_table(measured),
        ]
        if "embeddings" in options.profiles and options.embedding_variants:
            variants, best, best_name = _variant_table(ctx, pool)
            section.tables.append(variants)
            size = min(VARIANT_BATCH, max(options.batch_sizes))
            section.targets.append(
                Target(
                    name=f"embeddings profile rows/s at batch {size:,}, fastest "
                    f"embedding choice ({best_name})",
                    goal=f">= {TARGETS['embeddings_rows_per_s']:.0f} rows/s",
                    measured=f"{best:,.1f} rows/s "
                    f"({best / LLM_WINNER_ROWS_PER_S:,.0f}x the LLM winners)",
                    met=best >= TARGETS["embeddings_rows_per_s"],
                )
            )
        section.tables += profiles_tables
    section.figures.append(_plot(measured, options.results_dir / "speed.png"))
    section.notes += [
        f"Data: battles of `{relative(ctx.corpus_csv)}` in the Kaggle layout (parsing "
        f"included). {available_cores()} cores; LightGBM/XGBoost and PyTorch use all "
        "of them (their defaults). No GPU: GPU rows are not measured (no GPU lent).",
    ]
    section.seconds = time.perf_counter() - started
    return section


def _check_targets(
    ctx: BenchContext,
    section: Section,
    result: dict[str, Any],
    model_dir: Path,
    profile_tables: list[Table],
) -> None:
    profile = result["profile"]
    throughput = result["throughput"]
    p50 = percentile(result["latency_ms"], 50)
    measured_sizes = [s for s, value in throughput.items() if value[1] > 0]
    size = 1000 if 1000 in measured_sizes else max(measured_sizes)
    rate = throughput[size][0]
    if "embeddings" not in ctx.config(profile).features.blocks:
        checks = [
            (
                f"{profile} rows/s at batch {size:,}",
                f">= {TARGETS['lite_rows_per_s']:,.0f} rows/s",
                f"{rate:,.0f} rows/s",
                rate >= TARGETS["lite_rows_per_s"],
                (size, 5),
            ),
            (
                f"{profile} single-row p50 latency",
                f"<= {TARGETS['lite_p50_ms']:.0f} ms",
                f"{p50:.1f} ms",
                p50 <= TARGETS["lite_p50_ms"],
                (1, 300),
            ),
        ]
    else:
        checks = [
            (
                f"{profile} rows/s at batch {size:,} (config embedding settings)",
                f">= {TARGETS['embeddings_rows_per_s']:.0f} rows/s",
                f"{rate:,.1f} rows/s",
                rate >= TARGETS["embeddings_rows_per_s"],
                (size, 2),
            )
        ]
    for name, goal, measured, met, (prof_size, calls) in checks:
        target = Target(name=name, goal=goal, measured=measured, met=met)
        if not met and ctx.options.profile_misses:
            table = _profile_miss(ctx, model_dir, profile, prof_size, calls)
            if table is not None:
                profile_tables.append(table)
                target.cause = f"see '{table.title}'"
        section.targets.append(target)
    section.targets.append(
        Target(
            name=f"{profile}: ratio to the LLM winners' 0.77 rows/s (2x T4)",
            goal="state it",
            measured=f"{rate / LLM_WINNER_ROWS_PER_S:,.0f}x on "
            f"{available_cores()} CPU cores",
            met=None,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run this section alone (or, with ``--worker``, a profiling worker)."""
    from benchmarks.run import options_from_args, section_parser

    parser = section_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    options: BenchOptions = options_from_args(args)
    print(run(BenchContext(options)).to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
