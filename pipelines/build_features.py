"""Build the feature store: fit every block of a profile on battles and cache it.

    python -m pipelines.build_features --config configs/lite.yaml --data train.csv

A second run with nothing changed reads every block from the cache; a block
whose params or version changed is recomputed alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from features.battles import truncate_battles
from features.errors import ConfigError
from features.pipeline import FeaturePipeline
from features.store import FeatureStore
from pipelines._cli import base_parser, load_inputs, run_cli

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
    return parser


def _main(args: argparse.Namespace) -> int:
    config, battles, data_path = load_inputs(args, labelled=None)
    blocks = dict(config.features.blocks)
    if args.blocks:
        chosen = [name.strip() for name in args.blocks.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in blocks]
        if unknown:
            raise ConfigError(
                f"--blocks {unknown} are not in {config.source}; its blocks are "
                f"{list(blocks)}. Pick from those, or add the block to the profile."
            )
        blocks = {name: blocks[name] for name in chosen}
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
