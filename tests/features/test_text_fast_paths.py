"""The ASCII and charset-first fast paths give what the plain regexes give.

Blocks count words, tokens, sentences and character classes through faster
routes than a regex scan; the stored features must not depend on which route
ran, so each route is checked against the straightforward regex it replaces
on every ASCII character and on random texts built to hit the edge cases.
"""

from __future__ import annotations

import random
import re

import pytest

from features.blocks import lengths, style
from features.text import (
    WORD_PATTERN,
    WORD_RE,
    ascii_class,
    ascii_words,
    count_ascii,
    find_words,
)

ALL_ASCII = "".join(map(chr, range(128)))

# Pieces chosen to meet every branch: word characters, ASCII punctuation and
# control/whitespace characters (\x1c-\x1f are whitespace to Python), sentence
# marks and their CJK forms, newlines, non-ASCII letters, digits, underscores.
PIECES = [
    "a", "Z", "_", "7", "word", " ", "\t", "\n", "\r", "\x0b", "\x1c", "\x1f",
    ".", "!", "?", "…", "...", "!!", "。", "！", "？", "\u00a0", ",", "'", "-",
    "é", "É", "Ж", "北", "か", "😀", "*", "`", "#", "$",
]  # fmt: skip

REFERENCE_SENTENCE_BREAK = re.compile(r"(?:(?<![.!?…])[.!?…]+(?=\s|$)|[。！？]+|\n)+")
REFERENCE_TOKEN = re.compile(f"{WORD_PATTERN}|[^\\w\\s]")


def random_texts(n: int, *, ascii_only: bool, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pieces = [p for p in PIECES if p.isascii()] if ascii_only else PIECES
    return ["".join(rng.choices(pieces, k=rng.randint(0, 60))) for _ in range(n)]


def reference_sentences(text: str) -> int:
    pieces = REFERENCE_SENTENCE_BREAK.split(text)
    return sum(1 for piece in pieces if re.search(r"\w", piece))


def test_ascii_class_agrees_with_re_on_every_ascii_character():
    for pattern in (r"\w", r"\s", r"\d", r"[^\w\s]"):
        expected = "".join(re.findall(pattern, ALL_ASCII)).encode("ascii")
        assert ascii_class(pattern) == expected


def test_ascii_class_sees_python_whitespace_beyond_the_usual_six():
    # str.split() and re's \s both count \x1c-\x1f as whitespace.
    assert b"\x1c\x1d\x1e\x1f" in ascii_class(r"\s")


@pytest.mark.parametrize("ascii_only", [True, False])
def test_find_words_equals_the_word_regex(ascii_only):
    texts = random_texts(3000, ascii_only=ascii_only) + [ALL_ASCII, ""]
    for text in texts:
        assert find_words(text) == WORD_RE.findall(text), repr(text)


def test_ascii_words_needs_ascii_text():
    with pytest.raises(UnicodeEncodeError):
        ascii_words("café")


def test_count_ascii_counts_members():
    assert count_ascii(b"a,b;;c", ascii_class(r"[^\w\s]")) == 3
    assert count_ascii(b"", b"abc") == 0


@pytest.mark.parametrize("ascii_only", [True, False])
def test_count_tokens_equals_the_token_regex(ascii_only):
    for text in random_texts(3000, ascii_only=ascii_only, seed=1) + [ALL_ASCII]:
        assert lengths.count_tokens(text) == len(REFERENCE_TOKEN.findall(text)), repr(
            text
        )


@pytest.mark.parametrize("ascii_only", [True, False])
def test_sentence_count_equals_the_plain_break_regex(ascii_only):
    texts = random_texts(5000, ascii_only=ascii_only, seed=2)
    texts += ["Hi!!! there", "a.b.. c", "x!?\n\nY… z。再见！！ok", "!" * 5000 + "x"]
    for text in texts:
        assert lengths._count_sentences(text) == reference_sentences(text), repr(text)


def test_long_mark_runs_stay_linear():
    # 200k marks not followed by a space: a quadratic scan would take minutes.
    assert lengths._count_sentences("!" * 200_000 + "x") == 1


@pytest.mark.parametrize("ascii_only", [True, False])
def test_style_lexical_counts_match_the_regex_counts(ascii_only):
    for text in random_texts(2000, ascii_only=ascii_only, seed=3):
        got = style._lexical(text, window=10)
        words = re.findall(r"\w+", text.lower())
        n_digits = sum(map(len, re.findall(r"\d+", text)))
        n_letters = sum(map(len, words)) - n_digits - text.count("_")
        visible = len(text) - sum(map(text.count, " \n\t\r"))
        upper = sum(map(len, style._UPPER_RUN.findall(text)))
        punct = sum(map(len, re.findall(r"[^\w\s]+", text)))
        assert got["digit_ratio"] == (n_digits / visible if visible else 0.0)
        assert got["punct_ratio"] == (punct / visible if visible else 0.0)
        assert got["upper_ratio"] == (upper / n_letters if n_letters else 0.0)
        assert got["ttr"] == (len(set(words)) / len(words) if words else 0.0)
