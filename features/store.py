"""The on-disk feature cache: one entry per (block, version, params, data).

Each entry is a directory written under a temporary name and renamed into
place only when complete, with a manifest of sha256 sums. A reader therefore
never sees a half-written entry, and writers need no lock: when two write the
same entry, the first rename wins and the other keeps it. An entry whose files
fail their checksums, or cannot be parsed, is removed (with a warning) and
recomputed. Temporary directories left by a killed writer are removed by the
next save of the same entry (others once they are an hour old). Nothing is
pickled: values are ``.npy``/``.npz`` loaded with ``allow_pickle=False``,
state is JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from features.blocks.base import FeatureBlock, FeatureMatrix
from features.text_cache import TEXT_CACHE_DIR, TextVectorCache

__all__ = ["CacheEntry", "FeatureStore", "block_key", "file_sha256"]

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
RESERVED_FOLDERS = frozenset({TEXT_CACHE_DIR, "parts"})
"""Folders under the root that are not entries: the per-text vector cache
(:mod:`features.text_cache`) and the distributed build's parts."""
_MANIFEST = "manifest.json"
STALE_TMP_SECONDS = 3600
"""Age after which a ``.tmp-*`` directory of another key counts as left by a
killed writer (writing an entry takes seconds; the cap is generous)."""


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=True, default=str)


def block_key(block: FeatureBlock, data_fingerprint: str, mode: str) -> str:
    """Cache key of a block's output: name, version, params, data and mode."""
    payload = {
        "store_format": STORE_FORMAT,
        "block": block.name,
        "version": block.version,
        "params": block.get_params(deep=False),
        "data": data_fingerprint,
        "mode": mode,
    }
    digest = hashlib.sha256(_canonical_json(payload).encode()).hexdigest()
    return f"{block.name}-{digest[:20]}"


@dataclass(frozen=True)
class CacheEntry:
    """What a store entry holds: the matrix and the fitted block state."""

    matrix: FeatureMatrix
    state: dict[str, Any]
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def _save_matrix(directory: Path, matrix: FeatureMatrix) -> None:
    if matrix.is_sparse:
        csr = matrix.values.tocsr()
        np.savez(
            directory / "values.npz",
            data=csr.data.astype(np.float32),
            indices=csr.indices,
            indptr=csr.indptr,
            shape=np.asarray(csr.shape, dtype=np.int64),
        )
    else:
        np.save(directory / "values.npy", np.ascontiguousarray(matrix.values))
    (directory / "columns.json").write_text(json.dumps(list(matrix.columns)))


def _load_matrix(directory: Path) -> FeatureMatrix:
    columns = tuple(json.loads((directory / "columns.json").read_text()))
    if (directory / "values.npz").exists():
        with np.load(directory / "values.npz", allow_pickle=False) as parts:
            shape = tuple(int(v) for v in parts["shape"])
            values = sp.csr_matrix(
                (parts["data"], parts["indices"], parts["indptr"]), shape=shape
            )
        return FeatureMatrix(values, columns)
    return FeatureMatrix(np.load(directory / "values.npy", allow_pickle=False), columns)


def write_state(directory: Path, state: dict[str, Any], arrays: dict[str, Any]) -> None:
    """Write a block's state as ``state.json`` plus ``state_arrays.npz``."""
    (directory / "state.json").write_text(json.dumps(state, ensure_ascii=True))
    np.savez(
        directory / "state_arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()}
    )


