"""The row-wise work of ``build_features`` and ``predict``, per partition on Dask.

Both commands plan partitions of their input (:mod:`features.partitions`) and
run one task per partition on the workers of a ``dask.distributed`` cluster;
each task writes its part atomically (:mod:`pipelines.distributed.parts`), so a killed
run resumes where it stopped.

- **build**: the stateful blocks (TF-IDF vocabularies, Word2Vec) are fitted
  once here, in the client, on every row (or a seeded sample of
  ``fit_rows``), exactly as ``FeaturePipeline.fit_transform`` fits them. Their
  states, the JSON and numpy arrays of ``get_state``, are saved with the
  parts (so a resumed run does not refit) and broadcast to the workers, which
  rebuild each block with ``set_state`` once per process and transform their
  partitions through a :class:`~features.pipeline.FeaturePipeline` on the
  feature store (so the embeddings land in its per-text cache). At the end
  the client stores each block's output for the whole table in the feature
  store, under the key ``FeaturePipeline.fit_transform`` of the same battles
  looks up: ``train_gbdt`` on the same file then computes nothing (stateful
  blocks only when fitted on every row, without ``fit_rows``).
- **predict**: each worker loads the model directory once per process
  (``PreferenceModel.load`` verifies its checksums; the directory must be at
  the same path on every worker) and runs ``predict_proba`` per partition.

Every row's numbers depend on that row alone (and the fitted state), so the
parts hold exactly the single-process numbers. Workers read the input and
write the output themselves: on several machines both paths must be on a
shared file system, with the same paths everywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from features.battles import (
    CLASSES,
    RepairReport,
    battle_fingerprint,
    battle_ids,
    truncate_battles,
)
from features.blocks import FeatureBlock, FeatureMatrix, make_block
from features.errors import BattleFormatError, ModelIntegrityError, UserInputError
from features.parallel import fit_blocks
from features.partitions import BattlePartition, read_partition
from features.pipeline import FeaturePipeline, RunMode, state_fingerprint
from features.store import (
    FeatureStore,
    atomic_directory,
    block_key,
    file_sha256,
    read_state,
    verify_manifest,
    write_manifest,
    write_state,
)
from pipelines._files import atomic_text_file
from pipelines.distributed.parts import (
    clean_partial_files,
    finished_part,
    read_feature_parts,
    write_part,
    write_parts_manifest,
)

if TYPE_CHECKING:
    from distributed import Client

    from models import PreferenceModel

__all__ = [
    "RunSummary",
    "WorkerLostError",
    "build_on_cluster",
    "predict_on_cluster",
    "write_parts_csv",
]

logger = logging.getLogger(__name__)

_STATE_DIR = "state"
_SHOWN_DUPLICATES = 5


class WorkerLostError(UserInputError, RuntimeError):
    """Workers died running a partition, more often than Dask retries it."""


@dataclass
class RunSummary:
    """What a distributed run did.

    Attributes
    ----------
    out_dir : pathlib.Path
        The parts directory (its ``manifest.json`` lists every part).
    n_rows : int
        Rows over every part.
    computed, reused : int
        Parts computed by this run, and parts a previous run had finished.
    report : RepairReport
        The repairs of every partition, merged.
    records : list of dict
        The part records, in partition order.
    stats : list of dict
        Build only: per block, ``build_features.format_stats`` rows.
    """

    out_dir: Path
    n_rows: int
    computed: int
    reused: int
    report: RepairReport
    records: list[dict[str, Any]]
    stats: list[dict[str, Any]]


@dataclass(frozen=True)
class _BlockSpecs:
    """Every block of a build as the workers rebuild it: params and fitted state.

    ``states[name]`` is ``(json_state, arrays)`` for a stateful block, None
    for a stateless one; ``key`` fingerprints them all (workers cache by it).
    """

    key: str
    params: tuple[tuple[str, dict[str, Any]], ...]
    states: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]] | None]


@dataclass(frozen=True)
class _PartJob:
    """What every task of one run shares (small; sent with each task)."""

    out_dir: str
    identity: dict[str, Any]
    labelled: bool | None
    max_chars: int | None = None
    model_dir: str | None = None
    model_sha: str | None = None
    class_prior: tuple[float, ...] | None = None
    store_root: str | None = None


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _hash_ids(ids: Sequence[Any]) -> np.ndarray:
    return pd.util.hash_array(np.asarray(list(ids), dtype=object))


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _source_info(partition: BattlePartition) -> dict[str, Any]:
    return {
        "path": partition.path,
        "file_rows": partition.file_rows,
        "fingerprint": partition.fingerprint,
    }


def _reused(out_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    ids = pq.read_table(out_dir / record["file"], columns=["id"]).column("id")
    return {"record": record, "reused": True, "id_hashes": _hash_ids(ids.to_pylist())}


# ------------------------------------------------------------ worker tasks
_WORKER_BLOCKS: dict[str, list[tuple[str, FeatureBlock]]] = {}
_WORKER_MODELS: dict[tuple[str, str], PreferenceModel] = {}
_WORKER_LOCK = threading.Lock()
"""Workers with several threads (``dask worker --nthreads``) build each once."""


def _worker_blocks(specs: _BlockSpecs) -> list[tuple[str, FeatureBlock]]:
    """The run's blocks, rebuilt from their states once per worker process."""
    with _WORKER_LOCK:
        return _cached_blocks(specs)


