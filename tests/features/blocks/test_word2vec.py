"""Tests of the Word2Vec block: symmetry, determinism, state, semantics, params."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from features.battles import as_battles, read_battles, swap
from features.blocks.word2vec import Word2VecBlock, tokenize
from features.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[3]

_ANIMALS = "cat dog horse cow sheep goat puppy kitten pony lamb".split()
_FINANCE = "bank loan money credit interest stock bond cash tax debt".split()


def _battles(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return as_battles(
        pd.DataFrame(
            {
                "id": [str(i) for i in range(len(rows))],
                "prompt": [[p] for p, _, _ in rows],
                "response_a": [[a] for _, a, _ in rows],
                "response_b": [[b] for _, _, b in rows],
            }
        )
    )


def _topic_battles(n_rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Prompts and answers drawn from two disjoint topics, never mixed in a text."""
    rng = np.random.default_rng(seed)

    def text(words: list[str]) -> str:
        return " ".join(rng.choice(words, size=12))

    rows = []
    for i in range(n_rows):
        topic = _ANIMALS if i % 2 else _FINANCE
        rows.append((text(topic), text(topic), text(topic)))
    return _battles(rows)


def _small(**params) -> Word2VecBlock:
    return Word2VecBlock(vector_size=8, min_count=1, **params)


def test_word2vec_block_clone_gives_equal_params():
    block = Word2VecBlock(vector_size=16, epochs=3, output="both", max_vocab=None)
    cloned = clone(block)
    assert cloned.get_params() == block.get_params()
    assert cloned is not block


def test_word2vec_fit_returns_self(hand_battles):
    block = _small()
    assert block.fit(hand_battles) is block


def test_word2vec_transform_before_fit_raises_not_fitted(hand_battles):
    with pytest.raises(RuntimeError, match="not fitted"):
        Word2VecBlock().transform(hand_battles)


def test_word2vec_get_state_before_fit_raises_not_fitted():
    with pytest.raises(RuntimeError, match="not fitted"):
        Word2VecBlock().get_state()


@pytest.mark.parametrize("output", ["diff", "sides", "both"])
def test_word2vec_block_is_swap_consistent(hand_battles, swap_check, output):
    block = _small(output=output).fit(hand_battles)
    swap_check(block, hand_battles)


def test_word2vec_columns_follow_output_and_vector_size(hand_battles):
    n = len(hand_battles)
    diff = _small().fit(hand_battles).transform(hand_battles)
    assert diff.values.shape == (n, 8 + 2 * 8)
    assert diff.columns[:8] == (
        "a_w2v_cos_prompt",
        "b_w2v_cos_prompt",
        "d_w2v_cos_prompt",
        "a_w2v_tfidf_cos_prompt",
        "b_w2v_tfidf_cos_prompt",
        "d_w2v_tfidf_cos_prompt",
        "s_w2v_cos_ab",
        "s_w2v_tfidf_cos_ab",
    )
    both = _small(output="both").fit(hand_battles).transform(hand_battles)
    assert both.values.shape == (n, 8 + 6 * 8)
    frame = both.to_frame()
    np.testing.assert_allclose(
        frame["d_w2v_mean_3"], frame["a_w2v_mean_3"] - frame["b_w2v_mean_3"], atol=1e-6
    )
    assert both.values.dtype == np.float32 and np.isfinite(both.values).all()


def test_word2vec_identical_answers_have_zero_diff_and_unit_cosine(hand_battles):
    frame = _small().fit(hand_battles).transform(hand_battles).to_frame()
    row = hand_battles["id"].tolist().index("3")
    d_columns = [c for c in frame if c.startswith("d_")]
    assert not frame.loc[row, d_columns].any()
    assert frame.loc[row, "s_w2v_cos_ab"] == pytest.approx(1.0, abs=1e-5)


def test_word2vec_empty_answers_give_zero_vectors_and_cosines(hand_battles):
    frame = _small(output="sides").fit(hand_battles).transform(hand_battles).to_frame()
    row = hand_battles["id"].tolist().index("7")  # "" vs "   "
    assert not frame.loc[row].any()


