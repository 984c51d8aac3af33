"""Run a profile's feature blocks over battles, through the store when given."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.battles import battle_fingerprint
from features.blocks import FeatureBlock, FeatureMatrix, make_block
from features.errors import NotFittedError
from features.parallel import fit_blocks, transform_blocks
from features.store import FeatureStore, block_key, read_state, write_state

__all__ = ["FeaturePipeline", "RunMode", "state_fingerprint"]

logger = logging.getLogger(__name__)


def state_fingerprint(block: FeatureBlock) -> str:
    """sha256 of a fitted block's state (JSON and arrays)."""
    state, arrays = block.get_state()
    digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(name.encode())
        digest.update(str(array.dtype).encode() + str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class RunMode(Enum):
    """What a pipeline run does with its blocks; decides which cache entries it reuses.

    - ``FIT`` (:meth:`FeaturePipeline.fit_transform`): fit each block on the
      battles; a cache hit also restores the block's fitted state.
    - ``TRANSFORM`` (:meth:`FeaturePipeline.transform`): run the fitted blocks;
      an output is reused only when the same fitted state computed it.
    """

    FIT = "fit"
    TRANSFORM = "transform"

    def cache_tag(self, block: FeatureBlock) -> str:
        """The mode part of `block`'s cache key (see :func:`features.store.block_key`).

        A transform's output depends on the block's fitted state, so its tag
        holds :func:`state_fingerprint`; a fit's does not, since it makes the
        state from the battles.

        Examples
        --------
        >>> from features.blocks import make_block
        >>> RunMode.FIT.cache_tag(make_block("lengths", {}))
        'fit'
        >>> RunMode.TRANSFORM.cache_tag(make_block("lengths", {}))[:10]
        'transform:'
        """
        if self is RunMode.FIT:
            return self.value
        return f"{self.value}:{state_fingerprint(block)}"


@dataclass
class _RunRecord:
    """Per block of one run: its output, seconds spent and cache key."""

    seconds: dict[str, float]
    outputs: dict[str, FeatureMatrix] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


class FeaturePipeline:
    """The feature blocks of a profile, fitted together and run in order.

    Parameters
    ----------
    blocks : mapping of str to mapping
        Block name -> params, in output column order (``features.blocks`` of
        a profile).
    store : FeatureStore or None, default=None
        Cache for block outputs; None computes everything. Blocks that embed
        texts (``embeddings``) also keep each text's vector in the store's
        per-text cache (:mod:`features.text_cache`), so a subset or superset
        of battles seen before encodes only the texts it has not seen.
    verbose : bool, default=False
        Show progress bars (row chunks when parallel, and inside blocks).
    n_jobs : int or None, default=None
        Worker processes for the row-parallel blocks' transform: None or 1
        serial, -1 one per core. Batches under ``2 * MIN_ROWS_PER_JOB`` rows
        run serially (:mod:`features.parallel`). Not part of any cache key:
        the output does not depend on it.
    cache_outputs : bool, default=True
        Read and write the blocks' outputs in ``store``. False leaves the
        store only its per-text cache: a distributed build does so per
        partition, then stores the whole table's outputs once.

    Attributes
    ----------
    blocks_ : dict of str to FeatureBlock
        The fitted blocks.
    stats_ : list of dict
        Per block of the last run: columns, rows, seconds, rows/s, cache,
        and whether its output is sparse.
    """

    def __init__(
        self,
        blocks: Mapping[str, Mapping[str, Any]],
        *,
        store: FeatureStore | None = None,
        verbose: bool = False,
        n_jobs: int | None = None,
        cache_outputs: bool = True,
    ) -> None:
        self.blocks = blocks
        self.store = store
        self.verbose = verbose
        self.n_jobs = n_jobs
        self.cache_outputs = cache_outputs

    @classmethod
    def from_fitted(
        cls, fitted: Mapping[str, FeatureBlock], **kwargs: Any
    ) -> FeaturePipeline:
        """A pipeline whose :meth:`transform` runs the already fitted ``fitted``.

        ``kwargs`` are the other parameters (``store``, ``verbose``, ...). The
        blocks are used, not copied.

        Examples
        --------
        >>> from features.blocks import make_block
        >>> pipeline = FeaturePipeline.from_fitted({"lengths": make_block("lengths")})
        >>> list(pipeline.blocks_)
        ['lengths']
        """
        pipeline = cls(
            {name: block.get_params(deep=False) for name, block in fitted.items()},
            **kwargs,
        )
        pipeline.blocks_ = dict(fitted)
        return pipeline

    def _run(self, battles: pd.DataFrame, mode: RunMode) -> FeatureMatrix:
        """Reuse what the store holds, fit and transform the rest, store it."""
        self._prepare_blocks(mode)
        run = _RunRecord(seconds=dict.fromkeys(self.blocks_, 0.0))
        self._read_cache(battles, mode, run)
        if mode is RunMode.FIT:
            self._fit_misses(battles, run)
        computed = [name for name in self.blocks_ if name not in run.outputs]
        for group in self._transform_groups(computed):
            self._transform_group(group, battles, run)
            self._write_cache(group, battles, mode, run)
        self.stats_ = self._block_stats(run, computed)
        return FeatureMatrix.concat([run.outputs[name] for name in self.blocks_])

    def _prepare_blocks(self, mode: RunMode) -> None:
        """New blocks for a fit, the fitted ones for a transform."""
        if mode is RunMode.TRANSFORM and not hasattr(self, "blocks_"):
            raise NotFittedError(
                "FeaturePipeline is not fitted; call fit_transform first."
            )
        if mode is RunMode.FIT:
            self.blocks_ = {
                name: make_block(name, params) for name, params in self.blocks.items()
            }
        for block in self.blocks_.values():
            block.progress = self.verbose
            if getattr(block, "uses_text_cache", False):
                block.text_store = self.store

    def _read_cache(
        self, battles: pd.DataFrame, mode: RunMode, run: _RunRecord
    ) -> None:
        """Take each block's output from the store when it is there.

        A hit in a fit also restores the block's fitted state from the entry.
        """
        if self.store is None or not self.cache_outputs:
            return
        fingerprint = battle_fingerprint(battles)
        for name, block in self.blocks_.items():
            started = time.perf_counter()
            run.keys[name] = block_key(block, fingerprint, mode.cache_tag(block))
            entry = self.store.load(run.keys[name])
            if entry is not None:
                if mode is RunMode.FIT:
                    block.set_state(entry.state, entry.arrays)
                run.outputs[name] = entry.matrix
            run.seconds[name] += time.perf_counter() - started

    def _fit_misses(self, battles: pd.DataFrame, run: _RunRecord) -> None:
        """Fit the blocks the cache missed (stateful row-parallel ones side by side)."""
        to_fit = [name for name in self.blocks_ if name not in run.outputs]
        if not to_fit:
            return
        logger.info("fitting %s on %d rows", ", ".join(to_fit), len(battles))
        fit_seconds = fit_blocks(
            [self.blocks_[name] for name in to_fit], battles, self.n_jobs
        )
        for name, took in zip(to_fit, fit_seconds, strict=True):
            run.seconds[name] += took

    def _transform_groups(self, names: list[str]) -> list[list[str]]:
        """The row-parallel blocks together, then the rest (the transformer) alone."""
        parallel = [name for name in names if self.blocks_[name].row_parallel]
        alone = [name for name in names if name not in parallel]
        return [group for group in (parallel, alone) if group]

    def _transform_group(
        self, names: list[str], battles: pd.DataFrame, run: _RunRecord
    ) -> None:
        blocks = [self.blocks_[name] for name in names]
        jobs = self.n_jobs if blocks[0].row_parallel else None  # groups are uniform
        desc = names[0] if len(names) == 1 else f"{len(names)} blocks"
        with tqdm(
            total=len(battles),
            desc=f"features: {desc}",
            unit="row",
            disable=not self.verbose,
        ) as bar:
            matrices, spent = transform_blocks(
                blocks, battles, jobs, on_chunk=bar.update
            )
        for name, matrix, block_seconds in zip(names, matrices, spent, strict=True):
            run.outputs[name] = matrix
            run.seconds[name] += block_seconds

    def _write_cache(
        self, names: list[str], battles: pd.DataFrame, mode: RunMode, run: _RunRecord
    ) -> None:
        """Store the outputs of `names` as soon as their group is done.

        Only a fit's entry holds the fitted state: a transform's cannot restore one.
        """
        if self.store is None or not self.cache_outputs:
            return
        for name in names:
            block = self.blocks_[name]
            state, arrays = block.get_state() if mode is RunMode.FIT else ({}, {})
            meta = {"block": name, "version": block.version, "rows": len(battles)}
            self.store.save(run.keys[name], run.outputs[name], state, arrays, meta)

    def _block_stats(
        self, run: _RunRecord, computed: list[str]
    ) -> list[dict[str, Any]]:
        """Columns, rows, seconds, rows/s and cache use of each block, logged."""
        stats = []
        for name in self.blocks_:
            matrix = run.outputs[name]
            seconds = run.seconds[name]
            cache = "-"
            if self.store is not None and self.cache_outputs:
                cache = "miss" if name in computed else "hit"
            stats.append(
                {
                    "block": name,
                    "columns": len(matrix.columns),
                    "rows": matrix.n_rows,
                    "seconds": round(seconds, 6),
                    "rows_per_s": round(matrix.n_rows / max(seconds, 1e-9), 1),
                    "cache": cache,
                    "sparse": matrix.is_sparse,
                }
            )
            logger.info(
                "%s: %d columns, %d rows, %.2f s (%s)",
                name,
                len(matrix.columns),
                matrix.n_rows,
                seconds,
                cache,
            )
        return stats

    def fit_transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Fit every block on ``battles`` and return their concatenated output."""
        return self._run(battles, RunMode.FIT)

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Output of the fitted blocks for new battles."""
        return self._run(battles, RunMode.TRANSFORM)

    def save_state(self, directory: Path) -> None:
        """Write each fitted block's params and state under ``directory/<name>/``."""
        for name, block in self.blocks_.items():
            block_dir = directory / name
            block_dir.mkdir(parents=True, exist_ok=True)
            state, arrays = block.get_state()
            write_state(block_dir, state, arrays)
            meta = {
                "name": name,
                "version": block.version,
                "params": block.get_params(),
            }
            (block_dir / "block.json").write_text(
                json.dumps(meta, indent=1, default=str)
            )

    @classmethod
    def load_state(
        cls, directory: Path, blocks: Mapping[str, Mapping[str, Any]]
    ) -> FeaturePipeline:
        """Rebuild a fitted pipeline from :meth:`save_state` output."""
        pipeline = cls(blocks)
        pipeline.blocks_ = {}
        for name, params in blocks.items():
            block = make_block(name, params)
            meta = json.loads((directory / name / "block.json").read_text())
            if meta["version"] != block.version:
                raise ValueError(
                    f"block {name!r} was saved at version {meta['version']} but this "
                    f"code has version {block.version}; retrain the model."
                )
            state, arrays = read_state(directory / name)
            pipeline.blocks_[name] = block.set_state(state, arrays)
        return pipeline
