"""Length features: how long each response is, and how much longer than the other.

Length is the strongest classical signal (the longer answer wins ~61% of
decisive battles), so the block gives each count in several forms that trees
and linear models both use well: the raw per-side values, the difference
A−B, the normalised difference (a−b)/(a+b) (Chatbot Arena style control),
the log ratio log1p(a)−log1p(b), the squashed tanh((a−b)/σ) (AlpacaEval length
control) and the symmetric min/max of the two sides.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from features.blocks.base import FeatureBlock, FeatureMatrix
from features.text import (
    WORD_PATTERN,
    ascii_class,
    ascii_words,
    count_ascii,
    find_words,
    joined_texts,
    paired_matrix,
)
from features.validation import Interval, ParameterTable, Predicate

__all__ = [
    "DEFAULT_TANH_SCALES",
    "FEATURES",
    "LengthsBlock",
    "count_tokens",
    "count_words",
]

logger = logging.getLogger(__name__)

# Words (each CJK character one word, see features.text) or punctuation marks.
_PUNCT_MARK = r"[^\w\s]"
_TOKEN = re.compile(f"{WORD_PATTERN}|{_PUNCT_MARK}")
_ASCII_PUNCT_MARKS = ascii_class(_PUNCT_MARK)
_NONBLANK_LINE = re.compile(r"^[ \t\r\f\v]*\S", re.MULTILINE)
# A sentence break is a run of: terminators followed by whitespace or the end,
# CJK terminators, newlines. Written to open with one character class, which
# lets ``re`` skip to candidate characters (8x faster than a look-behind
# first); the look-behind after the first mark starts a terminator run only at
# its first mark, so a long "!!!!" run not followed by a space is tried once.
_SENTENCE_BREAK = re.compile(
    r"[.!?…。！？\n]"
    r"(?:(?<=[.!?…])(?<![.!?…][.!?…])[.!?…]*(?=\s|$)|(?<=[。！？])[。！？]*|(?<=\n))"
    r"(?:[.!?…]+(?=\s|$)|[。！？]+|\n)*"
)
_HAS_WORD = re.compile(r"\w")

FEATURES: tuple[str, ...] = (
    "chars",
    "words",
    "tokens",
    "lines",
    "sentences",
    "turns",
    "last_chars",
    "last_words",
)
"""Per-side counts, in column order."""

DEFAULT_TANH_SCALES: dict[str, float] = {
    "chars": 1000.0,
    "words": 200.0,
    "tokens": 250.0,
    "lines": 20.0,
    "sentences": 15.0,
    "turns": 1.0,
    "last_chars": 1000.0,
    "last_words": 200.0,
}
"""σ of ``d_len_<x>_tanh = tanh((a−b)/σ)``, about one typical A−B gap per count."""

_PROMPT_FEATURES = ("chars", "words", "turns")
_TANH_SCALE = Interval(Real, 0, None, closed="neither")


def _is_scale_table(value: Any) -> bool:
    """A dict from names in :data:`FEATURES` to finite numbers > 0."""
    return isinstance(value, Mapping) and all(
        key in FEATURES and _TANH_SCALE.is_satisfied_by(scale)
        for key, scale in value.items()
    )


def count_words(text: str) -> int:
    """Number of words: runs of word characters, each CJK character counting as one.

    Chinese and Japanese are written without spaces, so a run of ideographs
    would otherwise count as one word however long it is.

    >>> count_words("Hello, world! 你好世界")
    6
    """
    return len(find_words(text))


def count_tokens(text: str) -> int:
    """Tokenizer-free token count: words (CJK per character) plus punctuation marks.

    It runs at regex speed and tracks subword tokenizer counts closely enough
    for a length feature (a BPE tokenizer gives ~1.3 tokens per English word).

    >>> count_tokens("Hello, world! 你好")
    6
    """
    if text.isascii():
        marks = count_ascii(text.encode("ascii"), _ASCII_PUNCT_MARKS)
        return len(ascii_words(text)) + marks
    return len(_TOKEN.findall(text))


def _count_sentences(text: str) -> int:
    # A sentence is a stretch between terminators or newlines holding a word
    # character, so bullet lines without full stops count too.
    return sum(1 for piece in _SENTENCE_BREAK.split(text) if _HAS_WORD.search(piece))


def _visible_turns(turns: list[str]) -> int:
    return sum(1 for turn in turns if turn.strip())


def _side_counts(turns_column: pd.Series, texts: list[str]) -> dict[str, np.ndarray]:
    n = len(texts)
    out = {name: np.zeros(n, dtype=np.float64) for name in FEATURES}
    for i, (turns, text) in enumerate(zip(turns_column, texts, strict=True)):
        words = count_words(text)
        out["chars"][i] = len(text)
        out["words"][i] = words
        out["tokens"][i] = count_tokens(text)
        out["lines"][i] = len(_NONBLANK_LINE.findall(text))
        out["sentences"][i] = _count_sentences(text)
        out["turns"][i] = _visible_turns(turns)
        last = turns[-1] if turns else ""
        out["last_chars"][i] = len(last)
        out["last_words"][i] = words if len(turns) == 1 else count_words(last)
    return out


class LengthsBlock(FeatureBlock):
    """Length counts of both responses and of the prompt, with their differences.

    Counts per response (all turns joined by a blank line): ``chars``;
    ``words`` (``\\w+`` runs, each CJK character one word); ``tokens`` (words
    plus punctuation marks, a tokenizer-free stand-in for subword tokens);
    ``lines`` (non-blank lines); ``sentences`` (stretches with a word
    character between ``.!?。！？`` or newlines); ``turns`` (turns with visible
    text); and ``last_chars`` / ``last_words`` of the last turn, which weighs
    most in the vote. Stateless: ``fit`` only validates the params.

    Parameters
    ----------
    tanh_scales : dict of str to float or None, default=None
        σ per count for ``d_len_<x>_tanh = tanh((a−b)/σ)``; keys among
        :data:`FEATURES`, values > 0. Missing keys keep
        :data:`DEFAULT_TANH_SCALES`. Fixed rather than fitted so the block
        stays stateless.

    Attributes
    ----------
    is_fitted_ : bool
        Set by ``fit``; the block also transforms without it.

    Notes
    -----
    Columns, for each count ``x``: ``a_len_x``, ``b_len_x``, ``d_len_x``
    (A−B), ``d_len_x_norm`` ((a−b)/(a+b), 0 when both are 0),
    ``d_len_x_logratio`` (log1p(a)−log1p(b)), ``d_len_x_tanh``,
    ``s_len_x_min`` and ``s_len_x_max``; then ``s_len_prompt_chars``,
    ``s_len_prompt_words`` and ``s_len_prompt_turns``. Every pass is a single
    compiled regex, linear in the text length.

    Examples
    --------
    >>> import pandas as pd
    >>> battles = pd.DataFrame({"prompt": [["hi"]], "response_a": [["Hello there."]],
    ...                         "response_b": [["Hi."]]})
    >>> m = LengthsBlock().transform(battles)
    >>> float(m.values[0, m.columns.index("d_len_words")])
    1.0
    """

    name: ClassVar[str] = "lengths"
    version: ClassVar[int] = 1
    stateful: ClassVar[bool] = False

    _allowed_values: ClassVar[ParameterTable] = {
        "tanh_scales": [
            None,
            Predicate(
                _is_scale_table,
                f"a dict from count names in {list(FEATURES)} to floats in (0, inf)",
            ),
        ],
    }

    def __init__(self, *, tanh_scales: Mapping[str, float] | None = None) -> None:
        self.tanh_scales = tanh_scales

    def _scales(self) -> dict[str, float]:
        """The σ of every count: the defaults updated by ``tanh_scales``."""
        scales = dict(DEFAULT_TANH_SCALES)
        scales.update({key: float(v) for key, v in (self.tanh_scales or {}).items()})
        return scales

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Length features of each battle (float32, finite).

        Raises
        ------
        InvalidParameterError
            ``tanh_scales`` is not None or a dict of known counts to numbers > 0.
        ValueError
            A text column is missing.
        """
        self._validate(battles)
        scales = self._scales()
        start = time.perf_counter()
        texts_a = joined_texts(battles, "response_a")
        texts_b = joined_texts(battles, "response_b")
        a = _side_counts(battles["response_a"], texts_a)
        b = _side_counts(battles["response_b"], texts_b)
        paired = paired_matrix("len_", a, b, normalised=True)

        columns: list[str] = []
        arrays: list[np.ndarray] = []
        for name in FEATURES:
            pos = paired.columns.index(f"a_len_{name}")
            columns += list(paired.columns[pos : pos + 4])
            arrays += [paired.values[:, j] for j in range(pos, pos + 4)]
            columns += [
                f"d_len_{name}_logratio",
                f"d_len_{name}_tanh",
                f"s_len_{name}_min",
                f"s_len_{name}_max",
            ]
            arrays += [
                np.log1p(a[name]) - np.log1p(b[name]),
                np.tanh((a[name] - b[name]) / scales[name]),
                np.minimum(a[name], b[name]),
                np.maximum(a[name], b[name]),
            ]
        prompts = joined_texts(battles, "prompt")
        prompt_values = {
            "chars": [len(text) for text in prompts],
            "words": [count_words(text) for text in prompts],
            "turns": [_visible_turns(turns) for turns in battles["prompt"]],
        }
        for name in _PROMPT_FEATURES:
            columns.append(f"s_len_prompt_{name}")
            arrays.append(np.asarray(prompt_values[name], dtype=np.float64))

        values = np.column_stack(arrays).astype(np.float32)
        logger.debug(
            "lengths: %d battles, %d columns, %.2f s",
            len(battles),
            len(columns),
            time.perf_counter() - start,
        )
        return FeatureMatrix(values, tuple(columns))