def test_word2vec_transform_of_no_battles_keeps_the_columns(hand_battles):
    block = _small(output="both").fit(hand_battles)
    empty = block.transform(hand_battles.iloc[:0])
    assert empty.columns == block.transform(hand_battles).columns
    assert empty.values.shape == (0, len(empty.columns))
    assert empty.values.dtype == np.float32


def test_word2vec_state_round_trip_gives_identical_matrix(hand_battles):
    block = _small(output="both").fit(hand_battles)
    state, arrays = block.get_state()
    state = json.loads(json.dumps(state))  # must survive JSON
    assert set(arrays) == {"vectors", "idf"}
    restored = _small(output="both").set_state(state, arrays)
    before, after = block.transform(hand_battles), restored.transform(hand_battles)
    assert before.columns == after.columns
    np.testing.assert_array_equal(before.values, after.values)


def test_word2vec_same_seed_gives_identical_vectors(hand_battles):
    first = _small(seed=3).fit(hand_battles)
    second = _small(seed=3).fit(hand_battles)
    assert first.vocabulary_ == second.vocabulary_
    np.testing.assert_array_equal(first.vectors_, second.vectors_)
    other = _small(seed=4).fit(hand_battles)
    assert not np.array_equal(first.vectors_, other.vectors_)


def test_word2vec_fit_is_identical_on_swapped_battles(hand_battles):
    block = _small().fit(hand_battles)
    swapped = _small().fit(swap(hand_battles))
    assert block.vocabulary_ == swapped.vocabulary_
    np.testing.assert_array_equal(block.vectors_, swapped.vectors_)
    np.testing.assert_array_equal(block.idf_, swapped.idf_)


_FIT_SCRIPT = """
import sys, numpy as np, pandas as pd
from features.battles import as_battles
from features.blocks.word2vec import Word2VecBlock
rows = [("say hi", "hi there friend", "hello friend"), ("bye now", "bye", "see you")]
battles = as_battles(pd.DataFrame({"id": ["1", "2"],
    "prompt": [[r[0]] for r in rows], "response_a": [[r[1]] for r in rows],
    "response_b": [[r[2]] for r in rows]}))
block = Word2VecBlock(vector_size=8, min_count=1, epochs=3).fit(battles)
np.save(sys.argv[1], block.vectors_)
print(" ".join(block.vocabulary_))
"""


@pytest.mark.slow
def test_word2vec_vectors_do_not_depend_on_python_hash_seed(tmp_path):
    outputs = []
    for hash_seed in ("1", "2"):
        path = tmp_path / f"vectors_{hash_seed}.npy"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _FIT_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        )
        outputs.append((done.stdout, np.load(path)))
    assert outputs[0][0] == outputs[1][0]
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])


def test_word2vec_same_topic_texts_have_higher_cosine_than_other_topic():
    battles = _topic_battles()
    block = Word2VecBlock(vector_size=16, window=3, min_count=1, epochs=30)
    block.fit(battles)
    probe = _battles(
        [
            ("cat dog horse", "puppy kitten lamb", "loan credit cash"),
            ("bank money stock", "puppy kitten lamb", "loan credit cash"),
        ]
    )
    frame = block.transform(probe).to_frame()
    # Row 0 asks about animals: A (animals) is closer than B (finance).
    assert frame.loc[0, "a_w2v_cos_prompt"] > frame.loc[0, "b_w2v_cos_prompt"] + 0.3
    assert frame.loc[1, "b_w2v_cos_prompt"] > frame.loc[1, "a_w2v_cos_prompt"] + 0.3
    assert frame.loc[0, "d_w2v_tfidf_cos_prompt"] > 0
    assert frame.loc[0, "s_w2v_cos_ab"] < frame.loc[0, "a_w2v_cos_prompt"]


def test_word2vec_idf_weights_rare_words_more(hand_battles):
    block = _small().fit(hand_battles)
    index = {w: i for i, w in enumerate(block.vocabulary_)}
    assert block.idf_[index["the"]] < block.idf_[index["sea"]]


def test_word2vec_tokenize_splits_cjk_into_characters_and_keeps_scripts():
    assert tokenize("Москва — СТОЛИЦА. 北京是") == [
        "москва",
        "столица",
        "北",
        "京",
        "是",
    ]
    assert tokenize("   ") == []


