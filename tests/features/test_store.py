"""The feature store: cache hits, invalidation, atomic writes, corrupt entries."""

from __future__ import annotations

import numpy as np
import pytest

from features.battles import swap
from features.errors import NotFittedError
from features.pipeline import FeaturePipeline
from features.store import FeatureStore

BLOCKS = {"lengths": {}, "flags": {}}


def _build(store, battles, blocks=BLOCKS):
    pipeline = FeaturePipeline(blocks, store=store)
    matrix = pipeline.fit_transform(battles)
    return pipeline, matrix


def test_second_build_reads_every_block_from_the_cache(tmp_path, hand_battles):
    store = FeatureStore(tmp_path)
    first, cold = _build(store, hand_battles)
    second, warm = _build(store, hand_battles)
    assert [s["cache"] for s in first.stats_] == ["miss", "miss"]
    assert [s["cache"] for s in second.stats_] == ["hit", "hit"]
    np.testing.assert_array_equal(cold.values, warm.values)
    assert cold.columns == warm.columns


def test_changed_block_params_recompute_only_that_block(tmp_path, hand_battles):
    store = FeatureStore(tmp_path)
    _build(store, hand_battles)
    changed = {"lengths": {}, "flags": {"refusal_window": 100}}
    pipeline, _ = _build(store, hand_battles, changed)
    assert [s["cache"] for s in pipeline.stats_] == ["hit", "miss"]


def test_changed_data_misses_the_cache(tmp_path, hand_battles):
    store = FeatureStore(tmp_path)
    _build(store, hand_battles)
    pipeline, _ = _build(store, swap(hand_battles))
    assert [s["cache"] for s in pipeline.stats_] == ["miss", "miss"]


def test_corrupt_entry_is_recomputed_with_a_warning(tmp_path, hand_battles):
    store = FeatureStore(tmp_path)
    _, cold = _build(store, hand_battles)
    entry = next(p for p in tmp_path.iterdir() if p.name.startswith("lengths-"))
    values = entry / "values.npy"
    values.write_bytes(values.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.warns(
        UserWarning, match=r"failed its check .*values.npy.* will be recomputed"
    ):
        pipeline, warm = _build(store, hand_battles)
    assert [s["cache"] for s in pipeline.stats_] == ["miss", "hit"]
    np.testing.assert_array_equal(cold.values, warm.values)


def test_leftover_temporary_directories_are_never_read_as_entries(
    tmp_path, hand_battles
):
    store = FeatureStore(tmp_path)
    (tmp_path / ".tmp-lengths-abc").mkdir(parents=True)
    (tmp_path / ".tmp-lengths-abc" / "values.npy").write_bytes(b"partial")
    pipeline, _ = _build(store, hand_battles)
    assert [s["cache"] for s in pipeline.stats_] == ["miss", "miss"]
    assert all(not key.startswith(".") for key in store.keys())


def test_transform_reuses_fitted_state_and_matches_fit_output(tmp_path, hand_battles):
    pipeline, fitted = _build(FeatureStore(tmp_path), hand_battles)
    again = pipeline.transform(hand_battles)
    np.testing.assert_allclose(again.values, fitted.values)


def test_transform_before_fit_is_an_error():
    with pytest.raises(NotFittedError, match="not fitted; call fit_transform first"):
        FeaturePipeline(BLOCKS).transform(None)


def test_state_round_trip_through_a_directory(tmp_path, hand_battles):
    pipeline, fitted = _build(None, hand_battles)
    pipeline.save_state(tmp_path / "blocks")
    loaded = FeaturePipeline.load_state(tmp_path / "blocks", BLOCKS)
    np.testing.assert_allclose(loaded.transform(hand_battles).values, fitted.values)


def test_verbose_pipeline_turns_on_block_progress_without_changing_the_cache_key(
    tmp_path, hand_battles
):
    store = FeatureStore(tmp_path)
    quiet, _ = _build(store, hand_battles)
    verbose = FeaturePipeline(BLOCKS, store=store, verbose=True)
    verbose.fit_transform(hand_battles)
    assert all(block.progress for block in verbose.blocks_.values())
    assert not any(block.progress for block in quiet.blocks_.values())
    assert [s["cache"] for s in verbose.stats_] == ["hit", "hit"]
