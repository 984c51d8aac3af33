"""Prediction on a Dask cluster: ``predict --scheduler local:N`` on a scale set.

A lite model (the run's lite fit on the corpus, or ``--model DIR``) predicts a
scale set (``benchmarks.make_scale_set``, 1,000,000 battles by default, or
``--data PATH``) three ways, each a real ``python -m pipelines.predict``
child process:

- single-process on the first ``compare_rows`` (10,000) rows, and on one row
  (its fixed cost: imports, model load, read), for the steady rows/s of one
  process;
- ``--scheduler local:N`` (N single-threaded worker processes) on the whole
  set: wall time, rows/s, the peak resident memory of every worker process
  (polled from ``/proc`` while it runs), and the seconds of each partition
  from the parts' records;
- ``--scheduler local:N`` on the first ``compare_rows`` rows in small
  partitions, so that the per-partition cost is seen at two sizes.

The predictions of the first ``compare_rows`` rows are compared with the
single-process ones (max abs(dp)), and a cost model fitted on the partition
times predicts the wall time of 10M and 100M battles on 2, 8 and 32 workers.

First, tune workers on a shared study (``benchmarks._tune_workers``): 2
``pipelines.tune_worker`` processes and the ``train_gbdt --storage`` leader
finish a 40-trial study (8 with ``--quick``) with no trial run twice, and a
worker killed mid-trial leaves a study the survivor completes. The storage is
``--storage URL`` or ``ARENA_TEST_POSTGRES_URL`` (``bash .ci/postgres.sh ...``
sets it); without either both targets are reported as not measured.

Run alone::

    python -m benchmarks.bench_distributed [--quick] [--data CSV] [--model DIR] \
        [--storage URL] [--tune-trials N]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._context import BenchContext, BenchOptions
from benchmarks._report import (
    REPO_ROOT,
    Section,
    Table,
    Target,
    available_cores,
    python_module,
    relative,
    run_child,
)
from benchmarks._tune_workers import tune_workers_part
from features.battles import CLASSES

__all__ = [
    "SIZES",
    "TARGETS",
    "CostModel",
    "add_distributed_arguments",
    "fit_cost_model",
    "main",
    "run",
]

logger = logging.getLogger(__name__)

TARGETS = {"worker_rss_gb": 2.0, "share_of_single": 0.90, "max_abs_dp": 0.0}
"""Peak RSS per worker, distributed steady rows/s over single-process steady
rows/s, and the largest probability difference on the compared rows."""

SIZES: dict[str, dict[str, int]] = {
    "full": {
        "rows": 1_000_000,
        "partition_rows": 50_000,
        "compare_rows": 10_000,
        "small_partition_rows": 1_000,
        "workers": 2,
    },
    "quick": {
        "rows": 2_000,
        "partition_rows": 500,
        "compare_rows": 400,
        "small_partition_rows": 100,
        "workers": 2,
    },
}
"""Sizes of a full and a ``--quick`` run (quick checks the harness only)."""

PROJECTED_ROWS = (10_000_000, 100_000_000)
PROJECTED_WORKERS = (2, 8, 32)
_POLL_SECONDS = 0.2
_SPAWNED = "multiprocessing.spawn"


# ------------------------------------------------------------ measurement
@dataclass
class _Measured:
    """One child run with the peak memory of each of its worker processes."""

    seconds: float
    returncode: int
    stdout: str
    stderr: str
    worker_peaks: dict[int, int] = field(default_factory=dict)
    client_peak: int = 0

    def check(self, argv: Sequence[str]) -> _Measured:
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(
                f"benchmark child failed with exit code {self.returncode}: "
                f"{' '.join(argv)}\n{tail}"
            )
        return self


def _peak_bytes(process: Any) -> int:
    """``VmHWM`` of a process (the kernel's peak resident memory), else its RSS."""
    try:
        with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(process.memory_info().rss)
    except Exception:  # noqa: BLE001 - gone between listing and reading
        return 0


def _is_worker(process: Any) -> bool:
    try:
        line = " ".join(process.cmdline())
    except Exception:  # noqa: BLE001 - gone or not ours to read
        return False
    return _SPAWNED in line and "resource_tracker" not in line


def _run_measured(argv: Sequence[str], timeout: float | None) -> _Measured:
    """Run ``argv``, polling the peak memory of its spawned worker processes."""
    import psutil

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(list(argv), cwd=REPO_ROOT, stdout=out, stderr=err)
        parent = psutil.Process(child.pid)
        peaks: dict[int, int] = {}
        client_peak = 0
        while child.poll() is None:
            client_peak = max(client_peak, _peak_bytes(parent))
            try:
                descendants = parent.children(recursive=True)
            except psutil.Error:
                descendants = []
            for process in descendants:
                if process.pid in peaks or _is_worker(process):
                    peaks[process.pid] = max(
                        peaks.get(process.pid, 0), _peak_bytes(process)
                    )
            if timeout is not None and time.perf_counter() - started > timeout:
                for process in [*descendants, parent]:
                    process.kill()
                child.wait()
                break
            time.sleep(_POLL_SECONDS)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return _Measured(
            seconds=seconds,
            returncode=child.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            worker_peaks=peaks,
            client_peak=client_peak,
        )


# -------------------------------------------------------------- the data
def _scale_set(ctx: BenchContext, n_rows: int) -> Path:
    """The scale set of ``n_rows`` battles (made once, as the scale section does)."""
    from benchmarks.bench_scale import generate_scale_set

    return generate_scale_set(ctx, n_rows)[0]


def _head(path: Path, n_rows: int, out: Path) -> Path:
    """The first ``n_rows`` battles of a CSV, as a CSV of their own (made once)."""
    if not out.exists():
        from pipelines import write_csv_atomic

        head = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], nrows=n_rows
        )
        write_csv_atomic(head.drop(columns=[c for c in CLASSES if c in head]), out)
    return out


