"""Input files as users hand them over: float ids, zip downloads, bad files.

Each reader error names the file, says what it is and what is expected; the
command-line entry points report it in one line with exit code 2.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import CLASSES, DataFileError, read_battles
from features.battle_files import split_member
from pipelines import build_features, evaluate, predict, write_submission

KAGGLE_HEADER = "id,prompt,response_a,response_b"
SUBMISSION = "id,winner_model_a,winner_model_b,winner_tie\n1,0.3,0.3,0.4\n"
PROFILE = """
features:
  store: {store}
  blocks:
    lengths: {{}}
"""


def _battles(ids=(2299425.0, 12.5), labelled: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": list(ids),
            "prompt": ['["q", "r"]'] * len(ids),
            "response_a": ['["a, with a comma"]'] * len(ids),
            "response_b": ['["b"]'] * len(ids),
        }
    )
    if labelled:
        for i, name in enumerate(CLASSES):
            frame[name] = [int(row % 3 == i) for row in range(len(ids))]
    return frame


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


@pytest.fixture
def kaggle_zip(tmp_path) -> Path:
    """The layout of the Kaggle download: train, test and a sample submission."""
    train = _battles((1, 2, 3), labelled=True).to_csv(index=False)
    test = _battles((7, 8)).to_csv(index=False)
    return _zip(
        tmp_path / "lmsys-chatbot-arena.zip",
        {"train.csv": train, "test.csv": test, "sample_submission.csv": SUBMISSION},
    )


# ------------------------------------------------------------------ float ids
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".jsonl", ".json"])
def test_integral_float_ids_read_as_integers_in_every_format(tmp_path, suffix):
    path = tmp_path / f"test{suffix}"
    frame = _battles()
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        frame.to_json(path, orient="records")
    else:
        frame.to_csv(path, index=False)  # writes 2299425.0

    assert read_battles(path)["id"].tolist() == ["2299425", "12.5"]


def test_a_csv_id_column_of_text_keeps_every_id_as_written(tmp_path):
    path = tmp_path / "test.csv"
    _battles(("1.0", "x7", "007")).to_csv(path, index=False)

    assert read_battles(path)["id"].tolist() == ["1.0", "x7", "007"]


def test_submission_writes_integral_float_ids_as_integers(tmp_path):
    out = tmp_path / "submission.csv"
    write_submission([2299425.0, 12.5], np.full((2, 3), 1 / 3), out)

    lines = out.read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["id", "2299425", "12.5"]


# ------------------------------------------------------------------ zip
def test_a_zip_with_one_battle_file_is_read(tmp_path):
    archive = _zip(
        tmp_path / "battles.zip",
        {"test.csv": _battles((7, 8)).to_csv(index=False), "README.txt": "notes"},
    )

    assert read_battles(archive)["id"].tolist() == ["7", "8"]


def test_a_sample_submission_beside_one_battle_file_is_not_ambiguous(tmp_path):
    archive = _zip(
        tmp_path / "battles.zip",
        {
            "train.csv": _battles((1, 2), labelled=True).to_csv(index=False),
            "sample_submission.csv": SUBMISSION,
        },
    )

    assert read_battles(archive, labelled=True)["label"].tolist() == [0, 1]


def test_a_zip_with_several_battle_files_lists_them_and_the_syntax(kaggle_zip):
    with pytest.raises(
        DataFileError,
        match=r"'.*lmsys-chatbot-arena\.zip' holds 2 battle files: "
        r"\['train\.csv', 'test\.csv'\] \(not battle files: "
        r"\['sample_submission\.csv'\]\)\. Name the one to read after '::', "
        r"e\.g\. '.*lmsys-chatbot-arena\.zip::train\.csv'",
    ):
        read_battles(kaggle_zip)


def test_a_member_named_after_the_separator_is_read(kaggle_zip):
    battles = read_battles(f"{kaggle_zip}::test.csv", labelled=False)

    assert battles["id"].tolist() == ["7", "8"]


def test_a_missing_member_is_an_error_listing_the_members(kaggle_zip):
    with pytest.raises(
        DataFileError,
        match=r"has no member 'valid\.csv'; it holds \['train\.csv', 'test\.csv', "
        r"'sample_submission\.csv'\]\. Name one of them",
    ):
        read_battles(f"{kaggle_zip}::valid.csv")


def test_a_zip_without_battle_files_says_what_it_expects(tmp_path):
    archive = _zip(tmp_path / "sub.zip", {"sample_submission.csv": SUBMISSION})
    with pytest.raises(
        DataFileError,
        match=r"holds no battle file: \['sample_submission\.csv'\] have no readable "
        r"battle columns\. Expected a member with \['id', 'prompt'",
    ):
        read_battles(archive)


def test_an_empty_zip_is_a_clear_error(tmp_path):
    archive = _zip(tmp_path / "empty.zip", {"__MACOSX/._test.csv": "x"})
    with pytest.raises(DataFileError, match=r"'.*empty\.zip' holds no files"):
        read_battles(archive)


def test_a_damaged_zip_is_a_clear_error(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK not really")
    with pytest.raises(DataFileError, match=r"is not a valid zip archive .* again"):
        read_battles(archive)


def test_a_member_of_a_file_that_is_not_a_zip_is_a_clear_error(tmp_path):
    path = tmp_path / "test.csv"
    _battles().to_csv(path, index=False)
    with pytest.raises(
        DataFileError, match=r"is not a \.zip archive, so it has no member 'x\.csv'"
    ):
        read_battles(f"{path}::x.csv")


def test_a_missing_archive_is_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*nope\.zip' does not exist"):
        read_battles(tmp_path / "nope.zip::test.csv")


def test_split_member_keeps_an_existing_path_with_the_separator_whole(tmp_path):
    odd = tmp_path / "a::b.csv"
    odd.write_text(KAGGLE_HEADER)

    assert split_member(odd) == (odd, None)
    assert split_member(tmp_path / "k.zip::test.csv") == (
        tmp_path / "k.zip",
        "test.csv",
    )


# ------------------------------------------------------------------ gzip
def test_a_gzipped_csv_is_read(tmp_path):
    path = tmp_path / "test.csv.gz"
    _battles((7, 8)).to_csv(path, index=False)

    assert read_battles(path)["id"].tolist() == ["7", "8"]


def test_a_damaged_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "test.csv.gz"
    path.write_bytes(gzip.compress(_battles().to_csv(index=False).encode())[:30])
    with pytest.raises(
        DataFileError, match=r"'.*test\.csv\.gz' is damaged or incomplete"
    ):
        read_battles(path)


# ------------------------------------------------------------------ bad files
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", r"'.*test\.csv' is empty \(0 bytes\): no header and no"),
        (" \n\n\t \n", r"'.*test\.csv' holds only whitespace: no header and no"),
    ],
)
def test_an_empty_file_says_so_and_what_is_expected(tmp_path, text, expected):
    path = tmp_path / "test.csv"
    path.write_text(text)
    with pytest.raises(
        DataFileError, match=rf"{expected} battles\. Expected a comma-separated"
    ):
        read_battles(path)


@pytest.mark.parametrize(
    ("delimiter", "shown"), [(";", r"';'"), ("\t", r"'\\t'"), ("|", r"'\|'")]
)
def test_a_file_with_another_delimiter_names_it(tmp_path, delimiter, shown):
    path = tmp_path / "test.csv"
    frame = _battles((1, 2, 3))
    frame.to_csv(path, index=False, sep=delimiter)
    with pytest.raises(
        DataFileError,
        match=rf"'.*test\.csv' is not comma-separated: its header line .* is split "
        rf"by {shown} \(3 times\) and holds no comma\. Expected a comma-separated "
        r"header such as 'id,prompt,response_a,response_b'",
    ):
        read_battles(path)


def test_broken_quoting_is_named_with_the_parser_line(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text(f'{KAGGLE_HEADER}\n1,"[""q""]",a,b\n2,a, b, c, d\n')
    with pytest.raises(
        DataFileError,
        match=r"'.*test\.csv' is not valid CSV \(.*Expected 4 fields in line 3, "
        r"saw 5\)\. Fields that hold commas",
    ):
        read_battles(path)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("test.json", "{not json", r"is not valid JSON \(.*\)\. Expected a JSON list"),
        ("test.json", "[1, 2]", r"holds JSON \['int'\], not objects"),
        ("test.jsonl", '{"id": 1}\nnot json\n', r"is not valid JSON Lines"),
        ("test.parquet", "not parquet", r"is not a readable parquet file"),
    ],
)
def test_a_file_its_parser_refuses_is_named(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataFileError, match=rf"battle file '.*{name}' {expected}"):
        read_battles(path)


# ------------------------------------------------------------------ CLIs
def _profile(tmp_path: Path) -> Path:
    config = tmp_path / "profile.yaml"
    config.write_text(PROFILE.format(store=tmp_path / "store"))
    return config


@pytest.mark.parametrize("command", [predict, evaluate])
def test_a_wrong_model_fails_before_the_data_is_read(tmp_path, capsys, command):
    data = tmp_path / "holdout.csv"
    _battles((1, 2, 3), labelled=True).to_csv(data, index=False)

    code = command.main(["--model", str(tmp_path / "nope"), "--data", str(data)])

    err = capsys.readouterr().err
    assert code == 2
    assert "error: no model at" in err
    assert "battles" not in err.split("error:")[0]  # no repair report first
    assert str(data) not in err


def test_a_zip_download_in_the_cli_lists_its_members_in_one_line(
    tmp_path, kaggle_zip, capsys
):
    argv = ["--config", str(_profile(tmp_path)), "--data", str(kaggle_zip)]

    code = build_features.main([*argv, "--quiet"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: archive") and err.count("\n") == 1
    assert "['train.csv', 'test.csv']" in err and "::train.csv" in err


def test_a_zip_member_in_the_cli_builds_features(tmp_path, kaggle_zip, capsys):
    argv = ["--config", str(_profile(tmp_path)), "--data", f"{kaggle_zip}::test.csv"]

    assert build_features.main([*argv, "--quiet"]) == 0
    assert "built" in capsys.readouterr().out


def test_an_empty_file_in_the_cli_is_one_line(tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("")
    argv = ["--config", str(_profile(tmp_path)), "--data", str(data), "--quiet"]

    code = build_features.main(argv)

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: battle file") and err.count("\n") == 1
    assert "is empty (0 bytes)" in err
