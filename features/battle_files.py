"""Battle files on disk: formats, zip archives, and plain words for bad files.

:func:`read_table` turns a path into a raw :class:`pandas.DataFrame`; the
layout (Kaggle, arena dump, preference pairs) is recognised afterwards by
:func:`features.battles.read_battles`. The format comes from the suffix: CSV
(also gzipped), parquet, JSON Lines, a JSON list, or a zip archive holding one
of them, as Kaggle serves its downloads. A member of an archive is named as
``archive.zip::member.csv``; without a name the archive must hold exactly one
battle file. What pandas says about an empty file ("No columns to parse from
file") or one with another delimiter ("Error tokenizing data") becomes a
:class:`~features.errors.DataFileError` that names the file, says what it is
and what is expected.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from features.errors import BattleFormatError, DataFileError

__all__ = [
    "LAYOUT_COLUMNS",
    "MEMBER_SEPARATOR",
    "SUFFIXES",
    "read_table",
    "read_table_bytes",
    "split_member",
]

logger = logging.getLogger(__name__)

MEMBER_SEPARATOR = "::"
"""Separates an archive from the member to read: ``archive.zip::test.csv``."""

LAYOUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "kaggle": ("id", "prompt", "response_a", "response_b"),
    "arena": ("conversation_a", "conversation_b"),
    "pairs": ("chosen", "rejected"),
}
"""Layout name -> the columns that mark a table as battles in that layout."""

_HEAD_BYTES = 65_536
_TEXT_CHECK_BYTES = 1_024
# A text format whose file starts with one of these holds something else.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook is one)"),
    (
        b"\x1f\x8b",
        "gzip-compressed data (decompress it, or name a gzipped CSV .csv.gz)",
    ),
    (b"PAR1", "a parquet file (name it .parquet)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or Office document"),
    (b"%PDF-", "a PDF document"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_FOREIGN_DELIMITERS = (";", "\t", "|")
_CSV_HEADER = ",".join(LAYOUT_COLUMNS["kaggle"])
_DECIMAL = re.compile(r"[+-]?\d+(?:\.\d*)?")
_INTEGRAL_DECIMAL = re.compile(r"([+-]?\d+)\.0*")


@dataclass(frozen=True)
class _Format:
    read: Callable[[_Source, bytes], pd.DataFrame]
    expected: str


@dataclass(frozen=True)
class _Source:
    """One file to parse: a file on disk or a member of an open archive."""

    name: str
    suffix: str
    open: Callable[[], IO[bytes]]
    path: Path | None = None

    @property
    def gzipped(self) -> bool:
        return self.suffix.endswith(".gz")


@contextmanager
def _decompressed(source: _Source) -> Iterator[IO[bytes]]:
    with ExitStack() as stack:
        handle = stack.enter_context(source.open())
        if source.gzipped:
            handle = stack.enter_context(gzip.GzipFile(fileobj=handle))
        yield handle


@contextmanager
def _readable(source: _Source, *, seekable: bool = False) -> Iterator[Any]:
    """What a pandas reader takes: the path of a file, else an open handle."""
    if source.path is not None:
        yield source.path
        return
    with source.open() as handle:
        yield io.BytesIO(handle.read()) if seekable else handle


def _first_line(head: bytes) -> str:
    """The first non-blank line of ``head`` (the header of a CSV file)."""
    text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    return next((line.strip("\r") for line in text.split("\n") if line.strip()), "")


def _integral_ids(ids: pd.Series) -> pd.Series:
    """``"2299425.0"`` -> ``"2299425"`` in an id column of decimal numbers.

    A float column (any missing value makes one) is written as ``123.0``;
    the id is the integer. Other ids, and columns of text ids, stay as written.
    """
    texts = ids.tolist()
    if not all(isinstance(text, str) for text in texts):
        return ids  # missing ids: read_battles names their rows
    if not any("." in text for text in texts) or not all(
        _DECIMAL.fullmatch(text) for text in texts
    ):
        return ids
    return pd.Series(
        [(m.group(1) if (m := _INTEGRAL_DECIMAL.fullmatch(t)) else t) for t in texts],
        index=ids.index,
        dtype=object,
        name=ids.name,
    )


def _check_header_names(source: _Source, header: str) -> None:
    """Refuse a header that names a column twice (pandas renames the second)."""
    names = next(csv.reader([header]), [])
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise DataFileError(
                f"battle file {source.name!r} has the column {name!r} twice in its "
                f"header (columns {seen[name]} and {position}); the second would be "
                f"read as {name + '.1'!r} and ignored. Keep one of them, or rename "
                "the other."
            )
        seen[name] = position


def _read_csv(source: _Source, head: bytes) -> pd.DataFrame:
    header = _first_line(head)
    _check_header_names(source, header)
    if "," not in header:
        found = {d: header.count(d) for d in _FOREIGN_DELIMITERS if d in header}
        if found:
            delimiter = max(found, key=found.__getitem__)
            raise DataFileError(
                f"battle file {source.name!r} is not comma-separated: its header "
                f"line {header[:80]!r} is split by {delimiter!r} ({found[delimiter]} "
                f"times) and holds no comma. Expected a comma-separated header "
                f"such as {_CSV_HEADER!r}; re-save the file with ',' as the "
                "delimiter."
            )
    try:
        with _readable(source) as target:
            # The C parser has no field-size limit (the csv module stops at
            # 131,072). Every column is read as text: a field such as "007" or
            # "1e5" stays as written (targets are converted by the readers).
            frame = pd.read_csv(
                target,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                compression="gzip" if source.gzipped else None,
            )
    except pd.errors.EmptyDataError as err:
        raise _empty_error(source, head) from err
    except pd.errors.ParserError as err:
        raise DataFileError(
            f"battle file {source.name!r} is not valid CSV ({str(err).strip()}). "
            "Fields that "
            "hold commas, quotes or line breaks must be in double quotes, with "
            "inner quotes doubled, as in the Kaggle files."
        ) from err
    if "id" in frame.columns:
        frame["id"] = _integral_ids(frame["id"])
    return frame


def _read_parquet(source: _Source, head: bytes) -> pd.DataFrame:
    try:
        with _readable(source, seekable=True) as target:
            return pd.read_parquet(target)
    except (ValueError, OSError) as err:
        # pyarrow says ArrowInvalid (a ValueError) or OSError for a bad file;
        # the file itself was opened already, so this is not a missing path.
        raise DataFileError(
            f"battle file {source.name!r} is not a readable parquet file "
            f"({type(err).__name__}: {err}). Expected {_FORMATS['.parquet'].expected}; "
            "re-export it, or give the file a suffix that matches its format."
        ) from err


def _read_json_lines(source: _Source, head: bytes) -> pd.DataFrame:
    try:
        with _readable(source) as target:
            return pd.read_json(target, lines=True, dtype=False)
    except UnicodeDecodeError:
        raise
    except ValueError as err:
        raise DataFileError(
            f"battle file {source.name!r} is not valid JSON Lines ({err}). "
            f"Expected {_FORMATS['.jsonl'].expected}."
        ) from err


def _read_json(source: _Source, head: bytes) -> pd.DataFrame:
    with _decompressed(source) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as err:
            raise DataFileError(
                f"battle file {source.name!r} is not valid JSON ({err}). Expected "
                f"{_FORMATS['.json'].expected}."
            ) from err
    rows = data if isinstance(data, list) else [data]
    if not all(isinstance(row, dict) for row in rows):
        kinds = sorted({type(row).__name__ for row in rows})
        raise DataFileError(
            f"battle file {source.name!r} holds JSON {kinds}, not objects. Expected "
            f"{_FORMATS['.json'].expected}."
        )
    return pd.DataFrame(rows)


_CSV = _Format(
    _read_csv,
    f"a comma-separated header such as {_CSV_HEADER!r}, then one battle per row",
)
_JSON_LINES = _Format(_read_json_lines, "one JSON object (one battle) per line")
_PARQUET = _Format(_read_parquet, "a parquet table with one battle per row")
_FORMATS: dict[str, _Format] = {
    ".csv": _CSV,
    ".csv.gz": _CSV,
    ".parquet": _PARQUET,
    ".pq": _PARQUET,
    ".jsonl": _JSON_LINES,
    ".ndjson": _JSON_LINES,
    ".json": _Format(_read_json, "a JSON list of battle objects"),
}
"""Suffix -> how to read it and what a file of that format should hold."""

SUFFIXES: tuple[str, ...] = (*_FORMATS, ".zip")
_TEXT_SUFFIXES = frozenset(_FORMATS) - {".parquet", ".pq"}
"""Every suffix :func:`read_table` reads."""


def _suffix_of(name: str) -> str | None:
    lowered = name.lower()
    return next((s for s in _FORMATS if lowered.endswith(s)), None)


def _format_error(name: str) -> DataFileError:
    return DataFileError(
        f"cannot tell the format of {name!r} from its suffix. Use "
        f"{', '.join(SUFFIXES[:-1])}, or a .zip holding one of them."
    )


def _empty_error(source: _Source, head: bytes) -> DataFileError:
    what = "is empty (0 bytes)" if not head else "holds only whitespace"
    return DataFileError(
        f"battle file {source.name!r} {what}: no header and no battles. Expected "
        f"{_FORMATS[source.suffix].expected}. Check that the download or export "
        "finished."
    )


def _not_utf8_error(source: _Source, err: UnicodeDecodeError) -> BattleFormatError:
    """The decoding error with the byte offset and line of the first bad byte."""
    where = ""
    with _decompressed(source) as handle:
        data = handle.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exact:
        line = data.count(b"\n", 0, exact.start) + 1
        where = (
            f": byte {data[exact.start]:#04x} at offset {exact.start:,} (line {line:,})"
        )
    return BattleFormatError(
        f"battle file {source.name!r} is not valid UTF-8{where or f' ({err})'}. "
        "Re-save it as UTF-8 (the Kaggle files are UTF-8, with JSON \\u escapes)."
    )


def _not_text_reason(head: bytes) -> str | None:
    """Why the start of a file is not text, or None when it looks like text.

    A NUL byte in valid UTF-8 is a (strange) character, so it alone does not
    make a binary file: the first KB must also be invalid UTF-8, or be more
    than a quarter NULs (UTF-16 text without a byte-order mark).
    """
    first = head[:_TEXT_CHECK_BYTES]
    for signature, kind in _BINARY_SIGNATURES:
        if first.startswith(signature):
            return f"it starts like {kind}"
    if first.startswith(_UTF16_BOMS):
        return "it starts with a UTF-16 byte-order mark"
    nul = first.find(b"\x00")
    if nul < 0:
        return None
    try:
        # final=False: a character cut at the end of the first KB is fine.
        codecs.getincrementaldecoder("utf-8")().decode(first, final=False)
    except UnicodeDecodeError:
        return (
            f"its first {len(first):,} bytes hold a NUL byte (offset {nul:,}) and "
            "bytes that are not UTF-8"
        )
    n_nul = first.count(b"\x00")
    if n_nul * 4 > len(first):
        return (
            f"{n_nul:,} of its first {len(first):,} bytes are NUL (UTF-16 text "
            "without a byte-order mark?)"
        )
    return None


def _check_text(source: _Source, head: bytes) -> None:
    """Refuse a binary file given a text format's suffix, saying what it is."""
    reason = _not_text_reason(head)
    if reason is not None:
        raise DataFileError(
            f"battle file {source.name!r} is not a UTF-8 text file: {reason}. Expected "
            f"{_FORMATS[source.suffix].expected}, as UTF-8 text. Export the table "
            "as CSV (UTF-8), or give the file the suffix of its format."
        )