def _cached_blocks(specs: _BlockSpecs) -> list[tuple[str, FeatureBlock]]:
    if specs.key not in _WORKER_BLOCKS:
        _WORKER_BLOCKS.clear()  # one run's blocks at a time
        blocks = []
        for name, params in specs.params:
            block = make_block(name, params)
            state = specs.states.get(name)
            if state is not None:
                block.set_state(*state)
            blocks.append((name, block))
        _WORKER_BLOCKS[specs.key] = blocks
    return _WORKER_BLOCKS[specs.key]


def _part_identity(job: _PartJob, partition: BattlePartition) -> dict[str, Any]:
    return {"job": job.identity, "partition": partition.identity()}


def _fit_rows_task(
    partition: BattlePartition,
    positions: np.ndarray | None,
    labelled: bool | None,
    max_chars: int | None,
) -> pd.DataFrame:
    """Rows of one partition for the client's fit (all, or those at ``positions``)."""
    table = truncate_battles(read_partition(partition, labelled=labelled), max_chars)
    if positions is not None:
        table = table.iloc[positions].reset_index(drop=True)
    return table


def _count_task(partition: BattlePartition) -> int:
    return len(read_partition(partition, labelled=False))


def _build_task(
    partition: BattlePartition, job: _PartJob, specs: _BlockSpecs
) -> dict[str, Any]:
    """Transform one partition with every block and write its part."""
    out_dir = Path(job.out_dir)
    identity = _part_identity(job, partition)
    record = finished_part(out_dir, partition.index, identity)
    if record is not None:
        return _reused(out_dir, record)
    started_at, started = time.time(), time.perf_counter()
    battles = read_partition(partition, labelled=job.labelled)
    table = truncate_battles(battles, job.max_chars)
    read_seconds = time.perf_counter() - started
    blocks = dict(_worker_blocks(specs))
    for name, block in blocks.items():
        if specs.states.get(name) is None:
            block.fit(table)  # stateless: checks params and columns only
    store = None if job.store_root is None else FeatureStore(job.store_root)
    # A pipeline per task (its stats are per run); the fitted blocks are shared.
    pipeline = FeaturePipeline.from_fitted(blocks, store=store, cache_outputs=False)
    matrix = pipeline.transform(table)
    block_seconds = {row["block"]: row["seconds"] for row in pipeline.stats_}
    block_columns = {row["block"]: row["columns"] for row in pipeline.stats_}
    block_sparse = {row["block"]: row["sparse"] for row in pipeline.stats_}
    values = matrix.values.toarray() if matrix.is_sparse else matrix.values
    frame = pd.DataFrame(values, columns=list(matrix.columns))
    frame.insert(0, "id", battle_ids(table["id"]).tolist())
    if "label" in table.columns:
        frame.insert(1, "label", table["label"].to_numpy(dtype=np.int64))
    info = {
        "seconds": time.perf_counter() - started,
        "read_seconds": read_seconds,
        "block_seconds": block_seconds,
        "block_columns": block_columns,
        "block_sparse": block_sparse,
        "started": started_at,
        "repairs": battles.attrs.get("repair_report", {}),
        "source": _source_info(partition),
        "worker": _worker_name(),
    }
    record = write_part(out_dir, partition.index, frame, identity, info)
    return {"record": record, "reused": False, "id_hashes": _hash_ids(frame["id"])}


