"""Feature-store build speed per block, whole-build peak RSS, embedding engines.

Runs the real ``python -m pipelines.build_features`` into a fresh store as a
child process, on the corpus (repeated; medians) and on the 57,477-row scale
set, and reads its per-block table (block seconds, rows/s) plus the child's
wall time and peak RSS. The embeddings block is timed alone on a subsample
(the MiniLM pass over a whole set takes tens of minutes on 2 CPU cores), and
``benchmarks.bench_embeddings`` compares PyTorch and ONNX engines.

Run alone::

    python -m benchmarks.bench_features [--quick]
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks._context import BenchContext
from benchmarks._profile import profile_child, summarise_profile
from benchmarks._report import (
    ChildRun,
    Section,
    Table,
    Target,
    available_cores,
    median,
    python_module,
    relative,
    run_child,
)
from pipelines import write_csv_atomic

__all__ = ["LITE_TARGET_ROWS_PER_S", "parse_block_stats", "run", "main"]

logger = logging.getLogger(__name__)

LITE_TARGET_ROWS_PER_S = 300.0
"""All lite blocks together, on 2 cores."""

_STAT_LINE = re.compile(
    r"^(?P<block>\w+)\s+(?P<columns>[\d,]+)\s+(?P<rows>[\d,]+)\s+"
    r"(?P<seconds>[\d.]+)\s+(?P<rate>[\d,.]+)\s+(?P<cache>\S+)\s*$"
)


def parse_block_stats(text: str) -> list[dict[str, Any]]:
    """The per-block rows ``pipelines.build_features`` prints (its format_stats).

    >>> parse_block_stats("lengths    67   1,000   0.50   2,000  miss")
    [{'block': 'lengths', 'columns': 67, 'rows': 1000, 'seconds': 0.5, 'cache': 'miss'}]
    """
    stats = []
    for line in text.splitlines():
        match = _STAT_LINE.match(line.strip())
        if match:
            stats.append(
                {
                    "block": match["block"],
                    "columns": int(match["columns"].replace(",", "")),
                    "rows": int(match["rows"].replace(",", "")),
                    "seconds": float(match["seconds"]),
                    "cache": match["cache"],
                }
            )
    return stats


def _build(
    ctx: BenchContext,
    profile: str,
    data: Path,
    *,
    blocks: str | None = None,
    reuse: bool = True,
) -> ChildRun:
    """``build_features`` into a fresh store (reusing this run's identical build)."""
    key = ("build", profile, str(data), blocks)
    if reuse and key in ctx.children:
        return ctx.children[key]
    work = ctx.options.work_dir / "stores"
    work.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="features-", dir=work))
    try:
        argv = python_module(
            "pipelines.build_features",
            *ctx.cli_args(profile),
            "--data",
            str(data),
            "--store",
            str(store),
            "--quiet",
        )
        if blocks:
            argv += ["--blocks", blocks]
        child = run_child(argv, timeout=ctx.options.timeout)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    if child.returncode != 0:
        logger.warning("%s failed:\n%s", child.display, child.stderr[-2000:])
    ctx.children[key] = child
    return child


def _subsample(ctx: BenchContext, source: Path, n_rows: int, tag: str) -> Path:
    path = ctx.options.work_dir / f"{tag}-{source.stem}-head{n_rows}.csv"
    if not path.exists():
        head = pd.read_csv(
            source, dtype={"id": str}, keep_default_na=False, nrows=n_rows
        )
        write_csv_atomic(head, path)
    return path