def _parse(source: _Source) -> pd.DataFrame:
    try:
        with _decompressed(source) as handle:
            head = handle.read(_HEAD_BYTES)
        if not head.strip():
            raise _empty_error(source, head)
        if source.suffix in _TEXT_SUFFIXES:
            _check_text(source, head)
        return _FORMATS[source.suffix].read(source, head)
    except UnicodeDecodeError as err:
        raise _not_utf8_error(source, err) from err
    except (gzip.BadGzipFile, EOFError, zlib.error, zipfile.BadZipFile) as err:
        hint = " (or drop the .gz suffix if it is not compressed)"
        raise DataFileError(
            f"battle file {source.name!r} is damaged or incomplete "
            f"({type(err).__name__}: {err}). Download or export it again"
            f"{hint if source.gzipped else ''}."
        ) from err


def split_member(source: str | Path) -> tuple[Path, str | None]:
    """The file and the archive member named in ``source``, if any.

    A path that exists is taken as it is, even when it holds ``::``.

    >>> archive, member = split_member("kaggle.zip::test.csv")
    >>> archive.name, member
    ('kaggle.zip', 'test.csv')
    >>> split_member("train.csv")[1] is None
    True
    """
    text = str(source)
    if MEMBER_SEPARATOR not in text or Path(text).exists():
        return Path(text), None
    archive, _, member = text.partition(MEMBER_SEPARATOR)
    return Path(archive), member


