"""Battle files in partitions: plan them, and read each one as the whole file would.

A distributed run reads its battles one partition at a time, on the workers.
The input is a file, a directory or a glob of files, and
:func:`plan_partitions` cuts it into partitions of at most ``partition_rows``
rows without parsing it:

- a CSV file (not gzipped) is split at row boundaries found by one scan of
  its bytes that tracks double quotes, so a line break inside a quoted field
  stays inside its row; each partition is the header line plus a run of
  whole rows;
- a parquet file is split by row groups, and a row group larger than
  ``partition_rows`` into runs of its rows;
- any other file (JSON Lines, JSON, ``.csv.gz``, a zip archive), and any file
  of at most ``partition_rows`` rows, is one partition, read whole.

:func:`read_partition` parses a partition with the readers of
:func:`features.battles.read_battles`, so repairs are the same. An error names
the partition and its file, and its row numbers count from the start of the
file, as a single-process read of that file would number them.

Splitting a CSV by rows assumes standard quoting (RFC 4180, as pandas and
Kaggle write it): a double quote inside an unquoted field would throw the scan
off. A partition whose row count then differs from the plan's is refused with
an error that says so; convert such a file to parquet.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.battle_files import SUFFIXES, read_table_bytes, split_member
from features.battles import read_battles
from features.errors import DataFileError, InvalidParameterError, UserInputError

__all__ = [
    "DEFAULT_PARTITION_ROWS",
    "BattlePartition",
    "battle_files",
    "file_fingerprint",
    "plan_partitions",
    "read_partition",
]

DEFAULT_PARTITION_ROWS = 50_000
"""Rows per partition when none is given: about 100 MB of Kaggle text."""

_SCAN_BYTES = 1 << 26
"""Bytes of a CSV looked at per step of the row scan (bounds its memory)."""

_SHORT_RECORD = 256
"""Records up to this many bytes are checked for being blank (pandas skips them)."""

_QUOTE, _NEWLINE = ord('"'), ord("\n")
_ROW = re.compile(r"\(row (\d+)\)")
_ROWS = re.compile(r"row\(s\) (\d+(?:, \d+)*)")

Kind = Literal["file", "csv", "parquet"]


@dataclass(frozen=True)
class BattlePartition:
    """One partition of battle files: where its rows are and how to read them.

    Attributes
    ----------
    index : int
        Position in the plan (0-based); parts of the output are numbered by it.
    path : str
        Absolute path of the file (``archive.zip::member`` for a member).
    kind : {"file", "csv", "parquet"}
        - ``"file"``: the whole file, read by :func:`read_battles`.
        - ``"csv"``: the header line plus the bytes ``byte_range`` of a CSV.
        - ``"parquet"``: rows ``group_rows`` of row group ``row_group``.
    file_rows : tuple of int or None
        Rows ``[start, stop)`` of the file (0-based, the header aside); None
        when unknown before reading (a JSON Lines file, say).
    fingerprint : str
        :func:`file_fingerprint` of the file when planned.
    byte_range : tuple of int or None
        ``[start, stop)`` of the rows' bytes (``"csv"`` only).
    header : bytes
        The CSV header line, with its line break (``"csv"`` only).
    row_group : int or None
        Row group of a ``"parquet"`` partition.
    group_rows : tuple of int or None
        Rows ``[start, stop)`` within ``row_group``.
    """

    index: int
    path: str
    kind: Kind
    file_rows: tuple[int, int] | None
    fingerprint: str
    byte_range: tuple[int, int] | None = None
    header: bytes = b""
    row_group: int | None = None
    group_rows: tuple[int, int] | None = None

    @property
    def n_rows(self) -> int | None:
        """Rows the plan expects (None when unknown before reading)."""
        if self.file_rows is None:
            return None
        return self.file_rows[1] - self.file_rows[0]

    @property
    def label(self) -> str:
        """How messages name the partition: its index, file and rows."""
        if self.file_rows is None or self.kind == "file":
            return f"partition {self.index} ({self.path!r})"
        start, stop = self.file_rows
        return f"partition {self.index} (rows {start:,}-{stop - 1:,} of {self.path!r})"

    def identity(self) -> dict[str, Any]:
        """JSON description that changes whenever the partition's rows may change."""
        return {
            "path": self.path,
            "kind": self.kind,
            "file_rows": None if self.file_rows is None else list(self.file_rows),
            "byte_range": None if self.byte_range is None else list(self.byte_range),
            "row_group": self.row_group,
            "group_rows": None if self.group_rows is None else list(self.group_rows),
            "fingerprint": self.fingerprint,
        }


