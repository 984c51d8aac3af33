"""Tests of the scale-set generator: layout, sizes, labels, determinism, chunks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.make_scale_set import (
    iter_scale_set,
    main,
    make_scale_set,
    write_scale_set,
)
from features.battles import CLASSES, as_battles, read_battles


@pytest.fixture
def corpus(hand_battles):
    return as_battles(hand_battles)


def _chars(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.array([sum(len(t) for t in json.loads(v)) for v in frame[column]])


def test_scale_set_is_kaggle_layout_with_unique_ids_and_one_hot_labels(corpus):
    table = make_scale_set(corpus, n_rows=200, seed=1)
    assert list(table.columns[:6]) == [
        "id",
        "model_a",
        "model_b",
        "prompt",
        "response_a",
        "response_b",
    ]
    assert table["id"].is_unique and len(table) == 200
    assert (table[list(CLASSES)].sum(axis=1) == 1).all()
    battles = read_battles(table)  # the project's own reader accepts it
    assert len(battles) == 200


def test_scale_set_is_deterministic_per_seed(corpus):
    first = make_scale_set(corpus, n_rows=50, seed=3)
    assert first.equals(make_scale_set(corpus, n_rows=50, seed=3))
    assert not first.equals(make_scale_set(corpus, n_rows=50, seed=4))


def test_scale_set_keeps_identical_responses_tied_and_labels_with_responses(corpus):
    table = make_scale_set(corpus, n_rows=300, seed=0)
    identical = table["response_a"] == table["response_b"]
    assert identical.any()
    # A swapped battle carries its label with the response: every label of a
    # battle with identical answers is the template's tie here.
    assert (table.loc[identical, "winner_tie"] == 1).all()
    assert table["winner_model_a"].sum() > 0 and table["winner_model_b"].sum() > 0


def test_scale_set_splices_long_texts_but_keeps_lengths(corpus_path):
    corpus = read_battles(corpus_path).iloc[:400].reset_index(drop=True)
    table = make_scale_set(corpus, n_rows=2_000, seed=0)
    original = np.array([sum(len(t) for t in turns) for turns in corpus["response_a"]])
    made = _chars(table, "response_a")
    assert abs(np.median(made) / np.median(original) - 1) < 0.25
    assert table["response_a"].nunique() > 0.8 * len(table)


def test_scale_set_rejects_bad_sizes(corpus):
    with pytest.raises(ValueError, match="n_rows must be >= 1"):
        make_scale_set(corpus, n_rows=0)
    with pytest.raises(TypeError, match="n_rows must be an int"):
        make_scale_set(corpus, n_rows=1.5)
    with pytest.raises(ValueError, match="needs a non-empty labelled corpus"):
        make_scale_set(corpus.drop(columns=["label"]), n_rows=5)


def test_cli_writes_the_file_atomically(corpus, tmp_path, capsys):
    source = tmp_path / "corpus.csv"
    rows = corpus.assign(
        **{c: corpus[c].map(json.dumps) for c in ("prompt", "response_a", "response_b")}
    )
    onehot = np.eye(3, dtype=int)[rows.pop("label").to_numpy()]
    for k, name in enumerate(CLASSES):
        rows[name] = onehot[:, k]
    rows.to_csv(source, index=False)
    out = tmp_path / "sub" / "scale.csv"
    assert main(["--out", str(out), "--n-rows", "30", "--corpus", str(source)]) == 0
    assert "wrote 30 battles" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 30
    assert [p.name for p in out.parent.iterdir()] == ["scale.csv"]


# ------------------------------------------------- chunked, streamed output
@pytest.mark.parametrize("chunk_rows", [1, 7, 50])
def test_chunks_concatenate_to_the_one_shot_table(corpus, chunk_rows):
    one_shot = make_scale_set(corpus, n_rows=50, seed=2)
    chunks = list(iter_scale_set(corpus, 50, seed=2, chunk_rows=chunk_rows))
    assert [len(c) for c in chunks[:-1]] == [chunk_rows] * (len(chunks) - 1)
    assert pd.concat(chunks, ignore_index=True).equals(one_shot)


def test_chunked_csv_is_byte_identical_to_the_one_shot_csv(corpus, tmp_path):
    summary = write_scale_set(corpus, tmp_path / "s.csv", 230, seed=1, chunk_rows=50)
    one_shot = make_scale_set(corpus, n_rows=230, seed=1).to_csv(index=False)
    assert (tmp_path / "s.csv").read_text(encoding="utf-8") == one_shot
    assert summary.files == [tmp_path / "s.csv"] and summary.n_rows == 230


def test_parquet_file_has_one_row_group_per_chunk_and_the_same_rows(corpus, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "s.parquet"
    write_scale_set(corpus, out, 230, seed=1, chunk_rows=50)
    assert pq.ParquetFile(out).num_row_groups == 5
    pd.testing.assert_frame_equal(
        pd.read_parquet(out), make_scale_set(corpus, 230, seed=1), check_dtype=False
    )


def test_parts_directory_holds_one_readable_part_per_chunk(corpus, tmp_path):
    out = tmp_path / "scale-parts"
    summary = write_scale_set(corpus, out, 230, seed=1, chunk_rows=50)
    assert [p.name for p in summary.files] == [
        f"part-0000{i}.parquet" for i in range(5)
    ]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in summary.files]
    parts = pd.concat([pd.read_parquet(p) for p in summary.files], ignore_index=True)
    pd.testing.assert_frame_equal(
        parts, make_scale_set(corpus, 230, seed=1), check_dtype=False
    )
    assert len(read_battles(summary.files[-1])) == 30  # the project reads a part
    assert [p.name for p in tmp_path.iterdir()] == ["scale-parts"]  # no temp left


def test_parts_directory_must_be_new_or_empty(corpus, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "old.csv").write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not an empty directory"):
        write_scale_set(corpus, tmp_path / "taken", 10)
    (tmp_path / "empty").mkdir()
    write_scale_set(corpus, tmp_path / "empty", 10, chunk_rows=4)
    assert len(list((tmp_path / "empty").iterdir())) == 3


@pytest.mark.parametrize("name", ["s.csv", "s.parquet", "parts"])
def test_a_failed_write_leaves_no_output(corpus, tmp_path, monkeypatch, name):
    calls = []

    def failing_chars(frame, column):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return np.zeros(len(frame), dtype=np.int64)

    monkeypatch.setattr("benchmarks.make_scale_set._chars", failing_chars)
    with pytest.raises(RuntimeError, match="disk full"):
        write_scale_set(corpus, tmp_path / name, 20, chunk_rows=5)
    assert list(tmp_path.iterdir()) == []


def test_chunk_rows_must_be_a_positive_int(corpus, tmp_path):
    with pytest.raises(ValueError, match="chunk_rows must be >= 1"):
        list(iter_scale_set(corpus, 5, chunk_rows=0))
    with pytest.raises(ValueError, match="chunk_rows must be >= 1"):
        write_scale_set(corpus, tmp_path / "s.csv", 5, chunk_rows=0)


def test_cli_writes_a_parts_directory(corpus, tmp_path, capsys):
    source = tmp_path / "corpus.parquet"
    rows = corpus.assign(
        **{c: corpus[c].map(json.dumps) for c in ("prompt", "response_a", "response_b")}
    )
    onehot = np.eye(3, dtype=int)[rows.pop("label").to_numpy()]
    for k, name in enumerate(CLASSES):
        rows[name] = onehot[:, k]
    rows.to_parquet(source, index=False)
    out = tmp_path / "parts"
    argv = ["--out", str(out), "--n-rows", "30", "--chunk-rows", "10", "--quiet"]
    assert main([*argv, "--corpus", str(source)]) == 0
    assert f"wrote 30 battles to 3 parts in {out}" in capsys.readouterr().out
    assert len(list(out.iterdir())) == 3
