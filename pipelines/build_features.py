"""Build the feature store: fit every block of a profile on battles and cache it.

    python -m pipelines.build_features --config configs/lite.yaml --data train.csv

A second run with nothing changed reads every block from the cache; a block
whose params or version changed is recomputed alone.

With ``--scheduler`` the blocks run per partition on a Dask cluster
(:mod:`pipelines.distributed.rows`): the stateful blocks are fitted here, their
states broadcast, the workers run the same ``FeaturePipeline`` on the same
store (embeddings through its per-text cache), and the feature matrix is
written as partitioned parquet under ``<store>/parts/features-<key>/``; a
killed run resumes. Each block's output for the whole table then goes into
the store, as without ``--scheduler``, so ``train_gbdt`` on the same file
reads it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from features.battles import truncate_battles
from features.errors import ConfigError
from features.pipeline import FeaturePipeline
from features.store import FeatureStore
from pipelines._cli import base_parser, load_inputs, resolve_data, run_cli
from pipelines.config import Config, load_config
from pipelines.distributed.cluster import (
    add_scheduler_options,
    check_scheduler_options,
    positive_int,
)

__all__ = ["main", "format_stats"]


def format_stats(stats: list[dict]) -> str:
    """The per-block summary table printed at the end of a build."""
    header = (
        f"{'block':<12} {'columns':>8} {'rows':>8} {'seconds':>9} {'rows/s':>10}  cache"
    )
    lines = [header, "-" * len(header)]
    for row in stats:
        lines.append(
            f"{row['block']:<12} {row['columns']:>8,} {row['rows']:>8,} "
            f"{row['seconds']:>9.2f} {row['rows_per_s']:>10,.0f}  {row['cache']}"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="feature store directory (default: features.store of the config, "
        "artifacts/features)",
    )
    parser.add_argument(
        "--blocks",
        default=None,
        help="comma-separated subset of the config's blocks to build, e.g. "
        "lengths,flags (default: all)",
    )
    add_scheduler_options(
        parser,
        output="the features go to partitioned parquet under "
        "<store>/parts/features-<key>/ (a rerun resumes) and then into the "
        "store that train_gbdt reads",
    )
    parser.add_argument(
        "--fit-rows",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --scheduler: fit the stateful blocks (tfidf, word2vec) on a "
        "seeded sample of N rows (default: every row, as without --scheduler)",
    )
    return parser


def _chosen_blocks(config: Config, text: str | None) -> dict[str, dict[str, Any]]:
    """The profile's blocks, or the ``--blocks`` subset of them."""
    blocks = dict(config.features.blocks)
    if text:
        chosen = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in blocks]
        if unknown:
            raise ConfigError(
                f"--blocks {unknown} are not in {config.source}; its blocks are "
                f"{list(blocks)}. Pick from those, or add the block to the profile."
            )
        blocks = {name: blocks[name] for name in chosen}
    return blocks


def _main_on_cluster(args: argparse.Namespace) -> int:
    from features.partitions import DEFAULT_PARTITION_ROWS, plan_partitions
    from pipelines.distributed.cluster import CONNECT_TIMEOUT, dask_client
    from pipelines.distributed.rows import build_on_cluster

    config = load_config(args.config, args.overrides)
    blocks = _chosen_blocks(config, args.blocks)
    data_path = resolve_data(args.data)
    partitions = plan_partitions(
        data_path, args.partition_rows or DEFAULT_PARTITION_ROWS
    )
    started = time.perf_counter()
    timeout = args.scheduler_timeout or CONNECT_TIMEOUT
    with dask_client(args.scheduler, timeout=timeout) as client:
        summary = build_on_cluster(
            client,
            partitions,
            blocks,
            store_root=Path(args.store or config.features.store),
            max_chars=config.data.max_chars,
            n_jobs=config.features.n_jobs,
            fit_rows=args.fit_rows,
            seed=config.seed,
            verbose=not args.quiet,
        )
    seconds = time.perf_counter() - started
    print(f"{data_path}: {summary.report}", file=sys.stderr)
    print(format_stats(summary.stats), file=sys.stderr)
    n_columns = sum(row["columns"] for row in summary.stats)
    print(
        f"built {n_columns:,} feature columns for {summary.n_rows:,} battles in "
        f"{seconds:.1f} s ({len(summary.records)} partitions: {summary.computed} "
        f"computed, {summary.reused} reused); parts: {summary.out_dir}"
    )
    return 0


def _main(args: argparse.Namespace) -> int:
    check_scheduler_options(args, "--fit-rows")
    if args.scheduler is not None:
        return _main_on_cluster(args)
    config, battles, data_path = load_inputs(args, labelled=None)
    blocks = _chosen_blocks(config, args.blocks)
    store = FeatureStore(args.store or config.features.store)
    table = truncate_battles(battles, config.data.max_chars)
    pipeline = FeaturePipeline(
        blocks, store=store, verbose=not args.quiet, n_jobs=config.features.n_jobs
    )
    started = time.perf_counter()
    matrix = pipeline.fit_transform(table)
    seconds = time.perf_counter() - started
    print(format_stats(pipeline.stats_), file=sys.stderr)
    print(
        f"built {len(matrix.columns):,} feature columns for {matrix.n_rows:,} battles "
        f"in {seconds:.1f} s; store: {store.root}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipelines.build_features``."""
    return run_cli(_main, _parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
