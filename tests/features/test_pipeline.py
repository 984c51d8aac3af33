"""Tests for features.pipeline: run modes, their cache keys and fitted state."""

from __future__ import annotations

import numpy as np

from features.blocks import make_block
from features.pipeline import FeaturePipeline, RunMode, state_fingerprint
from features.store import FeatureStore

STATELESS = {"lengths": {}, "flags": {}}
TFIDF = {"tfidf": {"min_df": 1, "word_max_features": 30, "char_max_features": 30}}


def _cache_use(pipeline: FeaturePipeline) -> list[str]:
    return [stats["cache"] for stats in pipeline.stats_]


def test_fit_cache_tag_is_the_same_for_every_state():
    assert RunMode.FIT.cache_tag(make_block("lengths", {})) == "fit"


def test_transform_cache_tag_holds_the_fitted_state(hand_battles):
    block = make_block("tfidf", TFIDF["tfidf"]).fit(hand_battles)
    tag = RunMode.TRANSFORM.cache_tag(block)
    assert tag == f"transform:{state_fingerprint(block)}"
    refitted = make_block("tfidf", TFIDF["tfidf"]).fit(hand_battles.iloc[:4])
    assert RunMode.TRANSFORM.cache_tag(refitted) != tag


def test_transform_keeps_its_own_cache_entries_apart_from_the_fit(
    tmp_path, hand_battles
):
    pipeline = FeaturePipeline(STATELESS, store=FeatureStore(tmp_path))
    fitted = pipeline.fit_transform(hand_battles)
    pipeline.transform(hand_battles)
    assert _cache_use(pipeline) == ["miss", "miss"]
    again = pipeline.transform(hand_battles)
    assert _cache_use(pipeline) == ["hit", "hit"]
    np.testing.assert_array_equal(again.values, fitted.values)


def test_fit_from_the_cache_restores_the_fitted_state(tmp_path, hand_battles):
    store = FeatureStore(tmp_path)
    cold = FeaturePipeline(TFIDF, store=store)
    cold.fit_transform(hand_battles)
    warm = FeaturePipeline(TFIDF, store=store)
    warm.fit_transform(hand_battles)
    assert _cache_use(warm) == ["hit"]
    assert state_fingerprint(warm.blocks_["tfidf"]) == state_fingerprint(
        cold.blocks_["tfidf"]
    )


def test_transform_entries_hold_no_state(tmp_path, hand_battles):
    store = FeatureStore(tmp_path)
    pipeline = FeaturePipeline(TFIDF, store=store)
    pipeline.fit_transform(hand_battles)
    pipeline.transform(hand_battles.iloc[:3])
    states = [bool(store.load(key).state) for key in store.keys()]
    assert sorted(states) == [False, True]


def test_pipeline_without_a_store_reports_no_cache_use(hand_battles):
    pipeline = FeaturePipeline(STATELESS)
    matrix = pipeline.fit_transform(hand_battles)
    assert _cache_use(pipeline) == ["-", "-"]
    assert [stats["rows"] for stats in pipeline.stats_] == [matrix.n_rows] * 2
