"""Flag features: refusals, empty or identical answers, truncation, language.

Degenerate rows are few but decided in predictable ways: a refusal ("As an
AI language model, I cannot ...") usually loses, an empty answer nearly
always loses, identical answers are mostly ties, an answer cut off
mid-sentence or in another language than the prompt's looks broken. The
block flags each case per response, so the model and its calibration can
learn them instead of hand-written rules.

Refusal phrases live in the package data file ``refusal_phrases.json``
(several languages), loaded on first use and compiled into one trie-shaped
regular expression.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import re
import time
import unicodedata
from collections.abc import Sequence
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.blocks._phrases import compile_phrases
from features.blocks.base import FeatureBlock, FeatureMatrix
from features.blocks.refusal_kinds import refusal_kinds
from features.blocks.similarity import (
    char_ngram_counts,
    jaccard_from_counts,
    normalise_text,
)
from features.text import TURN_SEPARATOR, joined_texts, paired_matrix
from features.validation import Interval, ParameterTable

__all__ = [
    "SCRIPTS",
    "FlagsBlock",
    "count_refusal_phrases",
    "is_truncated",
    "refusal_phrases",
    "script_fractions",
]

logger = logging.getLogger(__name__)

PHRASES_RESOURCE = "refusal_phrases.json"
"""Package data file in ``features.blocks`` holding the refusal phrases."""

SCRIPTS: tuple[str, ...] = ("latin", "cjk", "cyrillic", "arabic", "other")
"""Letter scripts told apart, in column order (CJK includes kana and Hangul)."""

_SCRIPT_OF_NAME = {
    "LATIN": 1,
    "CJK": 2,
    "HIRAGANA": 2,
    "KATAKANA": 2,
    "HANGUL": 2,
    "BOPOMOFO": 2,
    "IDEOGRAPHIC": 2,
    "CYRILLIC": 3,
    "ARABIC": 4,
}
_N_CLASSES = len(SCRIPTS) + 1  # class 0: not a letter
_CHUNK_CODEPOINTS = 1_000_000
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2018\u2019\u201b\u02bc\uff07\u00b4", "'"))
# Answers ending on one of these (or on a letter, digit or mark) stop mid-sentence.
_CONTINUATION = frozenset(",;:-\u2013\u2014/\\(&+=<[{\uff0c\u3001\uff1b\uff1a\uff08")
_FENCE = "```"


def _refusal_normalise(text: str) -> str:
    return " ".join(text.translate(_APOSTROPHES).casefold().split())


@functools.cache
def refusal_phrases() -> dict[str, tuple[str, ...]]:
    """The curated refusal phrases by language code, normalised for matching.

    Read once from the package data file :data:`PHRASES_RESOURCE`; phrases
    are casefolded, with curly apostrophes as ``'`` and single spaces.

    Raises
    ------
    FileNotFoundError
        The data file is not installed next to this module.

    Examples
    --------
    >>> "i'm sorry, but" in refusal_phrases()["en"]
    True
    """
    resource = importlib.resources.files("features.blocks").joinpath(PHRASES_RESOURCE)
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"refusal phrase list {PHRASES_RESOURCE!r} is missing from the "
            "features.blocks package. Reinstall the project (pip install -e .) so "
            "that its package data is included."
        ) from err
    return {
        language: tuple(dict.fromkeys(_refusal_normalise(p) for p in phrases))
        for language, phrases in data["phrases"].items()
    }


@functools.cache
def _refusal_regex() -> re.Pattern[str]:
    return compile_phrases(p for group in refusal_phrases().values() for p in group)


def count_refusal_phrases(
    text: str, *, window: int | None = None, max_chars: int | None = None
) -> tuple[int, int]:
    """Refusal phrases in ``text``: ``(hits in the first window chars, all hits)``.

    Matching is case-insensitive, ignores apostrophe style and whitespace
    runs; see :func:`refusal_phrases`. Positions count in the normalised
    text, which is cut to its first ``max_chars`` characters first.

    >>> count_refusal_phrases("I’m sorry, but I can’t help with that.")
    (2, 2)
    >>> count_refusal_phrases("I can't wait to help!")
    (0, 0)
    """
    if max_chars is not None:
        text = text[:max_chars]
    hits = [m.start() for m in _refusal_regex().finditer(_refusal_normalise(text))]
    if window is None:
        return len(hits), len(hits)
    return sum(start < window for start in hits), len(hits)


def is_truncated(text: str) -> bool:
    """Whether an answer looks cut off: ends mid-sentence or inside a code block.

    Mid-sentence means the last visible character is a letter, digit, mark or
    a continuation sign such as ``,`` ``:`` ``-`` ``(``; terminal punctuation,
    closing quotes or brackets, a closing code fence and emoji are fine. An
    odd number of ````` fences is an unclosed code block. Blank text is not
    truncated. Short answers without a full stop ("Paris") also count, so
    read the flag together with the length features.

    >>> is_truncated("The answer is 4."), is_truncated("The answer is")
    (False, True)
    >>> is_truncated("```python\\nprint(1)\\n```")
    False
    """
    stripped = text.rstrip()
    if not stripped:
        return False
    if stripped.count(_FENCE) % 2:
        return True
    last = stripped[-1]
    return last in _CONTINUATION or unicodedata.category(last)[0] in "LNM"


@functools.cache
def _script_table() -> NDArray[np.int8]:
    table = np.zeros(0x10000, dtype=np.int8)
    for code in range(0x10000):
        char = chr(code)
        if not char.isalpha():
            continue
        words = unicodedata.name(char, "OTHER").split(" ")
        first = words[1] if words[0] in ("FULLWIDTH", "HALFWIDTH") else words[0]
        table[code] = _SCRIPT_OF_NAME.get(first, len(SCRIPTS))
    return table


def _script_counts_chunk(texts: Sequence[str]) -> NDArray[np.int64]:
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    raw = "".join(texts).encode("utf-32-le", "surrogatepass")
    codes = np.frombuffer(raw, dtype=np.uint32)
    classes = np.zeros(codes.size, dtype=np.int64)
    basic = codes < 0x10000
    classes[basic] = _script_table()[codes[basic]]
    classes[(codes >= 0x20000) & (codes < 0x40000)] = 2  # CJK extension planes
    text_of = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    flat = np.bincount(
        text_of * _N_CLASSES + classes, minlength=len(texts) * _N_CLASSES
    )
    return flat.reshape(len(texts), _N_CLASSES)


def script_fractions(texts: Sequence[str]) -> NDArray[np.float64]:
    """Share of each script in :data:`SCRIPTS` among the letters of each text.

    Rows sum to 1, or are all 0 for a text without letters. Digits,
    punctuation, spaces and emoji are not letters.

    >>> script_fractions(["Hi 你好", "123"]).tolist()
    [[0.5, 0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    """
    counts = np.zeros((len(texts), _N_CLASSES), dtype=np.int64)
    start, budget = 0, 0
    for i, text in enumerate(texts):
        if i > start and budget + len(text) > _CHUNK_CODEPOINTS:
            counts[start:i] = _script_counts_chunk(texts[start:i])
            start, budget = i, 0
        budget += len(text)
    if len(texts):
        counts[start:] = _script_counts_chunk(texts[start:])
    letters = counts[:, 1:].sum(axis=1, keepdims=True)
    return np.where(letters > 0, counts[:, 1:] / np.maximum(letters, 1), 0.0)


def _script_shift(
    answer: NDArray[np.float64], prompt: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Dominant-script mismatch (0/1) and total-variation distance to the prompt."""
    both = (answer.sum(axis=1) > 0) & (prompt.sum(axis=1) > 0)
    mismatch = both & (answer.argmax(axis=1) != prompt.argmax(axis=1))
    distance = np.where(both, 0.5 * np.abs(answer - prompt).sum(axis=1), 0.0)
    return mismatch.astype(np.float64), distance


def _side_flags(
    turns_column: pd.Series, prompt_scripts: NDArray[np.float64], block: FlagsBlock
) -> dict[str, NDArray[np.float64]]:
    n = len(turns_column)
    names = (
        "refusal",
        "refusal_count",
        "empty",
        "whitespace_only",
        "any_empty_turn",
        "truncated",
        "unclosed_code",
    )
    if block.refusal_kinds:
        names += ("refusal_ethics", "refusal_capability", "hard_refusal")
    out = {name: np.zeros(n) for name in names}
    ends: list[str] = []
    for i, turns in enumerate(turns_column):
        text = TURN_SEPARATOR.join(turns)
        blank = not text.strip()
        last = turns[-1] if turns else ""
        in_window, total = count_refusal_phrases(
            last, window=block.refusal_window, max_chars=block.max_chars
        )
        out["refusal"][i] = in_window > 0
        if block.refusal_kinds:
            kinds = refusal_kinds(
                last,
                declined=in_window > 0,
                window=block.refusal_window,
                max_chars=block.max_chars,
                hard_words=block.hard_refusal_words,
            )
            out["refusal_ethics"][i] = kinds.ethics
            out["refusal_capability"][i] = kinds.capability
            out["hard_refusal"][i] = kinds.hard
        out["refusal_count"][i] = total
        out["empty"][i] = not any(turns)
        out["whitespace_only"][i] = blank and any(turns)
        out["any_empty_turn"][i] = not turns or any(not t.strip() for t in turns)
        out["truncated"][i] = is_truncated(text)
        out["unclosed_code"][i] = text.count(_FENCE) % 2
        ends.append(text[-block.max_chars :])
    scripts = script_fractions(ends)
    for j, script in enumerate(SCRIPTS):
        out[f"script_{script}"] = scripts[:, j]
    out["script_mismatch"], out["script_shift"] = _script_shift(scripts, prompt_scripts)
    return out


class FlagsBlock(FeatureBlock):
    """Per-response flags: refusal, empty, truncated, script; pairwise identity.

    Stateless. Per response (``a_``/``b_``, with A−B as ``d_``):

    - ``flag_refusal``: a refusal phrase (see :func:`refusal_phrases`)
      starts within the first ``refusal_window`` characters of the last
      turn; ``flag_refusal_count``: refusal phrases in the whole last turn;
    - ``flag_empty``: every turn is ``""`` (null answers);
      ``flag_whitespace_only``: no visible text but some whitespace;
      ``flag_any_empty_turn``: some turn has no visible text;
    - ``flag_truncated``: ends mid-sentence or in an unclosed code block
      (:func:`is_truncated`); ``flag_unclosed_code``: odd number of fences;
    - ``flag_script_<s>`` for ``s`` in :data:`SCRIPTS`: share of letters;
      ``flag_script_mismatch``: the dominant script differs from the
      prompt's (answering in another language than asked);
      ``flag_script_shift``: total-variation distance of the two script
      mixes, in [0, 1].

    - ``flag_refusal_ethics``, ``flag_refusal_capability``,
      ``flag_hard_refusal`` with ``refusal_kinds`` (see the parameter).

    Symmetric (``s_``): ``flag_identical`` (joined texts equal),
    ``flag_near_identical`` (equal up to case and whitespace, or char
    3-gram Jaccard >= ``near_identical_threshold``), ``flag_both_refuse`` /
    ``flag_any_refuse``, ``flag_both_blank`` / ``flag_any_blank`` (blank =
    empty or whitespace-only), ``flag_both_truncated`` /
    ``flag_any_truncated``, ``flag_both_script_mismatch`` /
    ``flag_any_script_mismatch`` and the prompt's script shares
    ``flag_prompt_script_<s>``.

    Parameters
    ----------
    refusal_window : int, default=300
        Characters at the start of the last turn where a refusal phrase sets
        ``flag_refusal``, >= 1. Refusals open the answer; later apologies
        ("sorry for the confusion") are mostly not refusals.
    max_chars : int, default=3000
        Bound on the text scanned per response, >= 1: the first
        ``max_chars`` of the last turn for refusal counts, the last
        ``max_chars`` of the joined answer (and prompt) for scripts and the
        near-identity Jaccard.
    near_identical_threshold : float, default=0.9
        Char 3-gram Jaccard from which two answers are near-identical, in
        (0, 1].
    refusal_kinds : bool, default=False
        Also emit the refusal kinds of
        :func:`features.blocks.refusal_kinds.refusal_kinds`:
        ``flag_refusal_ethics`` (an ethics/safety refusal),
        ``flag_refusal_capability`` (a capability disclaimer: browsing,
        real-time data, knowledge cutoff, images) and ``flag_hard_refusal``
        (an answer that only refuses), per side with ``d_`` differences and
        ``s_flag_both_<kind>`` / ``s_flag_any_<kind>``. Arena voters punish
        ethics refusals far more than capability disclaimers, but on the
        Kaggle rows the columns did not lower the log loss (docs/habits.md),
        so they are opt-in.
    hard_refusal_words : int, default=50
        Most words of the last turn for ``flag_hard_refusal``, >= 0.

    Attributes
    ----------
    is_fitted_ : bool
        Set by ``fit``; the block also transforms without it.

    Examples
    --------
    >>> import pandas as pd
    >>> battles = pd.DataFrame({"prompt": [["Write a poem"]],
    ...     "response_a": [["I'm sorry, but I can't help with that."]],
    ...     "response_b": [["Roses are red."]]})
    >>> m = FlagsBlock().transform(battles)
    >>> row = dict(zip(m.columns, m.values[0].tolist()))
    >>> row["a_flag_refusal"], row["b_flag_refusal"], row["d_flag_refusal"]
    (1.0, 0.0, 1.0)
    """

    name: ClassVar[str] = "flags"
    version: ClassVar[int] = 2
    stateful: ClassVar[bool] = False

    _allowed_values: ClassVar[ParameterTable] = {
        "refusal_window": [Interval(Integral, 1, None)],
        "max_chars": [Interval(Integral, 1, None)],
        "near_identical_threshold": [Interval(Real, 0, 1, closed="right")],
        "refusal_kinds": [bool],
        "hard_refusal_words": [Interval(Integral, 0, None)],
    }

    def __init__(
        self,
        *,
        refusal_window: int = 300,
        max_chars: int = 3000,
        near_identical_threshold: float = 0.9,
        refusal_kinds: bool = False,
        hard_refusal_words: int = 50,
    ) -> None:
        self.refusal_window = refusal_window
        self.max_chars = max_chars
        self.near_identical_threshold = near_identical_threshold
        self.refusal_kinds = refusal_kinds
        self.hard_refusal_words = hard_refusal_words

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Flag features of each battle (float32, finite).

        Raises
        ------
        InvalidParameterError
            A param outside its allowed values.
        ValueError
            A text column is missing.
        FileNotFoundError
            The refusal phrase data file is not installed.
        """
        self._validate(battles)
        start = time.perf_counter()
        prompt_ends = [
            text[-self.max_chars :] for text in joined_texts(battles, "prompt")
        ]
        prompt_scripts = script_fractions(prompt_ends)
        a = _side_flags(battles["response_a"], prompt_scripts, self)
        b = _side_flags(battles["response_b"], prompt_scripts, self)

        symmetric: dict[str, NDArray[np.float64]] = {}
        symmetric["identical"], symmetric["near_identical"] = self._identity(battles)
        blank_a = np.maximum(a["empty"], a["whitespace_only"])
        blank_b = np.maximum(b["empty"], b["whitespace_only"])
        pairs = {
            "refuse": (a["refusal"], b["refusal"]),
            "blank": (blank_a, blank_b),
            "truncated": (a["truncated"], b["truncated"]),
            "script_mismatch": (a["script_mismatch"], b["script_mismatch"]),
        }
        if self.refusal_kinds:
            for name in ("refusal_ethics", "refusal_capability", "hard_refusal"):
                pairs[name] = (a[name], b[name])
        for name, (flag_a, flag_b) in pairs.items():
            symmetric[f"both_{name}"] = np.minimum(flag_a, flag_b)
            symmetric[f"any_{name}"] = np.maximum(flag_a, flag_b)
        for j, script in enumerate(SCRIPTS):
            symmetric[f"prompt_script_{script}"] = prompt_scripts[:, j]

        matrix = paired_matrix("flag_", a, b, symmetric=symmetric)
        logger.debug(
            "flags: %d battles, %d columns, %.2f s",
            len(battles),
            len(matrix.columns),
            time.perf_counter() - start,
        )
        return matrix

    def _identity(
        self, battles: pd.DataFrame
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        texts_a = joined_texts(battles, "response_a")
        texts_b = joined_texts(battles, "response_b")
        identical = np.array(
            [x == y for x, y in zip(texts_a, texts_b, strict=True)], dtype=np.float64
        )
        norm_a = [normalise_text(t[-self.max_chars :]) for t in texts_a]
        norm_b = [normalise_text(t[-self.max_chars :]) for t in texts_b]
        same = np.array(
            [x == y for x, y in zip(norm_a, norm_b, strict=True)], dtype=bool
        )
        jaccard = jaccard_from_counts(char_ngram_counts([norm_a, norm_b], 3), 0, 1)
        near = (identical > 0) | same | (jaccard >= self.near_identical_threshold)
        return identical, near.astype(np.float64)
