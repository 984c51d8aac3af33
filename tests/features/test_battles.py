"""The battle data layer: every quirk of DATA.md, every reader, every clear error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.battles import (
    CLASSES,
    LONG_FIELD_CHARS,
    BattleFormatError,
    as_battles,
    battle_fingerprint,
    battle_ids,
    labels_to_onehot,
    read_battles,
    repair_report,
    swap,
    truncate_battles,
)
from features.errors import DataFileError


def _kaggle_row(battle_id, prompt, response_a, response_b, label=0):
    onehot = [0, 0, 0]
    onehot[label] = 1
    return {
        "id": battle_id,
        "model_a": "m1",
        "model_b": "m2",
        "prompt": prompt,
        "response_a": response_a,
        "response_b": response_b,
        **dict(zip(CLASSES, onehot, strict=True)),
    }


def _write_csv(tmp_path, rows, name="train.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _read_one(tmp_path, prompt='["q"]', response_a='["a"]', response_b='["b"]'):
    path = _write_csv(tmp_path, [_kaggle_row(1, prompt, response_a, response_b)])
    battles = read_battles(path)
    return battles.iloc[0], repair_report(battles)


# ------------------------------------------------------------------ quirks
def test_null_turn_becomes_empty_string_and_is_counted(tmp_path):
    row, report = _read_one(tmp_path, response_a='["Hello", null]', prompt='["a", "b"]')
    assert row["response_a"] == ["Hello", ""]
    assert report.counts["null_turn"] == 1


def test_whole_null_response_is_one_empty_turn_and_flagged_empty(tmp_path):
    row, report = _read_one(tmp_path, response_b="[null]")
    assert row["response_b"] == [""]
    assert report.counts["null_turn"] == 1
    assert report.counts["empty_response"] == 1


@pytest.mark.parametrize("text", ['[""]', '["   \\n\\t "]', "[]"])
def test_empty_and_whitespace_answers_are_kept_and_counted(tmp_path, text):
    row, report = _read_one(tmp_path, response_a=text)
    assert len(row["response_a"]) == 1
    assert row["response_a"][0].strip() == ""
    assert report.counts["empty_response"] == 1


def test_escaped_surrogate_pair_decodes_to_one_emoji(tmp_path):
    row, report = _read_one(tmp_path, response_a='["pineapple \\ud83c\\udf4d"]')
    assert row["response_a"] == ["pineapple \U0001f34d"]
    assert report.n_repairs == 0


def test_lone_surrogate_is_replaced_not_crashing(tmp_path):
    row, report = _read_one(tmp_path, response_a='["broken \\ud83c here"]')
    assert row["response_a"] == ["broken \ufffd here"]
    assert report.counts["lone_surrogate"] == 1
    row["response_a"][0].encode("utf-8")  # must be encodable


def test_decoded_surrogate_pair_characters_are_joined():
    frame = pd.DataFrame(
        [
            {
                "id": 1,
                "prompt": ["q"],
                "response_a": ["\ud83c\udf4d"],
                "response_b": ["b"],
            }
        ]
    )
    battles = as_battles(frame)
    assert battles.loc[0, "response_a"] == ["\U0001f34d"]
    assert repair_report(battles).counts["surrogates_joined"] == 1


@pytest.mark.parametrize("broken", ['["unterminated', "plain text answer", "{'a': 1}"])
def test_invalid_json_falls_back_to_one_raw_turn_and_is_counted(tmp_path, broken):
    row, report = _read_one(tmp_path, response_b=broken)
    assert row["response_b"] == [broken]
    assert report.counts["invalid_json"] == 1


def test_json_that_is_not_a_list_is_one_raw_turn(tmp_path):
    row, report = _read_one(tmp_path, response_b='"just a string"')
    assert row["response_b"] == ['"just a string"']
    assert report.counts["invalid_json"] == 1


def test_fields_longer_than_the_csv_module_limit_are_read_in_full(tmp_path):
    long_text = "x" * (LONG_FIELD_CHARS + 10_000)
    row, report = _read_one(tmp_path, response_a=json.dumps([long_text]))
    assert row["response_a"] == [long_text]
    assert report.counts["long_field"] == 1


def test_turn_count_mismatch_is_kept_and_counted(tmp_path):
    row, report = _read_one(tmp_path, prompt='["q1", "q2"]', response_a='["a1"]')
    assert row["response_a"] == ["a1"]
    assert row["prompt"] == ["q1", "q2"]
    assert report.counts["turn_count_mismatch"] == 1


def test_non_string_turns_become_their_json_text(tmp_path):
    row, report = _read_one(
        tmp_path, response_a='[42, {"k": "v"}, ["x"]]', prompt='["q", "r", "s"]'
    )
    assert row["response_a"] == ["42", '{"k": "v"}', '["x"]']
    assert report.counts["non_string_turn"] == 3


def test_missing_cell_is_one_empty_turn_and_counted(tmp_path):
    path = _write_csv(tmp_path, [_kaggle_row(1, '["q"]', None, '["b"]')])
    battles = read_battles(path)
    assert battles.loc[0, "response_a"] == [""]
    assert repair_report(battles).counts["null_field"] == 1


def test_nothing_is_dropped_and_every_text_is_a_list_of_strings(tmp_path):
    rows = [
        _kaggle_row(1, '["q"]', "[null]", '["b"]'),
        _kaggle_row(2, "broken[", '["a"]', '[""]', label=1),
        _kaggle_row(3, '["q"]', '["\\ud83d"]', "[1, 2]", label=2),
    ]
    battles = read_battles(_write_csv(tmp_path, rows))
    assert len(battles) == 3
    for column in ("prompt", "response_a", "response_b"):
        for turns in battles[column]:
            assert isinstance(turns, list) and all(isinstance(t, str) for t in turns)


# ------------------------------------------------------------------ errors
def test_missing_columns_error_names_missing_and_found(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"id": [1], "prompt": ['["q"]'], "answer": ['["a"]']}).to_csv(path)
    with pytest.raises(
        BattleFormatError,
        match=r"missing column\(s\) \['response_a', 'response_b'\]; found \[.*'answer'",
    ):
        read_battles(path)


def test_labels_not_one_hot_error_names_the_rows(tmp_path):
    rows = [_kaggle_row(i, '["q"]', '["a"]', '["b"]') for i in range(3)]
    rows[1]["winner_model_b"] = 1
    rows[2]["winner_model_a"] = 0
    with pytest.raises(
        BattleFormatError, match=r"not one-hot in '1' \(row 1\), '2' \(row 2\)"
    ):
        read_battles(_write_csv(tmp_path, rows))


def test_duplicate_ids_error_names_ids_and_rows(tmp_path):
    rows = [
        _kaggle_row(7, '["q"]', '["a"]', '["b"]'),
        _kaggle_row(7, '["r"]', '["a"]', '["b"]'),
    ]
    with pytest.raises(
        BattleFormatError, match=r"duplicate battle ids: '7' \(row 0\), '7' \(row 1\)"
    ):
        read_battles(_write_csv(tmp_path, rows))


def test_empty_id_is_an_error_naming_the_row():
    frame = pd.DataFrame(
        {
            "id": [1, None],
            "prompt": ["[]", "[]"],
            "response_a": ["[]", "[]"],
            "response_b": ["[]", "[]"],
        }
    )
    with pytest.raises(BattleFormatError, match=r"column 'id' is empty in row\(s\) 1"):
        as_battles(frame)


def test_training_without_targets_is_a_clear_error(tmp_path):
    path = _write_csv(
        tmp_path,
        [{"id": 1, "prompt": '["q"]', "response_a": '["a"]', "response_b": '["b"]'}],
    )
    with pytest.raises(
        BattleFormatError, match=r"missing column\(s\) \['winner_model_a'"
    ):
        read_battles(path, labelled=True)


def test_unknown_file_suffix_is_a_clear_error(tmp_path):
    path = tmp_path / "battles.xlsx"
    path.write_text("x")
    with pytest.raises(
        DataFileError, match=r"cannot tell the format of '.*battles\.xlsx'.* Use \.csv"
    ):
        read_battles(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_battles(tmp_path / "nope.csv")


def test_wrong_input_type_is_a_type_error():
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        as_battles(42)


def test_bad_label_column_is_an_error_naming_rows():
    frame = pd.DataFrame(
        {
            "id": ["x"],
            "prompt": [["q"]],
            "response_a": [["a"]],
            "response_b": [["b"]],
            "label": [5],
        }
    )
    with pytest.raises(
        BattleFormatError,
        match=r"column 'label' must be 0 \(A\), 1 \(B\) or 2 \(tie\); "
        r"bad value in 'x' \(row 0\)",
    ):
        as_battles(frame)


# ------------------------------------------------------------------ readers
def test_kaggle_test_csv_reads_without_labels(tmp_path):
    path = _write_csv(
        tmp_path,
        [{"id": 5, "prompt": '["q"]', "response_a": '["a"]', "response_b": '["b"]'}],
        "test.csv",
    )
    battles = read_battles(path)
    assert "label" not in battles.columns
    assert battles.loc[0, "id"] == "5"


def test_kaggle_labels_map_to_class_indices(tmp_path):
    rows = [_kaggle_row(i, '["q"]', '["a"]', '["b"]', label=i % 3) for i in range(6)]
    battles = read_battles(_write_csv(tmp_path, rows))
    assert battles["label"].tolist() == [0, 1, 2, 0, 1, 2]
    assert battles["model_a"].tolist() == ["m1"] * 6  # pass-through columns stay


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_parquet_and_json_lines_read_like_csv(tmp_path, suffix):
    rows = [
        _kaggle_row(i, '["q"]', '["a", null]', '["b"]', label=i % 3) for i in range(4)
    ]
    frame = pd.DataFrame(rows)
    path = tmp_path / f"train{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    battles = read_battles(path)
    assert battles["label"].tolist() == [0, 1, 2, 0]
    assert battles.loc[0, "response_a"] == ["a", ""]


def test_canonical_parquet_with_list_columns_round_trips(tmp_path, hand_battles):
    path = tmp_path / "canonical.parquet"
    hand_battles.to_parquet(path)
    battles = read_battles(path)
    assert battles["response_a"].tolist() == hand_battles["response_a"].tolist()
    assert battles["label"].tolist() == hand_battles["label"].tolist()


def test_arena_conversation_dump_reader_merges_bothbad_into_tie(tmp_path):
    def conv(answer):
        return [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": answer},
        ]

    records = [
        {
            "question_id": "q1",
            "conversation_a": conv("A1"),
            "conversation_b": conv("B1"),
            "winner": "model_a",
        },
        {
            "question_id": "q2",
            "conversation_a": conv("A2"),
            "conversation_b": conv(None),
            "winner": "tie (bothbad)",
        },
        {
            "question_id": "q3",
            "conversation_a": conv("A3"),
            "conversation_b": conv("B3"),
            "winner": "model_b",
        },
        {
            "question_id": "q4",
            "conversation_a": conv("A4"),
            "conversation_b": conv("B4"),
            "winner": "tie",
        },
    ]
    path = tmp_path / "arena.json"
    path.write_text(json.dumps(records))
    battles = read_battles(path)
    assert battles["label"].tolist() == [0, 2, 1, 2]
    assert battles.loc[0, "prompt"] == ["hi"]
    assert battles.loc[1, "response_b"] == [""]
    assert battles["id"].tolist() == ["q1", "q2", "q3", "q4"]


def test_arena_unknown_winner_is_a_clear_error():
    conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    frame = pd.DataFrame(
        {
            "id": [1],
            "conversation_a": [conv],
            "conversation_b": [conv],
            "winner": ["draw"],
        }
    )
    with pytest.raises(
        BattleFormatError, match=r"unknown 'winner' value in '1' \(row 0\)"
    ):
        read_battles(frame)


def test_arena_message_without_role_is_a_clear_error():
    frame = pd.DataFrame(
        {"id": [1], "conversation_a": [[{"content": "x"}]], "conversation_b": [[]]}
    )
    with pytest.raises(
        BattleFormatError,
        match=r"battle '1': conversation_a holds a message without a 'role'",
    ):
        read_battles(frame)


def test_hh_preference_pairs_share_the_prompt_and_randomise_sides():
    chosen = (
        "\n\nHuman: How do I bake bread?"
        "\n\nAssistant: Mix flour, water, yeast; knead; bake."
    )
    rejected = "\n\nHuman: How do I bake bread?\n\nAssistant: No."
    frame = pd.DataFrame({"chosen": [chosen] * 40, "rejected": [rejected] * 40})
    battles = read_battles(frame)
    assert battles.loc[0, "prompt"] == ["How do I bake bread?"]
    labels = battles["label"].to_numpy()
    assert set(labels) == {0, 1}  # sides assigned at random, both occur
    for row in battles.itertuples():
        winner = row.response_a if row.label == 0 else row.response_b
        assert winner == ["Mix flour, water, yeast; knead; bake."]


def test_preference_pairs_without_markers_are_one_turn_each_and_counted():
    frame = pd.DataFrame({"prompt": ["q"], "chosen": ["good"], "rejected": ["bad"]})
    battles = read_battles(frame)
    assert battles.loc[0, "prompt"] == ["q"]
    assert sorted(
        [battles.loc[0, "response_a"][0], battles.loc[0, "response_b"][0]]
    ) == ["bad", "good"]
    assert repair_report(battles).counts["plain_pair_text"] == 1


@pytest.mark.parametrize("form", ["kaggle", "canonical", "records", "columns"])
def test_as_battles_accepts_every_public_input_form(form, hand_battles):
    if form == "kaggle":
        given = hand_battles.assign(
            **{
                c: hand_battles[c].map(json.dumps)
                for c in ("prompt", "response_a", "response_b")
            }
        )
    elif form == "canonical":
        given = hand_battles[
            ["id", "prompt", "response_a", "response_b", "label"]
        ].copy()
        given.attrs.clear()
    elif form == "records":
        given = hand_battles[["id", "prompt", "response_a", "response_b"]].to_dict(
            orient="records"
        )
    else:
        given = hand_battles[["id", "prompt", "response_a", "response_b"]].to_dict(
            orient="list"
        )
    battles = as_battles(given)
    assert battles["response_b"].tolist() == hand_battles["response_b"].tolist()


# ------------------------------------------------------------------ helpers
def test_swap_exchanges_responses_and_maps_labels(hand_battles):
    swapped = swap(hand_battles)
    assert swapped["response_a"].tolist() == hand_battles["response_b"].tolist()
    expected = np.array([1, 0, 2])[hand_battles["label"].to_numpy()]
    assert swapped["label"].tolist() == expected.tolist()
    assert swap(swapped)["response_a"].tolist() == hand_battles["response_a"].tolist()


def test_labels_to_onehot_rejects_out_of_range_values():
    with pytest.raises(
        BattleFormatError, match=r"labels must be 0, 1 or 2 \(A, B, tie"
    ):
        labels_to_onehot([0, 3])


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([2299425.0, 31.0], ["2299425", "31"]),
        (np.array([2299425.0, 12.5]), ["2299425", "12.5"]),
        (pd.Series([7, 8], dtype="Float64"), ["7", "8"]),
        (["x91", 31, "007"], ["x91", "31", "007"]),
    ],
)
def test_battle_ids_write_integral_floats_as_integers(ids, expected):
    assert battle_ids(ids).tolist() == expected


def test_integral_float_ids_of_a_frame_become_integers():
    frame = pd.DataFrame(
        {
            "id": [2299425.0, 12.5],
            "prompt": ['["q"]'] * 2,
            "response_a": ['["a"]'] * 2,
            "response_b": ['["b"]'] * 2,
        }
    )
    assert as_battles(frame)["id"].tolist() == ["2299425", "12.5"]


def test_truncation_keeps_the_end_of_the_conversation():
    battles = as_battles(
        pd.DataFrame(
            {
                "id": [1],
                "prompt": [["old question", "new question"]],
                "response_a": [["a" * 50, "b" * 8 + "END"]],
                "response_b": [["x"]],
            }
        )
    )
    cut = truncate_battles(battles, 10)
    assert cut.loc[0, "response_a"] == ["", "bbbbbbbEND"[-10:]]
    assert cut.loc[0, "response_a"][1].endswith("END")
    assert sum(len(t) for t in cut.loc[0, "prompt"]) <= 10
    assert cut.loc[0, "prompt"][-1] == "new question"[-10:]


def test_fingerprint_changes_with_text_and_not_with_labels(hand_battles):
    base = battle_fingerprint(hand_battles)
    assert battle_fingerprint(hand_battles.assign(label=0)) == base
    changed = hand_battles.copy()
    changed.at[0, "response_a"] = ["different"]
    assert battle_fingerprint(changed) != base


def test_report_string_lists_every_repair_kind(tmp_path):
    _, report = _read_one(
        tmp_path, response_a='["x", null]', response_b="oops", prompt='["q", "r"]'
    )
    text = str(report)
    assert "null_turn" in text and "invalid_json" in text and "read 1 battles" in text


# ------------------------------------------------------------------ real data
@pytest.mark.realdata
def test_real_corpus_loads_every_row_with_a_repair_report(corpus_path):
    battles = read_battles(corpus_path, labelled=True)
    assert len(battles) == 7860
    report = repair_report(battles)
    assert report.n_rows == 7860
    assert report.n_repairs >= 0 and "empty_response" in report.to_dict()["counts"]
    assert set(battles["label"]) == {0, 1, 2}


# ------------------------------------------------------------------ rough edges
_HEADER = "id,prompt,response_a,response_b"
_ROW = '1,"[""q""]","[""a""]","[""b""]"'


def test_a_csv_column_named_twice_is_an_error_naming_it(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text(f'{_HEADER},response_b\n{_ROW},"[""c""]"\n')
    with pytest.raises(
        DataFileError,
        match=r"has the column 'response_b' twice in its header \(columns 4 and 5\);"
        r" the second would be read as 'response_b\.1'",
    ):
        read_battles(path)


def test_a_frame_with_a_repeated_column_is_an_error_naming_it():
    frame = pd.DataFrame(
        [["1", '["q"]', '["a"]', '["b"]', '["c"]']],
        columns=["id", "prompt", "response_a", "response_b", "response_b"],
    )
    with pytest.raises(
        BattleFormatError, match=r"has the column\(s\) \['response_b'\] more than once"
    ):
        as_battles(frame)


def test_a_json_lines_row_with_no_text_field_is_an_error_naming_the_row(tmp_path):
    path = tmp_path / "battles.jsonl"
    rows = [
        {"id": "a1", "prompt": ["q"], "response_a": ["x"], "response_b": ["y"]},
        {"id": "dump7", "conversation": [{"role": "user", "content": "hi"}]},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(
        BattleFormatError,
        match=r"no text in any of \['prompt', 'response_a', 'response_b'\] in "
        r"battle\(s\) 'dump7' \(row 1\): each field is missing or null",
    ):
        read_battles(path)


def test_a_csv_row_with_only_an_id_is_an_error_naming_the_row(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text(f"{_HEADER}\n{_ROW}\n2,,,\n")
    with pytest.raises(BattleFormatError, match=r"battle\(s\) '2' \(row 1\)"):
        read_battles(path)


@pytest.mark.parametrize("present", ["prompt", "response_a", "response_b"])
def test_one_or_two_missing_text_fields_stay_a_repair(present):
    battle = {"id": "1", "prompt": None, "response_a": None, "response_b": None}
    battle[present] = ["some text"]
    battles = as_battles([battle])
    assert battles.loc[0, present] == ["some text"]
    assert repair_report(battles).counts["null_field"] == 2


def test_headers_differing_in_case_or_spaces_say_which_column_they_look_like(
    tmp_path,
):
    path = tmp_path / "test.csv"
    path.write_text(f"ID ,PROMPT ,response_a,response_b\n{_ROW}\n")
    with pytest.raises(
        BattleFormatError,
        match=r"missing column\(s\) \['id', 'prompt'\]; found \['ID ', 'PROMPT ', "
        r"'response_a', 'response_b'\]\. 'ID ' looks like 'id', 'PROMPT ' looks like "
        r"'prompt' \(case or surrounding spaces differ\): rename them\.",
    ):
        read_battles(path)


def test_a_lookalike_beside_the_exact_column_is_an_error():
    frame = pd.DataFrame(
        [["1", '["q"]', '["a"]', '["b"]', '["c"]']],
        columns=["id", "prompt", "response_a", "response_b", "Response_B "],
    )
    with pytest.raises(
        BattleFormatError,
        match=r"columns \['response_b', 'Response_B '\] that differ only in case or "
        r"spaces; 'response_b' is read",
    ):
        read_battles(frame)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        # Bytes 0..255: the first "line" holds a tab and no comma.
        (bytes(range(256)) * 4, r"hold a NUL byte \(offset 0\) and bytes that are"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), r"starts like a zip archive"),
        ("id,prompt\n".encode("utf-16"), r"starts with a UTF-16 byte-order mark"),
        ("id,prompt\n".encode("utf-16-le"), r"10 of its first 20 bytes are NUL"),
    ],
    ids=["binary", "xlsx", "utf16-bom", "utf16"],
)
@pytest.mark.parametrize("name", ["test.csv", "test.jsonl"])
def test_a_binary_file_is_reported_as_not_text(tmp_path, content, reason, name):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(
        DataFileError, match=rf"'.*{name}' is not a UTF-8 text file: .*{reason}"
    ):
        read_battles(path)


def test_a_nul_character_in_utf8_text_is_still_read(tmp_path):
    path = tmp_path / "test.csv"
    path.write_bytes(f'{_HEADER}\n1,"[""q\x00""]","[""a""]","[""b""]"\n'.encode())
    # Read, not refused (raw control characters make it invalid JSON: repaired).
    assert "q\x00" in read_battles(path).loc[0, "prompt"][0]


def test_a_latin1_file_still_names_its_first_bad_byte(tmp_path):
    path = tmp_path / "test.csv"
    text = f'{_HEADER}\n1,"[""café""]","[""a""]","[""b""]"\n'
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(
        BattleFormatError, match=r"not valid UTF-8: byte 0xe9 at offset 41 \(line 2\)"
    ):
        read_battles(path)


def test_an_arena_dump_with_capitalised_headers_is_told_which_column_they_are():
    frame = pd.DataFrame(
        {"id": ["1"], "Conversation_A": ["[]"], "Conversation_B": ["[]"]}
    )
    with pytest.raises(
        BattleFormatError,
        match=r"'Conversation_A' looks like 'conversation_a', 'Conversation_B' looks "
        r"like 'conversation_b'",
    ):
        read_battles(frame)
