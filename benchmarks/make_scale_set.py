"""Build a large battle set in the Kaggle layout by recombining corpus texts.

The real corpus has 7,860 battles; the Kaggle training file has 57,477. To
measure how building features and training scale to (and past) that size, this
module writes a synthetic set of any size from the corpus:

- each new battle starts from a corpus battle drawn uniformly at random (with
  replacement), so prompt, response and turn-count lengths follow the corpus
  distribution jointly;
- every turn of four words or more is *spliced*: a contiguous window of 25-50 %
  of its words is replaced, word for word, by a run of words taken from a random
  place in the corpus texts of the same column and source (prompts from
  prompts, responses from responses, Russian from Russian). Whitespace, line
  breaks and the rest of the text
  stay, so lengths, markdown layout and languages are kept while almost every
  text becomes distinct (as in the Kaggle file, where few texts repeat; a set
  of copies would let caches and de-duplication make it look cheaper than it
  is). Shorter turns ("hey") are kept verbatim and repeat, like real prompts;
- identical responses stay identical (the tie quirk is kept);
- the label stays with the response it belonged to: each battle keeps its
  template's label, and with probability 1/2 A and B are exchanged together
  with the label (0 <-> 1). The length, refusal and style effects of the corpus
  therefore carry over with their real strength; nothing is re-labelled.

The ``source`` column is kept (the template's), ``model_a``/``model_b`` are
empty and ids are distinct random integers, as in the Kaggle file.

Large sets are made and written in chunks of ``--chunk-rows`` rows
(:func:`iter_scale_set`, :func:`write_scale_set`), so memory holds the corpus,
its word pools and one chunk, whatever ``--n-rows`` is; the chunks of a seed
concatenate to exactly the one-shot table of that seed. ``--out`` picks the
layout: a ``.csv`` file, a ``.parquet`` file with one row group per chunk, or
a directory of part files (one per chunk, ``part-00000.parquet`` ...), which
``--scheduler`` runs of ``build_features`` read as partitions.

Usage::

    python -m benchmarks.make_scale_set --out artifacts/bench-data/scale-57477.csv \
        [--n-rows 57477] [--seed 0] [--corpus PATH] [--chunk-rows 50000]
    python -m benchmarks.make_scale_set --out artifacts/bench-data/scale-1m/ \
        --n-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from features import CLASSES, SWAP_LABELS, TEXT_COLUMNS, read_battles

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_CORPUS",
    "KAGGLE_ROWS",
    "ScaleSetSummary",
    "iter_scale_set",
    "make_scale_set",
    "main",
    "output_layout",
    "write_scale_set",
]

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/corpus/train.csv"
"""The real labelled corpus (``../shared/data/corpus/train.csv``)."""

KAGGLE_ROWS = 57_477
"""Rows of the Kaggle LMSYS ``train.csv``: the default size."""

CHUNK_ROWS = 50_000
"""Rows made and written at a time; also the rows of each part file (the
default partition size of ``features.partitions``)."""

_MIN_WORDS = 4
_SPLICE_SHARE = (0.25, 0.5)
_SPACE = re.compile(r"(\s+)")
_COLUMNS = (
    "id",
    "model_a",
    "model_b",
    "prompt",
    "response_a",
    "response_b",
    *CLASSES,
    "source",
)


def _word_pool(texts: Sequence[list[str]]) -> list[str]:
    """Every word of every turn of a column, in corpus order."""
    return [word for turns in texts for turn in turns for word in turn.split()]


def _splice(text: str, pool: list[str], rng: np.random.Generator) -> str:
    """``text`` with a contiguous window of its words replaced from ``pool``."""
    parts = _SPACE.split(text)
    # Words sit at the even positions; an empty first part means leading space.
    word_positions = [i for i in range(0, len(parts), 2) if parts[i]]
    n_words = len(word_positions)
    if n_words < _MIN_WORDS or not pool:
        return text
    share = rng.uniform(*_SPLICE_SHARE)
    n_replace = max(1, int(round(share * n_words)))
    first = int(rng.integers(0, n_words - n_replace + 1))
    source = int(rng.integers(0, len(pool)))
    for k, position in enumerate(word_positions[first : first + n_replace]):
        parts[position] = pool[(source + k) % len(pool)]
    return "".join(parts)


def _check_arguments(corpus: pd.DataFrame, n_rows: int, chunk_rows: int) -> None:
    for name, value in (("n_rows", n_rows), ("chunk_rows", chunk_rows)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"make_scale_set: {name} must be an int. Got {value!r}.")
        if value < 1:
            raise ValueError(f"make_scale_set: {name} must be >= 1. Got {value!r}.")
    if "label" not in corpus.columns or corpus.empty:
        raise ValueError(
            "make_scale_set needs a non-empty labelled corpus (a 'label' column); "
            f"got {len(corpus)} rows and columns {list(corpus.columns)}."
        )


def iter_scale_set(
    corpus: pd.DataFrame,
    n_rows: int = KAGGLE_ROWS,
    seed: int = 0,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """The scale set of ``seed`` as consecutive tables of ``chunk_rows`` rows.

    Only one chunk of texts is held at a time; the per-row draws (template,
    A/B flip, id: a few bytes a row) are made up front. The chunks concatenate
    to :func:`make_scale_set` of the same corpus and seed, for any
    ``chunk_rows``: the texts come from one random stream consumed row by row,
    the ids from a child stream drawn first.

    Parameters
    ----------
    corpus, n_rows, seed
        As for :func:`make_scale_set`.
    chunk_rows : int, default=50000
        Rows per chunk (the last one may be shorter).

    Yields
    ------
    pandas.DataFrame
        The rows of one chunk, index from 0, in the layout of
        :func:`make_scale_set`.

    Raises
    ------
    ValueError
        ``n_rows`` or ``chunk_rows`` < 1, or a corpus without labels or rows.

    Examples
    --------
    >>> from features import as_battles
    >>> corpus = as_battles([{"id": "1", "prompt": ["hey"], "label": 0,
    ...     "response_a": ["Hello there, how can I help you today?"],
    ...     "response_b": ["Hi."]}])
    >>> [len(chunk) for chunk in iter_scale_set(corpus, 5, chunk_rows=2)]
    [2, 2, 1]
    """
    _check_arguments(corpus, n_rows, chunk_rows)
    rng = np.random.default_rng(seed)
    # A child stream, so the ids can be drawn before the texts without
    # moving the texts' draws (the same texts as the one-shot generator had).
    ids = _unique_ids(rng.spawn(1)[0], n_rows)
    sources = (
        corpus["source"].astype(str).to_numpy()
        if "source" in corpus.columns
        else np.full(len(corpus), "scale")
    )
    # Donor words come from the same source, so languages and registers stay.
    pools = {
        (column, source): _word_pool(corpus.loc[sources == source, column].tolist())
        for column in TEXT_COLUMNS
        for source in np.unique(sources)
    }
    templates = rng.integers(0, len(corpus), size=n_rows)
    flips = rng.random(n_rows) < 0.5
    labels = corpus["label"].to_numpy(dtype=np.int64)[templates]
    labels = np.where(flips, SWAP_LABELS[labels], labels)
    for start in range(0, n_rows, chunk_rows):
        rows = slice(start, min(start + chunk_rows, n_rows))
        fields = _spliced_fields(
            corpus, sources, pools, templates[rows], flips[rows], rng
        )
        one_hot = np.eye(3, dtype=np.int64)[labels[rows]]
        yield pd.DataFrame(
            {
                "id": ids[rows],
                "model_a": "",
                "model_b": "",
                **fields,
                **{name: one_hot[:, k] for k, name in enumerate(CLASSES)},
                "source": sources[templates[rows]],
            },
            columns=list(_COLUMNS),
        )


def _spliced_fields(
    corpus: pd.DataFrame,
    sources: np.ndarray,
    pools: dict[tuple[str, str], list[str]],
    templates: np.ndarray,
    flips: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, list[str]]:
    """The JSON text fields of a run of rows, drawing from ``rng`` in row order."""
    prompts, first, second = (
        corpus["prompt"],
        corpus["response_a"],
        corpus["response_b"],
    )
    fields: dict[str, list[str]] = {column: [] for column in TEXT_COLUMNS}
    for row, flip in zip(templates.tolist(), flips.tolist(), strict=True):
        source = sources[row]
        prompt = [_splice(t, pools["prompt", source], rng) for t in prompts.iat[row]]
        pool_a, pool_b = pools["response_a", source], pools["response_b", source]
        turns_a = [_splice(t, pool_a, rng) for t in first.iat[row]]
        if second.iat[row] == first.iat[row]:
            turns_b = list(turns_a)
        else:
            turns_b = [_splice(t, pool_b, rng) for t in second.iat[row]]
        if flip:
            turns_a, turns_b = turns_b, turns_a
        for column, turns in zip(TEXT_COLUMNS, (prompt, turns_a, turns_b), strict=True):
            fields[column].append(json.dumps(turns, ensure_ascii=False))
    return fields


def make_scale_set(
    corpus: pd.DataFrame, n_rows: int = KAGGLE_ROWS, seed: int = 0
) -> pd.DataFrame:
    """Recombine a labelled canonical battle table into ``n_rows`` new battles.

    The whole table is built in memory; :func:`write_scale_set` writes the
    same rows chunk by chunk.

    Parameters
    ----------
    corpus : pandas.DataFrame
        Canonical labelled battles (``features.battles.read_battles``); a
        ``source`` column is kept when present.
    n_rows : int, default=57477
        Battles to make (the size of the Kaggle training file).
    seed : int, default=0
        Seed; the same corpus and seed give the same table.

    Returns
    -------
    pandas.DataFrame
        The Kaggle train layout (JSON-list text fields, one-hot targets) plus
        ``source``.

    Raises
    ------
    ValueError
        ``n_rows`` < 1, or a corpus without labels or rows.

    Examples
    --------
    >>> from features import as_battles
    >>> corpus = as_battles([{"id": "1", "prompt": ["hey"], "label": 0,
    ...     "response_a": ["Hello there, how can I help you today?"],
    ...     "response_b": ["Hi."]}])
    >>> table = make_scale_set(corpus, n_rows=3, seed=0)
    >>> table.shape, sorted(set(table["prompt"]))
    ((3, 10), ['["hey"]'])
    """
    _check_arguments(corpus, n_rows, 1)
    (table,) = iter_scale_set(corpus, n_rows, seed, chunk_rows=int(n_rows))
    return table


def _unique_ids(rng: np.random.Generator, n_rows: int) -> np.ndarray:
    ids = np.empty(0, dtype=np.int64)
    while ids.size < n_rows:
        draw = rng.integers(30_000, 2**32, size=n_rows - ids.size + 16)
        ids = np.unique(np.concatenate([ids, draw]))
    return rng.permutation(ids)[:n_rows]


def _chars(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Characters of each row's turns in a Kaggle-layout (JSON list) column."""
    return np.array(
        [sum(len(t) for t in json.loads(v)) for v in frame[column]], dtype=np.int64
    )


