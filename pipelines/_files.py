"""Atomic file writes: readers never see a half-written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import pandas as pd

__all__ = ["atomic_text_file", "write_csv_atomic"]


@contextmanager
def atomic_text_file(out: Path) -> Iterator[TextIO]:
    """A text stream whose content replaces ``out`` only when the block ends.

    The stream is a temporary file next to ``out``, renamed over it with
    ``os.replace`` after the block; an error in the block removes it and leaves
    any old file in place. Missing parent directories are created.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{out.name}.", suffix=".tmp", dir=out.parent
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            yield stream
        # mkstemp creates the file as 0600; give it the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_name, 0o666 & ~umask)
        os.replace(temp_name, out)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_csv_atomic(frame: pd.DataFrame, out: Path) -> None:
    """Write ``frame`` (without its index) to ``out`` as CSV, atomically."""
    with atomic_text_file(out) as stream:
        frame.to_csv(stream, index=False)
