"""Tests for the synthetic demo battle generator: layout, quirks and planted effects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.make_demo_data import (
    COLUMNS,
    TARGET_COLUMNS,
    main,
    make_demo_battles,
)

KAGGLE_TRAIN_COLUMNS = [
    "id",
    "model_a",
    "model_b",
    "prompt",
    "response_a",
    "response_b",
    "winner_model_a",
    "winner_model_b",
    "winner_tie",
]
TEXT_COLUMNS = ["prompt", "response_a", "response_b"]
CSV_FIELD_LIMIT = 131_072
REFUSAL_STARTS = (
    "I'm sorry",
    "I apologize",
    "As an AI",
    "抱歉",
    "作为一个人工智能",
    "Извините",
    "Как языковая модель",
    "Lo siento",
    "Como modelo de lenguaje",
)
SURROGATE_PAIR = re.compile(r"\\ud8[0-9a-f]{2}\\ud[c-f][0-9a-f]{2}")
LONE_HIGH_SURROGATE = re.compile(r"\\ud8[0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})")


def _parse(field: str) -> list[object] | None:
    """The field as a JSON list, or None when it is not one."""
    try:
        value = json.loads(field)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def _text_chars(field: str) -> int | None:
    turns = _parse(field)
    if turns is None:
        return None
    return sum(len(turn) for turn in turns if isinstance(turn, str))


def _is_refusal(field: str) -> bool:
    turns = _parse(field)
    if not turns or not isinstance(turns[-1], str):
        return False
    return turns[-1].strip().startswith(REFUSAL_STARTS)


def _labels(frame: pd.DataFrame) -> np.ndarray:
    """0 for A, 1 for B, 2 for tie."""
    return frame[list(TARGET_COLUMNS)].to_numpy().argmax(axis=1)


@pytest.fixture(scope="module")
def battles() -> pd.DataFrame:
    return make_demo_battles(n_rows=2000, seed=0)


@pytest.fixture(scope="module")
def parsed(battles: pd.DataFrame) -> dict[str, list[list[object] | None]]:
    return {
        column: [_parse(field) for field in battles[column]] for column in TEXT_COLUMNS
    }


# Layout


def test_columns_are_the_kaggle_train_layout_plus_source(battles: pd.DataFrame) -> None:
    assert list(battles.columns) == [*KAGGLE_TRAIN_COLUMNS, "source"]
    assert list(COLUMNS) == [*KAGGLE_TRAIN_COLUMNS, "source"]
    assert len(battles) == 2000


def test_targets_are_one_hot_integers(battles: pd.DataFrame) -> None:
    targets = battles[list(TARGET_COLUMNS)]
    assert all(pd.api.types.is_integer_dtype(dtype) for dtype in targets.dtypes)
    assert set(np.unique(targets.to_numpy())) == {0, 1}
    assert (targets.sum(axis=1) == 1).all()


def test_ids_are_unique_integers(battles: pd.DataFrame) -> None:
    assert pd.api.types.is_integer_dtype(battles["id"])
    assert battles["id"].is_unique
    assert (battles["id"] > 0).all()


def test_text_fields_that_parse_are_ascii_json_lists(
    battles: pd.DataFrame, parsed: dict[str, list[list[object] | None]]
) -> None:
    for column in TEXT_COLUMNS:
        for field, turns in zip(battles[column], parsed[column], strict=True):
            if turns is not None:
                assert field.isascii(), field[:80]
    valid = sum(turns is not None for turns in parsed["response_a"])
    assert valid > 0.99 * len(battles)


def test_most_battles_are_single_turn(
    parsed: dict[str, list[list[object] | None]],
) -> None:
    turn_counts = [len(turns) for turns in parsed["prompt"] if turns is not None]
    single = np.mean([count == 1 for count in turn_counts])
    assert 0.84 <= single <= 0.92
    assert max(turn_counts) == 3


def test_prompts_include_chinese_russian_and_spanish(
    parsed: dict[str, list[list[object] | None]],
) -> None:
    text = " ".join(
        turn
        for turns in parsed["prompt"]
        if turns
        for turn in turns
        if isinstance(turn, str)
    )
    assert re.search(r"[\u4e00-\u9fff]", text)
    assert re.search(r"[а-яА-Я]", text)
    assert re.search(r"[¿¡ñá]", text)


def test_responses_include_markdown_headers_lists_bold_and_code(
    battles: pd.DataFrame,
) -> None:
    text = "\n".join(
        turn
        for field in battles["response_a"]
        for turn in (_parse(field) or [])
        if isinstance(turn, str)
    )
    assert re.search(r"(?m)^## ", text)
    assert re.search(r"(?m)^- ", text)
    assert re.search(r"(?m)^1\. ", text)
    assert "**" in text
    assert "```python" in text


def test_sources_are_named_and_differ_in_tie_rate(battles: pd.DataFrame) -> None:
    tie_rates = battles.groupby("source")["winner_tie"].mean()
    assert 2 <= len(tie_rates) <= 3
    assert all(name.startswith("synthetic-") for name in tie_rates.index)
    assert tie_rates.max() - tie_rates.min() > 0.05


def test_same_seed_gives_same_table_and_other_seeds_differ() -> None:
    first = make_demo_battles(n_rows=300, seed=7)
    pd.testing.assert_frame_equal(first, make_demo_battles(n_rows=300, seed=7))
    other = make_demo_battles(n_rows=300, seed=8)
    assert not first["response_a"].equals(other["response_a"])
    assert not first["winner_tie"].equals(other["winner_tie"])


@pytest.mark.parametrize("n_rows", [1, 5, 50])
def test_small_tables_are_generated(n_rows: int) -> None:
    small = make_demo_battles(n_rows=n_rows, seed=3)
    assert len(small) == n_rows
    assert small["id"].is_unique
    assert (small[list(TARGET_COLUMNS)].sum(axis=1) == 1).all()


def test_fields_stay_under_the_csv_limit_below_2000_rows() -> None:
    small = make_demo_battles(n_rows=500, seed=0)
    lengths = small[TEXT_COLUMNS].apply(lambda column: column.str.len())
    assert lengths.to_numpy().max() <= CSV_FIELD_LIMIT


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_rows": 0}, ValueError, r"n_rows must be >= 1\. Got 0"),
        ({"seed": -1}, ValueError, r"seed must be >= 0\. Got -1"),
        ({"n_rows": 2.5}, TypeError, r"n_rows must be an integer\. Got 2\.5"),
        ({"seed": "0"}, TypeError, r"seed must be an integer\. Got '0'"),
        ({"n_rows": True}, TypeError, r"n_rows must be an integer\. Got True"),
    ],
)
def test_bad_arguments_raise_with_the_value(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make_demo_battles(**kwargs)  # type: ignore[arg-type]


# Quirks


def test_some_responses_have_a_null_turn_among_text_turns(
    parsed: dict[str, list[list[object] | None]],
) -> None:
    hits = [
        turns
        for column in ("response_a", "response_b")
        for turns in parsed[column]
        if turns
        and len(turns) > 1
        and None in turns
        and any(isinstance(turn, str) for turn in turns)
    ]
    assert len(hits) >= 3


def test_some_responses_are_a_whole_null_list(battles: pd.DataFrame) -> None:
    null_a = battles["response_a"] == "[null]"
    null_b = battles["response_b"] == "[null]"
    assert (null_a | null_b).sum() >= 3
    assert (null_a & null_b).sum() >= 1


def test_some_responses_are_empty_or_whitespace_only(
    battles: pd.DataFrame, parsed: dict[str, list[list[object] | None]]
) -> None:
    responses = pd.concat([battles["response_a"], battles["response_b"]])
    assert (responses == '[""]').sum() >= 3
    assert ((battles["response_a"] == '[""]') & (battles["response_b"] == '[""]')).any()
    whitespace = [
        turns
        for column in ("response_a", "response_b")
        for turns in parsed[column]
        if turns
        and all(isinstance(turn, str) and turn and not turn.strip() for turn in turns)
    ]
    assert len(whitespace) >= 3


def test_emoji_are_written_as_surrogate_pair_escapes(battles: pd.DataFrame) -> None:
    raw = battles[TEXT_COLUMNS].stack()
    with_pairs = raw[raw.str.contains(SURROGATE_PAIR)]
    assert len(with_pairs) >= 3
    assert "\\ud83c\\udf4d" in "".join(raw)  # the pineapple of the real file
    decoded = [turn for turn in json.loads(with_pairs.iloc[0]) if isinstance(turn, str)]
    assert any(ord(char) > 0xFFFF for turn in decoded for char in turn)


def test_some_fields_hold_lone_surrogate_escapes_that_do_not_encode(
    battles: pd.DataFrame,
) -> None:
    raw = battles[TEXT_COLUMNS].stack()
    lone = raw[raw.str.contains(LONE_HIGH_SURROGATE)]
    assert len(lone) >= 3
    for field in lone:
        text = "".join(turn for turn in json.loads(field) if isinstance(turn, str))
        with pytest.raises(UnicodeEncodeError):
            text.encode("utf-8")


def test_some_fields_are_not_json_lists(
    battles: pd.DataFrame, parsed: dict[str, list[list[object] | None]]
) -> None:
    broken = [
        field
        for column in TEXT_COLUMNS
        for field, turns in zip(battles[column], parsed[column], strict=True)
        if turns is None
    ]
    assert len(broken) >= 3
    assert any(field.startswith('["') for field in broken)  # truncated list
    assert any(not field.startswith("[") for field in broken)  # plain text


def test_some_fields_exceed_the_default_csv_field_limit(battles: pd.DataFrame) -> None:
    lengths = battles[TEXT_COLUMNS].apply(lambda column: column.str.len())
    assert 1 <= (lengths > CSV_FIELD_LIMIT).to_numpy().sum() <= 2


def test_some_responses_have_another_turn_count_than_the_prompt(
    parsed: dict[str, list[list[object] | None]],
) -> None:
    mismatched = sum(
        prompt is not None and response is not None and len(prompt) != len(response)
        for column in ("response_a", "response_b")
        for prompt, response in zip(parsed["prompt"], parsed[column], strict=True)
    )
    assert mismatched >= 3


def test_some_turns_are_numbers_or_nested_lists(
    parsed: dict[str, list[list[object] | None]],
) -> None:
    odd = [
        turn
        for column in ("response_a", "response_b")
        for turns in parsed[column]
        if turns
        for turn in turns
        if turn is not None and not isinstance(turn, str)
    ]
    assert len(odd) >= 3
    assert all(isinstance(turn, (int, float, list)) for turn in odd)


def test_some_battles_have_identical_responses(battles: pd.DataFrame) -> None:
    assert (battles["response_a"] == battles["response_b"]).sum() >= 20


def test_greeting_prompts_repeat_with_different_labels(battles: pd.DataFrame) -> None:
    greetings = battles[battles["prompt"].isin(['["hey"]', '["hi"]', '["hello"]'])]
    label_counts = greetings.groupby("prompt")[list(TARGET_COLUMNS)].sum()
    assert (label_counts.sum(axis=1) >= 2).all()
    assert ((label_counts > 0).sum(axis=1) >= 2).any()


# Planted effects


def test_class_shares_resemble_the_arena(battles: pd.DataFrame) -> None:
    shares = np.bincount(_labels(battles), minlength=3) / len(battles)
    assert 0.31 <= shares[0] <= 0.41
    assert 0.29 <= shares[1] <= 0.39
    assert 0.25 <= shares[2] <= 0.35


def test_longer_response_wins_most_decisive_battles(battles: pd.DataFrame) -> None:
    chars_a = battles["response_a"].map(_text_chars)
    chars_b = battles["response_b"].map(_text_chars)
    labels = _labels(battles)
    keep = chars_a.notna() & chars_b.notna() & (chars_a != chars_b) & (labels < 2)
    longer_wins = ((chars_a > chars_b) == (labels == 0))[keep]
    assert keep.sum() > 1000
    assert longer_wins.mean() > 0.58


def test_refusals_lose_most_decisive_battles(battles: pd.DataFrame) -> None:
    refusal_a = battles["response_a"].map(_is_refusal).to_numpy()
    refusal_b = battles["response_b"].map(_is_refusal).to_numpy()
    labels = _labels(battles)
    keep = (refusal_a != refusal_b) & (labels < 2)
    refusal_loses = (labels == 0) == refusal_b
    assert keep.sum() >= 40
    assert refusal_loses[keep].mean() > 0.75


def test_identical_responses_are_mostly_ties(battles: pd.DataFrame) -> None:
    identical = (battles["response_a"] == battles["response_b"]).to_numpy()
    assert (_labels(battles)[identical] == 2).mean() > 0.70


def test_first_position_wins_slightly_more_often(battles: pd.DataFrame) -> None:
    shares = np.bincount(_labels(battles), minlength=3) / len(battles)
    assert 0.0 < shares[0] - shares[1] < 0.08


# Command line


def test_cli_writes_a_readable_csv_and_reports_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], battles: pd.DataFrame
) -> None:
    out = tmp_path / "nested" / "demo" / "train.csv"
    status = main(["--out", str(out), "--n-rows", "2000", "--seed", "0", "--quiet"])
    assert status == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert str(out) in last_line
    assert "2,000 rows" in last_line
    assert re.search(r"A \d+\.\d%, B \d+\.\d%, tie \d+\.\d%", last_line)
    assert [path.name for path in out.parent.iterdir()] == ["train.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(out), battles, check_dtype=False)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--n-rows", "0"], "--n-rows must be >= 1. Got 0."),
        (["--seed", "-1"], "--seed must be >= 0. Got -1."),
    ],
)
def test_cli_rejects_bad_values_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: list[str],
    message: str,
) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x.csv"), *option])
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "train.csv"
    out.write_text("old\n", encoding="utf-8")

    def _fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", _fail)
    with pytest.raises(OSError, match="disk full"):
        main(["--out", str(out), "--n-rows", "20", "--quiet"])
    assert out.read_text(encoding="utf-8") == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["train.csv"]


def test_cli_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for option in ("--out", "--n-rows", "--seed", "--verbose", "--quiet"):
        assert option in help_text
