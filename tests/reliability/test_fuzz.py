"""Fuzzing: random Kaggle-layout rows through the readers, the model and the CLI.

Every field of a row is drawn from what dirty data can hold: arbitrary unicode
(lone surrogates and control characters included), JSON lists, JSON that is not
a list, truncated JSON, plain text, nulls, NaN, empty lists, numbers, nested
objects, bytes, very long fields and numbers too long to convert; turn counts
differ freely between prompt and responses. The claims:

- every row whose id is present and unique is repaired: the reader gives lists
  of strings (no surrogates left) and the model finite probabilities summing
  to 1, one row per battle, in input order;
- every unrepairable input (missing or duplicate id, labels that are not
  one-hot, a missing column, a row with no text field at all, a file that is
  not UTF-8) raises
  ``BattleFormatError`` naming the row (or line) and the column;
- no other exception escapes, and ``pipelines.predict`` exits 0 with a
  submission or 2 with one ``error:`` line and no traceback.

Examples are derandomised, so a run is reproducible; raise ``max_examples`` (or
drop ``derandomize``) to explore further.
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.battles import (
    CLASSES,
    TEXT_COLUMNS,
    BattleFormatError,
    read_battles,
    repair_report,
)
from features.errors import DataFileError
from models import PreferenceModel
from pipelines import predict
from pipelines.make_demo_data import make_demo_battles

pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)

ROOT = Path(__file__).resolve().parents[2]
SURROGATE = re.compile("[\ud800-\udfff]")
NAN = float("nan")

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

# ------------------------------------------------------------------ strategies
_SPECIAL_CHARS = (
    "\ud800",  # lone high surrogate
    "\udfff",  # lone low surrogate
    "\ud83c\udf4d",  # a surrogate pair (emoji as UTF-16 halves)
    "\x00",
    "\x1b",
    "\r",
    "\n",
    "\u2028",
    "\ufeff",
    "\ufffd",
    '"',
    ",",
    "\\",
    "[",
    "]",
    "{",
    "null",
)
_PIECES = st.one_of(
    st.characters(exclude_categories=()),  # any code point, surrogates included
    st.sampled_from(_SPECIAL_CHARS),
)
TEXT = st.lists(_PIECES, max_size=15).map("".join)
JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities too: json writes NaN / Infinity
    TEXT,
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)
    ),
    max_leaves=6,
)
TURNS = st.lists(st.one_of(TEXT, TEXT, JSON_VALUE), max_size=4)


def _json_list(turns: list, ascii_only: bool) -> str:
    return json.dumps(turns, ensure_ascii=ascii_only)


JSON_LIST = st.builds(_json_list, TURNS, st.booleans())
LONG_TEXT = st.builds(
    lambda chunk, repeat: chunk * repeat,
    st.lists(_PIECES, min_size=1, max_size=3).map("".join),
    st.integers(40_000, 50_000),  # up to 200,000 chars: past the csv module limit
)
FIELD = st.one_of(
    JSON_LIST,
    JSON_LIST,
    JSON_VALUE.map(json.dumps),  # JSON, often not a list
    st.builds(lambda text, cut: text[:cut], JSON_LIST, st.integers(0, 40)),
    TEXT,  # plain text, not JSON
    st.none(),
    st.just(float("nan")),
    st.just("[]"),
    st.just([]),
    st.floats(),
    st.integers(),
    st.lists(JSON_VALUE, max_size=3),  # already-parsed lists (parquet, jsonl)
    st.dictionaries(TEXT, JSON_VALUE, max_size=2),
    st.binary(max_size=20),
    LONG_TEXT.map(lambda text: json.dumps([text])),
    LONG_TEXT,
    st.integers(4_400, 6_000).map(lambda n: "[" + "9" * n + "]"),  # > int limit
    st.integers(1, 3_000).map(lambda n: "[" * n + "]" * n),  # deep nesting
)


def _no_text(value) -> bool:
    """Missing as a reader sees it (a CSV reads an empty field as missing)."""
    return value is None or value == "" or (isinstance(value, float) and value != value)


# A row needs at least one text field: one with none is refused, not repaired
# (test_unrepairable_inputs_name_the_row_and_column draws that defect).
ROW = st.fixed_dictionaries({column: FIELD for column in TEXT_COLUMNS}).filter(
    lambda row: not all(_no_text(row[column]) for column in TEXT_COLUMNS)
)
ROWS = st.lists(ROW, min_size=1, max_size=4)
IDS = st.one_of(TEXT, st.integers())


def _frame(rows: list[dict], ids: list) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(TEXT_COLUMNS), dtype=object)
    frame.insert(0, "id", pd.Series(ids, dtype=object))
    return frame


def _ids_for(rows: list) -> list[str]:
    return [f"r{i}" for i in range(len(rows))]


# ------------------------------------------------------------------ checks
def _assert_canonical(battles: pd.DataFrame, n_rows: int) -> None:
    assert len(battles) == n_rows
    for column in TEXT_COLUMNS:
        for turns in battles[column]:
            assert isinstance(turns, list) and turns
            for turn in turns:
                assert isinstance(turn, str)
                assert not SURROGATE.search(turn)
                turn.encode("utf-8")  # strict: every repaired text is valid
    assert repair_report(battles).n_rows == n_rows


def _assert_probabilities(proba: np.ndarray, n_rows: int) -> None:
    assert proba.shape == (n_rows, len(CLASSES))
    assert np.isfinite(proba).all()
    assert (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


def _assert_names_row_and_column(err: BattleFormatError, row: int, column: str):
    message = str(err)
    assert f"row {row}" in message or re.search(rf"row\(s\) .*\b{row}\b", message)
    assert repr(column) in message or f"'{column}'" in message


# ------------------------------------------------------------------ model
@pytest.fixture(scope="module")
def model() -> PreferenceModel:
    """A small model with every text-reading CPU block, both boosters."""
    blocks = {
        "lengths": {},
        "style": {"readability_max_chars": 500},
        "flags": {},
        "similarity": {},
        "tfidf": {
            "word_max_features": 300,
            "char_max_features": 300,
            "char_ngram_range": [3, 3],
        },
    }
    params = {
        "lightgbm": {"num_boost_round": 20, "num_threads": 1},
        "xgboost": {"num_boost_round": 20, "max_depth": 3, "nthread": 1},
    }
    return PreferenceModel(
        blocks=blocks,
        boosters=("lightgbm", "xgboost"),
        booster_params=params,
        n_folds=3,
        max_chars=20_000,
        seed=0,
    ).fit(make_demo_battles(n_rows=300, seed=11))


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory) -> Path:
    return model.save(tmp_path_factory.mktemp("fuzz") / "model")


# ------------------------------------------------------------------ readers
@settings(FUZZ, max_examples=150)
@given(rows=ROWS)
def test_every_row_with_a_valid_id_is_repaired_into_lists_of_strings(rows):
    battles = read_battles(_frame(rows, _ids_for(rows)))

    _assert_canonical(battles, len(rows))
    assert battles["id"].tolist() == _ids_for(rows)


@settings(FUZZ, max_examples=60)
@given(rows=ROWS, data=st.data())
def test_arbitrary_unique_ids_are_kept_as_strings(rows, data):
    ids = data.draw(
        st.lists(IDS, min_size=len(rows), max_size=len(rows), unique_by=str)
    )
    broken = [i for i, id_ in enumerate(ids) if SURROGATE.search(str(id_))]
    if broken:
        # An id goes to the submission unchanged: it is refused, not repaired.
        with pytest.raises(BattleFormatError) as raised:
            read_battles(_frame(rows, ids))
        _assert_names_row_and_column(raised.value, broken[0], "id")
        return

    battles = read_battles(_frame(rows, ids))

    _assert_canonical(battles, len(rows))
    assert battles["id"].tolist() == [str(i) for i in ids]


_ONE_HOT = {0: (1, 0, 0), 1: (0, 1, 0), 2: (0, 0, 1)}
BAD_TARGETS = st.one_of(
    st.tuples(*[st.sampled_from([0, 1, 0.5, 2, -1, None, "x", "1"])] * 3).filter(
        lambda t: t not in _ONE_HOT.values() and t != ("1", 0, 0)
    ),
)


@settings(FUZZ, max_examples=40)
@given(rows=ROWS, data=st.data())
def test_labelled_rows_read_with_their_labels(rows, data):
    labels = data.draw(
        st.lists(st.sampled_from([0, 1, 2]), min_size=len(rows), max_size=len(rows))
    )
    frame = _frame(rows, _ids_for(rows))
    for name, column in zip(
        CLASSES, np.array([_ONE_HOT[y] for y in labels]).T, strict=True
    ):
        frame[name] = column

    battles = read_battles(frame, labelled=True)

    _assert_canonical(battles, len(rows))
    assert battles["label"].tolist() == labels


@settings(FUZZ, max_examples=80)
@given(rows=ROWS, data=st.data())
def test_unrepairable_inputs_name_the_row_and_column(rows, data):
    ids = _ids_for(rows)
    row = data.draw(st.integers(0, len(rows) - 1), label="row")
    defect = data.draw(
        st.sampled_from(["missing_id", "duplicate_id", "targets", "label", "no_text"]),
        label="defect",
    )
    labelled = None
    if defect == "missing_id":
        ids[row] = data.draw(st.sampled_from([None, float("nan")]))
        column = "id"
    elif defect == "duplicate_id":
        if len(rows) < 2:
            rows = [*rows, rows[0]]
            ids.append("r1")
        row = max(row, 1)
        ids[row] = ids[row - 1]
        row = row - 1  # the first of the pair is named first
        column = "id"
    elif defect == "no_text":
        rows = [dict(r) for r in rows]
        rows[row] = dict.fromkeys(TEXT_COLUMNS, data.draw(st.sampled_from([None, NAN])))
        column = "prompt"
    frame = _frame(rows, ids)
    if defect == "targets":
        for name in CLASSES:
            frame[name] = 1 if name == CLASSES[0] else 0
        bad = data.draw(BAD_TARGETS, label="targets")
        for name, value in zip(CLASSES, bad, strict=True):
            frame[name] = frame[name].astype(object)
            frame.loc[row, name] = value
        labelled, column = True, CLASSES[0]
    elif defect == "label":
        # The canonical layout: lists of turns and an integer label column.
        frame = read_battles(frame)[["id", *TEXT_COLUMNS]]
        frame["label"] = pd.Series([0] * len(frame), dtype=object)
        frame.loc[row, "label"] = data.draw(st.sampled_from([3, -1, 0.5, "a", None]))
        column = "label"

    with pytest.raises(BattleFormatError) as raised:
        read_battles(frame, labelled=labelled)
    _assert_names_row_and_column(raised.value, row, column)


def test_a_missing_column_is_named_with_the_columns_found():
    frame = _frame([{c: '["x"]' for c in TEXT_COLUMNS}], ["r0"]).drop(
        columns=["response_b"]
    )
    with pytest.raises(
        BattleFormatError, match=r"missing column\(s\) \['response_b'\]; found"
    ):
        read_battles(frame)


# ------------------------------------------------------------------ files
def _write_kaggle_csv(frame: pd.DataFrame, path: Path) -> None:
    # Every field quoted, as in the Kaggle files (a bare "\r" in an unquoted
    # field would end the line). surrogatepass writes lone surrogates as the
    # invalid UTF-8 bytes that broken exports hold; valid text is plain UTF-8.
    frame.to_csv(
        path,
        index=False,
        encoding="utf-8",
        errors="surrogatepass",
        quoting=csv.QUOTE_ALL,
    )


def _is_utf8(path: Path) -> bool:
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(FUZZ, max_examples=60)
@given(rows=ROWS)
def test_csv_files_read_every_row_or_name_the_line_that_is_not_utf8(rows):
    frame = _frame(rows, list(range(len(rows))))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test.csv"
        _write_kaggle_csv(frame, path)
        if _is_utf8(path):
            battles = read_battles(path)
            _assert_canonical(battles, len(rows))
            assert battles["id"].tolist() == [str(i) for i in range(len(rows))]
        elif b"\x00" in path.read_bytes()[:1024]:
            # A NUL byte beside bytes that are not UTF-8: a binary file.
            with pytest.raises(DataFileError, match=r"is not a UTF-8 text file"):
                read_battles(path)
        else:
            with pytest.raises(
                BattleFormatError, match=r"not valid UTF-8: byte .* \(line \d+"
            ):
                read_battles(path)


# ------------------------------------------------------------------ model
@pytest.mark.slow
@settings(FUZZ, max_examples=40)
@given(rows=ROWS)
def test_predict_proba_is_finite_and_sums_to_one_for_every_repairable_row(model, rows):
    proba = model.predict_proba(_frame(rows, _ids_for(rows)))

    _assert_probabilities(proba, len(rows))


@pytest.mark.slow
@settings(FUZZ, max_examples=20)
@given(rows=ROWS, data=st.data())
def test_predict_proba_rejects_unrepairable_rows_naming_them(model, rows, data):
    ids = _ids_for(rows)
    row = data.draw(st.integers(0, len(rows) - 1), label="row")
    ids[row] = None

    with pytest.raises(
        BattleFormatError, match=rf"column 'id' is empty in row\(s\) {row}"
    ):
        model.predict_proba(_frame(rows, ids))


def test_predict_proba_of_no_battles_is_an_empty_table(model):
    proba = model.predict_proba(_frame([], []))

    assert proba.shape == (0, len(CLASSES))


# ------------------------------------------------------------------ CLI
def _predict(model_dir: Path, data: Path, out: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = predict.main(
        ["--model", str(model_dir), "--data", str(data), "--out", str(out), "--quiet"]
    )
    return code, capsys.readouterr().err


@pytest.mark.slow
@settings(FUZZ, max_examples=15)
@given(rows=ROWS)
def test_predict_cli_writes_a_valid_submission_or_one_error_line(
    model_dir, rows, capsys
):
    frame = _frame(rows, list(range(len(rows))))
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "test.csv", Path(tmp) / "submission.csv"
        _write_kaggle_csv(frame, data)

        code, err = _predict(model_dir, data, out, capsys)

        if _is_utf8(data):
            assert code == 0, err
            written = pd.read_csv(out, dtype={"id": str})
            assert written["id"].tolist() == [str(i) for i in range(len(rows))]
            _assert_probabilities(written[list(CLASSES)].to_numpy(), len(rows))
        else:
            assert code == 2
            assert err.startswith("error: battle file") and "line" in err
            assert not out.exists()


@pytest.mark.parametrize(
    ("defect", "expected"),
    [
        ("duplicate_id", r"duplicate battle ids: '7' \(row 0\), '7' \(row 1\)"),
        ("missing_column", r"missing column\(s\) \['response_b'\]"),
        ("empty_id", r"column 'id' is empty in row\(s\) 1"),
    ],
)
def test_predict_cli_reports_user_errors_in_one_line(
    model_dir, tmp_path, capsys, defect, expected
):
    frame = pd.DataFrame(
        {"id": ["7", "8"], **{c: ['["x"]', '["y"]'] for c in TEXT_COLUMNS}}
    )
    if defect == "duplicate_id":
        frame["id"] = ["7", "7"]
    elif defect == "missing_column":
        frame = frame.drop(columns=["response_b"])
    else:
        frame["id"] = ["7", ""]
    data = tmp_path / "test.csv"
    frame.to_csv(data, index=False)

    code, err = _predict(model_dir, data, tmp_path / "out.csv", capsys)

    assert code == 2
    assert re.search(expected, err)
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_predict_cli_subprocess_shows_no_traceback_for_user_errors(model_dir, tmp_path):
    data = tmp_path / "test.csv"
    data.write_bytes(
        b'id,prompt,response_a,response_b\n1,"[""q""]","[""a""]","[""b""]"\n'
        b'2,"[""q""]","\xed\xa0\x80 broken","[""b""]"\n'
    )
    broken = subprocess.run(
        [sys.executable, "-m", "pipelines.predict", "--model", str(model_dir)]
        + ["--data", str(data), "--out", str(tmp_path / "out.csv"), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )

    assert broken.returncode == 2
    assert "not valid UTF-8: byte 0xed at offset" in broken.stderr
    assert "(line 3)" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_repairs_of_a_pathological_row_are_counted():
    nasty = {
        "prompt": "[" + "9" * 5_000 + "]",
        "response_a": "[" * 2_000 + "]" * 2_000,
        "response_b": json.dumps(["\ud800 x", None, {"k": [math.inf]}]),
    }
    battles = read_battles(_frame([nasty], ["x"]))

    counts = repair_report(battles).counts
    assert counts["invalid_json"] >= 1
    assert counts["lone_surrogate"] == 1
    assert counts["null_turn"] == 1
    assert counts["non_string_turn"] >= 1
