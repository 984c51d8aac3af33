"""Compiled tree engines against the native LightGBM/XGBoost predictors.

Times the booster stage of ``PreferenceModel.predict_proba`` (every fold model
of one booster kind, on both A/B orders, as ``PreferenceModel`` runs it) with
each engine, side by side in one run, and compares the final probabilities
(stacked, calibrated) with the native ones:

- ``native``: LightGBM ``Booster.predict`` / XGBoost ``inplace_predict``.
- ``treelite``: the fold models converted by treelite and compiled to a
  shared library by tl2cgen (gcc), LightGBM and XGBoost.
- ``lleaves``: LightGBM models compiled by LLVM (llvmlite), in memory.
- ``treelite-gtil``: treelite's own interpreter (no compilation).

Each compiled library is built in a private temporary directory that this
process creates and removes; the build seconds are reported. Engines whose
package is missing are skipped.

Usage::

    python -m benchmarks.bench_compiled --model MODEL_DIR [--data CSV]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from benchmarks._report import load_average, relative
from features.battles import SWAP_LABELS
from models import PreferenceModel
from models.gbdt import stack_rows

__all__ = ["EngineResult", "measure_engines", "results_table"]

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/corpus/train.csv"
ENGINES = ("native", "treelite", "lleaves", "treelite-gtil")
"""Engine names, the native predictors first (the reference)."""

_KINDS = {
    "native": ("lightgbm", "xgboost"),
    "treelite": ("lightgbm", "xgboost"),
    "lleaves": ("lightgbm",),
    "treelite-gtil": ("lightgbm", "xgboost"),
}
_PACKAGES = {
    "native": (),
    "treelite": ("treelite", "tl2cgen"),
    "lleaves": ("lleaves", "llvmlite"),
    "treelite-gtil": ("treelite",),
}

Predict = Callable[[NDArray[np.float32], int], NDArray[np.float64]]
"""``predict(X, threads)``; 0 threads = the engine's default (every core)."""


@dataclass
class EngineResult:
    """One engine on one booster kind (or on the whole booster stage).

    Attributes
    ----------
    engine : str
        Engine name (see :data:`ENGINES`); ``"+"``-joined for a stage row.
    kind : str
        ``"lightgbm"``, ``"xgboost"`` or ``"stage"`` (every kind together).
    threads : int
        Threads per call; 0 = the engine's default (every core).
    n_models : int
        Fold models predicted per call.
    build_seconds : float
        Conversion and compilation of every fold model (0 for native).
    seconds : dict of int to list of float
        Seconds per call by batch size (battles), one per repeat.
    max_abs_dp : float
        Largest absolute difference of the final probabilities from native.
    """

    engine: str
    kind: str
    threads: int
    n_models: int
    build_seconds: float
    seconds: dict[int, list[float]]
    max_abs_dp: float = 0.0


# ------------------------------------------------------------------ engines
def _lightgbm_text(booster: Any) -> str:
    """The fold model cut to the trees its native predictor uses."""
    return booster.model_.model_to_string(num_iteration=booster.best_iteration_)


def _xgboost_rounds(booster: Any) -> Any:
    """The fold model cut to the boosting rounds its native predictor uses."""
    return booster.model_[: booster.best_iteration_]


def _treelite_model(kind: str, booster: Any, workdir: Path, stem: str) -> Any:
    import treelite

    if kind == "lightgbm":
        path = workdir / f"{stem}.lgb.txt"
        path.write_text(_lightgbm_text(booster))
        return treelite.frontend.load_lightgbm_model(str(path))
    return treelite.frontend.from_xgboost(_xgboost_rounds(booster))


def _proba(raw: Any) -> NDArray[np.float64]:
    return np.asarray(raw, dtype=np.float64).reshape(-1, 3)


def _build_native(kind: str, boosters: Sequence[Any], workdir: Path) -> Predict:
    if kind == "lightgbm":

        def predict(X: NDArray[np.float32], threads: int) -> NDArray[np.float64]:
            if not threads:  # exactly PreferenceModel's call
                return np.mean([b.predict_proba(X) for b in boosters], axis=0)
            return np.mean(
                [
                    b.model_.predict(
                        X, num_iteration=b.best_iteration_, num_threads=threads
                    )
                    for b in boosters
                ],
                axis=0,
            )

        return predict
    current: list[int | None] = [None]

    def predict(X: NDArray[np.float32], threads: int) -> NDArray[np.float64]:
        if current[0] != threads:  # XGBoost: 0 threads = all cores, its default
            for booster in boosters:
                booster.model_.set_param({"nthread": threads})
            current[0] = threads
        return np.mean([b.predict_proba(X) for b in boosters], axis=0)

    return predict


