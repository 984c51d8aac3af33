"""Explanations: exact parts of the raw score, concepts, sentences, A/B symmetry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from features.battles import SWAP_LABELS, as_battles, read_battles, swap
from features.errors import InvalidParameterError
from models import PreferenceModel
from models._sentences import SENTENCES
from models.explain import CONCEPT_PATTERNS, CONCEPTS, ScoreParts, concept_of
from pipelines.make_demo_data import make_demo_battles

FAST = {
    "lightgbm": {
        "num_boost_round": 60,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "num_threads": 1,
    },
    "xgboost": {
        "num_boost_round": 60,
        "learning_rate": 0.1,
        "max_depth": 4,
        "nthread": 1,
    },
}
COLUMNS = ["id", "predicted", "rank", "concept", "toward", "weight", "sentence"]

_PROMPT = ["What is the capital of France?"]
_ANSWER = "Paris is the capital of France and its largest city."
_LONG = " ".join(
    [
        _ANSWER,
        "It lies on the Seine in the north of the country.",
        "About two million people live in the city itself, and more than ten "
        "million in its region.",
        "It is known for the Louvre, the Eiffel Tower and its cafes.",
    ]
    * 3
)
CLEAR_CAUSES = {
    "b-longer": (
        [_ANSWER],
        [_LONG],
        "length",
        "B",
        r"^B is 14\.6× longer \(761 vs 52 characters\)$",
    ),
    "a-refuses": (
        ["I'm sorry, but I can't help with that."],
        [_ANSWER],
        "refusal or empty answer",
        "B",
        r"^A refuses$",
    ),
    "b-markdown": (
        ["Paris: capital of France, on the Seine. Paris is the largest city."],
        ["## Paris\n\n- capital of France\n- on the Seine\n\nParis is the biggest."],
        "markdown style",
        "B",
        r"^B uses headers and a list; A uses none$",
    ),
}


@pytest.fixture(scope="module")
def demo_frame() -> pd.DataFrame:
    return read_battles(make_demo_battles(n_rows=400, seed=3))


@pytest.fixture(scope="module")
def anchored(demo_frame) -> PreferenceModel:
    """Both booster kinds on an anchor, swap-averaged (the lite profile's shape)."""
    return PreferenceModel(
        blocks={"lengths": {}, "flags": {}, "style": {}, "similarity": {}},
        boosters=("lightgbm", "xgboost"),
        booster_params=FAST,
        n_folds=3,
        anchor=True,
        stack_method="blend",
    ).fit(demo_frame)


@pytest.fixture(scope="module")
def plain(demo_frame) -> PreferenceModel:
    """No anchor, no swap averaging: the trees alone, with a position bias."""
    return PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        booster_params=FAST,
        n_folds=2,
        swap_average=False,
    ).fit(demo_frame.iloc[:300])


def _clear_battles() -> pd.DataFrame:
    return as_battles(
        [
            {"id": name, "prompt": _PROMPT, "response_a": a, "response_b": b}
            for name, (a, b, *_) in CLEAR_CAUSES.items()
        ]
    )


def _softmax(raw: np.ndarray) -> np.ndarray:
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# ------------------------------------------------------------ exact parts
@pytest.mark.parametrize("booster", ["lightgbm", "xgboost", None])
def test_parts_sum_to_the_raw_score_for_each_booster_kind(
    anchored, demo_frame, booster
):
    parts = anchored.explain_scores(demo_frame.iloc[:60], booster=booster)
    assert isinstance(parts, ScoreParts)
    assert parts.contributions.shape == (60, 3, len(parts.names))
    np.testing.assert_allclose(
        parts.contributions.sum(axis=2), parts.raw, rtol=0, atol=1e-6
    )
    # Every anchor covariate has its own part, and the anchor carries weight.
    anchor_parts = [n for n in parts.names if n.startswith("anchor:")]
    assert anchor_parts == [f"anchor:{c}" for c in anchored.anchor_.columns_]
    anchor_weight = np.abs(
        parts.contributions[:, :, [parts.names.index(n) for n in anchor_parts]]
    ).sum()
    assert anchor_weight > 0


@pytest.mark.parametrize("booster", ["lightgbm", "xgboost"])
def test_raw_score_is_the_boosters_own_score(anchored, demo_frame, booster):
    """softmax(raw) is the booster's probability up to the fold and swap means."""
    battles = demo_frame.iloc[:60]
    parts = anchored.explain_scores(battles, booster=booster)
    features = anchored.pipeline_.transform(battles).values
    index = list(anchored.boosters).index(booster)
    proba = anchored._booster_proba(features)[index]
    assert np.abs(_softmax(parts.raw) - proba).max() < 0.05
    assert np.corrcoef(_softmax(parts.raw)[:, 0], proba[:, 0])[0, 1] > 0.99


def test_parts_sum_without_anchor_or_swap_average_and_bias_is_position(
    plain, demo_frame
):
    parts = plain.explain_scores(demo_frame.iloc[:40])
    np.testing.assert_allclose(
        parts.contributions.sum(axis=2), parts.raw, rtol=0, atol=1e-6
    )
    assert not any(n.startswith("anchor:") for n in parts.names)
    position = parts.by_concept()["position"]
    assert np.abs(position).min() > 0  # A's and B's tree bias differ


def test_concept_weights_add_up_to_the_a_minus_b_score(anchored, demo_frame):
    parts = anchored.explain_scores(demo_frame.iloc[:40])
    _, score = parts.direction()
    np.testing.assert_allclose(
        parts.by_concept().sum(axis=1).to_numpy(), score, rtol=0, atol=1e-6
    )


