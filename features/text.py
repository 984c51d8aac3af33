"""Text helpers shared by the feature blocks: words, joined sides, paired columns."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike

from features.battles import truncate_battles
from features.blocks.base import FeatureMatrix

__all__ = [
    "CJK_CHARS",
    "OUTPUTS",
    "TURN_SEPARATOR",
    "WORD_PATTERN",
    "WORD_RE",
    "ascii_class",
    "ascii_words",
    "count_ascii",
    "find_words",
    "joined_texts",
    "last_turns",
    "paired_matrix",
    "side_outputs",
    "symmetric_texts",
]

TURN_SEPARATOR = "\n\n"

# Chinese and Japanese are written without spaces between words, so a run of
# ideographs or kana would otherwise be one "word" however long the sentence:
# each of these characters counts as one word instead. Hangul is left out on
# purpose (Korean puts spaces between words).
CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
"""Character-class ranges (kana, CJK ideographs and extensions) of one-char words."""

WORD_PATTERN = f"[{CJK_CHARS}]|[^\\W{CJK_CHARS}]+"
"""Regex of one word: a ``\\w`` run, each CJK character a word of its own.

A string, so it also serves as scikit-learn's ``token_pattern``.
"""

WORD_RE = re.compile(WORD_PATTERN)
"""Compiled :data:`WORD_PATTERN`: ``"Hello, 你好"`` has the words Hello, 你, 好."""


# ASCII fast paths. About 70% of the corpus text is pure ASCII, where a
# bytes.translate pass lists its words 2.4x faster than WORD_RE.findall (corpus
# answers); the results are the same (tested against the regexes), so the
# features do not depend on which path ran.
def ascii_class(char_class: str) -> bytes:
    """The ASCII bytes that the one-character regex ``char_class`` matches.

    Derived from Python's own ``re``, so ``\\w``, ``\\s`` etc. mean exactly
    what they mean in the regexes they stand in for.

    >>> ascii_class("[a-c]")
    b'abc'
    """
    regex = re.compile(char_class)
    return bytes(code for code in range(128) if regex.fullmatch(chr(code)))


_ASCII_WORD_CHARS = ascii_class(r"\w")
_NON_WORD_TO_SPACE = bytes(
    code if code in _ASCII_WORD_CHARS else ord(" ") for code in range(256)
)


def ascii_words(text: str) -> list[str]:
    """``\\w`` runs of an ASCII-only ``text`` (``WORD_RE.findall`` at C speed).

    >>> ascii_words("Hello, world_1! x")
    ['Hello', 'world_1', 'x']
    """
    return text.encode("ascii").translate(_NON_WORD_TO_SPACE).decode("ascii").split()


def find_words(text: str) -> list[str]:
    """The words of ``text``, as ``WORD_RE.findall(text)`` (CJK one per character).

    >>> find_words("Hi, 你好 there")
    ['Hi', '你', '好', 'there']
    """
    return ascii_words(text) if text.isascii() else WORD_RE.findall(text)


def count_ascii(data: bytes, members: bytes) -> int:
    """How many bytes of ``data`` are in ``members`` (see :func:`ascii_class`).

    >>> count_ascii(b"a1b22", b"0123456789")
    3
    """
    return len(data) - len(data.translate(None, members))


OUTPUTS: tuple[str, ...] = ("diff", "sides", "both")
"""Values of a block's ``output`` param: see :func:`side_outputs`."""


def joined_texts(battles: pd.DataFrame, column: str) -> list[str]:
    """One string per battle: the turns of ``column`` joined by a blank line.

    >>> import pandas as pd
    >>> joined_texts(pd.DataFrame({"response_a": [["hi", "there"]]}), "response_a")
    ['hi\\n\\nthere']
    """
    return [TURN_SEPARATOR.join(turns) for turns in battles[column]]


def last_turns(battles: pd.DataFrame, column: str) -> list[str]:
    """The last turn of ``column`` for each battle (empty string when none)."""
    return [turns[-1] if turns else "" for turns in battles[column]]