def _worker_model(model_dir: str, model_sha: str) -> PreferenceModel:
    """The model of ``model_dir``, loaded (and verified) once per worker process."""
    with _WORKER_LOCK:
        return _cached_model(model_dir, model_sha)


def _cached_model(model_dir: str, model_sha: str) -> PreferenceModel:
    from models import PreferenceModel

    key = (model_dir, model_sha)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        path = Path(model_dir)
        try:
            found = file_sha256(path / "manifest.json")
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"worker {_worker_name()}: no model directory at {model_dir!r}. "
                "Every worker loads the model from the same path: put it on a shared "
                "file system, or copy it to that path on every machine."
            ) from err
        if found != model_sha:
            raise ModelIntegrityError(
                f"worker {_worker_name()}: the model at {model_dir!r} is not the one "
                "this run started with (its manifest changed). Run predict again "
                "once the model directory is stable."
            )
        model = PreferenceModel.load(path)
        model.set_params(n_jobs=None, verbose=False)  # one thread per worker
        _WORKER_MODELS[key] = model
    return _WORKER_MODELS[key]


PREDICT_CHUNK_ROWS = 10_000
"""Rows per ``predict_proba`` call inside a partition: a worker's memory then
follows this, not the partition size (a 50,000-row call peaked at 2.5 GB)."""


def _predict_in_chunks(
    model: PreferenceModel, battles: pd.DataFrame, prior: list[float] | None
) -> np.ndarray:
    """``predict_proba`` over row chunks; rows are predicted independently, so
    the numbers are those of one call."""
    chunks = [
        model.predict_proba(
            battles.iloc[start : start + PREDICT_CHUNK_ROWS], class_prior=prior
        )
        for start in range(0, len(battles), PREDICT_CHUNK_ROWS)
    ]
    return np.vstack(chunks) if chunks else np.empty((0, len(CLASSES)))


def _predict_task(partition: BattlePartition, job: _PartJob) -> dict[str, Any]:
    """Predict one partition and write its part."""
    out_dir = Path(job.out_dir)
    identity = _part_identity(job, partition)
    record = finished_part(out_dir, partition.index, identity)
    if record is not None:
        return _reused(out_dir, record)
    started_at, started = time.time(), time.perf_counter()
    battles = read_partition(partition, labelled=False)
    read_seconds = time.perf_counter() - started
    model_started = time.perf_counter()
    model = _worker_model(job.model_dir, job.model_sha)
    model_seconds = time.perf_counter() - model_started
    prior = None if job.class_prior is None else list(job.class_prior)
    proba = _predict_in_chunks(model, battles, prior)
    frame = pd.DataFrame(proba, columns=list(CLASSES))
    frame.insert(0, "id", battle_ids(battles["id"]).tolist())
    info = {
        "seconds": time.perf_counter() - started,
        "read_seconds": read_seconds,
        "model_seconds": model_seconds,  # > 0 where this worker loaded the model
        "started": started_at,
        "repairs": battles.attrs.get("repair_report", {}),
        "source": _source_info(partition),
        "worker": _worker_name(),
    }
    record = write_part(out_dir, partition.index, frame, identity, info)
    return {"record": record, "reused": False, "id_hashes": _hash_ids(frame["id"])}


