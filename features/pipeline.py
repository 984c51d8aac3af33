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
        Show a progress bar over blocks.

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
    ) -> None:
        self.blocks = blocks
        self.store = store
        self.verbose = verbose

    def _run(self, battles: pd.DataFrame, *, fit: bool) -> FeatureMatrix:
        if not fit and not hasattr(self, "blocks_"):
            raise RuntimeError(
                "FeaturePipeline is not fitted; call fit_transform first."
            )
        if fit:
            self.blocks_ = {
                name: make_block(name, params) for name, params in self.blocks.items()
            }
        for block in self.blocks_.values():
            block.progress = self.verbose
        fingerprint = battle_fingerprint(battles) if self.store is not None else ""
        matrices, self.stats_ = [], []
        names = list(self.blocks_)
        bar = tqdm(names, desc="features", unit="block", disable=not self.verbose)
        for name in bar:
            bar.set_postfix_str(name)
            block = self.blocks_[name]
            started = time.perf_counter()
            matrix, hit = self._block_output(block, battles, fingerprint, fit=fit)
            seconds = time.perf_counter() - started
            matrices.append(matrix)
            self.stats_.append(
                {
                    "block": name,
                    "columns": len(matrix.columns),
                    "rows": matrix.n_rows,
                    "seconds": round(seconds, 3),
                    "rows_per_s": round(matrix.n_rows / max(seconds, 1e-9), 1),
                    "cache": "-" if self.store is None else ("hit" if hit else "miss"),
                }
            )
            logger.info(
                "%s: %d columns, %d rows, %.2f s (%s)",
                name,
                len(matrix.columns),
                matrix.n_rows,
                seconds,
                self.stats_[-1]["cache"],
            )
        return FeatureMatrix.concat(matrices)

    def _block_output(
        self, block: FeatureBlock, battles: pd.DataFrame, fingerprint: str, *, fit: bool
    ) -> tuple[FeatureMatrix, bool]:
        if self.store is None:
            return (
                block.fit_transform(battles) if fit else block.transform(battles)
            ), False
        mode = "fit" if fit else f"transform:{state_fingerprint(block)}"
        key = block_key(block, fingerprint, mode)
        entry = self.store.load(key)
        if entry is not None:
            if fit:
                block.set_state(entry.state, entry.arrays)
            return entry.matrix, True
        matrix = block.fit_transform(battles) if fit else block.transform(battles)
        state, arrays = block.get_state() if fit else ({}, {})
        meta = {"block": block.name, "version": block.version, "rows": matrix.n_rows}
        self.store.save(key, matrix, state, arrays, meta)
        return matrix, False

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
