"""Tests of the refusal kinds: ethics vs capability refusals, hard refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import features.blocks.refusal_kinds as kinds_module
from features.battles import read_battles
from features.blocks.flags import FlagsBlock
from features.blocks.refusal_kinds import kind_phrases, refusal_kinds
from features.errors import InvalidParameterError

KAGGLE = Path(__file__).resolve().parents[3].parent / "shared/data/corpus/kaggle.csv"
KIND_COLUMNS = ("refusal_ethics", "refusal_capability", "hard_refusal")


def _battles(answers_a, answers_b, prompt="Tell me") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": [[prompt]] * len(answers_a),
            "response_a": [[a] for a in answers_a],
            "response_b": [[b] for b in answers_b],
        }
    )


def _kinds(text: str) -> tuple[bool, bool, bool]:
    """(ethics, capability, hard) as the flags block computes them for side A."""
    block = FlagsBlock(refusal_kinds=True)
    frame = block.transform(_battles([text], ["Fine."])).to_frame()
    return tuple(bool(frame[f"a_flag_{name}"].iloc[0]) for name in KIND_COLUMNS)


ETHICS_REFUSALS = {
    "en": "I'm sorry, but I cannot help with that as it is harmful and illegal.",
    "en-ai": "As an AI language model, I must not provide instructions for that.",
    "es": "Lo siento, pero no puedo ayudarte con eso porque es ilegal y peligroso.",
    "zh": "抱歉，我不能提供这种信息，因为它是违法的。",
    "ru": "Я не могу помочь с этим: это незаконно и опасно.",
    "de": "Es tut mir leid, aber ich kann nicht helfen, das wäre illegal.",
    "fr": "Je suis désolé, mais je ne peux pas vous aider, c'est illégal.",
}

CAPABILITY_DISCLAIMERS = {
    "browse": "I'm sorry, but I can't browse the web or open that link.",
    "realtime": "I don't have real-time information about today's weather.",
    "cutoff": "As of my knowledge cutoff in September 2021, no such event happened.",
    "images": "I cannot see images, so please describe the picture to me.",
    "es": "Lo siento, no tengo acceso a internet ni a información en tiempo real.",
    "zh": "抱歉，我无法浏览互联网，也没有实时信息。",
}


@pytest.mark.parametrize("language", sorted(ETHICS_REFUSALS))
def test_an_ethics_refusal_is_flagged_ethics_not_capability(language):
    ethics, capability, hard = _kinds(ETHICS_REFUSALS[language])
    assert ethics
    assert not capability
    assert hard


@pytest.mark.parametrize("case", sorted(CAPABILITY_DISCLAIMERS))
def test_a_capability_disclaimer_is_capability_not_ethics(case):
    ethics, capability, _ = _kinds(CAPABILITY_DISCLAIMERS[case])
    assert capability
    assert not ethics


def test_a_hedge_followed_by_an_answer_is_not_a_hard_refusal():
    answer = (
        "As an AI, I don't have real-time information, but as of 2021 Paris "
        "was the capital of France. It lies on the Seine, has about two million "
        "inhabitants in the city proper and more than twelve million in its "
        "metropolitan area. Its best-known sights include the Eiffel Tower, the "
        "Louvre, Notre-Dame and the Arc de Triomphe, and it is a centre of "
        "finance, fashion and the arts."
    )
    ethics, capability, hard = _kinds(answer)
    assert capability
    assert not ethics
    assert not hard


def test_a_short_refusal_with_an_explanation_is_hard():
    answer = (
        "I'm sorry, but I cannot assist with that request. Making explosives "
        "is dangerous and illegal."
    )
    assert _kinds(answer) == (True, False, True)


@pytest.mark.parametrize(
    "text",
    [
        "Sure! Here is a poem about the sea.",
        "I can't wait to help you plan the trip!",
        "The harmonica is a harmless instrument.",
        "There is no harm in asking: the answer is 42.",
    ],
)
def test_ordinary_answers_are_no_refusal_of_any_kind(text):
    assert _kinds(text) == (False, False, False)


def test_hard_refusal_words_moves_the_limit():
    text = "I'm sorry, but I can't help with that. " + "It is illegal. " * 5
    assert refusal_kinds(text, declined=True, hard_words=30).hard
    assert not refusal_kinds(text, declined=True, hard_words=5).hard


def test_a_capability_cue_without_a_decline_is_no_disclaimer():
    text = "We built a real-time data pipeline and a web browsing feature."
    assert refusal_kinds(text, declined=False) == (False, False, False)
    assert refusal_kinds("As an AI, I can't browse the web.", declined=False)[1]


def test_cues_only_count_in_the_opening_window():
    text = "Here is the story you asked for. " * 20 + "It is harmful, I cannot."
    assert not refusal_kinds(text, declined=False, window=300).ethics
    assert refusal_kinds(text, declined=False, window=len(text) + 10).ethics


def test_kind_columns_come_per_side_with_differences_and_pairs():
    battles = _battles(
        [ETHICS_REFUSALS["en"], CAPABILITY_DISCLAIMERS["browse"]],
        [CAPABILITY_DISCLAIMERS["cutoff"], ETHICS_REFUSALS["zh"]],
    )
    frame = FlagsBlock(refusal_kinds=True).transform(battles).to_frame()
    np.testing.assert_array_equal(frame["a_flag_refusal_ethics"], [1, 0])
    np.testing.assert_array_equal(frame["d_flag_refusal_ethics"], [1, -1])
    np.testing.assert_array_equal(frame["d_flag_refusal_capability"], [-1, 1])
    np.testing.assert_array_equal(frame["s_flag_any_refusal_ethics"], [1, 1])
    np.testing.assert_array_equal(frame["s_flag_both_refusal_ethics"], [0, 0])
    np.testing.assert_array_equal(frame["s_flag_both_hard_refusal"], [0, 1])


def test_kinds_are_swap_consistent(swap_check):
    texts = [*ETHICS_REFUSALS.values(), *CAPABILITY_DISCLAIMERS.values()]
    battles = _battles(texts, texts[::-1])
    swap_check(FlagsBlock(refusal_kinds=True).fit(battles), battles)


def test_refusal_kinds_false_leaves_the_kind_columns_out():
    battles = _battles([ETHICS_REFUSALS["en"]], ["Fine."])
    with_kinds = FlagsBlock(refusal_kinds=True).transform(battles).columns
    without = FlagsBlock(refusal_kinds=False).transform(battles).columns
    extra = set(with_kinds) - set(without)
    assert len(extra) == 3 * 3 + 3 * 2
    assert all(any(name in column for name in KIND_COLUMNS) for column in extra)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"refusal_kinds": "yes"}, "refusal_kinds"),
        ({"hard_refusal_words": -1}, "hard_refusal_words"),
    ],
)
def test_flags_block_rejects_bad_kind_params(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        FlagsBlock(**params).transform(_battles(["a"], ["b"]))


def test_cue_lists_cover_the_common_languages():
    phrases = kind_phrases()
    for name in ("ethics_cues", "capability_cues", "declines"):
        assert {"en", "zh", "es", "ru", "de", "fr"} <= set(phrases[name])


def test_missing_cue_file_says_how_to_reinstall(monkeypatch):
    monkeypatch.setattr(kinds_module, "KINDS_RESOURCE", "no-such-file.json")
    kind_phrases.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="pip install -e"):
            kind_phrases()
    finally:
        monkeypatch.undo()
        kind_phrases.cache_clear()


def test_on_kaggle_ethics_refusals_lose_more_than_capability_disclaimers():
    """Arena voters: an ethics refusal loses far more often than a disclaimer."""
    if not KAGGLE.exists():
        pytest.skip(f"Kaggle corpus rows not found at {KAGGLE}")
    battles = read_battles(KAGGLE)
    frame = FlagsBlock(refusal_kinds=True).transform(battles).to_frame()
    labels = battles["label"].to_numpy()

    def refuser_win_rate(kind: str) -> float:
        a, b = frame[f"a_flag_{kind}"].to_numpy(), frame[f"b_flag_{kind}"].to_numpy()
        one = (a != b) & (labels != 2)
        refuser_won = np.where(a > b, labels == 0, labels == 1)[one]
        assert one.sum() >= 10, f"too few decisive battles with one {kind}"
        return float(refuser_won.mean())

    assert refuser_win_rate("refusal_ethics") < 0.35
    assert refuser_win_rate("refusal_capability") > refuser_win_rate("refusal_ethics")