def paired_matrix(
    prefix: str,
    a_values: Mapping[str, ArrayLike],
    b_values: Mapping[str, ArrayLike],
    *,
    symmetric: Mapping[str, ArrayLike] | None = None,
    normalised: bool = False,
) -> FeatureMatrix:
    """Side-tagged matrix from per-side feature arrays of the same names.

    For each feature ``x`` it emits ``a_{prefix}x``, ``b_{prefix}x`` and the
    difference ``d_{prefix}x`` (A−B); with ``normalised`` also
    ``d_{prefix}x_norm`` = (a−b)/(a+b), 0 when both are 0 (for counts).
    ``symmetric`` features become ``s_{prefix}x``.

    >>> m = paired_matrix("len_", {"chars": [3]}, {"chars": [1]}, normalised=True)
    >>> m.columns
    ('a_len_chars', 'b_len_chars', 'd_len_chars', 'd_len_chars_norm')
    >>> m.values.tolist()
    [[3.0, 1.0, 2.0, 0.5]]
    """
    if set(a_values) != set(b_values):
        raise ValueError(
            f"paired_matrix needs the same features on both sides; got "
            f"{sorted(a_values)} and {sorted(b_values)}."
        )
    columns: list[str] = []
    arrays: list[np.ndarray] = []
    for name in a_values:
        a = np.asarray(a_values[name], dtype=np.float64)
        b = np.asarray(b_values[name], dtype=np.float64)
        columns += [f"a_{prefix}{name}", f"b_{prefix}{name}", f"d_{prefix}{name}"]
        arrays += [a, b, a - b]
        if normalised:
            total = a + b
            safe = np.where(total == 0, 1.0, total)
            columns.append(f"d_{prefix}{name}_norm")
            arrays.append(np.where(total == 0, 0.0, (a - b) / safe))
    for name, values in (symmetric or {}).items():
        columns.append(f"s_{prefix}{name}")
        arrays.append(np.asarray(values, dtype=np.float64))
    n_rows = len(arrays[0]) if arrays else 0
    values = (
        np.column_stack(arrays).astype(np.float32)
        if arrays
        else np.zeros((n_rows, 0), np.float32)
    )
    return FeatureMatrix(values, tuple(columns))


def side_outputs(
    output: str, names: Sequence[str], side_a: Any, side_b: Any
) -> tuple[list[Any], list[str]]:
    """Value blocks and column names of per-answer vectors, chosen by ``output``.

    ``"sides"`` gives ``side_a`` and ``side_b`` (``a_``/``b_`` + ``names``),
    ``"diff"`` their difference A−B (``d_``), ``"both"`` all three. A sparse
    difference has its explicit zeros removed.

    >>> import numpy as np
    >>> blocks, columns = side_outputs("both", ["x"], np.ones((1, 1)), np.ones((1, 1)))
    >>> columns, blocks[2].tolist()
    (['a_x', 'b_x', 'd_x'], [[0.0]])
    """
    blocks: list[Any] = []
    columns: list[str] = []
    if output in ("sides", "both"):
        blocks += [side_a, side_b]
        columns += [f"a_{n}" for n in names] + [f"b_{n}" for n in names]
    if output in ("diff", "both"):
        diff = side_a - side_b
        if sp.issparse(diff):
            diff.eliminate_zeros()
        blocks.append(diff)
        columns += [f"d_{n}" for n in names]
    return blocks, columns


def symmetric_texts(
    battles: pd.DataFrame, max_chars: int | None
) -> tuple[list[str], list[str], list[str]]:
    """Prompts and each battle's two answers in sorted order (swap-invariant).

    Fields are cut to ``max_chars`` first (:func:`features.battles.truncate_battles`).
    Returns ``(prompts, first, second)`` with ``first[i] <= second[i]``.
    """
    cut = truncate_battles(battles, max_chars)
    pairs = [
        sorted(pair)
        for pair in zip(
            joined_texts(cut, "response_a"),
            joined_texts(cut, "response_b"),
            strict=True,
        )
    ]
    return joined_texts(cut, "prompt"), [p[0] for p in pairs], [p[1] for p in pairs]
