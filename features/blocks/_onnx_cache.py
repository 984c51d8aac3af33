"""Exported ONNX encoders kept on disk, so a model is exported once per machine.

Exporting MiniLM to ONNX and quantizing it to int8 takes about 8 s, paid by
every process that loads the encoder (``build_features``, ``train_gbdt``'s
held-out fits, ``predict``, each service worker). The result depends only on
the model's files, the export settings and the torch and onnxruntime
versions, so it is kept under a key made of those: a changed model or library
makes a new entry, never a stale hit.

The cache lives in ``$ARENA_PREFERENCE_CACHE`` (default
``$XDG_CACHE_HOME/arena-preference``, else ``~/.cache/arena-preference``);
``ARENA_PREFERENCE_CACHE=off`` turns it off. An ONNX file is a graph of
operators and weights, read as data: loading one runs no Python code. Each
entry records its file's sha256 and is checked on every load; an entry is
written to a temporary folder and renamed into place, so an interrupted export
never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from features.store import file_sha256

__all__ = ["CACHE_ENV", "cache_root", "cached_onnx", "folder_digest"]

logger = logging.getLogger(__name__)

CACHE_ENV = "ARENA_PREFERENCE_CACHE"
"""Environment variable naming the cache folder; ``off`` disables the cache."""

_FORMAT = 1
"""Bumped when the export or quantization code changes what it writes."""

_META = "entry.json"


def cache_root() -> Path | None:
    """The cache folder, or None when ``ARENA_PREFERENCE_CACHE=off``."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in {"off", "0", "false", ""}:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "arena-preference"


def folder_digest(folder: str | os.PathLike) -> str:
    """sha256 over every file of a model folder (relative names and contents)."""
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def _valid_entry(folder: Path) -> Path | None:
    """The model file of a complete, unaltered entry; None otherwise."""
    try:
        meta = json.loads((folder / _META).read_text())
        path = folder / meta["file"]
        if file_sha256(path) == meta["sha256"]:
            return path
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def cached_onnx(
    key_parts: list[str], build: Callable[[Path], str], scratch: Path
) -> Path:
    """The ONNX file for ``key_parts``, built by ``build(folder)`` on a miss.

    Parameters
    ----------
    key_parts : list of str
        Everything the exported file depends on (model digest, settings,
        library versions).
    build : callable
        Writes the model into the folder it is given and returns its file name.
    scratch : Path
        A folder the caller owns, used when the cache is off or unwritable.

    Returns
    -------
    Path
        The model file: in the cache, or in ``scratch``.
    """
    root = cache_root()
    if root is None:
        return scratch / build(scratch)
    key = hashlib.sha256(json.dumps([_FORMAT, *key_parts]).encode()).hexdigest()
    entry = root / "onnx" / key[:32]
    found = _valid_entry(entry)
    if found is not None:
        logger.info("embeddings: ONNX model from the cache %s", entry)
        return found
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=entry.parent))
    except OSError as err:
        logger.warning("embeddings: ONNX cache %s not writable (%s)", root, err)
        return scratch / build(scratch)
    try:
        name = build(staging)
        meta = {"file": name, "sha256": file_sha256(staging / name)}
        meta["key"] = key_parts
        (staging / _META).write_text(json.dumps(meta, indent=1))
        if entry.exists():  # a damaged entry: replace it
            shutil.rmtree(entry, ignore_errors=True)
        try:
            staging.rename(entry)
        except OSError:
            # Another process finished the same entry first; theirs is as good.
            if _valid_entry(entry) is None:
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    found = _valid_entry(entry)
    if found is None:
        raise OSError(f"ONNX cache entry {entry} failed its checksum after writing")
    return found