def read_state(directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read what :func:`write_state` wrote, without unpickling anything."""
    state = json.loads((directory / "state.json").read_text())
    with np.load(directory / "state_arrays.npz", allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    return state, arrays


def write_manifest(directory: Path, extra: dict[str, Any] | None = None) -> None:
    """Record the sha256 of every file in ``directory`` (the manifest itself aside)."""
    files = sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != _MANIFEST
    )
    manifest = dict(extra or {})
    manifest["files"] = {name: file_sha256(directory / name) for name in files}
    (directory / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def verify_manifest(directory: Path) -> tuple[dict[str, Any], list[str]]:
    """The manifest and a list of problems (modified, missing or extra files)."""
    manifest_path = directory / _MANIFEST
    if not manifest_path.exists():
        return {}, [f"{_MANIFEST} is missing"]
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = dict(manifest["files"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        return {}, [f"{_MANIFEST} is unreadable ({err})"]
    problems = []
    present = {
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != _MANIFEST
    }
    for name, digest in sorted(expected.items()):
        if name not in present:
            problems.append(f"file {name!r} is missing")
        elif file_sha256(directory / name) != digest:
            problems.append(f"file {name!r} does not match its sha256 (modified)")
    for name in sorted(present - set(expected)):
        problems.append(f"file {name!r} is not in the manifest (extra)")
    return manifest, problems


def atomic_directory(final: Path, fill: Any) -> bool:
    """Create ``final`` by filling a temporary sibling and renaming it.

    ``fill(tmp_dir)`` writes the contents. Returns False when another writer
    created ``final`` first (its entry is kept; ours is discarded).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        os.rename(tmp, final)
        return True
    except OSError:
        if final.exists():
            return False
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class FeatureStore:
    """Cache of feature-block outputs under ``root``.

    Parameters
    ----------
    root : str or Path
        Directory of the cache; created on first write.

    Examples
    --------
    >>> store = FeatureStore("artifacts/features")  # doctest: +SKIP
    >>> entry = store.load(key)  # doctest: +SKIP
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Directory of entry ``key``."""
        return self.root / key

    def load(self, key: str) -> CacheEntry | None:
        """The entry ``key``, or None when absent or corrupt (then removed)."""
        directory = self.path(key)
        if not directory.is_dir():
            return None
        manifest, problems = verify_manifest(directory)
        if not problems:
            try:
                state, arrays = read_state(directory)
                matrix = _load_matrix(directory)
                return CacheEntry(matrix, state, arrays, manifest.get("meta", {}))
            except (OSError, ValueError, KeyError, TypeError) as err:
                # Checksums match, yet unreadable: written by other code (an
                # object array, say). Never unpickle; recompute instead.
                problems = [f"unreadable ({type(err).__name__}: {err})"]
        warnings.warn(
            f"feature cache entry {str(directory)!r} failed its check "
            f"({'; '.join(problems)}); it will be recomputed. Nothing to do "
            "unless this repeats.",
            UserWarning,
            stacklevel=2,
        )
        shutil.rmtree(directory, ignore_errors=True)
        return None

    def save(
        self,
        key: str,
        matrix: FeatureMatrix,
        state: dict[str, Any],
        arrays: dict[str, np.ndarray],
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Write entry ``key`` atomically (a concurrent identical write is fine)."""

        def fill(directory: Path) -> None:
            _save_matrix(directory, matrix)
            write_state(directory, state, arrays)
            write_manifest(directory, {"meta": meta or {}, "format": STORE_FORMAT})

        if not atomic_directory(self.path(key), fill):
            logger.info("feature cache entry %s was written concurrently; kept it", key)
        self._remove_stale_temporaries(key)

    def _remove_stale_temporaries(self, key: str) -> None:
        """Remove what killed writers left: ``.tmp-*`` directories.

        Entry ``key`` now exists, so no temporary directory of that key can
        ever be renamed into place (a rename onto a non-empty directory
        fails): each is debris, even one a live writer still fills (its
        rename fails and it keeps the entry that exists). Temporary
        directories of other keys are removed only when older than
        :data:`STALE_TMP_SECONDS`.
        """
        now = time.time()
        for tmp in self.root.glob(".tmp-*"):
            try:
                stale = tmp.name.startswith(f".tmp-{key}-") or (
                    now - tmp.stat().st_mtime > STALE_TMP_SECONDS
                )
            except OSError:  # removed meanwhile by another process
                continue
            if stale:
                shutil.rmtree(tmp, ignore_errors=True)

    def keys(self) -> list[str]:
        """Keys of the complete entries (not the per-text cache or parts folders)."""
        if not self.root.exists():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and p.name not in RESERVED_FOLDERS
        )

    def text_cache(self, namespace: dict[str, Any]) -> TextVectorCache:
        """The per-text vector cache of ``namespace`` inside this store."""
        return TextVectorCache(self.root, namespace)