def _is_clutter(name: str) -> bool:
    """Entries archivers add (macOS resource forks, .DS_Store), never data."""
    return name.startswith("__MACOSX/") or name.rsplit("/", 1)[-1].startswith(".")


def _may_hold_battles(source: _Source) -> bool:
    """False for a CSV member whose header lacks the columns of every layout."""
    if source.suffix not in (".csv", ".csv.gz"):
        return True  # no cheap look at the columns; reading it will tell
    try:
        with _decompressed(source) as handle:
            header = _first_line(handle.read(_HEAD_BYTES))
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile):
        return True  # reading it will say what is wrong
    columns = {name.strip().strip('"') for name in header.split(",")}
    return any(set(marks) <= columns for marks in LAYOUT_COLUMNS.values())


def _member_source(archive: zipfile.ZipFile, path: Path, name: str) -> _Source:
    suffix = _suffix_of(name)
    label = f"{path}{MEMBER_SEPARATOR}{name}"
    if suffix is None:
        raise _format_error(label)
    return _Source(label, suffix, lambda: archive.open(name))


def _choose_member(archive: zipfile.ZipFile, path: Path, member: str | None) -> str:
    names = [
        info.filename
        for info in archive.infolist()
        if not info.is_dir() and not _is_clutter(info.filename)
    ]
    if not names:
        raise DataFileError(
            f"archive {str(path)!r} holds no files. Expected a zip holding one "
            "battle file (.csv, .parquet, .jsonl or .json)."
        )
    example = f"{path}{MEMBER_SEPARATOR}{names[0]}"
    if member is not None:
        if member not in names:
            raise DataFileError(
                f"archive {str(path)!r} has no member {member!r}; it holds "
                f"{names}. Name one of them, e.g. {example!r}."
            )
        return member
    readable = [name for name in names if _suffix_of(name) is not None]
    battles = [
        name
        for name in readable
        if _may_hold_battles(_member_source(archive, path, name))
    ]
    if len(battles) == 1:
        logger.info("reading %s from %s", battles[0], path)
        return battles[0]
    others = [name for name in names if name not in battles]
    aside = f" (not battle files: {others})" if others else ""
    if not battles:
        raise DataFileError(
            f"archive {str(path)!r} holds no battle file: {names} have no readable "
            f"battle columns. Expected a member with {list(LAYOUT_COLUMNS['kaggle'])}"
            " (or conversation_a/b, or chosen/rejected)."
        )
    chosen_example = f"{path}{MEMBER_SEPARATOR}{battles[0]}"
    raise DataFileError(
        f"archive {str(path)!r} holds {len(battles)} battle files: {battles}{aside}. "
        f"Name the one to read after {MEMBER_SEPARATOR!r}, e.g. {chosen_example!r}."
    )