def _model_dir(ctx: BenchContext, work: Path) -> Path:
    given = ctx.options.extra.get("distributed_model")
    if given:
        return Path(given)
    profiles = ctx.options.profiles
    fitted = ctx.profile_model("lite" if "lite" in profiles else profiles[0])
    return fitted.model.save(work / "model")


# ------------------------------------------------------------ cost model
@dataclass(frozen=True)
class CostModel:
    """Wall time of a distributed predict from its measured parts.

    ``partition seconds = a + b * rows``; each partition also costs
    ``overhead`` seconds of a worker's time outside the task (scheduling,
    transfer, idle at the end); each worker loads the model once
    (``model_load``); a run has a fixed cost ``startup`` (imports, the model
    verified in the client, cluster start and stop) plus the planning scan
    of its input, ``scan_per_row`` seconds a row for one CSV.
    """

    a: float
    b: float
    overhead: float
    startup: float
    model_load: float
    scan_per_row: float

    def wall(self, n_rows: int, n_workers: int, partition_rows: int) -> float:
        """Predicted seconds for ``n_rows`` on ``n_workers`` workers.

        >>> CostModel(1.0, 0.001, 0.0, 5.0, 2.0, 0.0).wall(10_000, 2, 1_000)
        17.0
        """
        partitions = math.ceil(n_rows / partition_rows)
        rounds = math.ceil(partitions / n_workers)
        per_partition = self.a + self.b * partition_rows + self.overhead
        return (
            self.startup
            + self.scan_per_row * n_rows
            + self.model_load
            + rounds * per_partition
        )


