"""Tests of the scale-set generator: layout, sizes, labels and determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.make_scale_set import main, make_scale_set
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
