"""Source-grouped folds and source weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InvalidParameterError
from models.sources import (
    resolve_group_by,
    row_weights,
    source_families,
    source_folds,
    source_weights,
    training_folds,
)

FAMILIES = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 10, dtype=object)
LABELS = np.tile([0, 1, 2, 0, 1], 20)


def test_balanced_weights_give_every_family_the_same_total_and_mean_one():
    weight = source_weights(FAMILIES, None, "balanced")
    totals = pd.Series(weight).groupby(FAMILIES).sum()
    np.testing.assert_allclose(totals.to_numpy(), totals.iloc[0])
    assert weight.mean() == pytest.approx(1.0)


def test_named_weights_prefer_the_full_source_name_and_default_to_one():
    sources = np.array(["a:x"] * 60 + ["b"] * 30 + ["c"] * 10, dtype=object)
    weight = source_weights(FAMILIES, sources, {"a": 3.0, "a:x": 2.0, "c": 0.0})
    raw = weight / weight[60]  # "b" rows weigh 1 before normalising
    assert raw[0] == pytest.approx(2.0) and raw[-1] == 0.0


def test_no_spec_means_no_weights_and_all_zero_is_an_error():
    assert source_weights(FAMILIES, None, None) is None
    with pytest.raises(InvalidParameterError, match="weight of 0"):
        source_weights(FAMILIES, None, {"a": 0, "b": 0, "c": 0})


def test_source_folds_never_split_a_family():
    folds = source_folds(LABELS, FAMILIES, n_folds=5)
    for family in ("a", "b", "c"):
        assert len(set(folds[FAMILIES == family])) == 1
    assert len(set(folds)) == 3


def test_source_folds_merge_families_when_there_are_more_than_folds():
    families = np.array([f"s{i % 8}" for i in range(400)], dtype=object)
    labels = np.tile([0, 1, 2, 0], 100)
    folds = source_folds(labels, families, n_folds=4)
    assert len(set(folds)) == 4
    assert all(len(set(folds[families == f])) == 1 for f in set(families))


def test_an_excluded_family_gets_no_fold_of_its_own():
    weight = source_weights(FAMILIES, None, {"c": 0.0})
    folds = source_folds(LABELS, FAMILIES, n_folds=5, weight=weight)
    assert len(set(folds)) == 2  # a and b; c is spread over them
    assert set(folds[FAMILIES == "c"]) <= set(folds[FAMILIES != "c"])


def test_source_folds_need_two_families():
    with pytest.raises(InvalidParameterError, match="at least 2 source families"):
        source_folds(LABELS, np.array(["a"] * 100, dtype=object), n_folds=5)


def test_grouping_by_source_needs_a_source_column():
    battles = pd.DataFrame({"prompt": [["p"]] * 4})
    with pytest.raises(InvalidParameterError, match="needs a 'source' column"):
        training_folds(battles, np.array([0, 1, 2, 0]), group_by="source", n_folds=2)
    with pytest.raises(InvalidParameterError, match="source_weights needs a 'source'"):
        row_weights(battles, {"a": 2.0})


def test_training_folds_by_prompt_keep_identical_prompts_together():
    battles = pd.DataFrame({"prompt": [["hey"], ["hey"], ["a"], ["b"], ["c"], ["d"]]})
    folds = training_folds(
        battles, np.array([0, 1, 2, 0, 1, 2]), group_by="prompt", n_folds=2
    )
    assert folds[0] == folds[1]


def test_auto_groups_by_source_only_when_there_are_two_families():
    many = pd.DataFrame({"source": ["a:x", "b", "a:y"]})
    one = pd.DataFrame({"source": ["a:x", "a:y", "a"]})
    assert resolve_group_by(many, "auto") == "source"
    assert resolve_group_by(one, "auto") == "prompt"
    assert resolve_group_by(pd.DataFrame({"prompt": [["p"]]}), "auto") == "prompt"
    assert resolve_group_by(many, "auto", np.array([1.0, 0.0, 1.0])) == "prompt"
    assert resolve_group_by(one, "source") == "source"


def test_balanced_weights_without_sources_weigh_every_battle_one():
    assert row_weights(pd.DataFrame({"prompt": [["p"]] * 3}), "balanced") is None


def test_source_families_take_the_part_before_the_colon():
    sources = pd.Series(["llmeval2:webgpt", "llmeval2:shp", "vibecheck-arena", "a:b:c"])
    assert source_families(sources).tolist() == [
        "llmeval2",
        "llmeval2",
        "vibecheck-arena",
        "a",
    ]


def test_source_families_name_missing_sources_unknown():
    assert source_families([None, float("nan"), ""]).tolist() == ["unknown"] * 3