def test_swap_averaged_a_minus_b_has_no_position_weight(anchored, demo_frame):
    weights = anchored.explain_scores(demo_frame.iloc[:40]).by_concept()
    assert np.abs(weights["position"]).max() < 1e-6


# -------------------------------------------------------------- concepts
def test_every_feature_of_the_blocks_has_a_named_concept(anchored):
    other = [n for n in anchored.feature_names_out_ if concept_of(n) == "other"]
    assert other == []


def test_unknown_feature_falls_into_other_and_is_kept():
    assert concept_of("d_newblock_score") == "other"
    parts = ScoreParts(
        ids=["1"],
        names=("d_len_chars_norm", "d_newblock_score"),
        contributions=np.array([[[0.5, 0.25], [-0.5, -0.25], [0.0, 0.0]]]),
        raw=np.array([[0.75, -0.75, 0.0]]),
        booster="lightgbm",
    )
    weights = parts.by_concept()
    assert weights.loc["1", "length"] == pytest.approx(1.0)
    assert weights.loc["1", "other"] == pytest.approx(0.5)


def test_every_concept_has_a_pattern_and_a_sentence():
    patterned = {concept for _, concept in CONCEPT_PATTERNS}
    assert sorted(patterned | {"other"}) == sorted(CONCEPTS)
    assert sorted(SENTENCES) == sorted(CONCEPTS)
    assert len(set(CONCEPTS)) == len(CONCEPTS)


# ----------------------------------------------------------- explain table
def test_explain_lists_top_concepts_by_weight(anchored, demo_frame):
    table = anchored.explain(demo_frame.iloc[:5], top=3)
    assert list(table.columns) == COLUMNS
    assert len(table) == 15
    assert set(table["concept"]) <= set(CONCEPTS)
    assert set(table["toward"]) <= {"A", "B"}
    assert ((table["weight"] > 0) == (table["toward"] == "A")).all()
    for _, rows in table.groupby("id"):
        assert rows["rank"].tolist() == [1, 2, 3]
        assert np.all(np.diff(rows["weight"].abs().to_numpy()) <= 0)
        assert rows["concept"].is_unique


def test_swapping_a_battle_swaps_its_explanation(anchored, demo_frame):
    battles = demo_frame.iloc[:8]
    direct = anchored.explain(battles, top=4)
    mirrored = anchored.explain(swap(battles), top=4)
    assert direct["concept"].tolist() == mirrored["concept"].tolist()
    flipped = {"A": "B", "B": "A"}
    assert mirrored["toward"].tolist() == direct["toward"].map(flipped).tolist()
    np.testing.assert_allclose(
        mirrored["weight"].to_numpy(), -direct["weight"].to_numpy(), atol=1e-9
    )
    parts = anchored.explain_scores(battles)
    swapped = anchored.explain_scores(swap(battles))
    np.testing.assert_allclose(
        swapped.raw, parts.raw[:, SWAP_LABELS], rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("case", sorted(CLEAR_CAUSES))
def test_battle_with_one_clear_cause_is_explained_by_it(anchored, case):
    *_, concept, toward, sentence = CLEAR_CAUSES[case]
    table = anchored.explain(_clear_battles(), top=3)
    first = table[(table["id"] == case) & (table["rank"] == 1)].iloc[0]
    assert first["concept"] == concept
    assert first["toward"] == toward
    assert pd.Series([first["sentence"]]).str.match(sentence).all(), first["sentence"]


def test_sentences_swap_sides_with_the_battle(anchored):
    table = anchored.explain(swap(_clear_battles()), top=1)
    sentences = dict(zip(table["id"], table["sentence"], strict=True))
    assert sentences["b-longer"].startswith("A is 14.6× longer")
    assert sentences["a-refuses"] == "B refuses"
    assert sentences["b-markdown"] == "A uses headers and a list; B uses none"


def test_explain_refuses_a_bad_top(anchored, demo_frame):
    with pytest.raises(InvalidParameterError, match=r"'top' must be an int >= 1"):
        anchored.explain(demo_frame.iloc[:2], top=0)


def test_explain_scores_refuses_an_unknown_booster(plain, demo_frame):
    with pytest.raises(InvalidParameterError, match=r"'xgboost' is not one of"):
        plain.explain_scores(demo_frame.iloc[:2], booster="xgboost")


def test_explain_before_fit_raises_not_fitted(demo_frame):
    with pytest.raises(NotFittedError, match="not fitted; call fit first"):
        PreferenceModel().explain_scores(demo_frame.iloc[:2])


def test_saved_model_explains_the_same(anchored, demo_frame, tmp_path):
    loaded = PreferenceModel.load(anchored.save(tmp_path / "model"))
    battles = demo_frame.iloc[:5]
    pd.testing.assert_frame_equal(
        loaded.explain(battles, top=3), anchored.explain(battles, top=3)
    )


def test_anchor_terms_add_up_to_its_a_minus_b_log_odds(anchored, demo_frame):
    features = anchored.pipeline_.transform(demo_frame.iloc[:30])
    columns = anchored.feature_names_out_
    terms = anchored.anchor_.margin_terms(features.values, columns)
    log_proba = anchored.anchor_.log_proba(features.values, columns)
    np.testing.assert_allclose(
        terms.sum(axis=1), log_proba[:, 0] - log_proba[:, 1], rtol=0, atol=1e-12
    )


def test_explain_of_no_battles_is_an_empty_table(anchored, demo_frame):
    table = anchored.explain(demo_frame.iloc[:0], top=3)
    assert list(table.columns) == COLUMNS
    assert table.empty
