"""Fixed answers for degenerate battles (empty or identical responses).

An option, off by default: the flags block lets the boosters learn these rows,
and the rules are kept only where out-of-fold log loss says they help.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.battles import SWAP_LABELS

__all__ = ["EMPTY_A", "IDENTICAL", "apply_degenerate_rules", "degenerate_masks"]

EMPTY_A = np.array([0.04, 0.88, 0.08])
"""Probabilities when response A is empty and B is not (mirrored for B)."""
IDENTICAL = np.array([0.06, 0.06, 0.88])
"""Probabilities when both responses are the same non-empty text."""


def degenerate_masks(battles: pd.DataFrame) -> dict[str, NDArray[np.bool_]]:
    """Boolean masks ``empty_a``, ``empty_b`` and ``identical`` per battle."""
    text_a = ["\n".join(t).strip() for t in battles["response_a"]]
    text_b = ["\n".join(t).strip() for t in battles["response_b"]]
    empty_a = np.array([not a for a in text_a], dtype=bool)
    empty_b = np.array([not b for b in text_b], dtype=bool)
    identical = np.array(
        [bool(a) and a == b for a, b in zip(text_a, text_b, strict=True)], dtype=bool
    )
    return {
        "empty_a": empty_a & ~empty_b,
        "empty_b": empty_b & ~empty_a,
        "identical": identical,
    }


def apply_degenerate_rules(
    battles: pd.DataFrame, proba: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Replace the rows of degenerate battles by the fixed answers above."""
    masks = degenerate_masks(battles)
    out = proba.copy()
    out[masks["empty_a"]] = EMPTY_A
    out[masks["empty_b"]] = EMPTY_A[SWAP_LABELS]
    out[masks["identical"]] = IDENTICAL
    return out