def fit_cost_model(
    parts: Sequence[dict[str, Any]],
    *,
    n_workers: int,
    parts_seconds: float,
    wall_seconds: float,
    scan_seconds: float,
    n_rows: int,
) -> CostModel:
    """Fit :class:`CostModel` on part records of one or more runs.

    Parameters
    ----------
    parts : sequence of dict
        Part records (``rows``, ``seconds``, ``model_seconds``); those of the
        main run have ``"main": True``.
    n_workers : int
        Workers of the main run.
    parts_seconds, wall_seconds : float
        The main run's time spent on partitions, and its whole wall time.
    scan_seconds : float
        Seconds the plan of the main run's input took; ``n_rows`` its rows.

    Examples
    --------
    >>> parts = [{"rows": r, "seconds": 0.5 + r / 1000, "model_seconds": 0.0,
    ...           "main": True} for r in (1000, 1000, 2000, 2000)]
    >>> model = fit_cost_model(parts, n_workers=2, parts_seconds=4.0,
    ...                        wall_seconds=9.0, scan_seconds=0.0, n_rows=6000)
    >>> round(model.a, 3), round(model.b * 1000, 3), round(model.overhead, 3)
    (0.5, 1.0, 0.0)
    """
    rows = np.array([p["rows"] for p in parts], dtype=float)
    compute = np.array(
        [p["seconds"] - p.get("model_seconds", 0.0) for p in parts], dtype=float
    )
    if np.unique(rows).size >= 2:
        b, a = np.polyfit(rows, compute, 1)
    else:
        a, b = 0.0, float(np.sum(compute) / max(np.sum(rows), 1.0))
    main = [p for p in parts if p.get("main")]
    busy = sum(p["seconds"] for p in main)
    overhead = max(0.0, (n_workers * parts_seconds - busy) / max(1, len(main)))
    loads = [p["model_seconds"] for p in main if p.get("model_seconds", 0.0) > 0.05]
    return CostModel(
        a=float(max(a, 0.0)),
        b=float(b),
        overhead=float(overhead),
        startup=float(max(wall_seconds - parts_seconds - scan_seconds, 0.0)),
        model_load=float(np.mean(loads)) if loads else 0.0,
        scan_per_row=scan_seconds / max(n_rows, 1),
    )


def _part_records(parts_dir: Path, main: bool) -> list[dict[str, Any]]:
    records = []
    for path in sorted(parts_dir.glob("part-*.json")):
        record = json.loads(path.read_text())
        records.append({**record, "main": main})
    return records


def _part_row(label: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    seconds = np.array([r["seconds"] - r.get("model_seconds", 0.0) for r in records])
    rows = np.array([r["rows"] for r in records])
    loads = [r["model_seconds"] for r in records if r.get("model_seconds", 0.0) > 0.05]
    return {
        "run": label,
        "partitions": len(records),
        "rows per partition (median)": int(np.median(rows)),
        "seconds, median": float(np.median(seconds)),
        "min": float(seconds.min()),
        "max": float(seconds.max()),
        "rows/s per worker": float(rows.sum() / max(seconds.sum(), 1e-9)),
        "model load per worker (s)": float(np.mean(loads)) if loads else None,
    }


# ------------------------------------------------------------------ run
def _predict_argv(model_dir: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return python_module(
        "pipelines.predict",
        "--config",
        str(REPO_ROOT / "configs" / "lite.yaml"),
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--quiet",
        *extra,
    )


def _sizes(options: BenchOptions) -> dict[str, Any]:
    sizes = dict(SIZES["quick" if options.quick else "full"])
    for key in list(sizes):
        value = options.extra.get(f"distributed_{key}")
        if value is not None:
            sizes[key] = int(value)
    return sizes


def _single_process_seconds(model_dir: Path, battles_csv: Path, repeats: int) -> float:
    """Median seconds of ``read_battles`` + ``predict_proba`` here, after a warm-up."""
    from features.battles import read_battles
    from models import PreferenceModel

    model = PreferenceModel.load(model_dir)
    model.predict_proba(read_battles(battles_csv, labelled=False).iloc[:8])
    seconds = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        model.predict_proba(read_battles(battles_csv, labelled=False))
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def _max_abs_dp(single_csv: Path, parts_dir: Path, n_rows: int) -> tuple[float, int]:
    from pipelines.distributed.parts import read_parts

    single = pd.read_csv(single_csv, dtype={"id": str})
    parts = read_parts(parts_dir).iloc[:n_rows]
    if single["id"].tolist() != parts["id"].astype(str).tolist():
        raise RuntimeError(
            f"the distributed predictions' first {n_rows:,} ids are not those of the "
            "single-process run; the comparison would be meaningless."
        )
    delta = np.abs(single[list(CLASSES)].to_numpy() - parts[list(CLASSES)].to_numpy())
    return float(delta.max()) if delta.size else 0.0, int(np.count_nonzero(delta))


def run(ctx: BenchContext) -> Section:
    """Single-process against ``--scheduler local:N`` predict, and the cost model."""
    from features.partitions import plan_partitions

    started = time.perf_counter()
    options = ctx.options
    sizes = _sizes(options)
    n_workers = sizes["workers"]
    section = Section(
        key="distributed", title="Distributed prediction (Dask) and tune workers"
    )
    work = options.work_dir / "distributed"
    work.mkdir(parents=True, exist_ok=True)
    tune = tune_workers_part(options, work)
    section.tables += tune.tables
    section.targets += tune.targets
    given = options.extra.get("distributed_data")
    data = Path(given) if given else _scale_set(ctx, sizes["rows"])
    model_dir = _model_dir(ctx, work)
    scan_started = time.perf_counter()
    plan = plan_partitions(data, sizes["partition_rows"])
    scan_seconds = time.perf_counter() - scan_started
    n_rows = sum(p.n_rows or 0 for p in plan)
    sizes["compare_rows"] = min(sizes["compare_rows"], n_rows)
    tag = f"{data.stem}-{sizes['compare_rows']}"
    subset = _head(data, sizes["compare_rows"], work / f"{tag}.csv")

    single_csv = work / "single.csv"
    single = run_child(
        _predict_argv(model_dir, subset, single_csv), timeout=options.timeout
    ).check()
    single_before = sizes["compare_rows"] / _single_process_seconds(
        model_dir, subset, options.repeats
    )
    scheduler = f"local:{n_workers}"
    main_dir, small_dir = work / "parts-main", work / "parts-small"
    for stale in (main_dir, small_dir):
        shutil.rmtree(stale, ignore_errors=True)
    main_argv = _predict_argv(
        model_dir,
        data,
        main_dir,
        "--scheduler",
        scheduler,
        "--partition-rows",
        str(sizes["partition_rows"]),
    )
    main = _run_measured(main_argv, options.timeout).check(main_argv)
    small_argv = _predict_argv(
        model_dir,
        subset,
        small_dir,
        "--scheduler",
        scheduler,
        "--partition-rows",
        str(sizes["small_partition_rows"]),
    )
    small = _run_measured(small_argv, options.timeout).check(small_argv)
    # Measured again after the cluster runs: on a shared machine the load
    # moves within minutes, and the ratio takes the faster single figure.
    single_after = sizes["compare_rows"] / _single_process_seconds(
        model_dir, subset, options.repeats
    )
    single_steady = max(single_before, single_after)
    main_manifest = json.loads((main_dir / "manifest.json").read_text())
    parts_seconds = float(main_manifest["timings"]["parts"])
    main_records = _part_records(main_dir, main=True)
    small_records = _part_records(small_dir, main=False)
    max_dp, n_differ = _max_abs_dp(single_csv, main_dir, sizes["compare_rows"])
    cost = fit_cost_model(
        [*main_records, *small_records],
        n_workers=n_workers,
        parts_seconds=parts_seconds,
        wall_seconds=main.seconds,
        scan_seconds=scan_seconds,
        n_rows=n_rows,
    )
    worker_peak = max(main.worker_peaks.values(), default=0)
    distributed_steady = n_rows / max(parts_seconds, 1e-9)
    share = distributed_steady / single_steady

    section.tables.append(
        Table(
            title=f"Single process against --scheduler {scheduler}",
            columns=[
                "run",
                "rows",
                "partitions",
                "wall (s)",
                "rows/s end to end",
                "rows/s steady",
                "peak RSS per worker (GB)",
                "peak RSS of the client (GB)",
            ],
            rows=[
                {
                    "run": "single process",
                    "rows": sizes["compare_rows"],
                    "partitions": 1,
                    "wall (s)": single.seconds,
                    "rows/s end to end": sizes["compare_rows"] / single.seconds,
                    "rows/s steady": single_before,
                    "peak RSS of the client (GB)": single.peak_rss_gb,
                },
                {
                    "run": "single process, after the cluster runs",
                    "rows": sizes["compare_rows"],
                    "partitions": 1,
                    "rows/s steady": single_after,
                },
                {
                    "run": f"--scheduler {scheduler}",
                    "rows": n_rows,
                    "partitions": len(main_records),
                    "wall (s)": main.seconds,
                    "rows/s end to end": n_rows / main.seconds,
                    "rows/s steady": distributed_steady,
                    "peak RSS per worker (GB)": worker_peak / 1024**3,
                    "peak RSS of the client (GB)": main.client_peak / 1024**3,
                },
                {
                    "run": f"--scheduler {scheduler}, small partitions",
                    "rows": sizes["compare_rows"],
                    "partitions": len(small_records),
                    "wall (s)": small.seconds,
                    "rows/s end to end": sizes["compare_rows"] / small.seconds,
                    "peak RSS per worker (GB)": max(
                        small.worker_peaks.values(), default=0
                    )
                    / 1024**3,
                    "peak RSS of the client (GB)": small.client_peak / 1024**3,
                },
            ],
            notes=[
                f"Each run is a `python -m pipelines.predict` child with the lite "
                f"model of `{relative(model_dir)}`, on `{relative(data)}` (the "
                f"single-process runs on its first {sizes['compare_rows']:,} rows). "
                f"`--scheduler {scheduler}` starts {n_workers} single-threaded worker "
                f"processes on the {available_cores()} cores, partitions of "
                f"{sizes['partition_rows']:,} rows (small partitions: "
                f"{sizes['small_partition_rows']:,}), the output as parquet parts.",
                "Steady rows/s: single process, read_battles and predict_proba of "
                "the loaded model on the same rows in this process (the model's "
                f"own n_jobs; median of {options.repeats}, after a warm-up call); "
                "distributed, rows over the time from the first task submitted to "
                "the last part written (the parts manifest's timings), which "
                "includes reading the partitions and writing the parts. The "
                "single process is measured before and after the cluster runs; "
                "the ratio target takes the faster of the two.",
                "Peak RSS per worker: the largest VmHWM of the spawned worker "
                f"processes, polled every {_POLL_SECONDS} s; the client process "
                "(scheduler and nannies) apart.",
                f"Predictions of the first {sizes['compare_rows']:,} rows against the "
                f"single-process CSV: max abs(dp) = {max_dp:.3g} ({n_differ} of "
                f"{3 * sizes['compare_rows']:,} probabilities differ).",
            ],
        )
    )
    section.tables.append(
        Table(
            title="Per-partition times",
            columns=[
                "run",
                "partitions",
                "rows per partition (median)",
                "seconds, median",
                "min",
                "max",
                "rows/s per worker",
                "model load per worker (s)",
            ],
            rows=[
                _part_row(f"--scheduler {scheduler}", main_records),
                _part_row(f"--scheduler {scheduler}, small", small_records),
            ],
            notes=[
                "Seconds of each task on its worker (read, predict, write the part), "
                "less the model load of each worker's first partition (shown apart)."
            ],
        )
    )
    section.tables.append(_projection_table(cost, sizes["partition_rows"]))
    section.targets += [
        Target(
            name=f"peak RSS per worker, --scheduler {scheduler}, {n_rows:,} rows",
            goal=f"<= {TARGETS['worker_rss_gb']:.0f} GB",
            measured=f"{worker_peak / 1024**3:.2f} GB",
            met=0 < worker_peak <= TARGETS["worker_rss_gb"] * 1024**3,
        ),
        Target(
            name="distributed steady rows/s vs single process",
            goal=f">= {TARGETS['share_of_single']:.0%}",
            measured=f"{share:.0%} ({distributed_steady:,.0f} vs "
            f"{single_steady:,.0f} rows/s)",
            met=share >= TARGETS["share_of_single"],
        ),
        Target(
            name=f"predictions equal to single process on "
            f"{sizes['compare_rows']:,} rows",
            goal="max abs(dp) = 0",
            measured=f"{max_dp:.3g}",
            met=max_dp <= TARGETS["max_abs_dp"],
        ),
    ]
    section.notes.append(
        f"Data: `{relative(data)}` ({n_rows:,} battles, "
        f"{data.stat().st_size / 1e6:,.0f} MB; planned in {scan_seconds:.1f} s). "
        "Reproduce alone with `python -m benchmarks.bench_distributed`."
    )
    section.seconds = time.perf_counter() - started
    return section


def _projection_table(cost: CostModel, partition_rows: int) -> Table:
    rows = []
    for n_rows in PROJECTED_ROWS:
        for n_workers in PROJECTED_WORKERS:
            seconds = cost.wall(n_rows, n_workers, partition_rows)
            partitions = math.ceil(n_rows / partition_rows)
            rows.append(
                {
                    "battles": n_rows,
                    "workers": n_workers,
                    "partitions": partitions,
                    "rounds": math.ceil(partitions / n_workers),
                    "predicted wall (min)": seconds / 60,
                    "rows/s": n_rows / seconds,
                }
            )
    return Table(
        title="Cost model: predicted wall time for 10M and 100M battles",
        columns=[
            "battles",
            "workers",
            "partitions",
            "rounds",
            "predicted wall (min)",
            "rows/s",
        ],
        rows=rows,
        notes=[
            "wall(N workers, R rows) = startup + scan * R + model load + "
            "ceil(ceil(R / p) / N) * (a + b * p + overhead), p = "
            f"{partition_rows:,} rows per partition; fitted here: a = {cost.a:.3f} "
            f"s, b = {cost.b * 1000:.3f} s per 1,000 rows, overhead = "
            f"{cost.overhead:.3f} s per partition (worker time outside tasks), "
            f"startup = {cost.startup:.1f} s, model load = {cost.model_load:.2f} s "
            f"per worker, scan = {cost.scan_per_row * 1e6:.2f} s per million rows "
            "(the client's row scan of one CSV; near 0 for parquet).",
            "a and b: least squares over the partitions of both distributed runs "
            "(two partition sizes); overhead: the main run's worker time not spent "
            "in tasks, per partition; startup: its wall time less the partitions "
            "and the scan.",
            "Assumptions: every worker is one core like this machine's, with no "
            "other load; the input and output live on a file system that keeps up "
            "with all workers; battles as long as the scale set's; the per-partition "
            "cost is linear in rows and the same on every worker (no stragglers); "
            "startup stays what it was here (a real cluster adds the time to start "
            "its workers); one scheduler keeps up (Dask schedules thousands of "
            "tasks a second, these runs need a few a second).",
        ],
    )


# ------------------------------------------------------------------ main
def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """This section's own options (``python -m benchmarks.bench_distributed``)."""
    add = parser.add_argument
    add("--data", type=Path, help="battles to predict (default: a new scale set)")
    add("--model", type=Path, help="model directory (default: the lite fit)")
    add("--rows", type=int, help="rows of the scale set (default 1,000,000)")
    add("--partition-rows", type=int, help="rows per partition (default 50,000)")
    add("--workers", type=int, help="worker processes of local:N (default 2)")
    add(
        "--storage",
        metavar="URL",
        help="PostgreSQL URL of the tune-worker studies (default: "
        "$ARENA_TEST_POSTGRES_URL; neither: not measured)",
    )
    add("--tune-trials", type=int, help="budget of each tune-worker study (40)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run this section alone and print it."""
    from benchmarks.run import options_from_args, section_parser

    parser = section_parser(__doc__.splitlines()[0])
    add_distributed_arguments(parser)
    args = parser.parse_args(argv)
    options: BenchOptions = options_from_args(args)
    for key, value in (
        ("data", args.data),
        ("model", args.model),
        ("rows", args.rows),
        ("partition_rows", args.partition_rows),
        ("workers", args.workers),
        ("storage", args.storage),
        ("tune_trials", args.tune_trials),
    ):
        if value is not None:
            options.extra[f"distributed_{key}"] = value
    print(run(BenchContext(options)).to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