def _block_table(
    ctx: BenchContext,
    corpus_runs: list[ChildRun],
    scale_run: ChildRun | None,
    scale_rows: int,
    embed: dict[str, ChildRun],
) -> tuple[Table, dict[str, float]]:
    options = ctx.options
    corpus_stats = [
        parse_block_stats(r.stderr) for r in corpus_runs if r.returncode == 0
    ]
    scale_stats = (
        parse_block_stats(scale_run.stderr)
        if scale_run and scale_run.returncode == 0
        else []
    )
    blocks = [s["block"] for s in (corpus_stats[0] if corpus_stats else scale_stats)]
    table = Table(
        title=f"Build speed per block ({options.scale_profile} profile, fit+transform)",
        columns=[
            "block",
            "columns",
            "corpus s (median)",
            "corpus rows/s",
            f"{scale_rows:,}-row set s",
            f"{scale_rows:,}-row set rows/s",
        ],
    )
    n_corpus = len(ctx.corpus)
    totals = {"corpus": 0.0, "scale": 0.0}
    for name in blocks:
        seconds = median(
            s["seconds"] for run in corpus_stats for s in run if s["block"] == name
        )
        scale_seconds = next(
            (s["seconds"] for s in scale_stats if s["block"] == name), None
        )
        columns = next(
            s["columns"]
            for run in corpus_stats or [scale_stats]
            for s in run
            if s["block"] == name
        )
        totals["corpus"] += seconds
        totals["scale"] += scale_seconds or 0.0
        table.rows.append(
            {
                "block": name,
                "columns": columns,
                "corpus s (median)": seconds,
                "corpus rows/s": n_corpus / seconds if seconds > 0 else None,
                f"{scale_rows:,}-row set s": scale_seconds,
                f"{scale_rows:,}-row set rows/s": scale_rows / scale_seconds
                if scale_seconds
                else None,
            }
        )
    rates = {
        "corpus": n_corpus / totals["corpus"] if totals["corpus"] else float("nan"),
        "scale": scale_rows / totals["scale"] if totals["scale"] else float("nan"),
    }
    table.rows.append(
        {
            "block": f"all {options.scale_profile} blocks",
            "columns": sum(r["columns"] for r in table.rows),
            "corpus s (median)": totals["corpus"],
            "corpus rows/s": rates["corpus"],
            f"{scale_rows:,}-row set s": totals["scale"] or None,
            f"{scale_rows:,}-row set rows/s": rates["scale"]
            if totals["scale"]
            else None,
        }
    )
    for label, child in embed.items():
        stats = parse_block_stats(child.stderr) if child.returncode == 0 else []
        if not stats:
            table.rows.append({"block": f"embeddings ({label})", "columns": "failed"})
            continue
        stat = stats[0]
        table.rows.append(
            {
                "block": f"embeddings ({label}, {stat['rows']:,} rows)",
                "columns": stat["columns"],
                "corpus s (median)": stat["seconds"] if label == "corpus" else None,
                "corpus rows/s": stat["rows"] / stat["seconds"]
                if label == "corpus"
                else None,
                f"{scale_rows:,}-row set s": stat["seconds"]
                if label != "corpus"
                else None,
                f"{scale_rows:,}-row set rows/s": stat["rows"] / stat["seconds"]
                if label != "corpus"
                else None,
            }
        )
    table.notes.append(
        f"Seconds per block from build_features' own table (fit + transform, fresh "
        f"store, no cache hits); corpus: {len(corpus_stats)} run(s), median. "
        f"{available_cores()} cores."
    )
    if embed:
        table.notes.append(
            "The embeddings rows (embeddings profile, config settings: MiniLM, "
            "PyTorch, CPU) time the block alone on the first rows of each set, "
            "model load included."
        )
    return table, rates


def _embedding_engines(ctx: BenchContext) -> Table:
    options = ctx.options
    table = Table(
        title="Embedding engines on CPU: texts/s (benchmarks.bench_embeddings)",
        columns=["output"],
        command="python -m benchmarks.bench_embeddings --n-texts "
        f"{options.embed_texts} "
        f"--repeats {options.repeats}",
    )
    child = run_child(
        python_module(
            "benchmarks.bench_embeddings",
            "--n-texts",
            str(options.embed_texts),
            "--repeats",
            str(options.repeats),
            "--corpus",
            str(options.corpus),
        ),
        timeout=options.timeout,
    )
    if child.returncode != 0:
        table.rows.append({"output": f"failed (exit {child.returncode})"})
        table.notes.append(" ".join(child.stderr.strip().splitlines()[-3:])[:400])
        return table
    # The child prints a ready markdown table (with its settings); keep it verbatim.
    table.markdown = child.stdout.strip()
    return table


def _gpu_table(ctx: BenchContext) -> Table:
    table = Table(
        title="Embeddings on a GPU",
        columns=["device", "texts/s", "batch settings"],
    )
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        table.rows.append(
            {
                "device": "GPU",
                "texts/s": "not measured: no GPU lent",
                "batch settings": "-",
            }
        )
        return table
    from features.blocks.embeddings import EmbeddingsBlock

    battles = ctx.corpus.iloc[: max(ctx.options.embed_rows, 64)]
    block = EmbeddingsBlock(device="cuda", batch_size=64).fit(battles)
    block.transform(battles.iloc[:4])
    started = time.perf_counter()
    block.transform(battles)
    seconds = time.perf_counter() - started
    table.rows.append(
        {
            "device": torch.cuda.get_device_name(0),
            "texts/s": 3 * len(battles) / seconds,
            "batch settings": "fp16, batch 64, 256 tokens, prompt + A + B",
        }
    )
    return table