def _build_treelite(kind: str, boosters: Sequence[Any], workdir: Path) -> Predict:
    import tl2cgen

    libpaths = []
    for fold, booster in enumerate(boosters):
        model = _treelite_model(kind, booster, workdir, f"{kind}-{fold}")
        libpath = workdir / f"{kind}-{fold}.so"
        tl2cgen.export_lib(
            model,
            toolchain="gcc",
            libpath=str(libpath),
            params={"parallel_comp": os.cpu_count() or 1},
        )
        libpaths.append(libpath)
    # LightGBM thresholds are float64, XGBoost's float32: feed the library's type.
    dtype = "float64" if kind == "lightgbm" else "float32"
    predictors: dict[int, list[Any]] = {}

    def predict(X: NDArray[np.float32], threads: int) -> NDArray[np.float64]:
        if threads not in predictors:  # the thread count is fixed per Predictor
            predictors[threads] = [
                tl2cgen.Predictor(str(path), nthread=threads or None)
                for path in libpaths
            ]
        matrix = tl2cgen.DMatrix(np.ascontiguousarray(X, dtype=dtype))
        return np.mean([_proba(p.predict(matrix)) for p in predictors[threads]], axis=0)

    return predict


def _build_lleaves(kind: str, boosters: Sequence[Any], workdir: Path) -> Predict:
    import lleaves

    models = []
    for fold, booster in enumerate(boosters):
        path = workdir / f"{kind}-{fold}.lgb.txt"
        path.write_text(_lightgbm_text(booster))
        model = lleaves.Model(model_file=str(path))
        model.compile()  # in memory (no cache file): nothing is read back from disk
        models.append(model)

    def predict(X: NDArray[np.float32], threads: int) -> NDArray[np.float64]:
        X64 = np.ascontiguousarray(X, dtype=np.float64)
        jobs = threads or None
        return np.mean([_proba(m.predict(X64, n_jobs=jobs)) for m in models], axis=0)

    return predict


def _build_gtil(kind: str, boosters: Sequence[Any], workdir: Path) -> Predict:
    import treelite

    models = [
        _treelite_model(kind, booster, workdir, f"{kind}-{fold}")
        for fold, booster in enumerate(boosters)
    ]
    dtype = np.float64 if kind == "lightgbm" else np.float32

    def predict(X: NDArray[np.float32], threads: int) -> NDArray[np.float64]:
        data = np.ascontiguousarray(X, dtype=dtype)
        nthread = threads or -1
        return np.mean(
            [_proba(treelite.gtil.predict(m, data, nthread=nthread)) for m in models],
            axis=0,
        )

    return predict


_BUILDERS: dict[str, Callable[[str, Sequence[Any], Path], Predict]] = {
    "native": _build_native,
    "treelite": _build_treelite,
    "lleaves": _build_lleaves,
    "treelite-gtil": _build_gtil,
}


def _available(engine: str) -> bool:
    return all(importlib.util.find_spec(name) for name in _PACKAGES[engine])


# -------------------------------------------------------------- measurement
def _booster_input(model: PreferenceModel, battles: pd.DataFrame) -> NDArray:
    """The matrix the fold models see: both A/B orders stacked, as predict does."""
    X = model.pipeline_.transform(model._prepare(battles)).values
    if model.swap_average:
        X = stack_rows(X, model._swap_features(X))
    init_score = getattr(model, "_init_score", lambda X: None)(X)
    if init_score is not None:
        raise ValueError(
            "the model has an anchor (training.anchor): its boosters start from "
            "per-row scores, which the compiled engines here do not take. Measure "
            "a model trained without the anchor."
        )
    return X


def _final(
    model: PreferenceModel, outputs: dict[str, NDArray], n_rows: int
) -> NDArray[np.float64]:
    """Final probabilities from the per-kind booster outputs on both orders."""
    per_kind = []
    for name in model.boosters:
        proba = outputs[name]
        if model.swap_average:
            proba = (proba[:n_rows] + proba[n_rows:][:, SWAP_LABELS]) / 2
        per_kind.append(proba)
    return model._head(per_kind)


