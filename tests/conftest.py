"""Shared fixtures: a few hand-written battles with the real data's dirt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.battles import as_battles, swap
from features.blocks.base import FeatureBlock, swap_columns

CORPUS = Path(__file__).resolve().parents[1].parent / "shared/data/corpus/train.csv"

_ROWS = [
    (
        "1",
        ["What is 2+2?"],
        ["2+2 = **4**."],
        ["The answer is 4, because two plus two is four."],
        1,
    ),
    (
        "2",
        ["Write a poem about the sea"],
        ["I'm sorry, but I can't help with that."],
        ["# The Sea\n\n- waves\n- salt\n\nThe sea is wide and deep 🌊."],
        1,
    ),
    (
        "3",
        ["hey"],
        ["Hello! How can I help you today?"],
        ["Hello! How can I help you today?"],
        2,
    ),
    (
        "4",
        ["Explain recursion", "Give code"],
        ["A function calling itself.", "```python\ndef f(n):\n    return f(n-1)\n```"],
        ["Recursion is when a function calls itself.", ""],
        0,
    ),
    (
        "5",
        ["你好，请介绍一下北京"],
        ["北京是中国的首都，有很多名胜古迹。"],
        ["抱歉，我不能回答这个问题。"],
        0,
    ),
    (
        "6",
        ["Расскажи о Москве"],
        ["Извините, я не могу помочь с этим."],
        ["Москва — столица России. Это крупный город."],
        1,
    ),
    ("7", ["Say something"], [""], ["   "], 2),
    (
        "8",
        ["Summarize: the cat sat on the mat."],
        ["The cat sat on the mat"],
        ["A cat was sitting on a mat, according to the text, which is short."],
        1,
    ),
    (
        "9",
        ["List three fruits"],
        ["1. apple\n2. pear\n3. plum"],
        ["Apple, pear and plum, see [link](http://x.y) and $x^2$."],
        0,
    ),
    (
        "10",
        ["What is AI?"],
        ["As an AI language model, I cannot have opinions."],
        ["AI is the field of making machines intelligent."],
        1,
    ),
]


@pytest.fixture
def hand_battles() -> pd.DataFrame:
    """Ten canonical battles: refusals in three languages, empty, identical, code."""
    frame = pd.DataFrame(
        _ROWS, columns=["id", "prompt", "response_a", "response_b", "label"]
    )
    return as_battles(frame)


def assert_swap_consistent(block: FeatureBlock, battles: pd.DataFrame) -> None:
    """``transform(swap(x)) == swap_columns(transform(x))`` for a fitted block."""
    direct = block.transform(battles)
    swapped = block.transform(swap(battles))
    expected = swap_columns(direct)
    assert swapped.columns == expected.columns
    got = swapped.values.toarray() if swapped.is_sparse else swapped.values
    want = expected.values.toarray() if expected.is_sparse else expected.values
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture
def swap_check():
    """The swap-consistency assertion, as a fixture for block tests."""
    return assert_swap_consistent


@pytest.fixture
def corpus_path() -> Path:
    """Path of the real corpus; skips the test when it is absent."""
    if not CORPUS.exists():
        pytest.skip(f"real corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(autouse=True, scope="session")
def _onnx_cache_in_a_temporary_folder(tmp_path_factory):
    """Exported encoders go to a folder of this run, not the user's cache."""
    import os

    from features.blocks._onnx_cache import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("onnx-cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous
