"""Similarity features: how much each answer overlaps the prompt and the other.

An answer that parrots the prompt, or two answers that say nearly the same
thing (a likely tie), show up as lexical overlap. The block measures it with
Jaccard indices of word sets and of character n-gram sets, which need no
tokenizer and work for any language.

Speed comes from hashing: the character n-grams of every text in a chunk of
battles are hashed with numpy into 64-bit keys that also carry the row and
the side, and one sort then gives, per row, how many distinct n-grams each
combination of sides shares (:func:`char_ngram_counts`). Word sets are small
Python sets. Texts are cut to their last ``max_chars`` characters (the end
of a conversation matters most to voters), so cost is bounded per row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from numbers import Integral
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.blocks.base import FeatureBlock, FeatureMatrix
from features.text import find_words, joined_texts, paired_matrix
from features.validation import Interval, ParameterTable

__all__ = [
    "SimilarityBlock",
    "char_ngram_counts",
    "jaccard_from_counts",
    "normalise_text",
    "overlap_from_counts",
    "word_set",
]

logger = logging.getLogger(__name__)

# Keys are (row << 50) | (hash << 2) | side: 14 row bits, 48 hash bits and 2
# side bits fill one uint64, so one sort groups equal n-grams of a row.
_HASH_BITS = 48
_SIDE_BITS = 2
_ROW_BITS = 64 - _HASH_BITS - _SIDE_BITS
_MAX_SIDES = 1 << _SIDE_BITS
_MAX_CHUNK_ROWS = (1 << _ROW_BITS) - 1
_CHUNK_CODEPOINTS = 250_000  # ~2 MB per uint64 array: sorts stay in cache
_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1 64-bit prime
_MIXER = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, odd


def normalise_text(text: str, *, lowercase: bool = True) -> str:
    """Collapse runs of whitespace to one space (and casefold), for n-grams.

    >>> normalise_text("  Hello\\n\\n  World ")
    'hello world'
    """
    if lowercase:
        text = text.casefold()
    return " ".join(text.split())


def word_set(text: str) -> set[str]:
    """Distinct words of ``text``: ``\\w`` runs, each CJK character one word.

    >>> sorted(word_set("the cat, the 猫"))
    ['cat', 'the', '猫']
    """
    return set(find_words(text))


def _codepoints(texts: Sequence[str]) -> NDArray[np.uint64]:
    # UTF-32 gives one array element per character; lone surrogates pass.
    raw = "".join(texts).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(raw, dtype=np.uint32).astype(np.uint64)


def _chunk_counts(sides: Sequence[Sequence[str]], n: int) -> NDArray[np.int64]:
    n_sides, n_rows = len(sides), len(sides[0])
    n_masks = 1 << n_sides
    counts = np.zeros((n_rows, n_masks), dtype=np.int64)
    texts = [text for side in sides for text in side]  # side-major order
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    n_positions = int(lengths.sum()) - n + 1
    if n_positions <= 0:
        return counts
    cps = _codepoints(texts)
    hashes = cps[:n_positions].copy()
    for k in range(1, n):
        hashes = hashes * _MULTIPLIER + cps[k : k + n_positions]
    hashes ^= hashes >> np.uint64(29)
    hashes *= _MIXER
    hashes >>= np.uint64(64 - _HASH_BITS)

    text_of = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)[:n_positions]
    starts = np.cumsum(lengths) - lengths
    offset = np.arange(n_positions, dtype=np.int64) - starts[text_of]
    valid = offset <= (lengths - n)[text_of]  # the n-gram stays inside its text
    text_of = text_of[valid]
    row = (text_of % n_rows).astype(np.uint64)
    side = (text_of // n_rows).astype(np.uint64)
    keys = (
        (row << np.uint64(_HASH_BITS + _SIDE_BITS))
        | (hashes[valid] << np.uint64(_SIDE_BITS))
        | side
    )
    if keys.size == 0:
        return counts
    keys.sort()
    distinct = np.ones(keys.size, dtype=bool)
    distinct[1:] = keys[1:] != keys[:-1]
    keys = keys[distinct]  # one entry per (row, n-gram, side)
    groups = keys >> np.uint64(_SIDE_BITS)
    new_group = np.ones(keys.size, dtype=bool)
    new_group[1:] = groups[1:] != groups[:-1]
    side_bits = np.left_shift(1, (keys & np.uint64(_MAX_SIDES - 1)).astype(np.int64))
    group_starts = np.flatnonzero(new_group)
    masks = np.bitwise_or.reduceat(side_bits, group_starts)
    group_rows = (groups[group_starts] >> np.uint64(_HASH_BITS)).astype(np.int64)
    flat = np.bincount(group_rows * n_masks + masks, minlength=n_rows * n_masks)
    return flat.reshape(n_rows, n_masks)


def _row_chunks(total_lengths: NDArray[np.int64]) -> Iterator[slice]:
    start, budget = 0, 0
    for i, length in enumerate(total_lengths.tolist()):
        if i > start and (
            budget + length > _CHUNK_CODEPOINTS or i - start >= _MAX_CHUNK_ROWS
        ):
            yield slice(start, i)
            start, budget = i, 0
        budget += length
    yield slice(start, len(total_lengths))


def char_ngram_counts(sides: Sequence[Sequence[str]], n: int) -> NDArray[np.int64]:
    """Distinct character n-grams per row, by the set of sides sharing them.

    With ``k`` sides (e.g. prompt, answer A, answer B), column ``m`` of the
    result counts the distinct n-grams of a row that occur in exactly the
    sides whose bits are set in ``m`` (bit ``i`` = ``sides[i]``), so column 0
    is always 0. Set sizes, intersections and unions of any sides follow by
    summing columns (:func:`jaccard_from_counts`). N-grams are hashed to 48
    bits per row; a collision needs about 10^7 distinct n-grams in one row.

    Parameters
    ----------
    sides : sequence of sequences of str
        ``k`` (1 to 4) equally long lists of texts, one text per row.
    n : int
        N-gram length in characters, >= 1.

    Returns
    -------
    numpy.ndarray
        Shape (n_rows, 2**k), int64.

    Raises
    ------
    ValueError
        No sides or more than 4, sides of different lengths, or ``n`` < 1.

    Examples
    --------
    >>> char_ngram_counts([["abcd"], ["bcde"]], 3).tolist()
    [[0, 1, 1, 1]]
    """
    if not 1 <= len(sides) <= _MAX_SIDES:
        raise ValueError(
            f"char_ngram_counts takes 1 to {_MAX_SIDES} sides; got {len(sides)}. "
            "Pass one list of texts per side."
        )
    n_rows = len(sides[0])
    if any(len(side) != n_rows for side in sides):
        raise ValueError(
            "char_ngram_counts needs one text per row on every side; got side "
            f"lengths {[len(side) for side in sides]}."
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"char_ngram_counts needs an int n >= 1; got {n!r}.")
    if n_rows == 0:
        return np.zeros((0, 1 << len(sides)), dtype=np.int64)
    totals = np.zeros(n_rows, dtype=np.int64)
    for side in sides:
        totals += np.fromiter(map(len, side), dtype=np.int64, count=n_rows)
    parts = [
        _chunk_counts([side[rows] for side in sides], n) for rows in _row_chunks(totals)
    ]
    return np.concatenate(parts, axis=0)


def _masked_sum(counts: NDArray[np.int64], wanted: Any) -> NDArray[np.int64]:
    columns = [m for m in range(counts.shape[1]) if wanted(m)]
    return counts[:, columns].sum(axis=1)


def jaccard_from_counts(
    counts: NDArray[np.int64], first: int, second: int
) -> NDArray[np.float64]:
    """Jaccard index |X∩Y| / |X∪Y| of sides ``first`` and ``second``; 0 if both empty.

    >>> jaccard_from_counts(char_ngram_counts([["abcd"], ["bcde"]], 3), 0, 1)
    array([0.33333333])
    """
    both = (1 << first) | (1 << second)
    inter = _masked_sum(counts, lambda m: m & both == both)
    union = _masked_sum(counts, lambda m: m & both != 0)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def overlap_from_counts(
    counts: NDArray[np.int64],
    first: int,
    second: int,
    *,
    by: Literal["min", "first"] = "min",
) -> NDArray[np.float64]:
    """Shared share of sides ``first`` and ``second``: |X∩Y| over a set size.

    ``by="min"`` divides by the smaller set (the overlap coefficient,
    symmetric), ``by="first"`` by the size of ``first`` (how much of it is
    covered). 0 when the divisor is 0.

    >>> counts = char_ngram_counts([["abcd"], ["abcdef"]], 3)
    >>> overlap_from_counts(counts, 0, 1).tolist(), overlap_from_counts(
    ...     counts, 1, 0, by="first").tolist()
    ([1.0], [0.5])
    """
    both = (1 << first) | (1 << second)
    inter = _masked_sum(counts, lambda m: m & both == both)
    size_first = _masked_sum(counts, lambda m: m >> first & 1)
    if by == "first":
        size = size_first
    elif by == "min":
        size = np.minimum(size_first, _masked_sum(counts, lambda m: m >> second & 1))
    else:
        raise ValueError(
            f"overlap_from_counts 'by' must be 'min' or 'first'; got {by!r}."
        )
    return np.where(size > 0, inter / np.maximum(size, 1), 0.0)


def _word_set_overlaps(
    first: list[set[str]],
    second: list[set[str]],
    *,
    by: Literal["min", "first"],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Jaccard of each pair of word sets and their shared share, 0 if one is empty.

    The share divides the shared words by the smaller set (``by="min"``) or by
    ``first`` (``by="first"``), as in :func:`overlap_from_counts`.
    """
    jaccard = np.zeros(len(first))
    overlap = np.zeros(len(first))
    for i, (x, y) in enumerate(zip(first, second, strict=True)):
        if not x or not y:
            continue
        inter = len(x & y)
        jaccard[i] = inter / (len(x) + len(y) - inter)
        overlap[i] = inter / (len(x) if by == "first" else min(len(x), len(y)))
    return jaccard, overlap


class SimilarityBlock(FeatureBlock):
    """Lexical overlap of each answer with the prompt and of the two answers.

    Stateless. Texts (turns joined by a blank line) are cut to their last
    ``max_chars`` characters, optionally casefolded, and whitespace runs are
    collapsed. Words are ``\\w`` runs with each CJK character a word; char
    n-grams include spaces and punctuation. Every value is in [0, 1] and is
    0 when a text is empty.

    Parameters
    ----------
    max_chars : int, default=3000
        Characters kept from the end of each joined text, >= 1. Bounds time
        and memory for 100k-character answers.
    lowercase : bool, default=True
        Casefold texts before comparing them.

    Attributes
    ----------
    is_fitted_ : bool
        Set by ``fit``; the block also transforms without it.

    Notes
    -----
    Columns, per side (``a_``/``b_``) with the difference A−B (``d_``):

    - ``sim_prompt_word_jaccard``: word Jaccard of answer and prompt;
    - ``sim_prompt_char3_jaccard``: char 3-gram Jaccard of answer and prompt;
    - ``sim_prompt_word_coverage``: share of the prompt's words in the answer.

    Symmetric (``s_``): ``sim_word_jaccard``, ``sim_char3_jaccard``,
    ``sim_char4_jaccard`` of A and B, and the length-normalised overlap
    coefficients ``sim_word_overlap`` and ``sim_char3_overlap`` (shared over
    the smaller set, 1 when one answer is contained in the other).

    Examples
    --------
    >>> import pandas as pd
    >>> battles = pd.DataFrame({"prompt": [["Name a fruit"]],
    ...                         "response_a": [["An apple"]],
    ...                         "response_b": [["an apple"]]})
    >>> m = SimilarityBlock().transform(battles)
    >>> float(m.values[0, m.columns.index("s_sim_word_jaccard")])
    1.0
    """

    name: ClassVar[str] = "similarity"
    version: ClassVar[int] = 1
    stateful: ClassVar[bool] = False

    _allowed_values: ClassVar[ParameterTable] = {
        "max_chars": [Interval(Integral, 1, None)],
        "lowercase": [bool],
    }

    def __init__(self, *, max_chars: int = 3000, lowercase: bool = True) -> None:
        self.max_chars = max_chars
        self.lowercase = lowercase

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Similarity features of each battle (float32, in [0, 1]).

        Raises
        ------
        InvalidParameterError
            A param outside its allowed values.
        ValueError
            A text column is missing.
        """
        self._validate(battles)
        start = time.perf_counter()
        prompt, a, b = (
            [
                normalise_text(text[-self.max_chars :], lowercase=self.lowercase)
                for text in joined_texts(battles, column)
            ]
            for column in ("prompt", "response_a", "response_b")
        )
        words_p, words_a, words_b = (
            [word_set(text) for text in texts] for texts in (prompt, a, b)
        )
        word_jaccard_a, coverage_a = _word_set_overlaps(words_p, words_a, by="first")
        word_jaccard_b, coverage_b = _word_set_overlaps(words_p, words_b, by="first")
        word_jaccard, word_overlap = _word_set_overlaps(words_a, words_b, by="min")

        char3 = char_ngram_counts([prompt, a, b], 3)  # sides: 0 prompt, 1 A, 2 B
        char4 = char_ngram_counts([a, b], 4)
        matrix = paired_matrix(
            "sim_",
            {
                "prompt_word_jaccard": word_jaccard_a,
                "prompt_char3_jaccard": jaccard_from_counts(char3, 1, 0),
                "prompt_word_coverage": coverage_a,
            },
            {
                "prompt_word_jaccard": word_jaccard_b,
                "prompt_char3_jaccard": jaccard_from_counts(char3, 2, 0),
                "prompt_word_coverage": coverage_b,
            },
            symmetric={
                "word_jaccard": word_jaccard,
                "char3_jaccard": jaccard_from_counts(char3, 1, 2),
                "char4_jaccard": jaccard_from_counts(char4, 0, 1),
                "word_overlap": word_overlap,
                "char3_overlap": overlap_from_counts(char3, 1, 2),
            },
        )
        logger.debug(
            "similarity: %d battles, %d columns, %.2f s",
            len(battles),
            len(matrix.columns),
            time.perf_counter() - start,
        )
        return matrix
