"""One profile's ``predict_proba`` rows/s on battles its model never saw.

Fits the profile (its own config: blocks, folds, boosters) on a seeded slice
of the corpus, saves and loads it (as it is served), and times
``predict_proba`` on later slices of fresh battles: no row is repeated, seen
in the fit or seen by an earlier call. ``--variants`` adds config variants of
the same profile, fitted on the same rows and timed on the same batches,
round-robin, so that load on a shared machine hits them all alike::

    python -m benchmarks.bench_profile_speed --config configs/embeddings.yaml \
        --fit-rows 2000 --batch 1000 --calls 2 \
        --variants "pytorch-256=features.blocks.embeddings.onnx=false,\
features.blocks.embeddings.max_seq_length=256"

Prints a markdown table: rows/s (median of the calls), seconds per call, the
ratio to the profile as configured and the fit's out-of-fold log loss (on
``--fit-rows`` rows only: noisy, for orientation).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._report import load_average
from benchmarks.bench_transfer import parse_variants
from features.store import FeatureStore
from models import PreferenceModel
from pipelines import load_config
from pipelines.estimator import model_from_config

__all__ = ["main", "time_profile"]

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/corpus/train.csv"
_COLUMNS = ["id", "prompt", "response_a", "response_b"]


def _slices(
    raw: pd.DataFrame, fit_rows: int, batch: int, calls: int, seed: int
) -> tuple[pd.DataFrame, list[pd.DataFrame], pd.DataFrame]:
    """Fit rows, one fresh batch per call and a warm-up batch, all disjoint."""
    needed = fit_rows + batch * calls + 8
    if len(raw) < needed:
        raise ValueError(
            f"the corpus has {len(raw):,} battles; --fit-rows {fit_rows:,}, "
            f"--batch {batch:,} x --calls {calls} and 8 warm-up rows need {needed:,}."
        )
    shuffled = raw.iloc[np.random.default_rng(seed).permutation(len(raw))]
    fit = shuffled.iloc[:fit_rows].reset_index(drop=True)
    start = fit_rows
    batches = []
    for _ in range(calls):
        batches.append(shuffled.iloc[start : start + batch][_COLUMNS])
        start += batch
    warm_up = shuffled.iloc[start : start + 8][_COLUMNS]
    return fit, batches, warm_up


def time_profile(
    config_path: Path,
    corpus: Path,
    *,
    variants: Sequence[tuple[str, Sequence[str]]] = (),
    overrides: Sequence[str] = (),
    fit_rows: int = 2000,
    batch: int = 1000,
    calls: int = 2,
    seed: int = 0,
) -> list[dict[str, object]]:
    """Fit the profile and its variants, then time them on the same fresh batches.

    ``overrides`` (``section.key=value``) apply to every run, the profile as
    configured included, before each variant's own.

    Returns
    -------
    list of dict
        Per variant (the profile as configured first): ``name``,
        ``overrides``, ``fit_s``, ``oof_log_loss`` and ``seconds`` (one per
        call).
    """
    raw = pd.read_csv(corpus, dtype={"id": str}, keep_default_na=False, na_values=[""])
    fit, batches, warm_up = _slices(raw, fit_rows, batch, calls, seed)
    runs = [("as configured", ()), *variants]
    models: list[PreferenceModel] = []
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-profile-speed-") as tmp:
        store = FeatureStore(Path(tmp) / "store")  # shared blocks are built once
        for index, (name, changes) in enumerate(runs):
            config = load_config(config_path, [*overrides, *changes])
            started = time.perf_counter()
            model = model_from_config(config).fit(fit, store=store)
            fit_seconds = time.perf_counter() - started
            directory = Path(tmp) / f"model-{index}"
            model.save(directory)
            served = PreferenceModel.load(directory)  # no store: nothing cached
            served.predict_proba(warm_up)  # lazy encoder load / ONNX export
            models.append(served)
            results.append(
                {
                    "name": name,
                    "overrides": list(changes),
                    "fit_s": fit_seconds,
                    "oof_log_loss": model.metrics_["oof_log_loss"],
                    "seconds": [],
                }
            )
            logger.info("%s: fitted in %.1f s", name, fit_seconds)
        for call, battles in enumerate(batches):
            for result, served in zip(results, models, strict=True):
                started = time.perf_counter()
                served.predict_proba(battles)
                seconds = time.perf_counter() - started
                result["seconds"].append(seconds)
                logger.info("%s call %d: %.1f s", result["name"], call, seconds)
    return results


def _table(results: Sequence[dict[str, object]], batch: int) -> str:
    lines = [
        "| variant | overrides | rows/s (median) | seconds per call | vs as configured "
        "| fit s | OOF log loss (fit rows) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    reference = batch / statistics.median(results[0]["seconds"])
    for result in results:
        rate = batch / statistics.median(result["seconds"])
        overrides = ", ".join(f"`{o}`" for o in result["overrides"]) or "-"
        calls = ", ".join(f"{s:.1f}" for s in result["seconds"])
        lines.append(
            f"| {result['name']} | {overrides} | {rate:.1f} | {calls} "
            f"| {rate / reference:.2f}x | {result['fit_s']:.0f} "
            f"| {result['oof_log_loss']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/embeddings.yaml"))
    parser.add_argument("--data", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--fit-rows", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants",
        type=parse_variants,
        default=(),
        help="name=section.key=value[,...];name2=... fitted and timed alongside",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override for every run (repeatable), e.g. booster threads",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in (__name__, "features.blocks.embeddings"):
        logging.getLogger(name).setLevel(
            logging.INFO if args.verbose else logging.WARNING
        )
    if not args.data.exists():
        parser.error(f"data not found at {args.data}; pass --data PATH.")
    load_start = load_average()
    results = time_profile(
        args.config,
        args.data,
        variants=args.variants,
        overrides=args.overrides,
        fit_rows=args.fit_rows,
        batch=args.batch,
        calls=args.calls,
        seed=args.seed,
    )
    print(
        f"{args.config}{''.join(' --set ' + o for o in args.overrides)}: fitted on "
        f"{args.fit_rows:,} corpus battles (seed "
        f"{args.seed}), saved and loaded; {args.calls} call(s) of {args.batch:,} "
        f"fresh battles each, round-robin over the variants; {os.cpu_count()} cores; "
        f"load average at start {load_start[0]}, at end {load_average()[0]}."
    )
    print()
    print(_table(results, args.batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
