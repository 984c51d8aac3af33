"""Row-parallel feature transform: same numbers as serial, clear n_jobs errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

import features.parallel as parallel
from features.battles import as_battles
from features.blocks import make_block
from features.pipeline import FeaturePipeline
from features.store import FeatureStore
from pipelines.config import load_config
from pipelines.make_demo_data import make_demo_battles

LITE_BLOCKS = load_config("configs/lite.yaml").features.blocks


@pytest.fixture(scope="module")
def battles():
    return as_battles(make_demo_battles(n_rows=120, seed=3))


@pytest.fixture
def small_chunks(monkeypatch):
    """Let 120 rows use 2 workers (the real floor is 200 rows per worker)."""
    monkeypatch.setattr(parallel, "MIN_ROWS_PER_JOB", 10)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)


def test_parallel_fit_and_transform_equal_serial_for_every_lite_block(
    battles, small_chunks
):
    train, new = battles.iloc[:80], battles.iloc[80:]
    serial = FeaturePipeline(LITE_BLOCKS)
    fork = FeaturePipeline(LITE_BLOCKS, n_jobs=2)
    np.testing.assert_array_equal(
        serial.fit_transform(train).values, fork.fit_transform(train).values
    )
    out_serial, out_fork = serial.transform(new), fork.transform(new)
    assert out_serial.columns == out_fork.columns
    np.testing.assert_array_equal(out_serial.values, out_fork.values)
    assert [s["block"] for s in fork.stats_] == list(LITE_BLOCKS)
    assert all(s["seconds"] > 0 for s in fork.stats_)


def test_parallel_build_fills_the_store_like_a_serial_one(
    tmp_path, battles, small_chunks
):
    store = FeatureStore(tmp_path)
    blocks = {"lengths": {}, "flags": {}}
    cold = FeaturePipeline(blocks, store=store, n_jobs=2).fit_transform(battles)
    warm_pipeline = FeaturePipeline(blocks, store=store)
    warm = warm_pipeline.fit_transform(battles)
    assert [s["cache"] for s in warm_pipeline.stats_] == ["hit", "hit"]
    np.testing.assert_array_equal(cold.values, warm.values)


def test_chunks_cover_every_row_once_in_order():
    for n_rows, jobs in [(400, 2), (401, 2), (10_000, 2), (9_999, 3)]:
        chunks = parallel._chunks(n_rows, jobs)
        assert chunks[0][0] == 0 and chunks[-1][1] == n_rows
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))
        assert len(chunks) % jobs == 0


def test_small_batches_and_serial_settings_use_one_process(monkeypatch):
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    assert parallel.effective_jobs(None, 10_000) == 1
    assert parallel.effective_jobs(1, 10_000) == 1
    assert parallel.effective_jobs(-1, 10_000) == 2
    assert parallel.effective_jobs(8, 10_000) == 2  # capped to the cores
    assert parallel.effective_jobs(-1, 2 * parallel.MIN_ROWS_PER_JOB - 1) == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_invalid_n_jobs_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="n_jobs must be None, -1"):
        parallel.effective_jobs(bad, 10_000)


def test_a_worker_error_reaches_the_caller(battles, small_chunks):
    block = make_block("lengths", {})
    broken = battles.drop(columns=["response_b"])
    with pytest.raises(ValueError, match="response_b"):
        parallel.transform_blocks([block], broken, 2)


def test_the_transformer_block_is_never_forked():
    assert not make_block("embeddings", {}).row_parallel
    assert all(make_block(name, p).row_parallel for name, p in LITE_BLOCKS.items())


def test_stateful_blocks_fit_side_by_side_in_workers(
    battles, small_chunks, tmp_path, monkeypatch
):
    from features.blocks.tfidf import TfidfBlock
    from features.blocks.word2vec import Word2VecBlock

    for cls in (TfidfBlock, Word2VecBlock):
        original = cls.fit

        def recording_fit(self, data, _original=original):
            (tmp_path / f"{self.name}-{os.getpid()}").touch()
            return _original(self, data)

        monkeypatch.setattr(cls, "fit", recording_fit)
    blocks = [make_block(name, LITE_BLOCKS[name]) for name in ("tfidf", "word2vec")]
    seconds = parallel.fit_blocks([make_block("lengths", {}), *blocks], battles, 2)
    pids = {
        path.name.split("-")[0]: int(path.name.split("-")[1])
        for path in tmp_path.iterdir()
    }
    assert set(pids) == {"tfidf", "word2vec"}
    assert os.getpid() not in pids.values() and pids["tfidf"] != pids["word2vec"]
    assert len(seconds) == 3 and all(s >= 0 for s in seconds)
    # The states set back here equal serial fits.
    monkeypatch.undo()
    for block in blocks:
        serial = make_block(block.name, LITE_BLOCKS[block.name]).fit(battles)
        state, arrays = block.get_state()
        state_serial, arrays_serial = serial.get_state()
        assert state == state_serial and arrays.keys() == arrays_serial.keys()
        for key in arrays:
            np.testing.assert_array_equal(arrays[key], arrays_serial[key])


def test_a_worker_fit_error_reaches_the_caller(battles, small_chunks):
    blocks = [
        make_block("tfidf", {"min_df": 10**6}),
        make_block("word2vec", LITE_BLOCKS["word2vec"]),
    ]
    with pytest.raises(ValueError, match="TfidfBlock found no word n-grams"):
        parallel.fit_blocks(blocks, battles, 2)