def _read_archive(path: Path, member: str | None) -> pd.DataFrame:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise DataFileError(
            f"{str(path)!r} is not a valid zip archive ({err}). Download it again, "
            "or unzip it and pass the battle file itself."
        ) from err
    with archive:
        name = _choose_member(archive, path, member)
        return _parse(_member_source(archive, path, name))


def read_table(source: str | Path) -> pd.DataFrame:
    """Read a battle file, or one member of a zip archive, into a raw table.

    Parameters
    ----------
    source : str or pathlib.Path
        A file with one of :data:`SUFFIXES`; ``archive.zip::member`` names
        the member of an archive to read.

    Returns
    -------
    pandas.DataFrame
        The rows and columns as stored (CSV fields as text).

    Raises
    ------
    FileNotFoundError
        The file (or the archive) does not exist.
    DataFileError
        Unknown suffix, an empty file, a binary file under a text format's
        suffix, a CSV header that names a column twice, another delimiter than
        a comma, a file that its format's parser refuses, an archive that
        holds no battle file, several (the message lists them) or not the
        member named.
    BattleFormatError
        The file is not valid UTF-8 (the message gives the offset and line).

    Examples
    --------
    >>> table = read_table("kaggle.zip::test.csv")  # doctest: +SKIP
    """
    path, member = split_member(source)
    if not path.exists():
        raise FileNotFoundError(f"battle file {str(path)!r} does not exist.")
    if path.suffix.lower() == ".zip":
        return _read_archive(path, member)
    if member is not None:
        raise DataFileError(
            f"{str(path)!r} is not a .zip archive, so it has no member {member!r}. "
            f"Drop {MEMBER_SEPARATOR + member!r}, or name a .zip archive."
        )
    suffix = _suffix_of(path.name)
    if suffix is None:
        raise _format_error(str(path))
    return _parse(_Source(str(path), suffix, lambda: path.open("rb"), path))


def read_table_bytes(data: bytes, *, name: str, suffix: str = ".csv") -> pd.DataFrame:
    """Read battle-file bytes already in memory, as :func:`read_table` reads a file.

    A part of a large file (its header line, then a run of whole rows) is
    parsed with the same readers, repairs of ids and messages as the whole
    file would be, so one partition of a distributed run reads exactly as the
    rows would in one process (:mod:`features.partitions`).

    Parameters
    ----------
    data : bytes
        The file's content (a CSV part starts with the header line).
    name : str
        What error messages call the data, e.g. the file and its row range.
    suffix : str, default=".csv"
        The format, one of :data:`SUFFIXES` but ``.zip``.

    Returns
    -------
    pandas.DataFrame
        The rows and columns as stored (CSV fields as text).

    Raises
    ------
    DataFileError
        An unknown suffix, or data that its format's parser refuses.
    BattleFormatError
        The data is not valid UTF-8 (offset and line count from its start).

    Examples
    --------
    >>> read_table_bytes(b"id,prompt\\n7,hi\\n", name="part").to_dict("list")
    {'id': ['7'], 'prompt': ['hi']}
    """
    if suffix not in _FORMATS:
        raise _format_error(f"{name} ({suffix})")
    return _parse(_Source(name, suffix, lambda: io.BytesIO(data)))