def _quantiles(lengths: np.ndarray) -> dict[str, int]:
    return {
        "median": int(np.median(lengths)),
        "p95": int(np.percentile(lengths, 95)),
    }


def length_summary(frame: pd.DataFrame, column: str = "response_a") -> dict[str, int]:
    """Median and 95th percentile of a Kaggle-layout column's characters."""
    return _quantiles(_chars(frame, column))


Layout = Literal["csv", "parquet", "parts"]
"""How :func:`write_scale_set` lays out its output (see :func:`output_layout`)."""


def output_layout(out: str | Path) -> Layout:
    """The layout an output path asks for: by its suffix, else a directory.

    >>> output_layout("scale.csv"), output_layout("s.parquet"), output_layout("s1m")
    ('csv', 'parquet', 'parts')
    """
    suffix = Path(out).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "parts"


@dataclass(frozen=True)
class ScaleSetSummary:
    """What :func:`write_scale_set` wrote.

    Attributes
    ----------
    path : pathlib.Path
        The file or directory written.
    n_rows : int
        Battles written.
    files : list of pathlib.Path
        The files holding them (one, or one part per chunk).
    response_a_chars : dict of str to int
        Median and 95th percentile of the response_a characters.
    """

    path: Path
    n_rows: int
    files: list[Path]
    response_a_chars: dict[str, int]


