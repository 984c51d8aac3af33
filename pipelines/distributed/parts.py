"""Partitioned parquet output: atomic parts, their records, resume and read-back.

A distributed run writes one ``part-NNNNN.parquet`` per input partition into
an output directory, each under a temporary name renamed into place when
complete, then a small JSON record next to it (``part-NNNNN.json``: index,
rows, sha256, the source file and rows it came from, and an *identity* of
everything its numbers depend on). The record is written last, so a part
without a record is unfinished. When every part is done, ``manifest.json``
lists them all with their global row ranges.

A rerun reuses a part only when its record's identity equals the new one and
the parquet file matches its sha256; every other part is computed again.
Temporary files left by a killed run are removed when a run starts. Nothing
here is pickled: parts are parquet, records JSON.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.blocks import FeatureMatrix
from features.errors import DataFileError
from features.store import file_sha256

__all__ = [
    "MANIFEST",
    "PARTS_FORMAT",
    "clean_partial_files",
    "finished_part",
    "part_stem",
    "read_feature_parts",
    "read_parts",
    "write_part",
    "write_parts_manifest",
]

PARTS_FORMAT = 1
"""Version of the part records and manifest; bumped when their meaning changes."""

MANIFEST = "manifest.json"
"""The directory's index of finished parts, written when all are done."""

_TMP = ".tmp-"
_PART = re.compile(r"part-(\d{5,})\.(parquet|json)")


def part_stem(index: int) -> str:
    """File name of part ``index`` without suffix.

    >>> part_stem(3)
    'part-00003'
    """
    return f"part-{index:05d}"


def _normal(data: Any) -> Any:
    """JSON round trip: tuples become lists, so identities compare as stored."""
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}{_TMP}{uuid.uuid4().hex}")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def clean_partial_files(directory: Path, n_parts: int) -> int:
    """Prepare ``directory`` for a run of ``n_parts`` parts; returns files removed.

    Removes the temporary files of killed writers, parts numbered
    ``n_parts`` or above (left by a run with another plan) and the manifest
    (it is rewritten when the run completes, so a reader never takes an
    unfinished directory for a finished one).
    """
    directory.mkdir(parents=True, exist_ok=True)
    removed = 0
    for path in directory.iterdir():
        match = _PART.fullmatch(path.name)
        stale = (
            (path.name.startswith(".") and _TMP in path.name)
            or (match is not None and int(match[1]) >= n_parts)
            or path.name == MANIFEST
        )
        if stale and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def finished_part(
    directory: Path, index: int, identity: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The record of part ``index`` when it is finished and still valid, else None.

    Valid means: the record parses, its identity equals ``identity`` and the
    parquet file matches the record's sha256.
    """
    stem = part_stem(index)
    record_path, part_path = directory / f"{stem}.json", directory / f"{stem}.parquet"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(record, dict)
        or record.get("format") != PARTS_FORMAT
        or record.get("identity") != _normal(identity)
        or not part_path.is_file()
        or file_sha256(part_path) != record.get("sha256")
    ):
        return None
    return record


def write_part(
    directory: Path,
    index: int,
    frame: pd.DataFrame,
    identity: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write part ``index`` (parquet, then its record), each atomically.

    Parameters
    ----------
    directory : pathlib.Path
        The output directory (exists).
    index : int
        The partition's index.
    frame : pandas.DataFrame
        The part's rows; its index is not stored.
    identity : mapping
        JSON data of everything the part's numbers depend on.
    info : mapping, default=None
        More JSON fields for the record (seconds, repairs, source rows).

    Returns
    -------
    dict
        The record as written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    stem = part_stem(index)
    final = directory / f"{stem}.parquet"
    tmp = directory / f".{stem}.parquet{_TMP}{uuid.uuid4().hex}"
    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        digest = file_sha256(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    record = {
        **_normal(dict(info or {})),
        "format": PARTS_FORMAT,
        "index": index,
        "file": final.name,
        "rows": len(frame),
        "sha256": digest,
        "identity": _normal(identity),
    }
    _write_json_atomic(directory / f"{stem}.json", record)
    return record


def write_parts_manifest(
    directory: Path, records: Sequence[Mapping[str, Any]], info: Mapping[str, Any]
) -> Path:
    """Write ``manifest.json``: every part in order with its global row range."""
    parts, row = [], 0
    for record in sorted(records, key=lambda r: r["index"]):
        parts.append(
            {
                "index": record["index"],
                "file": record["file"],
                "rows": record["rows"],
                "row_range": [row, row + record["rows"]],
                "sha256": record["sha256"],
                "seconds": record.get("seconds"),
                "source": record.get("source"),
            }
        )
        row += record["rows"]
    manifest = {
        **_normal(dict(info)),
        "format": PARTS_FORMAT,
        "rows": row,
        "parts": parts,
    }
    path = directory / MANIFEST
    _write_json_atomic(path, manifest)
    return path


def read_parts(
    directory: str | Path, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """All rows of a finished parts directory, in order, checksums verified.

    Parameters
    ----------
    directory : str or pathlib.Path
        Written by a distributed ``build_features`` or ``predict``.
    columns : sequence of str, default=None
        Columns to read (default: all).

    Raises
    ------
    DataFileError
        No manifest (the run did not finish), or a part that is missing or
        does not match its sha256.
    """
    import pyarrow.parquet as pq

    directory = Path(directory)
    manifest = _manifest(directory)
    frames = []
    for part in manifest["parts"]:
        path = directory / part["file"]
        if not path.is_file() or file_sha256(path) != part["sha256"]:
            raise DataFileError(
                f"part {str(path)!r} is missing or does not match its sha256 in "
                f"{MANIFEST}. Run the command again: it recomputes that part."
            )
        frames.append(pq.read_table(path, columns=columns).to_pandas())
    if not frames:
        return pd.DataFrame(columns=list(columns or []))
    return pd.concat(frames, ignore_index=True)


def _manifest(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise DataFileError(
            f"{str(directory)!r} holds no readable {MANIFEST} ({err}): the run that "
            "writes it did not finish. Run it again; finished parts are kept."
        ) from err


def read_feature_parts(directory: str | Path) -> tuple[pd.DataFrame, FeatureMatrix]:
    """The battle columns and the feature matrix of a distributed build.

    Returns
    -------
    battles : pandas.DataFrame
        ``id`` (and ``label`` when the battles had labels), in row order.
    matrix : FeatureMatrix
        float32 values with the blocks' column names, in row order.

    Examples
    --------
    >>> ids, matrix = read_feature_parts("artifacts/features/parts/x")  # doctest: +SKIP
    """
    directory = Path(directory)
    columns = list(_manifest(directory)["feature_columns"])
    frame = read_parts(directory)
    values = frame[columns].to_numpy(dtype=np.float32)
    battles = frame[[c for c in frame.columns if c not in set(columns)]]
    return battles, FeatureMatrix(values, tuple(columns))