def run(ctx: BenchContext) -> Section:
    """Per-block build speed, whole-build peak RSS, embedding engines."""
    from benchmarks.bench_scale import base_rows, scale_sets

    started = time.perf_counter()
    options = ctx.options
    profile = options.scale_profile
    section = Section(key="features", title="Feature store build")
    corpus_runs = [
        _build(ctx, profile, ctx.corpus_csv, reuse=False)
        for _ in range(options.repeats)
    ]
    paths, _ = scale_sets(ctx, only_base=True)
    scale_rows = base_rows(list(paths))
    scale_run = _build(ctx, profile, paths[scale_rows])
    embed: dict[str, ChildRun] = {}
    if options.embed_rows > 0:
        embed["corpus"] = _build(
            ctx,
            "embeddings",
            _subsample(ctx, ctx.corpus_csv, options.embed_rows, "corpus"),
            blocks="embeddings",
        )
        embed["scale set"] = _build(
            ctx,
            "embeddings",
            _subsample(
                ctx, paths[scale_rows], options.embed_rows, f"scale{scale_rows}"
            ),
            blocks="embeddings",
        )
    blocks, rates = _block_table(ctx, corpus_runs, scale_run, scale_rows, embed)
    builds = Table(
        title="Whole build (python -m pipelines.build_features, fresh store)",
        columns=["data", "rows", "wall (s)", "rows/s", "CPU (s)", "peak RSS (GB)"],
        command=f"python -m pipelines.build_features --config configs/{profile}.yaml "
        "--data DATA --store FRESH_DIR",
    )
    for label, n_rows, runs in (
        (relative(ctx.corpus_csv), len(ctx.corpus), corpus_runs),
        (relative(paths[scale_rows]), scale_rows, [scale_run]),
    ):
        ok = [r for r in runs if r.returncode == 0]
        if not ok:
            builds.rows.append({"data": label, "rows": n_rows, "wall (s)": "failed"})
            continue
        wall = median(r.seconds for r in ok)
        builds.rows.append(
            {
                "data": label,
                "rows": n_rows,
                "wall (s)": wall,
                "rows/s": n_rows / wall,
                "CPU (s)": median(r.cpu_seconds for r in ok),
                "peak RSS (GB)": max(r.peak_rss_gb for r in ok),
            }
        )
    builds.notes.append(
        "Wall time of the whole command: Python start, reading and repairing the "
        "CSV, every block, writing the store. Peak RSS: the child's VmHWM."
    )
    section.tables += [blocks, builds]
    for label, rate in (
        ("corpus", rates["corpus"]),
        (f"{scale_rows:,}-row set", rates["scale"]),
    ):
        target = Target(
            name=f"all {profile} blocks together, {label}",
            goal=f">= {LITE_TARGET_ROWS_PER_S:.0f} rows/s on 2 cores",
            measured=f"{rate:,.0f} rows/s",
            met=rate >= LITE_TARGET_ROWS_PER_S,
        )
        if not target.met and options.profile_misses and label == "corpus":
            raw = options.work_dir / "profiles" / f"build-{profile}-corpus.txt"
            work = Path(tempfile.mkdtemp(prefix="features-prof-", dir=options.work_dir))
            try:
                argv = python_module(
                    "pipelines.build_features",
                    *ctx.cli_args(profile),
                    "--data",
                    str(ctx.corpus_csv),
                    "--store",
                    str(work),
                    "--quiet",
                )
                if (
                    profile_child(argv, raw, rate=50, timeout=options.timeout)
                    is not None
                ):
                    table = summarise_profile(
                        raw,
                        title=f"Profile: build_features ({profile}) on the corpus",
                        command="py-spy record --format raw --subprocesses -- "
                        "python -m pipelines.build_features --config "
                        f"configs/{profile}.yaml --data {relative(ctx.corpus_csv)}",
                    )
                    section.tables.append(table)
                    target.cause = f"see '{table.title}' and the per-block table"
            finally:
                shutil.rmtree(work, ignore_errors=True)
        if not target.met and target.cause is None:
            target.cause = "see the per-block table"
        section.targets.append(target)
    if options.embed_texts > 0:
        section.tables.append(_embedding_engines(ctx))
    else:
        section.notes.append(
            "Embedding engine comparison: not run (--quick or --embed-texts 0)."
        )
    section.tables.append(_gpu_table(ctx))
    section.seconds = time.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Run this section alone and print its markdown."""
    from benchmarks.run import section_main

    return section_main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
