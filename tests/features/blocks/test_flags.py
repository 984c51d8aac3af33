"""Tests of the flags block: refusals, empty/identical answers, truncation, scripts."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import features.blocks.flags as flags
from features.battles import as_battles, read_battles
from features.blocks.flags import (
    SCRIPTS,
    FlagsBlock,
    count_refusal_phrases,
    is_truncated,
    refusal_phrases,
    script_fractions,
)
from features.errors import InvalidParameterError

HARMLESSNESS_SOURCES = ("hh-rlhf-harmless", "hhh:harmless")


def _battles(prompt, answers_a, answers_b) -> pd.DataFrame:
    """One battle per (answer_a, answer_b) pair, all sharing one prompt."""
    rows = [
        {
            "id": str(i),
            "prompt": prompt if isinstance(prompt, list) else [prompt],
            "response_a": a if isinstance(a, list) else [a],
            "response_b": b if isinstance(b, list) else [b],
        }
        for i, (a, b) in enumerate(zip(answers_a, answers_b, strict=True))
    ]
    return pd.DataFrame(rows)


def _frame(battles: pd.DataFrame, **params) -> pd.DataFrame:
    return FlagsBlock(**params).transform(battles).to_frame()


# --- estimator contract ------------------------------------------------------


def test_flags_block_clone_keeps_params():
    block = FlagsBlock(refusal_window=120, max_chars=800, near_identical_threshold=0.8)
    cloned = clone(block)
    assert cloned.get_params() == block.get_params()
    assert cloned is not block


def test_flags_block_fit_returns_self(hand_battles):
    block = FlagsBlock().set_params(refusal_window=50)
    assert block.fit(hand_battles) is block
    assert block.is_fitted_


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"refusal_window": 0},
            r"'refusal_window' parameter of FlagsBlock must be an int in \[1, inf\)\. "
            r"Got 0\.",
        ),
        (
            {"max_chars": "all"},
            r"'max_chars' parameter of FlagsBlock must be an int in \[1, inf\)\. "
            r"Got 'all'\.",
        ),
        (
            {"near_identical_threshold": 1.5},
            r"'near_identical_threshold' parameter of FlagsBlock must be a float in "
            r"\(0, 1\]\. Got 1\.5\.",
        ),
        (
            {"near_identical_threshold": float("nan")},
            r"'near_identical_threshold' parameter of FlagsBlock must be a float in "
            r"\(0, 1\]\. Got nan\.",
        ),
    ],
)
def test_flags_block_rejects_invalid_params(hand_battles, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        FlagsBlock(**params).transform(hand_battles)
    with pytest.raises(InvalidParameterError, match=match):
        FlagsBlock(**params).fit(hand_battles)


def test_flags_block_names_missing_columns(hand_battles):
    with pytest.raises(ValueError, match=r"needs columns \['response_b'\]"):
        FlagsBlock().transform(hand_battles.drop(columns=["response_b"]))


def test_flags_columns_are_side_tagged_float32_and_finite(hand_battles):
    matrix = FlagsBlock().transform(hand_battles)
    assert matrix.values.dtype == np.float32
    assert matrix.values.shape == (len(hand_battles), 57)
    with_kinds = FlagsBlock(refusal_kinds=True).transform(hand_battles)
    assert with_kinds.values.shape == (len(hand_battles), 57 + 15)  # the kinds
    assert np.isfinite(matrix.values).all()
    for name in ("refusal", "empty", "truncated", "script_mismatch"):
        assert {f"a_flag_{name}", f"b_flag_{name}", f"d_flag_{name}"} <= set(
            matrix.columns
        )
    for name in ("identical", "near_identical", "both_refuse", "any_blank"):
        assert f"s_flag_{name}" in matrix.columns


def test_flags_block_is_swap_consistent(hand_battles, swap_check):
    swap_check(FlagsBlock().fit(hand_battles), hand_battles)


def test_flags_block_is_deterministic(hand_battles):
    first = FlagsBlock().transform(hand_battles).values
    np.testing.assert_array_equal(first, FlagsBlock().transform(hand_battles).values)


# --- refusals ----------------------------------------------------------------


def test_refusal_phrase_list_is_package_data_in_many_languages():
    phrases = refusal_phrases()
    assert {"en", "zh", "ru", "es", "de", "fr", "ja", "ko", "pt"} <= set(phrases)
    for group in phrases.values():
        for phrase in group:
            assert phrase == " ".join(phrase.casefold().split())
            assert "\u2019" not in phrase


def test_missing_phrase_file_says_to_reinstall(monkeypatch):
    monkeypatch.setattr(flags, "PHRASES_RESOURCE", "no_such_file.json")
    refusal_phrases.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match=r"Reinstall the project"):
            refusal_phrases()
    finally:
        monkeypatch.undo()
        refusal_phrases.cache_clear()
    assert refusal_phrases()["en"]


@pytest.mark.parametrize(
    "answer",
    [
        "I'm sorry, but I can't help with that.",
        "I’m sorry, but I can’t assist with this request.",  # curly apostrophes
        "I CANNOT FULFILL this request.",
        "As an AI language model, I do not have opinions.",
        "I apologize, but   I must decline.",
        "It is not appropriate to share personal data.",
        "我不能回答这个问题。",
        "抱歉，这个问题我无法回答。",
        "作为一个人工智能，我没有个人观点。",
        "Я не могу помочь с этим запросом.",
        "Извините, но это невозможно.",
        "Lo siento, pero no puedo ayudarte con eso.",
        "Je ne peux pas répondre à cette question.",
        "Ich kann nicht bei dieser Anfrage helfen.",
        "Es tut mir leid, aber das ist nicht möglich.",
        "申し訳ありませんが、そのご依頼にはお応えできません。",
        "죄송합니다. 그 요청은 도와드릴 수 없습니다.",
        "Desculpe, mas não posso ajudar com isso.",
    ],
)
def test_refusals_are_flagged_in_many_languages(answer):
    frame = _frame(_battles("Please help", [answer], ["Sure, here it is."]))
    assert frame.loc[0, "a_flag_refusal"] == 1.0
    assert frame.loc[0, "a_flag_refusal_count"] >= 1.0
    assert frame.loc[0, "b_flag_refusal"] == 0.0
    assert frame.loc[0, "d_flag_refusal"] == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "I can't wait to help! Here are three ideas for your party.",
        "I can't help but notice how elegant this proof is.",
        "Sorry for the delay, here is the answer: " + "the capital is Paris. " * 20,
        "As an aid to memory, write the steps down.",
        "This recipe is sorry-proof: mix, bake and serve.",
        "北京是中国的首都，有很多名胜古迹。",
        "Москва — столица России.",
    ],
)
def test_ordinary_answers_are_not_flagged_as_refusals(answer):
    frame = _frame(_battles("Please help", [answer], [answer]))
    assert frame.loc[0, "a_flag_refusal"] == 0.0
    assert frame.loc[0, "a_flag_refusal_count"] == 0.0


def test_refusal_flag_looks_at_the_start_of_the_last_turn_only():
    late = "Here is a long and helpful answer. " * 20 + "I'm sorry, but that is all."
    multi_turn = ["I'm sorry, but I can't.", "Sure! Here is the poem you asked for."]
    battles = _battles(["q1", "q2"], [[late], multi_turn], [["ok"], ["ok", "ok"]])
    frame = _frame(battles.iloc[[0]].reset_index(drop=True))
    assert frame.loc[0, "a_flag_refusal"] == 0.0
    assert frame.loc[0, "a_flag_refusal_count"] == 1.0
    assert _frame(battles.iloc[[0]], refusal_window=5000).iloc[0]["a_flag_refusal"] == 1
    assert _frame(battles.iloc[[1]]).iloc[0]["a_flag_refusal"] == 0.0


def test_count_refusal_phrases_counts_window_and_total_hits():
    text = "I cannot provide that. " + "x " * 200 + "As an AI, I cannot assist."
    assert count_refusal_phrases(text, window=50) == (1, 3)
    assert count_refusal_phrases(text, window=50, max_chars=30) == (1, 1)


def test_hand_battles_flag_refusals_in_three_languages(hand_battles):
    frame = _frame(hand_battles)
    np.testing.assert_array_equal(
        frame["a_flag_refusal"], [0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    )  # English, Russian, "As an AI" on side A
    np.testing.assert_array_equal(
        frame["b_flag_refusal"], [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    )  # Chinese on side B
    assert frame["s_flag_both_refuse"].sum() == 0
    assert frame["s_flag_any_refuse"].sum() == 4


# --- empty and identical answers ---------------------------------------------


def test_hand_battles_flag_empty_whitespace_and_identical(hand_battles):
    frame = _frame(hand_battles)
    empty_row, identical_row, empty_turn_row = 6, 2, 3
    assert frame.loc[empty_row, "a_flag_empty"] == 1.0
    assert frame.loc[empty_row, "a_flag_whitespace_only"] == 0.0
    assert frame.loc[empty_row, "b_flag_empty"] == 0.0
    assert frame.loc[empty_row, "b_flag_whitespace_only"] == 1.0
    assert frame.loc[empty_row, "s_flag_both_blank"] == 1.0
    assert frame.loc[empty_turn_row, "b_flag_any_empty_turn"] == 1.0
    assert frame.loc[empty_turn_row, "a_flag_any_empty_turn"] == 0.0
    assert frame["s_flag_identical"].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert frame.loc[identical_row, "s_flag_near_identical"] == 1.0


def test_null_turns_and_one_blank_side_are_flagged():
    battles = pd.DataFrame(
        {
            "id": ["n"],
            "prompt": ['["Hello", "Again"]'],
            "response_a": ["[null, null]"],  # Kaggle layout, JSON nulls
            "response_b": ['["Hi!", "Hello again."]'],
        }
    )
    frame = _frame(as_battles(battles))
    assert frame.loc[0, "a_flag_empty"] == 1.0
    assert frame.loc[0, "d_flag_empty"] == 1.0
    assert frame.loc[0, "s_flag_any_blank"] == 1.0
    assert frame.loc[0, "s_flag_both_blank"] == 0.0
    assert frame.loc[0, "a_flag_truncated"] == 0.0


@pytest.mark.parametrize(
    ("answer_a", "answer_b", "identical", "near"),
    [
        ("Paris is the capital.", "Paris is the capital.", 1, 1),
        ("Paris is the capital.", "paris  is the\ncapital.", 0, 1),
        (
            "北京是中国的首都，有很多名胜古迹。" * 3,
            "北京是中国的首都，有很多名胜古迹。" * 3 + "！",
            0,
            1,
        ),
        ("Paris is the capital.", "Berlin is the capital of Germany.", 0, 0),
        ("", "Something", 0, 0),
    ],
)
def test_identical_and_near_identical_answers(answer_a, answer_b, identical, near):
    frame = _frame(_battles("q", [answer_a], [answer_b]))
    assert frame.loc[0, "s_flag_identical"] == identical
    assert frame.loc[0, "s_flag_near_identical"] == near


def test_near_identical_threshold_is_respected():
    battles = _battles(
        "q", ["the quick brown fox jumps"], ["the quick brown fox jumped"]
    )
    assert _frame(battles, near_identical_threshold=0.5).loc[0, "s_flag_near_identical"]
    assert not _frame(battles, near_identical_threshold=1.0).loc[
        0, "s_flag_near_identical"
    ]


# --- truncation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "truncated"),
    [
        ("The answer is 4.", False),
        ("Really? Yes!", False),
        ("The answer is", True),
        ("Here is the list:", True),
        ("First, second,", True),
        ('He said "yes."', False),
        ("(see the table above)", False),
        ("```python\nprint(1)\n```", False),
        ("Code:\n```python\nprint(1)\n```\nDone.", False),
        ("```python\nprint(1)\n```\n```js\nconsole.log(", True),  # unclosed fence
        ("北京是中国的首都。", False),
        ("北京是中国的首都", True),
        ("Москва — столица России", True),
        ("Enjoy your trip! 😊", False),
        ("", False),
        ("   \n", False),
    ],
)
def test_truncation_detects_answers_cut_mid_sentence(text, truncated):
    assert is_truncated(text) is truncated


def test_unclosed_code_block_sets_both_flags():
    frame = _frame(_battles("code", ["```python\ndef f():\n    return 1"], ["Done."]))
    assert frame.loc[0, "a_flag_unclosed_code"] == 1.0
    assert frame.loc[0, "a_flag_truncated"] == 1.0
    assert frame.loc[0, "b_flag_truncated"] == 0.0
    assert frame.loc[0, "s_flag_any_truncated"] == 1.0


# --- scripts ---------------------------------------------------------------------


def test_script_fractions_sum_to_one_over_letters():
    fractions = script_fractions(
        ["Hello мир", "你好 こんにちは 안녕", "مرحبا", "Γειά", "42 🙂"]
    )
    np.testing.assert_allclose(fractions[:4].sum(axis=1), 1.0)
    assert fractions[4].tolist() == [0.0] * len(SCRIPTS)
    latin, cjk, cyrillic, arabic, other = range(len(SCRIPTS))
    assert fractions[0, latin] == pytest.approx(5 / 8)
    assert fractions[0, cyrillic] == pytest.approx(3 / 8)
    assert fractions[1, cjk] == 1.0  # Han, kana and Hangul
    assert fractions[2, arabic] == 1.0
    assert fractions[3, other] == 1.0


def test_answer_in_another_script_than_the_prompt_is_flagged():
    battles = _battles(
        "请用中文介绍一下北京的历史",
        ["Beijing has a history of over three thousand years."],
        ["北京有三千多年的历史。"],
    )
    frame = _frame(battles)
    assert frame.loc[0, "a_flag_script_mismatch"] == 1.0
    assert frame.loc[0, "b_flag_script_mismatch"] == 0.0
    assert frame.loc[0, "d_flag_script_mismatch"] == 1.0
    assert frame.loc[0, "a_flag_script_shift"] > 0.9
    assert frame.loc[0, "s_flag_prompt_script_cjk"] == 1.0
    assert frame.loc[0, "s_flag_any_script_mismatch"] == 1.0


def test_same_script_and_letterless_answers_are_not_mismatched():
    battles = _battles("Расскажи о Москве", ["Москва — столица России."], ["42 🙂"])
    frame = _frame(battles)
    assert frame.loc[0, "a_flag_script_mismatch"] == 0.0
    assert frame.loc[0, "b_flag_script_mismatch"] == 0.0
    assert frame.loc[0, "a_flag_script_cyrillic"] == 1.0


def test_very_long_answers_are_handled_quickly():
    long_text = "I'm sorry, but " + "very long answer " * 10_000 + "end"
    battles = _battles("q", [long_text], [long_text[::-1]])
    start = time.perf_counter()
    frame = _frame(battles)
    assert time.perf_counter() - start < 30.0  # a hang guard, not a speed target
    assert frame.loc[0, "a_flag_refusal"] == 1.0
    assert np.isfinite(frame.to_numpy()).all()


# --- real data -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_refusal_flags_are_plausible_on_the_real_corpus(corpus_path):
    battles = read_battles(corpus_path)
    frame = _frame(battles)
    labels = battles["label"].to_numpy()
    refuse_a = frame["a_flag_refusal"].to_numpy() > 0
    refuse_b = frame["b_flag_refusal"].to_numpy() > 0

    rate = (refuse_a.mean() + refuse_b.mean()) / 2
    assert 0.005 < rate < 0.05  # measured 1.7% of responses

    # Exactly one side refuses, decisive vote: does the refusing side lose?
    one = (refuse_a != refuse_b) & (labels != 2)
    refuser_loses = (refuse_a & (labels == 1)) | (refuse_b & (labels == 0))
    harmless = battles["source"].isin(HARMLESSNESS_SOURCES).to_numpy()
    # Harmlessness sets prefer the refusal (the "chosen" answer declines a
    # harmful request): measured 21% losses on 103 rows. Elsewhere refusals
    # lose about half the time (52% on 90 rows); 36% over all 193 rows.
    assert refuser_loses[one & harmless].mean() < 0.35
    assert refuser_loses[one & ~harmless].mean() > 0.45

    identical = frame["s_flag_identical"].to_numpy() > 0
    assert (labels[identical] == 2).mean() > 0.6  # measured 89% ties (35 rows)
