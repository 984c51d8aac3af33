"""Tests of the TF-IDF block: swap symmetry, state round trip, params, real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from features.battles import as_battles, read_battles, swap
from features.blocks._char_ngrams import char_wb_tfidf, fit_char_wb
from features.blocks._word_ngrams import word_tfidf
from features.blocks.tfidf import TfidfBlock
from features.errors import InvalidParameterError

_ODD_TEXTS = [  # whitespace, case and script corner cases of char_wb
    "ΟΔΟΣ Σίσυφος\tTAB\xa0nbsp\u3000ideo  double  space\n\nEND",
    "x",
    "",
    " \t ",
    "Straße İstanbul ǅ 🌊🌊 a-b_c",
]


def _dense(matrix) -> np.ndarray:
    return matrix.values.toarray() if matrix.is_sparse else matrix.values


def _small(**params) -> TfidfBlock:
    """A block sized for the ten hand-written battles."""
    return TfidfBlock(min_df=1, **params)


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


def test_tfidf_block_clone_gives_equal_params():
    block = TfidfBlock(word_ngram_range=[1, 3], output="both", svd_components=4)
    cloned = clone(block)
    assert cloned.get_params() == block.get_params()
    assert cloned is not block


def test_tfidf_fit_returns_self(hand_battles):
    block = _small()
    assert block.fit(hand_battles) is block


def test_tfidf_transform_before_fit_raises_not_fitted(hand_battles):
    with pytest.raises(RuntimeError, match="not fitted"):
        TfidfBlock().transform(hand_battles)


def test_tfidf_column_term_before_fit_raises_not_fitted():
    with pytest.raises(RuntimeError, match="not fitted"):
        TfidfBlock().column_term("d_tfidf_w_0")


@pytest.mark.parametrize(
    "params",
    [
        {"output": "diff"},
        {"output": "sides"},
        {"output": "both"},
        {"output": "both", "svd_components": 5},
        {"output": "diff", "char_max_features": 0},
        {"output": "sides", "word_max_features": 0, "svd_components": 3},
    ],
)
def test_tfidf_block_is_swap_consistent(hand_battles, swap_check, params):
    block = _small(**params).fit(hand_battles)
    swap_check(block, hand_battles)


def test_tfidf_diff_of_identical_answers_is_all_zero(hand_battles):
    block = _small().fit(hand_battles)
    values = _dense(block.transform(hand_battles))
    identical = hand_battles["id"].tolist().index("3")
    empty_vs_blank = hand_battles["id"].tolist().index("7")
    assert not values[identical].any()
    assert not values[empty_vs_blank].any()
    assert values.any(axis=1).sum() == len(hand_battles) - 2


def test_tfidf_output_sides_and_diff_columns_match_their_names(hand_battles):
    block = _small(output="both").fit(hand_battles)
    matrix = block.transform(hand_battles)
    frame = matrix.to_frame()
    n_terms = sum(len(t) for t in block.terms_.values())
    assert matrix.values.shape == (len(hand_battles), 3 * n_terms)
    a_part = frame[[c for c in frame if c.startswith("a_")]].to_numpy()
    b_part = frame[[c for c in frame if c.startswith("b_")]].to_numpy()
    d_part = frame[[c for c in frame if c.startswith("d_")]].to_numpy()
    np.testing.assert_allclose(d_part, a_part - b_part, atol=1e-6)
    assert all(c.isascii() and len(c) < 20 for c in matrix.columns)


def test_tfidf_default_output_is_sparse_difference_only(hand_battles):
    matrix = _small().fit(hand_battles).transform(hand_battles)
    assert matrix.is_sparse and isinstance(matrix.values, sp.csr_matrix)
    assert matrix.values.dtype == np.float32
    assert all(c.startswith("d_tfidf_") for c in matrix.columns)


def test_tfidf_svd_output_is_dense_with_requested_width(hand_battles):
    block = _small(svd_components=4, output="sides").fit(hand_battles)
    matrix = block.transform(hand_battles)
    assert not matrix.is_sparse and matrix.values.dtype == np.float32
    assert matrix.columns[:2] == ("a_tfidf_svd_0", "a_tfidf_svd_1")
    assert matrix.values.shape == (len(hand_battles), 8)


@pytest.mark.parametrize("params", [{}, {"svd_components": 4, "output": "both"}])
def test_tfidf_state_round_trip_gives_identical_matrix(hand_battles, params):
    block = _small(**params).fit(hand_battles)
    state, arrays = block.get_state()
    state = json.loads(json.dumps(state))  # must survive JSON
    restored = _small(**params).set_state(state, arrays)
    before, after = block.transform(hand_battles), restored.transform(hand_battles)
    assert before.columns == after.columns
    assert type(before.values) is type(after.values)
    np.testing.assert_array_equal(_dense(before), _dense(after))
    assert all(isinstance(a, np.ndarray) for a in arrays.values())


def test_tfidf_state_vocabulary_maps_term_to_index(hand_battles):
    block = _small().fit(hand_battles)
    state, arrays = block.get_state()
    vocabulary = state["vocabularies"]["w"]
    assert block.column_term(f"d_tfidf_w_{vocabulary['sea']}") == "sea"
    assert arrays["idf_w"].shape == (len(vocabulary),)


@pytest.mark.parametrize("params", [{}, {"svd_components": 4}])
def test_tfidf_fit_is_identical_on_swapped_battles(hand_battles, params):
    state, arrays = _small(**params).fit(hand_battles).get_state()
    state_s, arrays_s = _small(**params).fit(swap(hand_battles)).get_state()
    assert state == state_s
    assert arrays.keys() == arrays_s.keys()
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], arrays_s[key])


@pytest.mark.parametrize("lowercase", [True, False])
def test_tfidf_fast_char_path_equals_sklearn_transform(hand_battles, lowercase):
    block = _small(word_max_features=0, lowercase=lowercase).fit(hand_battles)
    vectorizer = block.vectorizers_["c"]
    texts = _ODD_TEXTS + [" ".join(t) for t in hand_battles["response_a"]]
    fast = char_wb_tfidf(vectorizer, texts)
    reference = sp.csr_matrix(vectorizer.transform(texts))
    assert fast.dtype == reference.dtype == np.float32
    np.testing.assert_array_equal(fast.toarray(), reference.toarray())


@pytest.mark.parametrize(
    "params",
    [
        {"lowercase": True},
        {"lowercase": False},
        {"word_ngram_range": (1, 1)},
        {"word_ngram_range": (2, 3)},
    ],
)
def test_tfidf_fast_word_path_equals_sklearn_transform(hand_battles, params):
    block = _small(char_max_features=0, **params).fit(hand_battles)
    vectorizer = block.vectorizers_["w"]
    cjk = "Hi, 你好 there 世界! the sea"  # one CJK character is one word
    texts = _ODD_TEXTS + [cjk] + [" ".join(t) for t in hand_battles["response_a"]]
    fast = word_tfidf(vectorizer, texts)
    reference = sp.csr_matrix(vectorizer.transform(texts))
    assert fast.dtype == reference.dtype == np.float32
    np.testing.assert_array_equal(fast.toarray(), reference.toarray())


def test_tfidf_fast_word_path_refuses_another_token_pattern(hand_battles):
    vectorizer = _small(char_max_features=0).fit(hand_battles).vectorizers_["w"]
    other = clone(vectorizer).set_params(token_pattern=r"\S+")
    with pytest.raises(ValueError, match="WORD_PATTERN"):
        word_tfidf(other, ["a b"])


def _assert_fit_equals_sklearn(vectorizer, texts):
    vocabulary, idf = fit_char_wb(vectorizer, texts)
    reference = clone(vectorizer).fit(texts)
    assert vocabulary == {k: int(v) for k, v in reference.vocabulary_.items()}
    assert idf.dtype == reference.idf_.dtype
    np.testing.assert_array_equal(idf, reference.idf_)


@pytest.mark.parametrize(
    "params",
    [
        {"lowercase": True},
        {"lowercase": False},
        {"char_max_features": 40},  # ties at the cut: sklearn's argsort order
        {"char_ngram_range": (1, 3), "min_df": 0.2},
        {"char_ngram_range": (2, 2), "char_max_features": 5},
    ],
)
def test_tfidf_fast_char_fit_equals_sklearn_fit(hand_battles, params):
    block = TfidfBlock(**{"min_df": 1, "word_max_features": 0, **params})
    texts = _ODD_TEXTS + [
        " ".join(t)
        for column in ("prompt", "response_a", "response_b")
        for t in hand_battles[column]
    ]
    _assert_fit_equals_sklearn(block._vectorizer("c"), texts)


def test_tfidf_fast_char_fit_raises_like_sklearn_when_nothing_is_left():
    vectorizer = TfidfBlock(min_df=2, word_max_features=0)._vectorizer("c")
    cases = [
        (["ab", "cd", "ef"], "no terms remain"),  # no n-gram in two texts
        (["ab"], "max_df corresponds to < documents than min_df"),
        (["", " \n ", ""], "empty vocabulary"),
    ]
    for texts, message in cases:
        for fit in (lambda t: fit_char_wb(vectorizer, t), clone(vectorizer).fit):
            with pytest.raises(ValueError, match=message):
                fit(texts)


@pytest.mark.slow
@pytest.mark.realdata
def test_tfidf_fast_char_fit_equals_sklearn_on_the_corpus(corpus_path):
    battles = read_battles(corpus_path).iloc[:1500]
    texts = [
        " ".join(t)
        for column in ("prompt", "response_a", "response_b")
        for t in battles[column]
    ]
    vectorizer = TfidfBlock(char_max_features=3000)._vectorizer("c")
    _assert_fit_equals_sklearn(vectorizer, texts)


def test_tfidf_ngram_ranges_accept_yaml_lists(hand_battles):
    block = _small(word_ngram_range=[1, 1], char_ngram_range=[2, 2]).fit(hand_battles)
    assert all(" " not in term for term in block.terms_["w"])
    assert {len(term) for term in block.terms_["c"]} == {2}


def test_tfidf_word_tokens_split_cjk_into_characters(hand_battles):
    block = _small(char_max_features=0).fit(hand_battles)
    assert "北 京" in block.terms_["w"]  # a bigram of two one-character words
    assert "北" in block.terms_["w"]


def test_tfidf_column_term_names_char_ngrams(hand_battles):
    block = _small(output="sides").fit(hand_battles)
    matrix = block.transform(hand_battles)
    char_columns = [c for c in matrix.columns if c.startswith("b_tfidf_c_")]
    terms = {block.column_term(c) for c in char_columns}
    assert {len(t) for t in terms} <= {3, 4, 5}


@pytest.mark.parametrize(
    "column", ["d_tfidf_svd_0", "x_tfidf_w_0", "d_tfidf_w_999999", "d_tfidf_w_x"]
)
def test_tfidf_column_term_rejects_other_columns(hand_battles, column):
    block = _small().fit(hand_battles)
    with pytest.raises(ValueError, match="is not an n-gram column"):
        block.column_term(column)


def test_tfidf_handles_empty_non_ascii_and_huge_texts(hand_battles):
    huge = ("word " * 40_000) + "END of the answer"
    extra = _battles([("q", huge, "β γ δ 🌊"), ("", "", "   ")])
    battles = pd.concat([hand_battles, extra], ignore_index=True)
    block = _small(max_chars=1000).fit(battles)
    values = _dense(block.transform(battles))
    assert np.isfinite(values).all()
    assert values.dtype == np.float32


def test_tfidf_max_chars_keeps_the_end_of_long_answers(hand_battles):
    long_answer = "zebrastart " + "filler " * 500 + "giraffeend"
    battles = pd.concat(
        [hand_battles, _battles([("q", long_answer, "x")])], ignore_index=True
    )
    block = _small(max_chars=200, char_max_features=0).fit(battles)
    assert "giraffeend" in block.terms_["w"]
    assert "zebrastart" not in block.terms_["w"]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"output": "sparse"},
            r"'output' parameter of TfidfBlock must be one of 'diff', 'sides', "
            r"'both'\. Got 'sparse'\.",
        ),
        (
            {"word_ngram_range": [2, 1]},
            r"'word_ngram_range'.*low <= high.*Got \[2, 1\]",
        ),
        ({"char_ngram_range": [3]}, r"'char_ngram_range' parameter .* two ints"),
        ({"char_ngram_range": "35"}, r"'char_ngram_range' parameter .* two ints"),
        ({"word_ngram_range": [0, 2]}, r"'word_ngram_range' parameter of TfidfBlock"),
        ({"word_max_features": -1}, r"'word_max_features'.* an int in \[0, inf\)"),
        ({"char_max_features": 2.5}, r"'char_max_features'.* an int in \[0, inf\)"),
        (
            {"word_max_features": 0, "char_max_features": 0},
            "no n-grams; set at least one",
        ),
        (
            {"min_df": 0},
            r"'min_df' parameter of TfidfBlock must be an int in \[1, inf\) or a "
            r"float in \(0, 1\]\. Got 0\.",
        ),
        ({"min_df": 1.5}, r"'min_df'.*float in \(0, 1\]\. Got 1\.5"),
        ({"min_df": True}, r"'min_df'.* Got True"),
        ({"sublinear_tf": "yes"}, r"'sublinear_tf' parameter of TfidfBlock must be a"),
        ({"lowercase": 1}, r"'lowercase' parameter of TfidfBlock must be a bool"),
        ({"svd_components": 0}, r"'svd_components'.* an int in \[1, inf\) or None"),
        ({"max_chars": 0}, r"'max_chars'.* an int in \[1, inf\) or None"),
        ({"seed": -1}, r"'seed'.* an int in \[0, inf\)\. Got -1"),
    ],
)
def test_tfidf_bad_params_raise_naming_the_param(hand_battles, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        TfidfBlock(**params).fit(hand_battles)


def test_tfidf_svd_components_above_term_count_raise(hand_battles):
    block = _small(svd_components=100_000)
    with pytest.raises(
        InvalidParameterError, match="must be below the number of fitted terms"
    ):
        block.fit(hand_battles)


def test_tfidf_svd_components_not_below_the_answer_count_raise(hand_battles):
    # Ten battles give twenty answers: SVD cannot find more directions than that.
    block = _small(svd_components=20)
    with pytest.raises(
        InvalidParameterError, match=r"below the number of answers .*\(20: two per"
    ):
        block.fit(hand_battles)
    assert len(_small(svd_components=19).fit(hand_battles).svd_components_) == 19


def test_tfidf_min_df_leaving_no_terms_raises(hand_battles):
    with pytest.raises(ValueError, match="found no word n-grams.*Lower 'min_df'"):
        TfidfBlock(min_df=1000, char_max_features=0).fit(hand_battles)


def test_tfidf_bad_output_after_fit_raises_in_transform(hand_battles):
    block = _small().fit(hand_battles).set_params(output="all")
    with pytest.raises(InvalidParameterError, match="'output' parameter of TfidfBlock"):
        block.transform(hand_battles)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"svd_components": 3}, "fitted with svd_components=None"),
        ({"char_max_features": 0}, "fitted with n-gram kinds"),
    ],
)
def test_tfidf_params_changed_after_fit_raise(hand_battles, change, match):
    block = _small().fit(hand_battles).set_params(**change)
    with pytest.raises(ValueError, match=match):
        block.transform(hand_battles)


def test_tfidf_set_state_rejects_other_format(hand_battles):
    state, arrays = _small().fit(hand_battles).get_state()
    with pytest.raises(ValueError, match="state has format 99"):
        _small().set_state({**state, "format": 99}, arrays)


def test_tfidf_set_state_rejects_mismatched_idf(hand_battles):
    state, arrays = _small().fit(hand_battles).get_state()
    arrays = {**arrays, "idf_w": arrays["idf_w"][:-1]}
    with pytest.raises(ValueError, match="state is corrupt"):
        _small().set_state(state, arrays)


def test_tfidf_set_state_rejects_mismatched_svd(hand_battles):
    state, arrays = _small(svd_components=3).fit(hand_battles).get_state()
    bad = {**arrays, "svd_components": arrays["svd_components"][:, :-1]}
    with pytest.raises(ValueError, match="SVD components of shape"):
        _small(svd_components=3).set_state(state, bad)
    with pytest.raises(ValueError, match="fitted with svd_components=3"):
        _small().set_state(state, arrays)


@pytest.mark.slow
@pytest.mark.realdata
def test_tfidf_on_corpus_stays_sparse_float32_and_flags_refusals(corpus_path):
    battles = read_battles(corpus_path).iloc[:800].reset_index(drop=True)
    block = TfidfBlock(word_max_features=5000, char_max_features=5000).fit(battles)
    values = block.transform(battles).values
    assert isinstance(values, sp.csr_matrix) and values.dtype == np.float32
    assert values.shape == (800, 10_000)
    assert values.nnz / values.shape[0] < 2_000  # memory stays bounded per row
    assert np.isfinite(values.data).all()
    # An answer saying "sorry" while the other does not gets a positive d_ weight.
    sorry = block.terms_["w"].index("sorry")
    a_says = battles["response_a"].map(lambda t: "sorry" in " ".join(t).lower())
    b_says = battles["response_b"].map(lambda t: "sorry" in " ".join(t).lower())
    column = values[:, sorry].toarray().ravel()
    assert (a_says & ~b_says).sum() >= 3
    assert (column[(a_says & ~b_says).to_numpy()] > 0).all()
    assert (column[(~a_says & ~b_says).to_numpy()] == 0).all()


@pytest.mark.parametrize("params", [{}, {"svd_components": 3, "output": "both"}])
def test_tfidf_transform_of_no_battles_keeps_the_columns(hand_battles, params):
    block = _small(**params).fit(hand_battles)
    full = block.transform(hand_battles)
    empty = block.transform(hand_battles.iloc[:0])
    assert empty.columns == full.columns
    assert empty.values.shape == (0, len(full.columns))
    assert empty.values.dtype == np.float32