def file_fingerprint(path: str | Path) -> str:
    """Identity of a file's version: its path, size and modification time.

    Cheap on any size (no read); a rewritten or touched file gets a new one.
    """
    real, _ = split_member(path)
    stat = Path(real).stat()
    payload = json.dumps([str(path), stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _has_battle_suffix(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def _format_name(name: str) -> str:
    lowered = name.lower()
    return next(
        s for s in sorted(SUFFIXES, key=len, reverse=True) if lowered.endswith(s)
    )


def battle_files(source: str | Path) -> list[str]:
    """The files a source names: itself, a directory's battle files, or a glob's.

    Parameters
    ----------
    source : str or pathlib.Path
        A battle file (or ``archive.zip::member``), a directory (its files
        with a battle suffix, one format only; hidden files skipped) or a
        glob such as ``data/*.parquet``.

    Returns
    -------
    list of str
        Absolute paths, sorted by name.

    Raises
    ------
    FileNotFoundError
        A file that does not exist.
    DataFileError
        A directory or glob without battle files, or a directory holding
        files of several formats.
    """
    text = str(source)
    path, member = split_member(text)
    if member is not None:
        return [f"{path.resolve()}::{member}"]
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and _has_battle_suffix(p.name)
        )
        formats = sorted({_format_name(p.name) for p in files})
        if not files:
            raise DataFileError(
                f"directory {text!r} holds no battle files (expected names ending in "
                f"{', '.join(SUFFIXES)}). Pass a directory of battle files, a glob "
                "such as 'data/*.parquet', or one file."
            )
        if len(formats) > 1:
            raise DataFileError(
                f"directory {text!r} holds battle files of several formats "
                f"{formats}. Name the ones to read with a glob, e.g. "
                f"{str(path / ('*' + formats[0]))!r}."
            )
        return [str(p.resolve()) for p in files]
    if not path.exists() and any(char in text for char in "*?["):
        matches = sorted(Path(m) for m in glob.glob(text) if Path(m).is_file())
        if not matches:
            raise DataFileError(
                f"the glob {text!r} matches no files. Check the pattern (quote it "
                "so the shell does not expand it) or pass a directory."
            )
        return [str(p.resolve()) for p in matches]
    if not path.exists():
        raise FileNotFoundError(f"battle file {text!r} does not exist.")
    return [str(path.resolve())]


def _check_partition_rows(partition_rows: int) -> None:
    if (
        isinstance(partition_rows, bool)
        or not isinstance(partition_rows, int | np.integer)
        or partition_rows < 1
    ):
        raise InvalidParameterError(
            f"partition_rows must be an int >= 1. Got {partition_rows!r}."
        )


def plan_partitions(
    source: str | Path, partition_rows: int = DEFAULT_PARTITION_ROWS
) -> list[BattlePartition]:
    """Cut the battle files of ``source`` into partitions of at most ``partition_rows``.

    Nothing is parsed: a CSV is scanned once for row boundaries, a parquet
    file's row counts come from its metadata, other files are one partition
    each (see the module docstring).

    Parameters
    ----------
    source : str or pathlib.Path
        A file, a directory or a glob (:func:`battle_files`).
    partition_rows : int, default=DEFAULT_PARTITION_ROWS
        Most rows per partition.

    Returns
    -------
    list of BattlePartition
        In file order, then row order; ``index`` counts from 0.

    Raises
    ------
    InvalidParameterError
        ``partition_rows`` is not an int >= 1.
    FileNotFoundError, DataFileError
        As :func:`battle_files`; also a parquet file whose metadata cannot be
        read.

    Examples
    --------
    >>> parts = plan_partitions("train.csv", partition_rows=50_000)  # doctest: +SKIP
    >>> parts[1].label  # doctest: +SKIP
    "partition 1 (rows 50,000-99,999 of '/data/train.csv')"
    """
    _check_partition_rows(partition_rows)
    pieces: list[dict[str, Any]] = []
    for path in battle_files(source):
        fingerprint = file_fingerprint(path)
        lowered = path.lower()
        if lowered.endswith(".csv"):
            found = _csv_pieces(Path(path), partition_rows)
        elif lowered.endswith((".parquet", ".pq")):
            found = _parquet_pieces(Path(path), partition_rows)
        else:
            found = [{"kind": "file", "file_rows": None}]
        pieces += [
            {**piece, "path": path, "fingerprint": fingerprint} for piece in found
        ]
    return [BattlePartition(index=i, **piece) for i, piece in enumerate(pieces)]


# --------------------------------------------------------------------- CSV
def _csv_pieces(path: Path, partition_rows: int) -> list[dict[str, Any]]:
    size = path.stat().st_size
    if size == 0:
        return [{"kind": "file", "file_rows": None}]  # read_table names the problem
    with (
        path.open("rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view,
    ):
        header, data_start, starts, n_rows = _scan_csv(view, size, partition_rows)
    if header is None or n_rows <= partition_rows:
        return [{"kind": "file", "file_rows": (0, n_rows)}]
    stops = [*starts[1:], size]
    return [
        {
            "kind": "csv",
            "file_rows": (k * partition_rows, min((k + 1) * partition_rows, n_rows)),
            "byte_range": (start, stop),
            "header": header,
        }
        for k, (start, stop) in enumerate(
            zip([data_start, *starts[1:]], stops, strict=True)
        )
    ]


def _scan_csv(
    view: mmap.mmap, size: int, partition_rows: int
) -> tuple[bytes | None, int, list[int], int]:
    """Header line, first data byte, partition start offsets and data row count.

    A record ends at a line break outside double quotes (an even number of
    quotes before it). Blank records are not rows, as pandas skips them.
    """
    data = np.frombuffer(view, dtype=np.uint8)
    parity, previous_end, n_rows = 0, 0, 0
    header: bytes | None = None
    data_start = 0
    starts: list[int] = [0]
    for offset in range(0, size, _SCAN_BYTES):
        block = data[offset : offset + _SCAN_BYTES]
        quotes = np.flatnonzero(block == _QUOTE)
        newlines = np.flatnonzero(block == _NEWLINE)
        before = np.searchsorted(quotes, newlines)
        ends = newlines[((before + parity) & 1) == 0].astype(np.int64) + offset + 1
        parity = (parity + quotes.size) & 1
        if offset + _SCAN_BYTES >= size and (ends.size == 0 or ends[-1] != size):
            ends = np.append(ends, size)  # the last row may lack a line break
        if ends.size == 0:
            continue
        record_starts = np.concatenate([[previous_end], ends[:-1]])
        filled = np.ones(ends.size, dtype=bool)
        for i in np.flatnonzero(ends - record_starts <= _SHORT_RECORD):
            filled[i] = bool(view[record_starts[i] : ends[i]].strip())
        if header is None:
            first = np.flatnonzero(filled)
            if first.size:
                h = int(first[0])
                header = bytes(view[record_starts[h] : ends[h]])
                data_start = int(ends[h])
                filled[: h + 1] = False
        row_ends = ends[filled]
        numbers = np.arange(n_rows + 1, n_rows + 1 + row_ends.size)
        starts += row_ends[numbers % partition_rows == 0].tolist()
        n_rows += int(row_ends.size)
        previous_end = int(ends[-1])
    del data
    n_parts = max(1, math.ceil(n_rows / partition_rows))
    return header, data_start, starts[:n_parts], n_rows


# ----------------------------------------------------------------- parquet
def _parquet_error(path: str, err: Exception) -> DataFileError:
    return DataFileError(
        f"battle file {path!r} is not a readable parquet file "
        f"({type(err).__name__}: {err}). Re-export it, or give the file a suffix "
        "that matches its format."
    )


def _parquet_pieces(path: Path, partition_rows: int) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(path).metadata
    except (ValueError, OSError) as err:
        raise _parquet_error(str(path), err) from err
    if metadata.num_rows <= partition_rows:
        return [{"kind": "file", "file_rows": (0, metadata.num_rows)}]
    pieces, first_row = [], 0
    for group in range(metadata.num_row_groups):
        group_size = metadata.row_group(group).num_rows
        for start in range(0, group_size, partition_rows):
            stop = min(start + partition_rows, group_size)
            pieces.append(
                {
                    "kind": "parquet",
                    "file_rows": (first_row + start, first_row + stop),
                    "row_group": group,
                    "group_rows": (start, stop),
                }
            )
        first_row += group_size
    return pieces


def _read_parquet_rows(partition: BattlePartition) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    start, stop = partition.group_rows
    try:
        parquet = pq.ParquetFile(partition.path)
        batches, seen = [], 0
        # Streams the row group and stops at `stop`: memory holds one partition.
        for batch in parquet.iter_batches(
            batch_size=min(65_536, stop), row_groups=[partition.row_group]
        ):
            low, high = seen, seen + batch.num_rows
            if high > start:
                first = max(start, low)
                batches.append(batch.slice(first - low, min(stop, high) - first))
            seen = high
            if seen >= stop:
                break
        table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
        return table.to_pandas()
    except (ValueError, OSError) as err:
        raise _parquet_error(partition.path, err) from err


# -------------------------------------------------------------------- read
def _read_csv_rows(partition: BattlePartition) -> pd.DataFrame:
    start, stop = partition.byte_range
    with open(partition.path, "rb") as handle:
        handle.seek(start)
        body = handle.read(stop - start)
    name = (
        f"{partition.path} (partition {partition.index}: the header line, then bytes "
        f"{start:,}-{stop:,}; offsets and lines count from the header)"
    )
    frame = read_table_bytes(partition.header + body, name=name, suffix=".csv")
    if len(frame) != partition.n_rows:
        raise DataFileError(
            f"{partition.label}: the row scan found {partition.n_rows:,} rows there "
            f"but the CSV parser read {len(frame):,}. Splitting a CSV by rows needs "
            "standard quoting (a double quote inside an unquoted field breaks it). "
            "Convert the file to parquet, split it into files and pass their "
            "directory, or raise --partition-rows above its row count."
        )
    return frame


def _shift_rows(message: str, offset: int) -> str:
    """``message`` with its row numbers moved from the partition's to the file's."""
    if not offset:
        return message
    message = _ROW.sub(lambda m: f"(row {int(m[1]) + offset})", message)
    return _ROWS.sub(
        lambda m: "row(s) " + ", ".join(str(int(v) + offset) for v in m[1].split(", ")),
        message,
    )


def read_partition(
    partition: BattlePartition, *, labelled: bool | None = None
) -> pd.DataFrame:
    """The canonical battle table of one partition, as :func:`read_battles` makes it.

    Parameters
    ----------
    partition : BattlePartition
        From :func:`plan_partitions`.
    labelled : bool or None, default=None
        Require labels (True), ignore them (False), or use them when present.

    Returns
    -------
    pandas.DataFrame
        The canonical table (index from 0); its repair report is in
        ``attrs`` as :func:`features.battles.repair_report` reads it.

    Raises
    ------
    BattleFormatError, DataFileError
        What :func:`read_battles` raises, with the partition and its file
        named first and rows numbered from the start of the file; also a CSV
        partition whose row count differs from the plan's.
    FileNotFoundError
        The file is gone.
    """
    try:
        if partition.kind == "file":
            return read_battles(partition.path, labelled=labelled)
        if partition.kind == "csv":
            frame = _read_csv_rows(partition)
        else:
            frame = _read_parquet_rows(partition)
        frame.attrs.clear()  # metadata stored in a file is not a validation
        return read_battles(frame, labelled=labelled)
    except UserInputError as err:
        message = str(err)
        if message.startswith(partition.label):
            raise
        offset = partition.file_rows[0] if partition.file_rows else 0
        raise type(err)(f"{partition.label}: {_shift_rows(message, offset)}") from err