def measure_engines(
    model: PreferenceModel,
    battles: pd.DataFrame,
    *,
    engines: Sequence[str] = ENGINES,
    batch_sizes: Sequence[int] = (1, 1000),
    threads: Sequence[int] = (1, 0),
    repeats: int = 7,
) -> list[EngineResult]:
    """Time every engine on every booster kind, round-robin, and compare outputs.

    Parameters
    ----------
    model : PreferenceModel
        A fitted model; its fold boosters are converted for each engine.
    battles : DataFrame
        At least ``max(batch_sizes)`` battles (Kaggle layout or canonical).
    engines : sequence of str, default=ENGINES
        Engines to measure; ``"native"`` is always measured (the reference),
        engines whose packages are missing are skipped.
    batch_sizes : sequence of int, default=(1, 1000)
        Battles per call; batch 1 uses the first battle.
    threads : sequence of int, default=(1, 0)
        Thread counts per call; 0 is each engine's default (every core).
    repeats : int, default=7
        Timed calls per engine, kind, thread count and batch size. Each repeat
        runs every engine once, after one untimed call of the same engine (so
        that one OpenMP runtime's spinning threads do not bill the next), and
        a load spike on a shared machine hits all of them alike.

    Returns
    -------
    list of EngineResult
        Per thread count: one per engine and booster kind, then the native
        booster stage and the stage with the fastest engine of each kind (one
        row per batch size that picks other engines).
    """
    largest = max(batch_sizes)
    if len(battles) < largest:
        raise ValueError(f"need {largest} battles, got {len(battles)}")
    inputs = {size: _booster_input(model, battles.iloc[:size]) for size in batch_sizes}
    wanted = ["native", *[e for e in engines if e != "native" and _available(e)]]
    predictors: dict[tuple[str, str], Predict] = {}
    builds: dict[tuple[str, str], float] = {}
    outputs: dict[tuple[str, str, int], NDArray] = {}
    seconds: dict[tuple[str, str, int, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compiled-") as tmp:
        workdir = Path(tmp)  # mkdtemp: mode 0700, owned by this process
        for engine in wanted:
            for kind in _KINDS[engine]:
                if kind not in model.fold_results_:
                    continue
                boosters = model.fold_results_[kind].models
                started = time.perf_counter()
                predictors[engine, kind] = _BUILDERS[engine](kind, boosters, workdir)
                builds[engine, kind] = (
                    0.0 if engine == "native" else time.perf_counter() - started
                )
                logger.info(
                    "%s %s: built in %.1f s", engine, kind, builds[engine, kind]
                )
        for _ in range(repeats):
            for n_threads in threads:
                for size in batch_sizes:
                    for (engine, kind), predict in predictors.items():
                        predict(inputs[size], n_threads)
                        started = time.perf_counter()
                        proba = predict(inputs[size], n_threads)
                        elapsed = time.perf_counter() - started
                        seconds.setdefault((engine, kind, n_threads, size), []).append(
                            elapsed
                        )
                        if size == largest:
                            outputs[engine, kind, n_threads] = proba
    rows = []
    for n_threads in threads:
        native = {k: outputs["native", k, n_threads] for k in model.boosters}
        reference = _final(model, native, largest)
        per_kind = []
        for engine, kind in predictors:
            mixed = {**native, kind: outputs[engine, kind, n_threads]}
            per_kind.append(
                EngineResult(
                    engine,
                    kind,
                    n_threads,
                    len(model.fold_results_[kind].models),
                    builds[engine, kind],
                    {s: seconds[engine, kind, n_threads, s] for s in batch_sizes},
                    float(np.abs(_final(model, mixed, largest) - reference).max()),
                )
            )
        rows += per_kind
        rows += _stage_rows(model, per_kind, outputs, reference, batch_sizes, n_threads)
    return rows


def _stage_rows(
    model: PreferenceModel,
    per_kind: Sequence[EngineResult],
    outputs: dict[tuple[str, str, int], NDArray],
    reference: NDArray,
    batch_sizes: Sequence[int],
    n_threads: int,
) -> list[EngineResult]:
    """The whole booster stage: native, then the fastest engine of each kind.

    One row per distinct choice of fastest engines (by batch size, largest
    first): compiled code may win on large batches and lose on one row.
    """
    largest = max(batch_sizes)
    by_key = {(r.engine, r.kind): r for r in per_kind}

    def total(choice: dict[str, str]) -> EngineResult:
        parts = [by_key[choice[kind], kind] for kind in model.boosters]
        seconds = {
            size: [sum(r) for r in zip(*(p.seconds[size] for p in parts), strict=True)]
            for size in batch_sizes
        }
        final = _final(
            model,
            {k: outputs[choice[k], k, n_threads] for k in model.boosters},
            largest,
        )
        return EngineResult(
            "+".join(choice[kind] for kind in model.boosters),
            "stage",
            n_threads,
            sum(p.n_models for p in parts),
            sum(p.build_seconds for p in parts),
            seconds,
            float(np.abs(final - reference).max()),
        )

    native = {kind: "native" for kind in model.boosters}
    choices = [native]
    for size in sorted(batch_sizes, reverse=True):
        fastest = {
            kind: min(
                (r for r in per_kind if r.kind == kind),
                key=lambda r: statistics.median(r.seconds[size]),
            ).engine
            for kind in model.boosters
        }
        if fastest not in choices:
            choices.append(fastest)
    return [total(choice) for choice in choices]


def results_table(rows: Sequence[EngineResult], batch_sizes: Sequence[int]) -> str:
    """Markdown table: ms per call by batch size, speed-up and max |Δp| vs native.

    >>> row = EngineResult("native", "lightgbm", 1, 5, 0.0, {1000: [0.1, 0.12, 0.11]})
    >>> print(results_table([row], [1000]))  # doctest: +NORMALIZE_WHITESPACE
    | engine | booster kind | threads | fold models | build s \
| ms per 1,000 rows (median) | speed-up vs native | max abs dp (final) |
    |---|---|---:|---:|---:|---:|---:|---:|
    | native | lightgbm | 1 | 5 | 0.0 | 110.0 | 1.00x | 0 |
    """
    reference = {
        (r.kind, r.threads): r for r in rows if set(r.engine.split("+")) == {"native"}
    }
    columns = ["engine", "booster kind", "threads", "fold models", "build s"]
    for size in batch_sizes:
        label = f"{size:,} row" if size == 1 else f"{size:,} rows"
        columns += [f"ms per {label} (median)", "speed-up vs native"]
    columns.append("max abs dp (final)")
    lines = [
        "| " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * (len(columns) - 2),
    ]
    for row in rows:
        cells = [
            row.engine,
            row.kind,
            str(row.threads or "all"),
            str(row.n_models),
            f"{row.build_seconds:.1f}",
        ]
        native = reference[row.kind, row.threads]
        for size in batch_sizes:
            ms = 1000 * statistics.median(row.seconds[size])
            native_ms = 1000 * statistics.median(native.seconds[size])
            cells += [f"{ms:.2f}" if ms < 10 else f"{ms:.1f}", f"{native_ms / ms:.2f}x"]
        cells.append("0" if row.max_abs_dp == 0 else f"{row.max_abs_dp:.1e}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _read_battles(path: Path, n_rows: int) -> pd.DataFrame:
    raw = pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=[""])
    return raw[["id", "prompt", "response_a", "response_b"]].iloc[:n_rows]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory")
    parser.add_argument("--data", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--batch-sizes", default="1,1000", help="battles per call, e.g. 1,1000"
    )
    parser.add_argument(
        "--threads", default="1,0", help="threads per call, 0 = all cores, e.g. 1,0"
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help=f"subset of {list(ENGINES)}"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not args.data.exists():
        parser.error(f"data not found at {args.data}; pass --data PATH.")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engine(s) {unknown}; choose from {list(ENGINES)}.")
    batch_sizes = [int(s) for s in args.batch_sizes.split(",")]
    model = PreferenceModel.load(args.model)
    battles = _read_battles(args.data, max(batch_sizes))
    rows = measure_engines(
        model,
        battles,
        engines=engines,
        batch_sizes=batch_sizes,
        threads=[int(t) for t in args.threads.split(",")],
        repeats=args.repeats,
    )
    skipped = [e for e in engines if e != "native" and not _available(e)]
    print(
        f"Booster stage of {relative(args.model)} ({', '.join(model.boosters)}; "
        f"both A/B orders per battle), {os.cpu_count()} cores (threads 'all': "
        f"each engine's default); load average {load_average()[0]}; "
        f"median of {args.repeats} round-robin repeats; max abs dp over the final "
        f"probabilities of {max(batch_sizes):,} battles."
    )
    if skipped:
        print(f"Skipped (package missing): {', '.join(skipped)}.")
    print()
    print(results_table(rows, batch_sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