def write_scale_set(
    corpus: pd.DataFrame,
    out: str | Path,
    n_rows: int = KAGGLE_ROWS,
    seed: int = 0,
    *,
    chunk_rows: int = CHUNK_ROWS,
    verbose: bool = False,
) -> ScaleSetSummary:
    """Make the scale set chunk by chunk and write each chunk as it is made.

    Memory holds the corpus, its word pools and one chunk, so a million rows
    need about what ``chunk_rows`` rows need. The rows are those of
    :func:`make_scale_set` with the same corpus and seed, whatever the
    layout or chunk size.

    Parameters
    ----------
    corpus, n_rows, seed
        As for :func:`make_scale_set`.
    out : str or Path
        - ``*.csv``: one CSV file, the layout ``make_scale_set`` + CSV gives;
        - ``*.parquet``: one parquet file, one row group per chunk;
        - anything else: a directory of parquet part files, one per chunk
          (``part-00000.parquet`` ...), readable as partitions by the
          ``--scheduler`` runs of ``build_features``. It must not exist yet,
          or be empty.

        Written atomically: a temporary sibling renamed into place, so a
        failed run leaves no partial output.
    chunk_rows : int, default=50000
        Rows per chunk, row group or part file.
    verbose : bool, default=False
        A progress bar over chunks.

    Returns
    -------
    ScaleSetSummary

    Raises
    ------
    ValueError
        As :func:`make_scale_set`, or ``chunk_rows`` < 1.
    FileExistsError
        ``out`` is a directory layout and a non-empty directory is there.

    Examples
    --------
    >>> summary = write_scale_set(corpus, "scale-1m", 1_000_000)  # doctest: +SKIP
    >>> len(summary.files)  # doctest: +SKIP
    20
    """
    from tqdm.auto import tqdm

    _check_arguments(corpus, n_rows, chunk_rows)
    out = Path(out)
    layout = output_layout(out)
    if layout == "parts" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"make_scale_set: {str(out)!r} exists and is not an empty directory; "
            "remove it or pass another --out (a .csv or .parquet name writes a file)."
        )
    started = time.perf_counter()
    chunks = tqdm(
        iter_scale_set(corpus, n_rows, seed, chunk_rows=chunk_rows),
        desc="scale set",
        unit="chunk",
        total=-(-n_rows // chunk_rows),
        disable=not verbose,
    )
    lengths: list[np.ndarray] = []

    def measured() -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            lengths.append(_chars(chunk, "response_a"))
            yield chunk

    out.parent.mkdir(parents=True, exist_ok=True)
    files = _WRITERS[layout](measured(), out)
    logger.info(
        "scale set: %s rows in %d file(s) at %s, %.1f s",
        f"{n_rows:,}",
        len(files),
        out,
        time.perf_counter() - started,
    )
    return ScaleSetSummary(out, n_rows, files, _quantiles(np.concatenate(lengths)))


def _publish_mode(path: Path) -> None:
    # mkstemp/mkdtemp create 0600/0700; give the output the usual umask mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _write_csv(chunks: Iterator[pd.DataFrame], out: Path) -> list[Path]:
    """Append each chunk to one CSV (header once), then rename it into place."""
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{out.name}.", suffix=".tmp", dir=out.parent
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            for index, chunk in enumerate(chunks):
                chunk.to_csv(stream, index=False, header=index == 0)
        _publish_mode(Path(temp_name))
        os.replace(temp_name, out)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return [out]


def _write_parquet(chunks: Iterator[pd.DataFrame], out: Path) -> list[Path]:
    """One parquet file, one row group per chunk, renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle, temp_name = tempfile.mkstemp(
        prefix=f".{out.name}.", suffix=".tmp", dir=out.parent
    )
    os.close(handle)
    writer = None
    try:
        for chunk in chunks:
            table = pa.Table.from_pandas(
                chunk,
                schema=None if writer is None else writer.schema,
                preserve_index=False,
            )
            if writer is None:
                writer = pq.ParquetWriter(temp_name, table.schema)
            writer.write_table(table, row_group_size=len(chunk))
        writer.close()
        _publish_mode(Path(temp_name))
        os.replace(temp_name, out)
    except BaseException:
        if writer is not None:
            writer.close()
        Path(temp_name).unlink(missing_ok=True)
        raise
    return [out]


def _write_parts(chunks: Iterator[pd.DataFrame], out: Path) -> list[Path]:
    """A directory of ``part-NNNNN.parquet`` files, renamed into place whole."""
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        names = []
        for index, chunk in enumerate(chunks):
            name = f"part-{index:05d}.parquet"
            chunk.to_parquet(temp / name, index=False)
            names.append(name)
        _publish_mode(temp)
        if out.exists():
            out.rmdir()  # checked empty before any row was made
        os.replace(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return [out / name for name in names]


_WRITERS = {"csv": _write_csv, "parquet": _write_parquet, "parts": _write_parts}
"""Output layout -> its chunk writer."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.make_scale_set",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="a .csv file, a .parquet file (one row group per chunk) or a "
        "directory of parquet part files (any other name; one part per chunk)",
    )
    parser.add_argument(
        "--n-rows",
        type=int,
        default=KAGGLE_ROWS,
        help=f"battles to write (default: {KAGGLE_ROWS:,}, the Kaggle train size)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=CHUNK_ROWS,
        help=f"rows made and written at a time, and per part file (default: "
        f"{CHUNK_ROWS:,}); the rows do not depend on it",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="labelled battles to recombine (default: ../shared/data/corpus)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="warnings only, no progress bar"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.make_scale_set``."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO)
    if args.n_rows < 1:
        parser.error(f"--n-rows must be >= 1. Got {args.n_rows}.")
    if args.chunk_rows < 1:
        parser.error(f"--chunk-rows must be >= 1. Got {args.chunk_rows}.")
    if not args.corpus.exists():
        parser.error(f"corpus not found at {str(args.corpus)!r}; pass --corpus PATH.")
    started = time.perf_counter()
    corpus = read_battles(args.corpus, labelled=True)
    summary = write_scale_set(
        corpus,
        args.out,
        args.n_rows,
        args.seed,
        chunk_rows=args.chunk_rows,
        verbose=not args.quiet,
    )
    lengths = summary.response_a_chars
    place = (
        str(args.out)
        if output_layout(args.out) != "parts"
        else f"{len(summary.files)} part{'s' * (len(summary.files) != 1)} in {args.out}"
    )
    print(
        f"wrote {summary.n_rows:,} battles to {place} in "
        f"{time.perf_counter() - started:.1f} s (response_a chars: median "
        f"{lengths['median']:,}, p95 {lengths['p95']:,})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
