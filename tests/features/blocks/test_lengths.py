"""Tests of the lengths block: counts, differences, swap consistency, speed."""

from __future__ import annotations

import doctest
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import features.blocks.lengths as lengths_module
from features.battles import read_battles
from features.blocks import make_block
from features.blocks.lengths import (
    DEFAULT_TANH_SCALES,
    FEATURES,
    LengthsBlock,
    count_tokens,
    count_words,
)
from features.errors import InvalidParameterError


def _battles(response_a, response_b, prompt=None) -> pd.DataFrame:
    prompt = prompt if prompt is not None else [["q"] * len(response_a[0])]
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(len(response_a))],
            "prompt": prompt,
            "response_a": response_a,
            "response_b": response_b,
        }
    )


def _row(matrix, i: int = 0) -> dict[str, float]:
    return dict(zip(matrix.columns, matrix.values[i].tolist(), strict=True))


def test_lengths_module_doctests_pass():
    result = doctest.testmod(lengths_module)
    assert result.attempted > 0
    assert result.failed == 0


def test_count_words_counts_each_cjk_character_as_a_word():
    assert count_words("北京是中国的首都") == 8
    assert count_words("I live in 北京 now") == 6


def test_count_words_keeps_hangul_words_whole():
    assert count_words("안녕하세요 세계") == 2


def test_count_tokens_adds_punctuation_marks_to_words():
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("") == 0


def test_lengths_columns_come_in_the_documented_order():
    matrix = LengthsBlock().transform(_battles([["a"]], [["b"]]))
    expected = []
    for name in FEATURES:
        expected += [
            f"a_len_{name}",
            f"b_len_{name}",
            f"d_len_{name}",
            f"d_len_{name}_norm",
            f"d_len_{name}_logratio",
            f"d_len_{name}_tanh",
            f"s_len_{name}_min",
            f"s_len_{name}_max",
        ]
    expected += ["s_len_prompt_chars", "s_len_prompt_words", "s_len_prompt_turns"]
    assert matrix.columns == tuple(expected)
    assert matrix.values.dtype == np.float32


def test_lengths_counts_match_hand_counted_values():
    response_a = ["Hi there.", "First line. Second one!\n\n- a bullet\nlast"]
    battles = _battles([response_a], [[" ", ""]], prompt=[["Hello?", "More"]])
    row = _row(LengthsBlock().transform(battles))
    joined = "Hi there.\n\nFirst line. Second one!\n\n- a bullet\nlast"
    assert row["a_len_chars"] == len(joined)
    assert row["a_len_words"] == 9
    assert row["a_len_tokens"] == 9 + 4  # ". . ! -"
    assert row["a_len_lines"] == 4
    assert row["a_len_sentences"] == 5
    assert row["a_len_turns"] == 2
    assert row["a_len_last_chars"] == len(response_a[1])
    assert row["a_len_last_words"] == 7
    assert row["b_len_chars"] == 3  # " " + "\n\n" + ""
    assert row["b_len_words"] == 0
    assert row["b_len_turns"] == 0
    assert row["s_len_prompt_chars"] == len("Hello?\n\nMore")
    assert row["s_len_prompt_words"] == 2
    assert row["s_len_prompt_turns"] == 2


def test_lengths_differences_have_the_documented_forms():
    battles = _battles([["word " * 30]], [["word " * 10]])
    row = _row(LengthsBlock(tanh_scales={"words": 20.0}).transform(battles))
    a, b = 30.0, 10.0
    assert row["d_len_words"] == a - b
    assert row["d_len_words_norm"] == pytest.approx((a - b) / (a + b))
    assert row["d_len_words_logratio"] == pytest.approx(np.log1p(a) - np.log1p(b))
    assert row["d_len_words_tanh"] == pytest.approx(np.tanh((a - b) / 20.0))
    assert row["s_len_words_min"] == b
    assert row["s_len_words_max"] == a


def test_lengths_differences_are_zero_for_identical_answers(hand_battles):
    matrix = LengthsBlock().transform(hand_battles)
    identical = hand_battles.index[hand_battles["id"] == "3"][0]
    row = _row(matrix, identical)
    d_values = [v for c, v in row.items() if c.startswith("d_")]
    assert d_values and all(v == 0.0 for v in d_values)


def test_lengths_normalised_difference_is_zero_when_both_answers_are_empty():
    row = _row(LengthsBlock().transform(_battles([[""]], [[""]])))
    assert row["d_len_chars_norm"] == 0.0
    assert row["d_len_words_logratio"] == 0.0


def test_lengths_block_is_swap_consistent_on_hand_battles(hand_battles, swap_check):
    swap_check(LengthsBlock().fit(hand_battles), hand_battles)