def test_word2vec_handles_huge_and_non_ascii_texts(hand_battles):
    huge = "token " * 60_000 + "🌊 конец 终"
    battles = pd.concat(
        [hand_battles, _battles([("q", huge, "ß"), ("", "", "")])], ignore_index=True
    )
    block = _small(max_chars=5000).fit(battles)
    values = block.transform(battles).values
    assert values.dtype == np.float32 and np.isfinite(values).all()
    assert "конец" in block.vocabulary_


def test_word2vec_workers_above_one_warn_about_determinism(hand_battles):
    with pytest.warns(UserWarning, match="workers=2 trains non-deterministically"):
        _small(workers=2).fit(hand_battles)


def test_word2vec_min_count_leaving_no_words_raises(hand_battles):
    with pytest.raises(ValueError, match="no word seen at least min_count=1000"):
        Word2VecBlock(min_count=1000).fit(hand_battles)


def test_word2vec_corpus_without_words_raises():
    with pytest.raises(ValueError, match="Lower 'min_count' or fit on more text"):
        _small().fit(_battles([("", " ", "!!")]))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"output": "vectors"},
            r"'output' parameter of Word2VecBlock must be one of 'diff', 'sides', "
            r"'both'\. Got 'vectors'\.",
        ),
        (
            {"vector_size": 0},
            r"'vector_size' parameter of Word2VecBlock must be an int in \[1, inf\)\. "
            r"Got 0\.",
        ),
        ({"window": 2.5}, r"'window' parameter of Word2VecBlock .* Got 2\.5"),
        ({"min_count": 0}, r"'min_count'.* an int in \[1, inf\)"),
        ({"epochs": True}, r"'epochs'.* an int in \[1, inf\)\. Got True"),
        ({"workers": 0}, r"'workers'.* an int in \[1, inf\)"),
        ({"seed": -1}, r"'seed'.* an int in \[0, inf\)"),
        ({"max_vocab": 0}, r"'max_vocab'.* an int in \[1, inf\) or None"),
        ({"max_chars": "10"}, r"'max_chars'.* an int in \[1, inf\) or None\. Got '10'"),
    ],
)
def test_word2vec_bad_params_raise_naming_the_param(hand_battles, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        Word2VecBlock(**params).fit(hand_battles)


def test_word2vec_vector_size_changed_after_fit_raises(hand_battles):
    block = _small().fit(hand_battles).set_params(vector_size=4)
    with pytest.raises(ValueError, match="fitted with vector_size=8.*fit again"):
        block.transform(hand_battles)


def test_word2vec_set_state_rejects_other_format(hand_battles):
    state, arrays = _small().fit(hand_battles).get_state()
    with pytest.raises(ValueError, match="state has format 2"):
        _small().set_state({**state, "format": 2}, arrays)


def test_word2vec_set_state_rejects_mismatched_shapes(hand_battles):
    state, arrays = _small().fit(hand_battles).get_state()
    with pytest.raises(ValueError, match="expected vectors .* for vector_size=4"):
        Word2VecBlock(vector_size=4).set_state(state, arrays)
    with pytest.raises(ValueError, match="idf of shape"):
        _small().set_state(state, {**arrays, "idf": arrays["idf"][:-1]})


@pytest.mark.slow
@pytest.mark.realdata
def test_word2vec_on_corpus_answers_are_closer_to_their_own_prompt(corpus_path):
    battles = read_battles(corpus_path).iloc[:2000].reset_index(drop=True)
    block = Word2VecBlock(vector_size=32, epochs=3).fit(battles)
    own = block.transform(battles).to_frame()
    shuffled = battles.copy()
    shuffled["prompt"] = battles["prompt"].sample(frac=1.0, random_state=0).to_list()
    other = block.transform(shuffled).to_frame()
    for column in ("a_w2v_cos_prompt", "b_w2v_tfidf_cos_prompt"):
        assert own[column].mean() > other[column].mean() + 0.05
    assert own["s_w2v_cos_ab"].mean() > own["a_w2v_cos_prompt"].mean()
