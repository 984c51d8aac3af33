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

Usage::

    python -m benchmarks.make_scale_set --out artifacts/bench-data/scale-57477.csv \
        [--n-rows 57477] [--seed 0] [--corpus PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features import CLASSES, SWAP_LABELS, TEXT_COLUMNS, read_battles
from pipelines import write_csv_atomic

__all__ = ["DEFAULT_CORPUS", "KAGGLE_ROWS", "make_scale_set", "main"]

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/corpus/train.csv"
"""The real labelled corpus (``../shared/data/corpus/train.csv``)."""

KAGGLE_ROWS = 57_477
"""Rows of the Kaggle LMSYS ``train.csv``: the default size."""

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


def make_scale_set(
    corpus: pd.DataFrame, n_rows: int = KAGGLE_ROWS, seed: int = 0
) -> pd.DataFrame:
    """Recombine a labelled canonical battle table into ``n_rows`` new battles.

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
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer):
        raise TypeError(f"make_scale_set: n_rows must be an int. Got {n_rows!r}.")
    if n_rows < 1:
        raise ValueError(f"make_scale_set: n_rows must be >= 1. Got {n_rows!r}.")
    if "label" not in corpus.columns or corpus.empty:
        raise ValueError(
            "make_scale_set needs a non-empty labelled corpus (a 'label' column); "
            f"got {len(corpus)} rows and columns {list(corpus.columns)}."
        )
    rng = np.random.default_rng(seed)
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
    labels = corpus["label"].to_numpy(dtype=np.int64)[templates]
    labels = np.where(flips, SWAP_LABELS[labels], labels)
    one_hot = np.eye(3, dtype=np.int64)[labels]
    return pd.DataFrame(
        {
            "id": _unique_ids(rng, n_rows),
            "model_a": "",
            "model_b": "",
            **fields,
            **{name: one_hot[:, k] for k, name in enumerate(CLASSES)},
            "source": sources[templates],
        },
        columns=list(_COLUMNS),
    )


def _unique_ids(rng: np.random.Generator, n_rows: int) -> np.ndarray:
    ids = np.empty(0, dtype=np.int64)
    while ids.size < n_rows:
        draw = rng.integers(30_000, 2**32, size=n_rows - ids.size + 16)
        ids = np.unique(np.concatenate([ids, draw]))
    return rng.permutation(ids)[:n_rows]


def length_summary(frame: pd.DataFrame, column: str = "response_a") -> dict[str, int]:
    """Median and 95th percentile of a Kaggle-layout column's characters."""
    lengths = [sum(len(t) for t in json.loads(v)) for v in frame[column]]
    return {
        "median": int(np.median(lengths)),
        "p95": int(np.percentile(lengths, 95)),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.make_scale_set",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument(
        "--n-rows",
        type=int,
        default=KAGGLE_ROWS,
        help=f"battles to write (default: {KAGGLE_ROWS:,}, the Kaggle train size)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="labelled battles to recombine (default: ../shared/data/corpus)",
    )
    parser.add_argument("--quiet", action="store_true", help="warnings only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.make_scale_set``."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO)
    if args.n_rows < 1:
        parser.error(f"--n-rows must be >= 1. Got {args.n_rows}.")
    if not args.corpus.exists():
        parser.error(f"corpus not found at {str(args.corpus)!r}; pass --corpus PATH.")
    started = time.perf_counter()
    corpus = read_battles(args.corpus, labelled=True)
    table = make_scale_set(corpus, args.n_rows, args.seed)
    write_csv_atomic(table, args.out)
    lengths = length_summary(table)
    print(
        f"wrote {len(table):,} battles to {args.out} in "
        f"{time.perf_counter() - started:.1f} s (response_a chars: median "
        f"{lengths['median']:,}, p95 {lengths['p95']:,})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