# ------------------------------------------------------------------ client
def _run_tasks(
    client: Client,
    function: Callable[..., Any],
    partitions: Sequence[BattlePartition],
    args: Sequence[Any],
    *,
    desc: str,
    verbose: bool,
    per_partition: Sequence[Any] | None = None,
) -> list[Any]:
    """``function(partition, [per_partition[i],] *args)`` per partition, in order.

    Each result is released on the cluster once fetched. The first task to
    fail cancels the others and its error is raised here.

    Raises
    ------
    WorkerLostError
        Workers died running a partition again and again (out of memory?).
    """
    from distributed import KilledWorker, as_completed

    run = uuid.uuid4().hex[:8]
    futures = {}
    for i, partition in enumerate(partitions):
        extra = () if per_partition is None else (per_partition[i],)
        future = client.submit(
            function,
            partition,
            *extra,
            *args,
            key=f"{function.__name__.strip('_')}-{run}-{partition.index}",
            pure=False,
        )
        futures[future] = i
    results: list[Any] = [None] * len(partitions)
    try:
        with tqdm(
            total=len(partitions), desc=desc, unit="part", disable=not verbose
        ) as bar:
            for future in as_completed(list(futures)):
                i = futures.pop(future)
                try:
                    results[i] = future.result()
                except KilledWorker as err:
                    raise WorkerLostError(
                        f"{partitions[i].label}: the workers running it died ({err}). "
                        "A worker that runs out of memory is killed: lower "
                        "--partition-rows, or give each worker more memory."
                    ) from err
                future.release()
                bar.update(1)
    except BaseException:
        client.cancel(list(futures))
        raise
    return results


def _merged_report(records: Sequence[Mapping[str, Any]]) -> RepairReport:
    merged = RepairReport()
    for record in records:
        part = RepairReport.from_dict(record.get("repairs") or {})
        merged.n_rows += record["rows"]
        for kind, count in part.counts.items():
            merged.counts[kind] += count
        for kind, ids in part.examples.items():
            for battle_id in ids:
                merged.add(kind, battle_id, 0)
    return merged


def _check_unique_ids(
    results: Sequence[Mapping[str, Any]],
    partitions: Sequence[BattlePartition],
    out_dir: Path,
) -> None:
    """Refuse ids repeated across partitions (within one, reading refuses them)."""
    import pyarrow.parquet as pq

    hashes = [np.asarray(r["id_hashes"], dtype=np.uint64) for r in results]
    flat = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
    order = np.argsort(flat, kind="stable")
    repeated = np.flatnonzero(flat[order][1:] == flat[order][:-1])
    if not repeated.size:
        return
    owners = np.repeat(np.arange(len(hashes)), [h.size for h in hashes])
    starts = np.concatenate([[0], np.cumsum([h.size for h in hashes])])
    cache: dict[int, list[str]] = {}

    def where(position: int) -> tuple[str, str]:
        k = int(owners[position])
        if k not in cache:
            part = out_dir / results[k]["record"]["file"]
            cache[k] = pq.read_table(part, columns=["id"]).column("id").to_pylist()
        local = position - int(starts[k])
        rows = partitions[k].file_rows
        row = local + (rows[0] if rows else 0)
        return cache[k][local], f"{partitions[k].label} row {row}"

    shown = []
    for j in repeated:
        (first_id, first), (second_id, second) = where(order[j]), where(order[j + 1])
        if first_id == second_id:  # not a 64-bit hash collision
            shown.append(f"{first_id!r} ({first}; {second})")
        if len(shown) == _SHOWN_DUPLICATES:
            break
    if shown:
        raise BattleFormatError(
            f"duplicate battle ids across partitions: {', '.join(shown)}. Each battle "
            "needs its own value in column 'id'; deduplicate the source."
        )


def _finish(
    out_dir: Path,
    results: Sequence[Mapping[str, Any]],
    partitions: Sequence[BattlePartition],
    info: Mapping[str, Any],
) -> RunSummary:
    _check_unique_ids(results, partitions, out_dir)
    records = [r["record"] for r in results]
    write_parts_manifest(out_dir, records, info)
    reused = sum(bool(r["reused"]) for r in results)
    return RunSummary(
        out_dir=out_dir,
        n_rows=sum(r["rows"] for r in records),
        computed=len(results) - reused,
        reused=reused,
        report=_merged_report(records),
        records=records,
        stats=[],
    )


