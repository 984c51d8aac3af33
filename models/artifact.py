"""Model directories: native booster files, JSON state, a sha256 manifest.

A model directory is written under a temporary name and renamed into place
when complete, so an interrupted save never leaves a half-written model:
``directory`` is absent, the previous model, or the new one. (Replacing a model
takes two renames; a kill between them leaves no ``directory`` but the new
model complete at ``.new-<name>``, and the next save finishes that swap.)
Loading checks the format version and every file against the manifest
before reading anything, and nothing in it is unpickled or executed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from features.errors import ModelIntegrityError
from features.store import atomic_directory, verify_manifest, write_manifest

__all__ = [
    "FORMAT_VERSION",
    "ModelIntegrityError",
    "read_model_dir",
    "reading_file",
    "write_model_dir",
]

FORMAT_VERSION = 1
MODEL_FILE = "model.json"


def write_model_dir(directory: str | Path, fill: Any, meta: dict[str, Any]) -> Path:
    """Write a model directory atomically, replacing any previous one.

    ``fill(tmp_dir)`` writes the boosters and state; ``meta`` goes to
    ``model.json`` with the format version; the manifest is written last.
    """
    final = Path(directory)
    _remove_leftovers(final)

    def _fill(tmp: Path) -> None:
        fill(tmp)
        payload = {"format_version": FORMAT_VERSION, **meta}
        # Key order matters (block order = column order): never sort keys here.
        (tmp / MODEL_FILE).write_text(json.dumps(payload, indent=1))
        write_manifest(tmp, {"format_version": FORMAT_VERSION})

    if final.exists():
        old = final.with_name(f".old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        staging = final.with_name(f".new-{final.name}")
        shutil.rmtree(staging, ignore_errors=True)
        atomic_directory(staging, _fill)
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        atomic_directory(final, _fill)
    return final


def _remove_leftovers(final: Path) -> None:
    """Clean up after a save of ``final`` that was killed.

    One process writes a model directory at a time, so every sibling left
    by an earlier save is debris, never read: temporary directories are
    removed. A kill between the two renames of a replacement leaves no
    ``final`` but a complete ``.new-<name>``: that swap is finished first.
    """
    if not final.parent.is_dir():
        return
    for prefix in (f".tmp-{final.name}-", f".tmp-.new-{final.name}-"):
        for stale in final.parent.glob(f"{prefix}*"):
            shutil.rmtree(stale, ignore_errors=True)
    staging = final.with_name(f".new-{final.name}")
    if not final.exists() and staging.is_dir() and not verify_manifest(staging)[1]:
        staging.rename(final)
    for stale in (staging, final.with_name(f".old-{final.name}")):
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def reading_file(directory: Path, name: str) -> Iterator[Path]:
    """Yield ``directory / name``; a failure to parse it is a ModelIntegrityError.

    Use it around each read after :func:`read_model_dir` has verified the
    directory: a file that passed its sha256 check yet cannot be parsed means
    that the directory, manifest included, was written by other code or
    edited, and the message then names the file.
    """
    try:
        yield directory / name
    except ModelIntegrityError:
        raise
    except Exception as err:
        raise ModelIntegrityError(
            f"model directory {str(directory)!r}: {name!r} passed its sha256 check "
            f"but could not be read ({type(err).__name__}: {err}). Refusing to load "
            "it; retrain or restore the original directory."
        ) from err


def read_model_dir(directory: str | Path) -> dict[str, Any]:
    """Verify a model directory and return its ``model.json`` contents.

    Raises
    ------
    FileNotFoundError
        No such directory.
    ModelIntegrityError
        A file is modified, missing or extra, ``model.json`` cannot be
        parsed, or the format is newer than this code understands.
    """
    path = Path(directory)
    if not (path / MODEL_FILE).exists() and not (path / "manifest.json").exists():
        staging = path.with_name(f".new-{path.name}")
        hint = (
            f" A save was interrupted while replacing it: the new model is complete "
            f"at {str(staging)!r}; rename it to {path.name!r}, or train again."
            if (staging / MODEL_FILE).exists()
            else ""
        )
        raise FileNotFoundError(
            f"no model at {str(path)!r}: expected {MODEL_FILE} and manifest.json. "
            f"Train one with `python -m pipelines.train_gbdt --out DIR`.{hint}"
        )
    manifest, problems = verify_manifest(path)
    if problems:
        raise ModelIntegrityError(
            f"model directory {str(path)!r} failed its integrity check: "
            f"{'; '.join(problems)}. Refusing to load it; retrain or restore the "
            "original files."
        )
    with reading_file(path, MODEL_FILE) as model_file:
        meta = json.loads(model_file.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise TypeError(f"expected a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if type(version) is not int or version > FORMAT_VERSION:
        raise ModelIntegrityError(
            f"model directory {str(path)!r} has format version {version!r}, but this "
            f"code reads versions up to {FORMAT_VERSION}. Upgrade arena-preference "
            "or retrain the model."
        )
    return meta
