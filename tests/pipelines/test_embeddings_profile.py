"""The embeddings profile's encoder settings: the fast CPU engine, and they load."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.blocks.embeddings import EmbeddingsBlock
from pipelines.config import load_config
from pipelines.estimator import model_from_config

EMBEDDINGS = Path(__file__).resolve().parents[2] / "configs" / "embeddings.yaml"


def test_embeddings_profile_embeds_with_onnx_int8_at_128_tokens():
    params = load_config(EMBEDDINGS).features.blocks["embeddings"]
    assert params["onnx"] == "int8"
    assert params["max_seq_length"] == 128
    assert list(params["texts"]) == ["prompt", "response_a", "response_b"]


def test_embeddings_profile_embedding_settings_reach_the_model(hand_battles):
    pytest.importorskip("onnxruntime")
    model = model_from_config(load_config(EMBEDDINGS))
    params = model.blocks["embeddings"]
    block = EmbeddingsBlock(**params)
    assert block.get_params()["onnx"] == "int8"
    # fit validates the params and the runtime (onnxruntime present) and loads
    # nothing: the encoder is exported on the first transform.
    assert block.fit(hand_battles).is_fitted_
    assert not hasattr(block, "_encoder")