# ------------------------------------------------------------------- build
def _block_identity(blocks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    identity = {}
    for name, params in blocks.items():
        block = make_block(name, params)
        identity[name] = {"version": block.version, "params": block.get_params()}
    return identity


def _fit_table(
    client: Client,
    partitions: Sequence[BattlePartition],
    *,
    labelled: bool | None,
    max_chars: int | None,
    fit_rows: int | None,
    seed: int,
    verbose: bool,
) -> pd.DataFrame:
    """The rows the stateful blocks are fitted on, read by the workers, in order."""
    positions: list[np.ndarray | None] = [None] * len(partitions)
    chosen = list(partitions)
    if fit_rows is not None:
        counts = [p.n_rows for p in partitions]
        unknown = [i for i, n in enumerate(counts) if n is None]
        if unknown:
            found = _run_tasks(
                client,
                _count_task,
                [partitions[i] for i in unknown],
                (),
                desc="count rows",
                verbose=verbose,
            )
            for i, n in zip(unknown, found, strict=True):
                counts[i] = n
        total = int(sum(counts))
        if fit_rows < total:
            rng = np.random.default_rng(seed)
            picked = np.sort(rng.choice(total, size=fit_rows, replace=False))
            starts = np.concatenate([[0], np.cumsum(counts)])
            chosen, positions = [], []
            for i, partition in enumerate(partitions):
                low, high = np.searchsorted(picked, starts[i : i + 2])
                if high > low:
                    chosen.append(partition)
                    positions.append(picked[low:high] - starts[i])
    tables = _run_tasks(
        client,
        _fit_rows_task,
        chosen,
        (labelled, max_chars),
        desc="read for fit",
        verbose=verbose,
        per_partition=positions,
    )
    return pd.concat(tables, ignore_index=True)


def _load_states(state_dir: Path, names: Sequence[str]) -> dict[str, Any] | None:
    """States saved by an earlier run of the same build, if complete and intact."""
    if not state_dir.is_dir():
        return None
    if verify_manifest(state_dir)[1]:
        shutil.rmtree(state_dir, ignore_errors=True)
        return None
    return {name: read_state(state_dir / name) for name in names}


def _save_states(state_dir: Path, states: Mapping[str, Any]) -> None:
    def fill(tmp: Path) -> None:
        for name, (state, arrays) in states.items():
            (tmp / name).mkdir()
            write_state(tmp / name, state, arrays)
        write_manifest(tmp, {"blocks": sorted(states)})

    atomic_directory(state_dir, fill)


def build_on_cluster(
    client: Client,
    partitions: Sequence[BattlePartition],
    blocks: Mapping[str, Mapping[str, Any]],
    *,
    store_root: Path,
    max_chars: int | None,
    n_jobs: int | None = None,
    fit_rows: int | None = None,
    seed: int = 0,
    verbose: bool = False,
) -> RunSummary:
    """Build the feature matrix of ``partitions`` as partitioned parquet.

    Parameters
    ----------
    client : distributed.Client
        Connected to a cluster with at least one worker.
    partitions : sequence of BattlePartition
        From :func:`features.partitions.plan_partitions`.
    blocks : mapping of str to mapping
        Block name -> params, in column order (a profile's blocks).
    store_root : pathlib.Path
        The feature store; the parts go to ``parts/features-<key>`` under it,
        ``key`` a digest of the blocks, ``max_chars``, the sampling and the
        input files' fingerprints, so a rerun finds its own parts.
    max_chars : int or None
        ``data.max_chars`` of the profile.
    n_jobs : int or None, default=None
        Processes for the client's side-by-side fit (``features.n_jobs``).
    fit_rows : int or None, default=None
        Fit the stateful blocks on a seeded sample of this many rows (all
        rows when None or when there are fewer).
    seed : int, default=0
        Seed of that sample.
    verbose : bool, default=False
        Progress bars.

    Returns
    -------
    RunSummary
        With ``stats`` per block.
    """
    started = time.perf_counter()
    identity = {
        "kind": "features",
        "blocks": _block_identity(blocks),
        "max_chars": max_chars,
        "fit_rows": fit_rows,
        "seed": seed if fit_rows is not None else None,
        "sources": sorted({(p.path, p.fingerprint) for p in partitions}),
    }
    out_dir = Path(store_root).resolve() / "parts" / f"features-{_digest(identity)}"
    removed = clean_partial_files(out_dir, len(partitions))
    if removed:
        logger.info("%s: removed %d files of an unfinished run", out_dir, removed)
    made = {name: make_block(name, params) for name, params in blocks.items()}
    stateful = [name for name, block in made.items() if block.stateful]
    states = _load_states(out_dir / _STATE_DIR, stateful) if stateful else {}
    fit_seconds = 0.0
    fingerprint = None  # of every row: the key of the whole table's store entries
    if states is None:
        fit_started = time.perf_counter()
        table = _fit_table(
            client,
            partitions,
            labelled=None,
            max_chars=max_chars,
            fit_rows=fit_rows,
            seed=seed,
            verbose=verbose,
        )
        if fit_rows is None or fit_rows >= len(table):
            fingerprint = battle_fingerprint(table)
        logger.info("fitting %s on %d rows", ", ".join(stateful), len(table))
        fit_blocks([made[name] for name in stateful], table, n_jobs)
        del table
        states = {name: made[name].get_state() for name in stateful}
        _save_states(out_dir / _STATE_DIR, states)
        fit_seconds = time.perf_counter() - fit_started
        logger.info("fitted %s in %.1f s", ", ".join(stateful), fit_seconds)
    elif stateful:
        logger.info("reusing the fitted %s of %s", ", ".join(stateful), out_dir)
        for name in stateful:
            made[name].set_state(*states[name])
    fingerprints = {name: state_fingerprint(made[name]) for name in stateful}
    specs = _BlockSpecs(
        key=_digest([identity, fingerprints]),
        params=tuple((name, dict(params)) for name, params in blocks.items()),
        states={name: states.get(name) for name in blocks},
    )
    job = _PartJob(
        out_dir=str(out_dir),
        identity={**identity, "states": fingerprints},
        labelled=None,
        max_chars=max_chars,
        store_root=str(Path(store_root).resolve()),
    )
    shared = client.scatter(specs, broadcast=True, hash=False)
    parts_started = time.perf_counter()
    results = _run_tasks(
        client, _build_task, partitions, (job, shared), desc="features", verbose=verbose
    )
    parts_seconds = time.perf_counter() - parts_started
    columns = _columns_of(out_dir, results)
    summary = _finish(
        out_dir,
        results,
        partitions,
        {
            "kind": "features",
            "feature_columns": columns,
            "blocks": identity["blocks"],
            "states": fingerprints,
            "timings": {
                "fit": fit_seconds,
                "parts": parts_seconds,
                "total": time.perf_counter() - started,
            },
            "workers": len(client.nthreads()),
        },
    )
    summary.stats = _block_stats(made, summary.records, fit_seconds)
    if fingerprint is None:
        table = _fit_table(
            client,
            partitions,
            labelled=None,
            max_chars=max_chars,
            fit_rows=None,
            seed=seed,
            verbose=verbose,
        )
        fingerprint = battle_fingerprint(table)
        del table
    stored = _store_whole_table(
        FeatureStore(store_root),
        made,
        out_dir,
        summary.records,
        fingerprint,
        with_stateful=fit_rows is None or fit_rows >= summary.n_rows,
    )
    logger.info("feature store %s: stored the whole table of %s", store_root, stored)
    return summary


def _store_whole_table(
    store: FeatureStore,
    made: Mapping[str, FeatureBlock],
    out_dir: Path,
    records: Sequence[Mapping[str, Any]],
    fingerprint: str,
    *,
    with_stateful: bool,
) -> list[str]:
    """Store each block's output over every part, as ``fit_transform`` would.

    The key is the one ``FeaturePipeline.fit_transform`` of the same battles
    looks up (block, params, the battles' fingerprint, fit mode), and a
    stateful block's entry holds its fitted state, so ``train_gbdt`` on the
    same data reads every block instead of computing it. A stateful block
    fitted on a sample (``fit_rows``) is left out: a fit on every row would
    learn another state. Returns the names of the blocks stored.
    """
    _, matrix = read_feature_parts(out_dir)
    stored, start = [], 0
    for name, block in made.items():
        width = int(records[0]["block_columns"][name])
        columns = matrix.columns[start : start + width]
        values = matrix.values[:, start : start + width]
        start += width
        if block.stateful and not with_stateful:
            continue
        if records[0].get("block_sparse", {}).get(name, False):
            values = sp.csr_matrix(values)
        key = block_key(block, fingerprint, RunMode.FIT.cache_tag(block))
        if not store.path(key).is_dir():
            state, arrays = block.get_state()
            meta = {"block": name, "version": block.version, "rows": len(values)}
            part = FeatureMatrix(
                np.ascontiguousarray(values) if not sp.issparse(values) else values,
                columns,
            )
            store.save(key, part, state, arrays, meta)
        stored.append(name)
    return stored


def _columns_of(out_dir: Path, results: Sequence[Mapping[str, Any]]) -> list[str]:
    import pyarrow.parquet as pq

    schema = pq.read_schema(out_dir / results[0]["record"]["file"])
    return [name for name in schema.names if name not in ("id", "label")]


def _block_stats(
    made: Mapping[str, FeatureBlock],
    records: Sequence[Mapping[str, Any]],
    fit_seconds: float,
) -> list[dict[str, Any]]:
    """Per block: columns, rows, seconds (the fit's share and the parts' worker
    seconds of this run and the runs whose parts it reused), rows/s, parts."""
    n_rows = sum(r["rows"] for r in records)
    n_stateful = max(1, sum(block.stateful for block in made.values()))
    stats = []
    for name, block in made.items():
        seconds = sum(r["block_seconds"][name] for r in records)
        if block.stateful:
            seconds += fit_seconds / n_stateful
        stats.append(
            {
                "block": name,
                "columns": records[0]["block_columns"][name],
                "rows": n_rows,
                "seconds": round(seconds, 6),
                "rows_per_s": round(n_rows / max(seconds, 1e-9), 1),
                "cache": f"{len(records)} parts",
            }
        )
    return stats


# ----------------------------------------------------------------- predict
def predict_on_cluster(
    client: Client,
    partitions: Sequence[BattlePartition],
    model_dir: Path,
    *,
    out_dir: Path,
    class_prior: Sequence[float] | None = None,
    verbose: bool = False,
) -> RunSummary:
    """Predict every partition with the model at ``model_dir`` into ``out_dir``.

    Parameters
    ----------
    client : distributed.Client
        Connected to a cluster with at least one worker.
    partitions : sequence of BattlePartition
        From :func:`features.partitions.plan_partitions`.
    model_dir : pathlib.Path
        A model directory, at this path on every worker.
    out_dir : pathlib.Path
        Directory of the parts: ``part-NNNNN.parquet`` with ``id`` and the
        three class probabilities, ``part-NNNNN.json``, ``manifest.json``.
    class_prior : sequence of float, default=None
        Shift the predictions to this prior (``--class-prior``).
    verbose : bool, default=False
        Progress bars.
    """
    started = time.perf_counter()
    model_dir = Path(model_dir).resolve()
    model_sha = file_sha256(model_dir / "manifest.json")
    prior = None if class_prior is None else tuple(float(p) for p in class_prior)
    identity = {"kind": "predictions", "model": model_sha, "class_prior": prior}
    removed = clean_partial_files(out_dir, len(partitions))
    if removed:
        logger.info("%s: removed %d files of an unfinished run", out_dir, removed)
    job = _PartJob(
        out_dir=str(Path(out_dir).resolve()),
        identity=identity,
        labelled=False,
        model_dir=str(model_dir),
        model_sha=model_sha,
        class_prior=prior,
    )
    results = _run_tasks(
        client, _predict_task, partitions, (job,), desc="predict", verbose=verbose
    )
    parts_seconds = time.perf_counter() - started
    return _finish(
        out_dir,
        results,
        partitions,
        {
            "kind": "predictions",
            "model": str(model_dir),
            "model_sha256": model_sha,
            "class_prior": prior,
            "timings": {"parts": parts_seconds},
            "workers": len(client.nthreads()),
        },
    )


def write_parts_csv(summary: RunSummary, out: Path) -> None:
    """Join the prediction parts into one submission CSV, atomically.

    Streams part by part, so memory holds one part; the text is what
    :func:`pipelines.predict.write_submission` writes for the same rows.
    """
    import pyarrow.parquet as pq

    with atomic_text_file(Path(out)) as stream:
        for k, record in enumerate(summary.records):
            part = pq.read_table(summary.out_dir / record["file"]).to_pandas()
            part["id"] = part["id"].astype(object)
            part.to_csv(stream, index=False, header=k == 0)
