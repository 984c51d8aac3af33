"""Rough edges of battle files reach the user as one line, in the CLI and HTTP.

The readers' own tests are in tests/features/test_battles.py; these check that
``python -m pipelines.predict`` prints the same message as one ``error:`` line
(exit code 2, no traceback) and that the service's input parsing, which shares
:func:`features.battles.as_battles`, refuses a battle with no text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models import PreferenceModel
from pipelines import predict
from pipelines.make_demo_data import make_demo_battles
from pipelines.serving.input import RequestError, parse_predict_body

HEADER = "id,prompt,response_a,response_b"
ROW = '1,"[""q""]","[""a""]","[""b""]"'
BAD_FILES = {
    "twice.csv": (
        f'{HEADER},response_b\n{ROW},"[""c""]"\n'.encode(),
        "has the column 'response_b' twice in its header",
    ),
    "dump.jsonl": (
        b'{"id": "b0", "prompt": "q", "response_a": "a", "response_b": "b"}\n'
        b'{"id": "d1", "conversation": [{"role": "user", "content": "hi"}]}\n',
        "no text in any of ['prompt', 'response_a', 'response_b'] in battle(s) "
        "'d1' (row 1)",
    ),
    "spaces.csv": (
        f"ID ,PROMPT ,response_a,response_b\n{ROW}\n".encode(),
        "'ID ' looks like 'id', 'PROMPT ' looks like 'prompt'",
    ),
    "binary.csv": (bytes(range(256)) * 4, "is not a UTF-8 text file"),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    model = PreferenceModel(
        blocks={"lengths": {}},
        boosters=("lightgbm",),
        booster_params={"lightgbm": {"num_boost_round": 5, "num_threads": 1}},
        n_folds=2,
    ).fit(make_demo_battles(n_rows=60, seed=3))
    return model.save(tmp_path_factory.mktemp("rough") / "model")


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_predict_cli_prints_the_readers_error_as_one_line(
    model_dir, tmp_path, capsys, name
):
    content, expected = BAD_FILES[name]
    data = tmp_path / name
    data.write_bytes(content)
    out = tmp_path / "submission.csv"

    code = predict.main(
        ["--model", str(model_dir), "--data", str(data), "--out", str(out)]
        + ["--quiet"]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert expected in err
    assert not out.exists()


def test_the_service_refuses_a_battle_with_no_text():
    battles = [
        {"id": "ok", "prompt": "Hi", "response_a": "Hey", "response_b": "Hello"},
        {"id": "dump", "prompt": None, "response_a": None, "response_b": None},
    ]
    body = json.dumps({"battles": battles}).encode()

    with pytest.raises(
        RequestError,
        match=r"battles could not be read: no text in any of .* in battle\(s\) "
        r"'dump' \(row 1\)",
    ):
        parse_predict_body(body, max_battles=10)


def test_the_service_repairs_a_battle_with_one_text_field_missing():
    battle = {"id": "one", "prompt": "Hi", "response_a": None, "response_b": "Hey"}
    body = json.dumps({"battles": [battle]}).encode()

    request = parse_predict_body(body, max_battles=10)

    assert request.repairs["counts"]["null_field"] == 1
