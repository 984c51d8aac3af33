"""Run a profile's feature blocks over battles, through the store when given."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.battles import battle_fingerprint
from features.blocks import FeatureBlock, FeatureMatrix, make_block
from features.parallel import fit_blocks, transform_blocks
from features.store import FeatureStore, block_key, read_state, write_state

__all__ = ["FeaturePipeline", "state_fingerprint"]

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


class FeaturePipeline:
    """The feature blocks of a profile, fitted together and run in order.

    Parameters
    ----------
    blocks : mapping of str to mapping
        Block name -> params, in output column order (``features.blocks`` of
        a profile).
    store : FeatureStore or None, default=None
        Cache for block outputs; None computes everything.
    verbose : bool, default=False
        Show progress bars (row chunks when parallel, and inside blocks).
    n_jobs : int or None, default=None
        Worker processes for the row-parallel blocks' transform: None or 1
        serial, -1 one per core. Batches under ``2 * MIN_ROWS_PER_JOB`` rows
        run serially (:mod:`features.parallel`). Not part of any cache key:
        the output does not depend on it.

    Attributes
    ----------
    blocks_ : dict of str to FeatureBlock
        The fitted blocks.
    stats_ : list of dict
        Per block of the last run: columns, rows, seconds, rows/s, cache.
    """

    def __init__(
        self,
        blocks: Mapping[str, Mapping[str, Any]],
        *,
        store: FeatureStore | None = None,
        verbose: bool = False,
        n_jobs: int | None = None,
    ) -> None:
        self.blocks = blocks
        self.store = store
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _run(self, battles: pd.DataFrame, *, fit: bool) -> FeatureMatrix:
        if not fit and not hasattr(self, "blocks_"):
            raise RuntimeError(
                "FeaturePipeline is not fitted; call fit_transform first."
            )
        if fit:
            self.blocks_ = {
                name: make_block(name, params) for name, params in self.blocks.items()
            }
        fingerprint = battle_fingerprint(battles) if self.store is not None else ""
        outputs: dict[str, FeatureMatrix] = {}
        seconds: dict[str, float] = {}
        keys: dict[str, str] = {}
        # 1. Cache hits (fit restores the block's state); fit the misses, the
        # stateful row-parallel ones side by side.
        for name, block in self.blocks_.items():
            started = time.perf_counter()
            block.progress = self.verbose
            if self.store is not None:
                mode = "fit" if fit else f"transform:{state_fingerprint(block)}"
                keys[name] = block_key(block, fingerprint, mode)
                entry = self.store.load(keys[name])
                if entry is not None:
                    if fit:
                        block.set_state(entry.state, entry.arrays)
                    outputs[name] = entry.matrix
            seconds[name] = time.perf_counter() - started
        to_fit = [name for name in self.blocks_ if name not in outputs] if fit else []
        if to_fit:
            logger.info("fitting %s on %d rows", ", ".join(to_fit), len(battles))
            fit_seconds = fit_blocks(
                [self.blocks_[name] for name in to_fit], battles, self.n_jobs
            )
            for name, took in zip(to_fit, fit_seconds, strict=True):
                seconds[name] += took
        # 2. Transform the misses, row-parallel blocks together and the rest
        # (the transformer) alone; each group is stored as soon as it is done.
        missing = [name for name in self.blocks_ if name not in outputs]
        parallel = [n for n in missing if self.blocks_[n].row_parallel]
        for group in (parallel, [n for n in missing if n not in parallel]):
            if not group:
                continue
            self._transform_group(group, battles, outputs, seconds)
            for name in group if self.store is not None else ():
                block = self.blocks_[name]
                state, arrays = block.get_state() if fit else ({}, {})
                meta = {"block": name, "version": block.version, "rows": len(battles)}
                self.store.save(keys[name], outputs[name], state, arrays, meta)
        self.stats_ = []
        for name in self.blocks_:
            hit = name not in missing
            matrix = outputs[name]
            self.stats_.append(
                {
                    "block": name,
                    "columns": len(matrix.columns),
                    "rows": matrix.n_rows,
                    "seconds": round(seconds[name], 6),
                    "rows_per_s": round(matrix.n_rows / max(seconds[name], 1e-9), 1),
                    "cache": "-" if self.store is None else ("hit" if hit else "miss"),
                }
            )
            logger.info(
                "%s: %d columns, %d rows, %.2f s (%s)",
                name,
                len(matrix.columns),
                matrix.n_rows,
                seconds[name],
                self.stats_[-1]["cache"],
            )
        return FeatureMatrix.concat([outputs[name] for name in self.blocks_])

    def _transform_group(
        self,
        names: list[str],
        battles: pd.DataFrame,
        outputs: dict[str, FeatureMatrix],
        seconds: dict[str, float],
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
            outputs[name] = matrix
            seconds[name] += block_seconds

    def fit_transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Fit every block on ``battles`` and return their concatenated output."""
        return self._run(battles, fit=True)

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Output of the fitted blocks for new battles."""
        return self._run(battles, fit=False)

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
