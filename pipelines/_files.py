"""Atomic file writes: readers never see a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

__all__ = ["write_csv_atomic"]


def write_csv_atomic(frame: pd.DataFrame, out: Path) -> None:
    """Write ``frame`` to ``out`` as CSV via a temporary file and ``os.replace``.

    Readers never see a half-written file, and a failed write leaves any old file
    in place.

    Parameters
    ----------
    frame : pandas.DataFrame
        Table to write, without its index.
    out : pathlib.Path
        Destination; missing parent directories are created.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{out.name}.", suffix=".tmp", dir=out.parent
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            frame.to_csv(stream, index=False)
        # mkstemp creates the file as 0600; give it the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_name, 0o666 & ~umask)
        os.replace(temp_name, out)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