@pytest.mark.realdata
def test_lengths_block_is_swap_consistent_on_the_corpus(corpus_path, swap_check):
    battles = read_battles(corpus_path).iloc[:300].reset_index(drop=True)
    swap_check(LengthsBlock().fit(battles), battles)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t ",
        "北京是中国的首都，有很多名胜古迹。" * 20,
        "x" * 100_000,
        "word. " * 20_000,
        "!" * 100_000 + "x",
        "\n" * 100_000,
    ],
    ids=[
        "empty",
        "whitespace",
        "chinese",
        "100k-chars",
        "100k-words",
        "100k-bangs",
        "100k-newlines",
    ],
)
def test_lengths_output_is_finite_and_fast_on_edge_texts(text):
    battles = _battles([[text]], [["short answer"]], prompt=[[text]])
    start = time.perf_counter()
    matrix = LengthsBlock().transform(battles)
    assert time.perf_counter() - start < 30.0  # a hang guard, not a speed target
    assert matrix.values.dtype == np.float32
    assert np.isfinite(matrix.values).all()


def test_lengths_tanh_scales_change_only_their_tanh_column(hand_battles):
    default = LengthsBlock().transform(hand_battles)
    custom = LengthsBlock(tanh_scales={"chars": 10.0}).transform(hand_battles)
    changed = [
        c
        for j, c in enumerate(default.columns)
        if not np.array_equal(default.values[:, j], custom.values[:, j])
    ]
    assert changed == ["d_len_chars_tanh"]


def test_lengths_block_does_not_mutate_the_tanh_scales_dict(hand_battles):
    scales = {"words": 50.0}
    LengthsBlock(tanh_scales=scales).fit_transform(hand_battles)
    assert scales == {"words": 50.0}
    assert DEFAULT_TANH_SCALES["words"] == 200.0


def test_lengths_block_does_not_mutate_the_battles(hand_battles):
    before = hand_battles.copy(deep=True)
    LengthsBlock().fit_transform(hand_battles)
    pd.testing.assert_frame_equal(hand_battles, before)


_TANH_SCALES_MESSAGE = (
    r"The 'tanh_scales' parameter of LengthsBlock must be None or a dict from count "
    r"names in \['chars', 'words', .*\] to floats in \(0, inf\)\. Got "
)


def test_lengths_rejects_unknown_tanh_scale_keys(hand_battles):
    with pytest.raises(
        InvalidParameterError, match=_TANH_SCALES_MESSAGE + r"\{'bytes': 3\.0\}\."
    ):
        LengthsBlock(tanh_scales={"bytes": 3.0}).fit(hand_battles)


@pytest.mark.parametrize("value", [0.0, -5.0, float("nan"), float("inf"), True, "1"])
def test_lengths_rejects_tanh_scales_that_are_not_positive_numbers(hand_battles, value):
    match = _TANH_SCALES_MESSAGE + r"\{'chars'"
    with pytest.raises(InvalidParameterError, match=match):
        LengthsBlock(tanh_scales={"chars": value}).transform(hand_battles)


def test_lengths_rejects_tanh_scales_that_are_not_a_dict(hand_battles):
    with pytest.raises(InvalidParameterError, match=_TANH_SCALES_MESSAGE + r"\[1\.0\]"):
        LengthsBlock(tanh_scales=[1.0]).fit(hand_battles)


def test_lengths_rejects_battles_without_text_columns(hand_battles):
    with pytest.raises(ValueError, match=r"needs columns \['prompt'\] in the battle"):
        LengthsBlock().transform(hand_battles.drop(columns="prompt"))


def test_lengths_block_clones_with_equal_params():
    block = LengthsBlock(tanh_scales={"chars": 500.0})
    copy = clone(block)
    assert copy is not block
    assert copy.get_params() == {"tanh_scales": {"chars": 500.0}}
    assert copy.set_params(tanh_scales=None).tanh_scales is None


def test_lengths_fit_returns_self_and_transform_needs_no_fit(hand_battles):
    block = LengthsBlock()
    unfitted = block.transform(hand_battles)
    assert block.fit(hand_battles) is block
    np.testing.assert_array_equal(block.transform(hand_battles).values, unfitted.values)


def test_lengths_state_round_trip_transforms_identically(hand_battles):
    block = LengthsBlock(tanh_scales={"words": 10.0}).fit(hand_battles)
    state, arrays = block.get_state()
    restored = LengthsBlock(tanh_scales={"words": 10.0}).set_state(state, arrays)
    np.testing.assert_array_equal(
        restored.transform(hand_battles).values, block.transform(hand_battles).values
    )


def test_lengths_block_is_registered_under_its_name():
    block = make_block("lengths", {"tanh_scales": {"chars": 2.0}})
    assert isinstance(block, LengthsBlock)
    assert block.name == "lengths"


@pytest.mark.realdata
@pytest.mark.slow
def test_longer_answer_wins_more_often_than_not_on_the_corpus(corpus_path):
    battles = read_battles(corpus_path)
    matrix = LengthsBlock().transform(battles)
    d_chars = matrix.values[:, matrix.columns.index("d_len_chars")]
    labels = battles["label"].to_numpy()
    decided = (labels < 2) & (d_chars != 0)
    longer_won = np.sign(d_chars[decided]) == np.where(labels[decided] == 0, 1, -1)
    # The corpus mixes sources (harmlessness sets prefer the shorter refusal),
    # yet overall the longer answer still wins more often (0.54 measured).
    assert 0.51 < longer_won.mean() < 0.70
