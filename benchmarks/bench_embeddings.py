"""Throughput of the embeddings block on real arena responses, PyTorch vs ONNX.

Runs the ``embeddings`` block (default MiniLM, CPU) over corpus responses at
several ``max_seq_length`` / ``batch_size`` settings and, when onnxruntime is
installed, with ONNX fp32 and int8. Prints a markdown table: the median
texts/s over the repeats, the ratio to the default setting (PyTorch, 256
tokens, batch 32), and how close each engine's embeddings are to PyTorch's at
the same length (cosine per text, mean and minimum).

Usage::

    python -m benchmarks.bench_embeddings [--n-texts 300] [--corpus PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import FeatureMatrix, read_battles
from features.blocks.embeddings import EmbeddingsBlock

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/corpus/train.csv"
_BASELINE = ("pytorch", 256, 32)


@dataclass(frozen=True)
class _Setting:
    engine: str  # "pytorch", "onnx-fp32" or "onnx-int8"
    max_seq_length: int
    batch_size: int

    @property
    def onnx(self) -> bool | str:
        return {"pytorch": False, "onnx-fp32": True, "onnx-int8": "int8"}[self.engine]


@dataclass
class _Result:
    setting: _Setting
    texts_per_s: float
    embeddings: np.ndarray


def _response_battles(corpus: Path, n_texts: int) -> pd.DataFrame:
    """Battles whose two responses are ``n_texts`` distinct, non-blank corpus texts."""
    battles = read_battles(corpus)
    texts: list[str] = []
    seen: set[str] = set()
    for column in ("response_a", "response_b"):
        for turns in battles[column]:
            text = "\n\n".join(turns)
            if text.strip() and text not in seen:
                seen.add(text)
                texts.append(text)
    rng = np.random.default_rng(0)
    picked = [texts[i] for i in rng.permutation(len(texts))[: n_texts - n_texts % 2]]
    half = len(picked) // 2
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(half)],
            "prompt": [[""]] * half,
            "response_a": [[t] for t in picked[:half]],
            "response_b": [[t] for t in picked[half:]],
        }
    )


def _embeddings(matrix: FeatureMatrix) -> np.ndarray:
    """The a_ and b_ embedding rows stacked: one row per response."""
    sides = [
        [i for i, c in enumerate(matrix.columns) if c.startswith(f"{side}_emb_")]
        for side in "ab"
    ]
    return np.vstack([matrix.values[:, index] for index in sides])


def _loaded_block(setting: _Setting, battles: pd.DataFrame) -> EmbeddingsBlock:
    block = EmbeddingsBlock(
        device="cpu",
        max_seq_length=setting.max_seq_length,
        batch_size=setting.batch_size,
        texts=["response_a", "response_b"],
        onnx=setting.onnx,
    ).fit(battles)
    block.transform(battles.iloc[:2])  # load (and export) outside the timing
    return block


def _measure(
    settings: list[_Setting], battles: pd.DataFrame, repeats: int
) -> list[_Result]:
    """Time every setting once per round, so load spikes hit all of them alike."""
    blocks = [_loaded_block(setting, battles) for setting in settings]
    n_texts = 2 * len(battles)
    rates: list[list[float]] = [[] for _ in settings]
    embeddings: list[np.ndarray] = [np.empty(0)] * len(settings)
    for _ in range(repeats):
        for i, block in enumerate(blocks):
            started = time.perf_counter()
            matrix = block.transform(battles)
            rates[i].append(n_texts / (time.perf_counter() - started))
            embeddings[i] = _embeddings(matrix)
    for setting, setting_rates in zip(settings, rates, strict=True):
        logger.info("%s: %s texts/s", setting, [f"{r:.1f}" for r in setting_rates])
    return [
        _Result(setting, statistics.median(setting_rates), emb)
        for setting, setting_rates, emb in zip(settings, rates, embeddings, strict=True)
    ]


def _settings(onnx_ready: bool) -> list[_Setting]:
    settings = [
        _Setting("pytorch", length, batch)
        for length in (128, 256, 512)
        for batch in (16, 32, 64)
    ]
    if onnx_ready:
        settings += [
            _Setting(engine, length, 32)
            for engine in ("onnx-fp32", "onnx-int8")
            for length in (128, 256)
        ]
    return settings


def _table(results: list[_Result]) -> str:
    baseline = next(
        r
        for r in results
        if (r.setting.engine, r.setting.max_seq_length, r.setting.batch_size)
        == _BASELINE
    )
    reference = {
        r.setting.max_seq_length: r.embeddings
        for r in results
        if r.setting.engine == "pytorch" and r.setting.batch_size == _BASELINE[2]
    }
    lines = [
        "| engine | max_seq_length | batch | texts/s (median) | vs PyTorch 256/32 "
        "| cosine to PyTorch (mean / min) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for result in results:
        s = result.setting
        cosine = "-"
        if s.engine != "pytorch" or s.batch_size != _BASELINE[2]:
            agreement = (result.embeddings * reference[s.max_seq_length]).sum(axis=1)
            cosine = f"{agreement.mean():.4f} / {agreement.min():.4f}"
        lines.append(
            f"| {s.engine} | {s.max_seq_length} | {s.batch_size} "
            f"| {result.texts_per_s:.1f} "
            f"| {result.texts_per_s / baseline.texts_per_s:.2f}x | {cosine} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; prints the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=300, help="responses to embed")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not args.corpus.exists():
        parser.error(f"corpus not found at {args.corpus}; pass --corpus PATH.")

    import torch

    battles = _response_battles(args.corpus, args.n_texts)
    lengths = [len(t[0]) for c in ("response_a", "response_b") for t in battles[c]]
    onnx_ready = all(
        importlib.util.find_spec(m) is not None
        for m in ("onnxruntime", "onnx", "onnxscript")
    )
    results = _measure(_settings(onnx_ready), battles, args.repeats)
    print(
        f"all-MiniLM-L6-v2 on {2 * len(battles)} corpus responses (median "
        f"{int(np.median(lengths)):,} chars), CPU, {torch.get_num_threads()} torch "
        f"threads, {os.cpu_count()} cores, median of {args.repeats} repeats."
    )
    if not onnx_ready:
        print(
            "ONNX rows skipped: install the `onnx` extra (onnxruntime, onnx, "
            "onnxscript)."
        )
    print()
    print(_table(results))


if __name__ == "__main__":
    main()
