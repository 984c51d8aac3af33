"""Style features: markdown structure, readability, lexical diversity, openers.

Style is the second-order signal after length (Chatbot Arena style control:
headers, lists and bold carry weight), and some phrasings ("Certainly!")
partly reveal which model wrote an answer. Markdown is counted on the text
with fenced code blocks and inline code removed first, so a ``# comment``
inside code is not a header.
"""

from __future__ import annotations

import logging
import math
import re
import time
from functools import lru_cache
from numbers import Integral
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from features.blocks.base import FeatureBlock, FeatureMatrix
from features.text import (
    ascii_class,
    ascii_words,
    count_ascii,
    joined_texts,
    last_turns,
    paired_matrix,
)
from features.validation import Interval, Options, ParameterTable

__all__ = [
    "COUNT_FEATURES",
    "OPENERS",
    "READABILITY_SCORES",
    "StyleBlock",
    "fast_syllables",
    "markdown_counts",
]

logger = logging.getLogger(__name__)

_FENCE = re.compile(
    r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n?(.*?)(?:^[ \t]{0,3}\1[`~]*[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
# One pass over line starts; each alternative holds one named group, so
# ``match.lastgroup`` names the kind of line. A rule "- - -" is a rule, not an item.
_LINE = re.compile(
    r"^(?:[ \t]{0,3}(?P<hrules>[-*_])(?:[ \t]*(?P=hrules)){2,}[ \t]*$"
    r"|[ \t]{0,3}(?P<headers>#{1,6})[ \t]+\S"
    r"|[ \t]*(?P<ordered_items>\d{1,3}[.)])[ \t]+\S"
    r"|[ \t]*(?P<unordered_items>[-*+•])[ \t]+\S"
    r"|[ \t]{0,3}(?P<blockquotes>>)"
    r"|[ \t]*(?P<table_rows>\|)[^\n]*\|[ \t]*$)",
    re.MULTILINE,
)
_BOLD = re.compile(
    r"\*\*(?![\s*])[^*\n]+?(?<!\s)\*\*|(?<!\w)__(?![\s_])[^_\n]+?(?<!\s)__(?!\w)"
)
# A backslash escapes a marker ("\_\_\_" is a fill-in blank, not emphasis).
_ITALIC_STAR = re.compile(r"(?<![*\w\\])\*(?![\s*])[^*\n]+?(?<![\s*\\])\*(?![*\w])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![_\w\\])_(?![\s_])[^_\n]+?(?<![\s_\\])_(?![_\w])")
# Bounded repeats keep failed matches cheap on long lines without a ")".
_LINK = re.compile(r"\[[^\]\n]{1,300}\]\([^)\s\[\]]{1,500}(?:[ \t][^)\n]{0,200})?\)")
_URL = re.compile(r"https?://[^\s)>\]]+")
_DOLLAR_MATH = re.compile(
    r"\$\$[^$]{1,5000}\$\$|(?<![\\$\w])\$(?![\s$])[^$\n]+?(?<![\s\\])\$(?![\w$])"
    r"|\\begin\{"
)
_MATH_DELIMITER = re.compile(r"\\[\[\]()]")
_MATH_CLOSER = {"\\[": "\\]", "\\(": "\\)"}
_MAX_MATH_CHARS = 5000
# "\[Your Name\]" is an escaped bracket, not display math: \( \) and \[ \]
# count only around something that looks like maths.
_MATH_HINT = re.compile(r"[\\^_{}=]")
_EMOJI = re.compile(
    "[\U0001f1e6-\U0001f1ff\U0001f300-\U0001faff\u2600-\u27bf"
    "\u2b50\u2b55\u231a\u231b\u23e9-\u23fa]"
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_HAS_VISIBLE = re.compile(r"\S")
_WORD = re.compile(r"\w+")
# Runs rather than single characters: findall then builds a short list.
_PUNCT_RUN = re.compile(r"[^\w\s]+")
_DIGIT_RUN = re.compile(r"\d+")
_UPPER_RUN = re.compile(r"[A-Z\u00c0-\u00d6\u00d8-\u00de\u0391-\u03a9\u0400-\u042f]+")
_LETTER_RUN = re.compile(r"[^\W\d_]+")
# The same counts on pure-ASCII texts, by bytes.translate (see features.text).
_ASCII_DIGITS = ascii_class(_DIGIT_RUN.pattern.removesuffix("+"))
_ASCII_PUNCT = ascii_class(_PUNCT_RUN.pattern.removesuffix("+"))
_ASCII_UPPER = ascii_class(_UPPER_RUN.pattern.removesuffix("+"))
_EN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"(?:[.!?]+(?=\s|$)|\n)\s*")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
_OPENER_PREFIX = re.compile(r"^[\s#>*_\-\"'`]*")
_CLOSER_TAIL = 300

COUNT_FEATURES: tuple[str, ...] = (
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "headers",
    "ordered_items",
    "unordered_items",
    "list_items",
    "bold",
    "italics",
    "code_blocks",
    "code_lines",
    "inline_code",
    "table_rows",
    "links",
    "urls",
    "latex",
    "emoji",
    "blockquotes",
    "hrules",
    "paragraphs",
    "exclamations",
    "questions",
)
"""Markdown and punctuation counts per response, in column order."""

_RATE_OF: tuple[str, ...] = tuple(
    name for name in COUNT_FEATURES if name not in {"h1", "h2", "h3", "h4", "h5", "h6"}
)

OPENERS: dict[str, re.Pattern[str]] = {
    "certainly": re.compile(r"certainly\b", re.IGNORECASE),
    "sure": re.compile(r"sure\b", re.IGNORECASE),
    "of_course": re.compile(r"of course\b", re.IGNORECASE),
    "absolutely": re.compile(r"absolutely\b", re.IGNORECASE),
    "great_question": re.compile(
        r"(?:what a |that's a |a )?great question", re.IGNORECASE
    ),
    "greeting": re.compile(r"(?:hello|hi|hey)\b", re.IGNORECASE),
    "as_an_ai": re.compile(r"as an ai\b", re.IGNORECASE),
}
"""Opening phrases of the last turn, flagged per response (model-identity cues)."""

_CLOSERS: dict[str, re.Pattern[str]] = {
    "let_me_know": re.compile(
        r"let me know|feel free to (?:ask|reach)|any (?:other|more|further) questions",
        re.IGNORECASE,
    ),
    "hope_helps": re.compile(r"hope (?:this|that|it) helps", re.IGNORECASE),
}

READABILITY_SCORES: tuple[str, ...] = ("flesch", "fog", "smog", "ari")
"""Flesch reading ease, Gunning Fog, SMOG and ARI, in column order."""

_SCORE_RANGE = {
    "flesch": (-200.0, 121.22),
    "fog": (0.0, 100.0),
    "smog": (0.0, 100.0),
    "ari": (-20.0, 100.0),
}
_MIN_READABILITY_WORDS = 3
_MIN_LATIN_SHARE = 0.5


def markdown_counts(text: str) -> dict[str, int]:
    """Markdown structure counts of one response, code removed first.

    Fenced code blocks (```` ``` ```` or ``~~~``, an unclosed one runs to the
    end) and inline code spans are counted and then removed, so their
    contents are not read as headers, lists or emphasis.

    >>> counts = markdown_counts("# Title\\n\\n```py\\n# not a header\\n```\\n- **a**")
    >>> counts["h1"], counts["code_blocks"], counts["unordered_items"], counts["bold"]
    (1, 1, 1, 1)
    """
    return _markdown(text)[0]


def _markdown(text: str) -> tuple[dict[str, int], str]:
    """Counts and the prose left once code is removed."""
    counts = dict.fromkeys(COUNT_FEATURES, 0)
    code_lines = 0

    def _drop_code(match: re.Match[str]) -> str:
        nonlocal code_lines
        body = match.group(2)
        code_lines += body.count("\n") + (1 if body and not body.endswith("\n") else 0)
        return "\n"

    prose = text
    if "```" in text or "~~~" in text:
        prose, counts["code_blocks"] = _FENCE.subn(_drop_code, text)
        counts["code_lines"] = code_lines
    if "`" in prose:
        prose, counts["inline_code"] = _INLINE_CODE.subn(" ", prose)
    for match in _LINE.finditer(prose):
        kind = match.lastgroup
        counts[kind] += 1
        if kind == "headers":
            counts[f"h{len(match.group(kind))}"] += 1
    counts["list_items"] = counts["ordered_items"] + counts["unordered_items"]
    if "**" in prose or "__" in prose:
        counts["bold"] = len(_BOLD.findall(prose))
    if "*" in prose:
        counts["italics"] = len(_ITALIC_STAR.findall(prose))
    if "_" in prose:
        counts["italics"] += len(_ITALIC_UNDERSCORE.findall(prose))
    if "](" in prose:
        counts["links"] = len(_LINK.findall(prose))
    if "://" in prose:
        counts["urls"] = len(_URL.findall(prose))
    if "$" in prose or "\\" in prose:
        counts["latex"] = len(_DOLLAR_MATH.findall(prose))
    if "\\" in prose:
        counts["latex"] += _count_delimited_math(prose)
    if not prose.isascii():
        counts["emoji"] = len(_EMOJI.findall(prose))
    counts["paragraphs"] = sum(
        1 for part in _PARAGRAPH_BREAK.split(prose) if _HAS_VISIBLE.search(part)
    )
    counts["exclamations"] = prose.count("!") + prose.count("！")
    counts["questions"] = prose.count("?") + prose.count("？")
    return counts, prose


def _count_delimited_math(prose: str) -> int:
    # Pairing delimiter tokens in one pass stays linear on texts full of
    # unclosed "\[", where a regex would rescan the rest from every opener.
    count = 0
    opener: str | None = None
    start = 0
    for match in _MATH_DELIMITER.finditer(prose):
        token = match.group()
        if token in _MATH_CLOSER:
            opener, start = token, match.end()
        elif opener is not None and token == _MATH_CLOSER[opener]:
            body = prose[start : match.start()]
            if (
                len(body) <= _MAX_MATH_CHARS
                and not (opener == "\\(" and "\n" in body)
                and "://" not in body
                and _MATH_HINT.search(body) is not None
            ):
                count += 1
            opener = None
    return count


@lru_cache(maxsize=65_536)
def fast_syllables(word: str) -> int:
    """Syllables of an English word by vowel groups, at least 1.

    A silent final ``e`` (but not ``-le``, ``-ee``, ``-ye``) is dropped. It
    agrees with a dictionary count for most common words, needs no data
    files, and is cached per word; it only feeds readability scores.

    >>> fast_syllables("readability"), fast_syllables("make"), fast_syllables("table")
    (5, 1, 2)
    """
    word = word.lower()
    count = len(_VOWEL_GROUPS.findall(word))
    if count > 1 and word.endswith("e") and not word.endswith(("le", "ee", "ye")):
        count -= 1
    return max(count, 1)


def _fast_readability(text: str, words: list[str]) -> dict[str, float]:
    n_words = max(len(words), 1)
    stripped = text.strip()
    n_ends = len(_SENTENCE_END.findall(stripped))
    unended = 0 if stripped.endswith((".", "!", "?")) else 1
    n_sentences = max(n_ends + unended, 1)
    syllables = list(map(fast_syllables, words))
    n_syllables = sum(syllables)
    n_poly = len(syllables) - syllables.count(1) - syllables.count(2)
    n_letters = sum(map(len, words))
    words_per_sentence = n_words / n_sentences
    return {
        "flesch": 206.835 - 1.015 * words_per_sentence - 84.6 * n_syllables / n_words,
        "fog": 0.4 * (words_per_sentence + 100.0 * n_poly / n_words),
        "smog": 1.043 * math.sqrt(n_poly * 30.0 / n_sentences) + 3.1291,
        "ari": 4.71 * n_letters / n_words + 0.5 * words_per_sentence - 21.43,
    }


def _textstat_readability(text: str, words: list[str]) -> dict[str, float]:
    import textstat

    return {
        "flesch": textstat.flesch_reading_ease(text),
        "fog": textstat.gunning_fog(text),
        "smog": textstat.smog_index(text),
        "ari": textstat.automated_readability_index(text),
    }


def _require_textstat() -> None:
    try:
        import nltk
        import textstat  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "StyleBlock(readability='textstat') needs the 'textstat' package; "
            "install it (pip install textstat) or use readability='fast'."
        ) from err
    try:
        nltk.data.find("corpora/cmudict")
    except LookupError as err:
        # textstat would try to download it on first use, which fails offline.
        raise LookupError(
            "StyleBlock(readability='textstat') needs the NLTK 'cmudict' corpus "
            "for English syllables and it is not installed; run "
            "python -m nltk.downloader cmudict, or use readability='fast'."
        ) from err


_READABILITY_BACKENDS = {"fast": _fast_readability, "textstat": _textstat_readability}
_READABILITY_CHOICES = (*_READABILITY_BACKENDS, "none")


class StyleBlock(FeatureBlock):
    """Markdown, readability, lexical and opener features of both responses.

    Per response (all turns joined by a blank line):

    - markdown counts (:data:`COUNT_FEATURES`: headers h1–h6 and in total,
      ordered/unordered list items, ``**``/``__`` bold, italics, fenced code
      blocks and their lines, inline code, table rows, markdown links, bare
      URLs, LaTeX spans, emoji, blockquotes, horizontal rules, paragraphs,
      ``!`` and ``?``), counted with fenced and inline code removed; the same
      counts per 1,000 characters (``<x>_per1k``, h1–h6 left out);
    - readability (:data:`READABILITY_SCORES`) on the last
      ``readability_max_chars`` of the prose, 0 with ``readability_na`` = 1
      when the text has fewer than 3 words or under 50% Latin letters;
    - lexical diversity: type-token ratio over all words (``ttr``) and over
      the last ``ttr_window`` words (``ttr_window``), mean word length;
    - character ratios: punctuation and digits over visible characters,
      upper case over letters;
    - flags for the last turn's opener (:data:`OPENERS`) and closer
      ("let me know…", "hope this helps").

    Stateless: ``fit`` only validates the params.

    Parameters
    ----------
    readability : {"fast", "textstat", "none"}, default="fast"
        How readability is computed:

        - ``"fast"``: the same four formulas as textstat with a vowel-group
          syllable count (:func:`fast_syllables`); no data files, fast;
        - ``"textstat"``: the textstat package itself (dictionary syllables;
          needs the NLTK ``cmudict`` corpus installed, which textstat would
          otherwise try to download; much slower);
        - ``"none"``: no readability columns.
    readability_max_chars : int, default=2000
        Readability is computed on the last this-many characters of the
        prose (the end of an answer matters most and long texts stay cheap).
        Must be >= 100.
    ttr_window : int, default=100
        Number of final words for the windowed type-token ratio, which is
        less length-dependent than the full one. Must be >= 10.

    Attributes
    ----------
    is_fitted_ : bool
        Set by ``fit``; the block also transforms without it.

    Notes
    -----
    Counts come out as ``a_style_x``, ``b_style_x``, ``d_style_x`` (A−B) and
    ``d_style_x_norm`` ((a−b)/(a+b)); rates, scores and flags as ``a_``,
    ``b_`` and ``d_`` columns. Every regex is precompiled, bounded or linear
    in the text length, so 100k-character answers stay fast.

    Examples
    --------
    >>> import pandas as pd
    >>> battles = pd.DataFrame({"prompt": [["q"]], "response_a": [["# Hi\\n- x"]],
    ...                         "response_b": [["Sure! Hi."]]})
    >>> m = StyleBlock().transform(battles)
    >>> row = dict(zip(m.columns, m.values[0].tolist()))
    >>> row["a_style_h1"], row["b_style_opener_sure"]
    (1.0, 1.0)
    """

    name: ClassVar[str] = "style"
    version: ClassVar[int] = 1
    stateful: ClassVar[bool] = False

    _battle_columns = ("response_a", "response_b")
    _allowed_values: ClassVar[ParameterTable] = {
        "readability": [Options(_READABILITY_CHOICES)],
        "readability_max_chars": [Interval(Integral, 100, None)],
        "ttr_window": [Interval(Integral, 10, None)],
    }

    def __init__(
        self,
        *,
        readability: Literal["fast", "textstat", "none"] = "fast",
        readability_max_chars: int = 2000,
        ttr_window: int = 100,
    ) -> None:
        self.readability = readability
        self.readability_max_chars = readability_max_chars
        self.ttr_window = ttr_window

    def _validate(self, battles: pd.DataFrame) -> None:
        """Check the params and battles, then that textstat is there if chosen."""
        super()._validate(battles)
        if self.readability == "textstat":
            _require_textstat()

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Style features of each battle (float32, finite).

        Raises
        ------
        InvalidParameterError
            A param outside its allowed values.
        ValueError
            A text column is missing.
        ImportError, LookupError
            ``readability="textstat"`` without textstat or its NLTK data.
        """
        self._validate(battles)
        start = time.perf_counter()
        sides = [
            self._side_features(
                joined_texts(battles, column), last_turns(battles, column)
            )
            for column in ("response_a", "response_b")
        ]
        (a_counts, a_other), (b_counts, b_other) = sides
        counts = paired_matrix("style_", a_counts, b_counts, normalised=True)
        other = paired_matrix("style_", a_other, b_other)
        matrix = FeatureMatrix.concat([counts, other])
        logger.debug(
            "style: %d battles, %d columns, %.2f s",
            len(battles),
            len(matrix.columns),
            time.perf_counter() - start,
        )
        return matrix

    def _side_features(
        self, texts: list[str], lasts: list[str]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        n = len(texts)
        counts = {name: np.zeros(n) for name in COUNT_FEATURES}
        other_names = [f"{name}_per1k" for name in _RATE_OF]
        if self.readability != "none":
            other_names += [*READABILITY_SCORES, "readability_na"]
        other_names += [
            "ttr",
            "ttr_window",
            "mean_word_len",
            "punct_ratio",
            "digit_ratio",
            "upper_ratio",
            *(f"opener_{name}" for name in OPENERS),
            *(f"closer_{name}" for name in _CLOSERS),
        ]
        other = {name: np.zeros(n) for name in other_names}
        for i, (text, last) in enumerate(zip(texts, lasts, strict=True)):
            row, prose = _markdown(text)
            for name, value in row.items():
                counts[name][i] = value
            per_1k = 1000.0 / len(text) if text else 0.0
            for name in _RATE_OF:
                other[f"{name}_per1k"][i] = row[name] * per_1k
            if self.readability != "none":
                for name, value in self._readability(prose).items():
                    other[name][i] = value
            for name, value in _lexical(text, self.ttr_window).items():
                other[name][i] = value
            opening = _OPENER_PREFIX.sub("", last[:200], count=1)
            for name, pattern in OPENERS.items():
                other[f"opener_{name}"][i] = float(pattern.match(opening) is not None)
            tail = last[-_CLOSER_TAIL:]
            for name, pattern in _CLOSERS.items():
                other[f"closer_{name}"][i] = float(pattern.search(tail) is not None)
        return counts, other

    def _readability(self, prose: str) -> dict[str, float]:
        prose = prose[-self.readability_max_chars :]
        words = _EN_WORD.findall(prose)
        if prose.isascii():
            latin_share = 1.0
        else:
            n_letters = sum(map(len, _LETTER_RUN.findall(prose)))
            latin_share = _ratio(sum(map(len, words)), n_letters)
        scores = dict.fromkeys(READABILITY_SCORES, 0.0)
        if len(words) < _MIN_READABILITY_WORDS or latin_share < _MIN_LATIN_SHARE:
            return {**scores, "readability_na": 1.0}
        raw = _READABILITY_BACKENDS[self.readability](prose, words)
        for name in READABILITY_SCORES:
            low, high = _SCORE_RANGE[name]
            value = float(raw[name])
            scores[name] = min(max(value, low), high) if math.isfinite(value) else 0.0
        return {**scores, "readability_na": 0.0}


def _ratio(part: float, total: float) -> float:
    return part / total if total else 0.0


def _lexical(text: str, window: int) -> dict[str, float]:
    if text.isascii():
        data = text.encode("ascii")
        words = ascii_words(text.lower())
        n_digits = count_ascii(data, _ASCII_DIGITS)
        n_punct = count_ascii(data, _ASCII_PUNCT)
        n_upper = count_ascii(data, _ASCII_UPPER)
    else:
        words = _WORD.findall(text.lower())
        n_digits = sum(map(len, _DIGIT_RUN.findall(text)))
        n_punct = sum(map(len, _PUNCT_RUN.findall(text)))
        n_upper = sum(map(len, _UPPER_RUN.findall(text)))
    n_words = len(words)
    word_chars = sum(map(len, words))
    n_letters = word_chars - n_digits - text.count("_")
    visible = len(text) - sum(map(text.count, " \n\t\r"))
    return {
        "ttr": _ratio(len(set(words)), n_words),
        "ttr_window": _ratio(len(set(words[-window:])), min(n_words, window)),
        "mean_word_len": _ratio(word_chars, n_words),
        "punct_ratio": _ratio(n_punct, visible),
        "digit_ratio": _ratio(n_digits, visible),
        "upper_ratio": _ratio(n_upper, n_letters),
    }
