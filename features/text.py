"""Text helpers shared by the feature blocks: joined sides and paired columns."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.blocks.base import FeatureMatrix

__all__ = ["TURN_SEPARATOR", "joined_texts", "last_turns", "paired_matrix"]

TURN_SEPARATOR = "\n\n"


def joined_texts(battles: pd.DataFrame, column: str) -> list[str]:
    """One string per battle: the turns of ``column`` joined by a blank line.

    >>> import pandas as pd
    >>> joined_texts(pd.DataFrame({"response_a": [["hi", "there"]]}), "response_a")
    ['hi\\n\\nthere']
    """
    return [TURN_SEPARATOR.join(turns) for turns in battles[column]]


def last_turns(battles: pd.DataFrame, column: str) -> list[str]:
    """The last turn of ``column`` for each battle (empty string when none)."""
    return [turns[-1] if turns else "" for turns in battles[column]]


def paired_matrix(
    prefix: str,
    a_values: Mapping[str, ArrayLike],
    b_values: Mapping[str, ArrayLike],
    *,
    symmetric: Mapping[str, ArrayLike] | None = None,
    normalised: bool = False,
) -> FeatureMatrix:
    """Side-tagged matrix from per-side feature arrays of the same names.

    For each feature ``x`` it emits ``a_{prefix}x``, ``b_{prefix}x`` and the
    difference ``d_{prefix}x`` (A−B); with ``normalised`` also
    ``d_{prefix}x_norm`` = (a−b)/(a+b), 0 when both are 0 (for counts).
    ``symmetric`` features become ``s_{prefix}x``.

    >>> m = paired_matrix("len_", {"chars": [3]}, {"chars": [1]}, normalised=True)
    >>> m.columns
    ('a_len_chars', 'b_len_chars', 'd_len_chars', 'd_len_chars_norm')
    >>> m.values.tolist()
    [[3.0, 1.0, 2.0, 0.5]]
    """
    if set(a_values) != set(b_values):
        raise ValueError(
            f"paired_matrix needs the same features on both sides; got "
            f"{sorted(a_values)} and {sorted(b_values)}."
        )
    columns: list[str] = []
    arrays: list[np.ndarray] = []
    for name in a_values:
        a = np.asarray(a_values[name], dtype=np.float64)
        b = np.asarray(b_values[name], dtype=np.float64)
        columns += [f"a_{prefix}{name}", f"b_{prefix}{name}", f"d_{prefix}{name}"]
        arrays += [a, b, a - b]
        if normalised:
            total = a + b
            safe = np.where(total == 0, 1.0, total)
            columns.append(f"d_{prefix}{name}_norm")
            arrays.append(np.where(total == 0, 0.0, (a - b) / safe))
    for name, values in (symmetric or {}).items():
        columns.append(f"s_{prefix}{name}")
        arrays.append(np.asarray(values, dtype=np.float64))
    n_rows = len(arrays[0]) if arrays else 0
    values = (
        np.column_stack(arrays).astype(np.float32)
        if arrays
        else np.zeros((n_rows, 0), np.float32)
    )
    return FeatureMatrix(values, tuple(columns))
