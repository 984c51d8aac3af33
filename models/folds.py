"""Cross-validation folds grouped by prompt, so repeated prompts never leak."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.model_selection import StratifiedGroupKFold

__all__ = ["make_folds", "prompt_groups", "subsample_groups"]


def prompt_groups(battles: pd.DataFrame) -> NDArray[np.int64]:
    """Group id per battle: a hash of its prompt text (whitespace-normalised).

    Identical prompts ("hey") appear many times with different labels; row-
    random folds would score them optimistically.
    """
    codes: dict[str, int] = {}
    groups = np.empty(len(battles), dtype=np.int64)
    for i, turns in enumerate(battles["prompt"]):
        text = " ".join(" ".join(turns).split()).lower()
        digest = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()
        groups[i] = codes.setdefault(digest, len(codes))
    return groups


def make_folds(
    labels: NDArray[np.int64],
    groups: NDArray[np.int64],
    n_folds: int = 5,
    seed: int = 0,
) -> NDArray[np.int64]:
    """Fold index (0 .. n_folds-1) of each row: stratified by label, grouped.

    >>> import numpy as np
    >>> labels = np.array([0, 1, 2] * 4)
    >>> folds = make_folds(labels, np.arange(12), n_folds=3)
    >>> np.bincount(folds).tolist()
    [4, 4, 4]
    """
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ValueError(
            f"cannot make {n_folds} prompt-grouped folds from {n_groups} distinct "
            "prompts; lower training.n_folds or add data."
        )
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.empty(len(labels), dtype=np.int64)
    splits = splitter.split(np.zeros(len(labels)), labels, groups)
    for fold, (_, valid_rows) in enumerate(splits):
        folds[valid_rows] = fold
    return folds


def subsample_groups(
    groups: NDArray[np.int64], max_rows: int | None, seed: int = 0
) -> NDArray[np.int64]:
    """Sorted row indices of whole prompt groups, about ``max_rows`` in total.

    Groups are drawn in a seeded random order and each is taken if it fits, so a
    prompt's battles stay together (no leak between tuning folds) and the
    same seed picks the same rows. ``None`` or ``max_rows >= len(groups)``
    keeps every row.

    >>> import numpy as np
    >>> rows = subsample_groups(np.repeat(np.arange(50), 2), 20, seed=0)
    >>> len(rows), bool(np.all(np.diff(rows) > 0))
    (20, True)
    """
    n_rows = len(groups)
    if max_rows is None or max_rows >= n_rows:
        return np.arange(n_rows)
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1 or None; got {max_rows!r}.")
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    chosen = np.zeros(len(unique), dtype=bool)
    taken = 0
    for group in np.random.default_rng(seed).permutation(len(unique)):
        if taken + counts[group] <= max_rows:  # a group too big is skipped
            chosen[group] = True
            taken += counts[group]
            if taken == max_rows:
                break
    return np.flatnonzero(chosen[inverse])
