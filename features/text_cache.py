"""A content-addressed cache of per-text vectors inside the feature store.

A row-wise block that turns each text into a vector (the ``embeddings``
block) asks this cache first and encodes only the texts it lacks, so a subset
or a superset of battles already seen costs only what is new.

Layout: ``<store>/texts/<namespace digest>/`` holds ``namespace.json`` (what
the vectors depend on: model, backend, device, dtype, max tokens, ...) and
shards ``shard-<sha256>.npz``, each with ``keys`` (``uint8 (n, 32)``: the
sha256 of namespace + text) and ``vectors`` (``float32 (n, dim)``). A shard is
written to a temporary file and renamed into place, and its name is the
sha256 of its bytes: the shard names are the manifest. Writers never update a
shared file, so concurrent writers (forked workers, Dask workers) need no
lock; a reader checks a shard's bytes against its name before using it, and a
torn or modified shard is removed with a warning and its texts recomputed.
Nothing is pickled (``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["TEXT_CACHE_DIR", "TextVectorCache", "text_key"]

logger = logging.getLogger(__name__)

TEXT_CACHE_DIR = "texts"
"""Folder of the per-text caches under a feature store's root."""
_FORMAT = 1
_NAMESPACE_FILE = "namespace.json"
_SHARD_PREFIX = "shard-"
_STALE_TMP_SECONDS = 3600


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(dict(data), sort_keys=True, ensure_ascii=True, default=str)


def text_key(namespace: Mapping[str, Any], text: str) -> bytes:
    """sha256 of the namespace (canonical JSON) and the exact text.

    >>> text_key({"model": "m"}, "hi") == text_key({"model": "m"}, "hi")
    True
    >>> text_key({"model": "m"}, "hi") == text_key({"model": "n"}, "hi")
    False
    """
    digest = hashlib.sha256(_canonical(namespace).encode())
    digest.update(b"\x00")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.digest()


class TextVectorCache:
    """Vectors of texts under one namespace, stored in checksummed shards.

    Parameters
    ----------
    root : str or Path
        The feature store's root; the cache lives in ``root/texts/``.
    namespace : mapping
        Everything the vectors depend on besides the text (JSON-able). Two
        namespaces that differ in any value share nothing.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> cache = TextVectorCache(tempfile.mkdtemp(), {"model": "m", "max_tokens": 8})
    >>> cache.save(["hello"], np.ones((1, 3), np.float32))
    >>> found = cache.load(["hello", "unseen"])
    >>> sorted(found), found[0].tolist()
    ([0], [1.0, 1.0, 1.0])
    """

    def __init__(self, root: str | Path, namespace: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.namespace = dict(namespace)

    @property
    def directory(self) -> Path:
        """Folder of this namespace's shards."""
        payload = {"format": _FORMAT, **self.namespace}
        digest = hashlib.sha256(_canonical(payload).encode()).hexdigest()[:20]
        return self.root / TEXT_CACHE_DIR / digest

    def keys(self, texts: Sequence[str]) -> list[bytes]:
        """The cache key of each text (see :func:`text_key`)."""
        return [text_key(self.namespace, text) for text in texts]

    def load(self, texts: Sequence[str]) -> dict[int, NDArray[np.float32]]:
        """Vectors of the texts the cache holds, by position in ``texts``.

        Shards that fail their checksum or cannot be read are removed with a
        ``UserWarning``; their texts are then simply absent.
        """
        wanted: dict[bytes, list[int]] = {}
        for position, key in enumerate(self.keys(texts)):
            wanted.setdefault(key, []).append(position)
        found: dict[int, NDArray[np.float32]] = {}
        for shard in self._shards():
            if not wanted:
                break
            content = self._read_shard(shard)
            if content is None:
                continue
            keys, vectors = content
            for row, key in enumerate(keys):
                positions = wanted.pop(key, None)
                if positions is not None:
                    for position in positions:
                        found[position] = vectors[row]
        return found

    def save(self, texts: Sequence[str], vectors: NDArray[np.floating]) -> None:
        """Add the vectors of ``texts`` as one new shard (atomic; no-op when empty).

        Raises
        ------
        ValueError
            ``vectors`` is not 2-D with one row per text.
        """
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(texts):
            raise ValueError(
                f"TextVectorCache.save: got {len(texts)} texts but vectors of shape "
                f"{array.shape}; pass one row per text."
            )
        if not len(texts):
            return
        keys = np.frombuffer(b"".join(self.keys(texts)), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, keys=keys.reshape(len(texts), 32), vectors=array)
        payload = buffer.getvalue()
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        self._write_namespace(directory)
        name = f"{_SHARD_PREFIX}{hashlib.sha256(payload).hexdigest()}.npz"
        _atomic_write(directory / name, payload)
        self._remove_stale_temporaries(directory)

    def n_shards(self) -> int:
        """Number of shards on disk."""
        return len(self._shards())

    # -- internals ------------------------------------------------------------

    def _shards(self) -> list[Path]:
        directory = self.directory
        if not directory.is_dir():
            return []
        return sorted(directory.glob(f"{_SHARD_PREFIX}*.npz"))

    def _write_namespace(self, directory: Path) -> None:
        path = directory / _NAMESPACE_FILE
        if not path.exists():
            text = json.dumps(self.namespace, indent=1, sort_keys=True, default=str)
            _atomic_write(path, text.encode())

    def _read_shard(
        self, shard: Path
    ) -> tuple[list[bytes], NDArray[np.float32]] | None:
        """The keys and vectors of ``shard``, or None when gone or corrupt."""
        try:
            payload = shard.read_bytes()
        except FileNotFoundError:  # removed meanwhile by another process
            return None
        expected = shard.stem[len(_SHARD_PREFIX) :]
        problem = None
        if hashlib.sha256(payload).hexdigest() != expected:
            problem = "its bytes do not match the sha256 in its name (torn or modified)"
        else:
            try:
                with np.load(io.BytesIO(payload), allow_pickle=False) as parts:
                    keys = parts["keys"]
                    vectors = parts["vectors"].astype(np.float32, copy=False)
                if keys.ndim != 2 or keys.shape != (len(vectors), 32):
                    raise ValueError(f"keys of shape {keys.shape}")
                return [bytes(row) for row in keys], vectors
            except (OSError, ValueError, KeyError) as err:
                problem = f"unreadable ({type(err).__name__}: {err})"
        warnings.warn(
            f"text vector cache shard {str(shard)!r} failed its check ({problem}); "
            "it was removed and its texts will be encoded again. Nothing to do "
            "unless this repeats.",
            UserWarning,
            stacklevel=3,
        )
        shard.unlink(missing_ok=True)
        return None

    @staticmethod
    def _remove_stale_temporaries(directory: Path) -> None:
        now = time.time()
        for tmp in directory.glob(".tmp-*"):
            try:
                if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                    tmp.unlink(missing_ok=True)
            except OSError:  # removed meanwhile by another process
                continue


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary sibling and a rename."""
    handle, tmp_name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
