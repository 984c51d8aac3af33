"""Tests of the similarity block and its hashed n-gram counting."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import features.blocks.similarity as similarity
from features.battles import read_battles
from features.blocks.similarity import (
    SimilarityBlock,
    char_ngram_counts,
    jaccard_from_counts,
    overlap_from_counts,
)
from features.errors import InvalidParameterError

S_JACCARDS = ("s_sim_word_jaccard", "s_sim_char3_jaccard", "s_sim_char4_jaccard")
S_ALL = (*S_JACCARDS, "s_sim_word_overlap", "s_sim_char3_overlap")


def _battles(prompt: str, answer_a: str, answer_b: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["x"],
            "prompt": [[prompt]],
            "response_a": [[answer_a]],
            "response_b": [[answer_b]],
        }
    )


def _row(matrix, i: int = 0) -> dict[str, float]:
    return dict(zip(matrix.columns, matrix.values[i].tolist(), strict=True))


def _brute_counts(sides: list[list[str]], n: int) -> np.ndarray:
    out = np.zeros((len(sides[0]), 1 << len(sides)), dtype=np.int64)
    for row in range(len(sides[0])):
        grams = [
            {text[i : i + n] for i in range(len(text) - n + 1)}
            for text in (side[row] for side in sides)
        ]
        for gram in set().union(*grams):
            mask = sum(1 << k for k, g in enumerate(grams) if gram in g)
            out[row, mask] += 1
    return out


def test_similarity_block_clone_keeps_params():
    block = SimilarityBlock(max_chars=500, lowercase=False)
    cloned = clone(block)
    assert cloned.get_params() == {"max_chars": 500, "lowercase": False}
    assert cloned is not block


def test_similarity_block_set_params_and_fit_returns_self(hand_battles):
    block = SimilarityBlock().set_params(max_chars=100)
    assert block.get_params()["max_chars"] == 100
    assert block.fit(hand_battles) is block
    assert block.is_fitted_


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"max_chars": 0},
            r"'max_chars' parameter of SimilarityBlock must be an int in \[1, inf\)\. "
            r"Got 0\.",
        ),
        ({"max_chars": 2.5}, r"'max_chars' parameter of SimilarityBlock .* Got 2\.5"),
        ({"max_chars": True}, r"'max_chars' parameter of SimilarityBlock .* Got True"),
        (
            {"lowercase": "yes"},
            r"'lowercase' parameter of SimilarityBlock must be a bool\. Got 'yes'\.",
        ),
    ],
)
def test_similarity_block_rejects_invalid_params(hand_battles, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        SimilarityBlock(**params).transform(hand_battles)
    with pytest.raises(InvalidParameterError, match=match):
        SimilarityBlock(**params).fit(hand_battles)


def test_similarity_block_names_missing_columns(hand_battles):
    with pytest.raises(ValueError, match=r"needs columns \['prompt'\]"):
        SimilarityBlock().transform(hand_battles.drop(columns=["prompt"]))


def test_similarity_columns_are_side_tagged_and_float32(hand_battles):
    matrix = SimilarityBlock().transform(hand_battles)
    assert matrix.values.dtype == np.float32
    assert matrix.values.shape == (len(hand_battles), 14)
    assert set(S_ALL) <= set(matrix.columns)
    assert "d_sim_prompt_word_coverage" in matrix.columns
    assert np.isfinite(matrix.values).all()


def test_identical_answers_have_similarity_one(hand_battles):
    row = _row(SimilarityBlock().transform(hand_battles), 2)  # battle "3"
    for column in S_ALL:
        assert row[column] == 1.0, column


def test_disjoint_answers_have_similarity_zero():
    row = _row(SimilarityBlock().transform(_battles("q", "abc abc", "xyz xyz")))
    for column in S_ALL:
        assert row[column] == 0.0, column


def test_case_and_whitespace_do_not_lower_similarity_by_default():
    battles = _battles("q", "Hello   World\n", "hello world")
    assert _row(SimilarityBlock().transform(battles))["s_sim_char4_jaccard"] == 1.0
    cased = _row(SimilarityBlock(lowercase=False).transform(battles))
    assert cased["s_sim_char4_jaccard"] < 1.0


def test_prompt_overlap_measures_copying_of_the_prompt():
    battles = _battles("name three red fruits", "three red fruits: apple", "Paris")
    row = _row(SimilarityBlock().transform(battles))
    assert row["a_sim_prompt_word_coverage"] == pytest.approx(3 / 4)
    assert row["a_sim_prompt_word_jaccard"] == pytest.approx(3 / 5)
    assert row["b_sim_prompt_word_jaccard"] == 0.0
    assert row["d_sim_prompt_char3_jaccard"] > 0.3


def test_cjk_characters_count_as_words():
    row = _row(SimilarityBlock().transform(_battles("q", "我爱北京", "北京我爱")))
    assert row["s_sim_word_jaccard"] == 1.0
    assert row["s_sim_char3_jaccard"] < 1.0


@pytest.mark.parametrize(
    ("answer_a", "answer_b"), [("", ""), ("", "text"), ("   \n ", "text"), ("ab", "ab")]
)
def test_empty_or_short_texts_give_zero_without_errors(answer_a, answer_b):
    matrix = SimilarityBlock().transform(_battles("", answer_a, answer_b))
    row = _row(matrix)
    assert np.isfinite(matrix.values).all()
    for column in ("a_sim_prompt_word_jaccard", "b_sim_prompt_char3_jaccard"):
        assert row[column] == 0.0
    if answer_a != answer_b:
        assert all(row[column] == 0.0 for column in S_ALL)


def test_multi_turn_answers_are_joined_and_empty_turns_are_fine():
    battles = pd.DataFrame(
        {
            "id": ["m"],
            "prompt": [["hi", "more"]],
            "response_a": [["hello there", ""]],
            "response_b": [["hello there", ""]],
        }
    )
    assert _row(SimilarityBlock().transform(battles))["s_sim_char3_jaccard"] == 1.0


def test_max_chars_keeps_the_end_of_long_texts():
    tail = "the same closing paragraph " * 4
    battles = _battles("q", "x" * 5000 + tail, "y" * 5000 + tail)
    bounded = _row(SimilarityBlock(max_chars=len(tail)).transform(battles))
    full = _row(SimilarityBlock(max_chars=20_000).transform(battles))
    assert bounded["s_sim_char3_jaccard"] == 1.0
    assert full["s_sim_char3_jaccard"] < 1.0


def test_very_long_texts_are_fast_and_bounded():
    long_text = "word " * 60_000 + "ending"
    battles = _battles(long_text, long_text, "x" + long_text)
    start = time.perf_counter()
    matrix = SimilarityBlock().transform(battles)
    assert time.perf_counter() - start < 30.0  # a hang guard, not a speed target
    assert np.isfinite(matrix.values).all()


def test_similarity_block_is_swap_consistent(hand_battles, swap_check):
    swap_check(SimilarityBlock().fit(hand_battles), hand_battles)


def test_similarity_block_is_deterministic(hand_battles):
    first = SimilarityBlock().transform(hand_battles).values
    second = SimilarityBlock().transform(hand_battles).values
    np.testing.assert_array_equal(first, second)


def test_char_ngram_counts_match_python_sets_across_chunks(monkeypatch):
    rng = np.random.default_rng(7)
    alphabet = list("abcab \n你好🌊Ж") + ["\ud800"]  # includes a lone surrogate
    sides = [
        ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(60)]
        for _ in range(3)
    ]
    expected = _brute_counts(sides, 3)
    np.testing.assert_array_equal(char_ngram_counts(sides, 3), expected)
    monkeypatch.setattr(similarity, "_CHUNK_CODEPOINTS", 50)  # many small chunks
    np.testing.assert_array_equal(char_ngram_counts(sides, 3), expected)
    np.testing.assert_array_equal(
        char_ngram_counts(sides[:2], 1), _brute_counts(sides[:2], 1)
    )


def test_jaccard_and_overlap_from_counts_follow_set_definitions():
    counts = char_ngram_counts([["abcdef", ""], ["defgh", ""]], 3)
    # {abc, bcd, cde, def} vs {def, efg, fgh}: one shared of six.
    np.testing.assert_allclose(jaccard_from_counts(counts, 0, 1), [1 / 6, 0.0])
    np.testing.assert_allclose(overlap_from_counts(counts, 0, 1), [1 / 3, 0.0])
    np.testing.assert_allclose(overlap_from_counts(counts, 0, 1, by="first"), [0.25, 0])


@pytest.mark.parametrize(
    ("sides", "n", "match"),
    [
        ([], 3, r"takes 1 to 4 sides; got 0"),
        ([["a"]] * 5, 3, r"takes 1 to 4 sides; got 5"),
        ([["a"], ["a", "b"]], 3, r"one text per row on every side; got side lengths"),
        ([["a"]], 0, r"needs an int n >= 1; got 0"),
    ],
)
def test_char_ngram_counts_rejects_bad_input(sides, n, match):
    with pytest.raises(ValueError, match=match):
        char_ngram_counts(sides, n)


def test_overlap_from_counts_rejects_unknown_divisor():
    counts = char_ngram_counts([["abc"], ["abc"]], 3)
    with pytest.raises(ValueError, match=r"'by' must be 'min' or 'first'; got 'max'"):
        overlap_from_counts(counts, 0, 1, by="max")


@pytest.mark.slow
@pytest.mark.realdata
def test_similar_answers_tie_more_often_on_the_real_corpus(corpus_path):
    battles = read_battles(corpus_path)
    block = SimilarityBlock()
    matrix = block.transform(battles)
    frame = matrix.to_frame()
    labels = battles["label"].to_numpy()

    side_values = frame[[c for c in frame.columns if not c.startswith("d_")]]
    assert side_values.to_numpy().min() >= 0.0
    assert side_values.to_numpy().max() <= 1.0
    jaccard = frame["s_sim_char3_jaccard"].to_numpy()
    low, high = np.quantile(jaccard, [0.1, 0.9])
    tie_low = (labels[jaccard <= low] == 2).mean()
    tie_high = (labels[jaccard >= high] == 2).mean()
    assert tie_high > 1.5 * tie_low  # measured: 12.3% vs 6.0%
