"""Tests of the tie-cues block: prompt kinds and answers that agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from features.battles import read_battles
from features.blocks import get_block_class, make_block
from features.blocks.tie_cues import (
    PROMPT_KINDS,
    TieCuesBlock,
    final_number,
    prompt_kinds,
)
from features.errors import InvalidParameterError

KAGGLE = Path(__file__).resolve().parents[3].parent / "shared/data/corpus/kaggle.csv"


def _battles(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [{"prompt": [p], "response_a": [a], "response_b": [b]} for p, a, b in rows]
    )


def _row(prompt: str, a: str, b: str) -> dict[str, float]:
    m = TieCuesBlock().transform(_battles([(prompt, a, b)]))
    return dict(zip(m.columns, m.values[0].tolist(), strict=True))


def test_block_is_registered_and_all_columns_are_symmetric():
    assert get_block_class("tie_cues") is TieCuesBlock
    m = make_block("tie_cues").transform(_battles([("hi", "Hello!", "Hi there!")]))
    assert all(column.startswith("s_tie_") for column in m.columns)
    assert m.values.dtype == np.float32
    assert {f"s_tie_prompt_{kind}" for kind in PROMPT_KINDS} <= set(m.columns)


def test_identical_answers_get_the_highest_similarity():
    answer = "The capital of France is Paris. It is on the Seine."
    row = _row("What is the capital of France?", answer, answer)
    assert row["s_tie_edit_similarity"] == 1.0
    assert row["s_tie_same_first_line"] == 1.0
    assert row["s_tie_len_ratio_chars"] == 1.0
    assert row["s_tie_len_ratio_words"] == 1.0


def test_similarity_falls_as_answers_differ():
    base = "The capital of France is Paris. It is on the Seine."
    close = _row("q", base, base.replace("Seine", "river Seine"))
    far = _row("q", base, "Bananas are yellow and rich in potassium, eat two.")
    assert 1.0 > close["s_tie_edit_similarity"] > far["s_tie_edit_similarity"]
    assert far["s_tie_same_first_line"] == 0.0


def test_both_empty_answers_are_alike_not_an_error():
    row = _row("hello", "", "   ")
    assert row["s_tie_edit_similarity"] == 1.0
    assert row["s_tie_len_ratio_chars"] == 1.0
    assert row["s_tie_same_first_line"] == 0.0  # nothing to compare
    assert row["s_tie_both_numbers"] == 0.0


def test_same_final_number_in_both_math_answers():
    same = _row("What is 17*3?", "17 * 3 = 51", "Let me compute: 17 times 3 is 51.")
    other = _row("What is 17*3?", "17 * 3 = 51", "That makes 1,051.")
    assert same["s_tie_prompt_math"] == 1.0
    assert same["s_tie_same_final_number"] == 1.0
    assert other["s_tie_both_numbers"] == 1.0
    assert other["s_tie_same_final_number"] == 0.0


@pytest.mark.parametrize(
    ("prompt", "kind"),
    [
        ("hi", "greeting"),
        ("Hello there!", "greeting"),
        ("你好", "greeting"),
        ("Solve 3x + 5 = 11", "math"),
        ("Сколько будет 2+2?", "math"),
        ("Write a Python function that reverses a string", "code"),
        ("Write a poem about autumn leaves", "creative"),
        ("Напиши рассказ о коте", "creative"),
        ("Who wrote Pride and Prejudice?", "factual"),
        ("¿Quién pintó la Mona Lisa?", "factual"),
    ],
)
def test_prompt_kinds_for_prompts_with_one_clear_kind(prompt, kind):
    kinds = prompt_kinds(prompt)
    assert kinds[kind], kinds
    others = {k for k, flag in kinds.items() if flag and k != kind}
    assert not others, f"{prompt!r} also flagged {others}"


def test_a_long_open_question_is_not_factual():
    prompt = (
        "What do you think about the long-term effects of remote work on "
        "cities, families, careers and the way people make friends, and how "
        "should governments respond over the next twenty years?"
    )
    assert not prompt_kinds(prompt)["factual"]


def test_final_number_reads_thousands_and_decimals():
    assert final_number("about 1,234.5 people, then -3") == -3.0
    assert final_number("the total is 1,234.5") == 1234.5
    assert final_number("no digits here") is None


def test_tie_cues_are_swap_consistent(swap_check, hand_battles):
    swap_check(TieCuesBlock().fit(hand_battles), hand_battles)


def test_edit_similarity_does_not_depend_on_the_order_of_the_answers():
    rows = [
        ("q", "a b c d e f", "a x c d y f g"),
        ("q", "one two three two one", "two one three"),
    ]
    direct = TieCuesBlock().transform(_battles(rows)).to_frame()
    swapped = TieCuesBlock().transform(_battles([(p, b, a) for p, a, b in rows]))
    np.testing.assert_array_equal(direct.to_numpy(), swapped.values)


def test_max_words_bounds_what_is_compared():
    a = "same start " * 5 + "tail one " * 50
    b = "same start " * 5 + "other words " * 50
    full = TieCuesBlock().transform(_battles([("q", a, b)])).to_frame()
    head = TieCuesBlock(max_words=10).transform(_battles([("q", a, b)])).to_frame()
    assert head["s_tie_edit_similarity"].iloc[0] == 1.0
    assert full["s_tie_edit_similarity"].iloc[0] < 0.5


@pytest.mark.parametrize(
    ("params", "match"),
    [({"max_words": 0}, "max_words"), ({"short_prompt_words": "x"}, "short_prompt")],
)
def test_bad_params_are_rejected_with_their_name(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        TieCuesBlock(**params).transform(_battles([("q", "a", "b")]))


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="response_b"):
        TieCuesBlock().transform(
            pd.DataFrame({"prompt": [["q"]], "response_a": [["a"]]})
        )


def test_clone_keeps_params():
    block = TieCuesBlock(max_words=50, short_prompt_words=10)
    assert clone(block).get_params() == block.get_params()


def test_on_kaggle_alike_answers_tie_more_often():
    """Real arena votes: answers of similar wording and length tie more."""
    if not KAGGLE.exists():
        pytest.skip(f"Kaggle corpus rows not found at {KAGGLE}")
    battles = read_battles(KAGGLE)
    frame = TieCuesBlock().transform(battles).to_frame()
    tie = battles["label"].to_numpy() == 2
    for column in ("s_tie_edit_similarity", "s_tie_len_ratio_words"):
        values = frame[column].to_numpy()
        alike = values > np.median(values)
        assert tie[alike].mean() > tie[~alike].mean() + 0.05, column
