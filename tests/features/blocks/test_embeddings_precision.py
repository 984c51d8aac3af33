"""The embeddings block's precision: fp32/fp16/bf16 on the same code path as CUDA.

The GPU path runs half precision; every dtype decision it makes is taken on the
CPU here, with a tiny random BERT, so a CUDA-only bug in them shows up in CI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.battles import as_battles
from features.blocks import _encoders
from features.blocks.embeddings import EmbeddingsBlock
from features.errors import InvalidParameterError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_WORDS = "the a cat dog sat on mat sun sea is big small end start red blue".split()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    path = tmp_path_factory.mktemp("tiny-bert-precision")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate([*specials, *_WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]"
    )
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def battles():
    rng = np.random.default_rng(0)

    def sentence() -> str:
        return " ".join(rng.choice(_WORDS, size=int(rng.integers(3, 12))))

    return as_battles(
        [
            {
                "id": str(i),
                "prompt": [sentence()],
                "response_a": [sentence()],
                "response_b": [sentence()],
            }
            for i in range(12)
        ]
    )


def _vectors(block: EmbeddingsBlock, battles) -> np.ndarray:
    matrix = block.fit_transform(battles)
    columns = [i for i, n in enumerate(matrix.columns) if n.startswith("a_emb_")]
    return np.asarray(matrix.values)[:, columns]


def test_auto_precision_is_fp16_on_cuda_and_fp32_on_cpu():
    assert _encoders.resolve_precision("auto", "cuda") == "fp16"
    assert _encoders.resolve_precision("auto", "cpu") == "fp32"
    assert _encoders.resolve_precision("bf16", "cuda") == "bf16"


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precisions_stay_close_to_fp32(tiny_bert, battles, precision):
    keywords = {
        "model": str(tiny_bert),
        "backend": "hf-mean-pool",
        "device": "cpu",
        "max_seq_length": 32,
    }
    reference = _vectors(EmbeddingsBlock(**keywords), battles)
    half = _vectors(EmbeddingsBlock(**keywords, precision=precision), battles)
    assert half.dtype == np.float32
    assert np.isfinite(half).all()
    # Unit vectors: bf16 keeps 8 bits of mantissa, fp16 11.
    tolerance = {"fp16": 5e-3, "bf16": 3e-2}[precision]
    assert np.max(np.abs(half - reference)) < tolerance
    assert np.max(np.abs(half - reference)) > 0  # the dtype really changed


def test_half_precision_weights_are_loaded_in_that_dtype(tiny_bert):
    spec = _encoders.EncoderSpec(
        model=str(tiny_bert),
        backend="hf-mean-pool",
        device="cpu",
        max_seq_length=32,
        truncation_side="left",
        quantization=None,
        onnx=False,
        precision="bf16",
    )
    encoder = _encoders.load_encoder(spec)
    assert next(encoder._model.parameters()).dtype == torch.bfloat16
    assert encoder.encode(["the cat sat"]).dtype == np.float32


def test_quantized_llm_computes_in_the_chosen_precision():
    spec = _encoders.EncoderSpec(
        model="unused",
        backend="llm",
        device="cuda",
        max_seq_length=32,
        truncation_side="left",
        quantization="4bit",
        onnx=False,
        precision="bf16",
    )
    pytest.importorskip("bitsandbytes")
    kwargs = _encoders._MeanPoolEncoder._model_kwargs(spec, torch)
    assert kwargs["dtype"] == torch.bfloat16
    assert kwargs["quantization_config"].bnb_4bit_compute_dtype == torch.bfloat16


def test_onnx_with_a_half_precision_is_refused():
    block = EmbeddingsBlock(onnx="int8", precision="fp16")
    with pytest.raises(InvalidParameterError, match="runs in fp32.*precision='fp16'"):
        block.fit(None)


def test_unknown_precision_is_refused():
    with pytest.raises(InvalidParameterError, match="'precision' parameter"):
        EmbeddingsBlock(precision="fp8").fit(None)
