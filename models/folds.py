"""Cross-validation folds grouped by prompt, so repeated prompts never leak.

Also the rows and folds the tuning trials see: a subsample of whole prompt
groups with folds of its own, so a trial costs the same on any data size.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.model_selection import StratifiedGroupKFold

from features.errors import InvalidParameterError

__all__ = [
    "MIN_TUNING_ROWS",
    "check_n_folds",
    "check_tuning_rows",
    "make_folds",
    "prompt_groups",
    "subsample_groups",
    "tuning_sample",
]

MIN_TUNING_ROWS = 100
"""Smallest row budget for the tuning trials: fewer rows score params on noise."""


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
    check_n_folds(n_folds)
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise InvalidParameterError(
            f"cannot make {n_folds} prompt-grouped folds from {n_groups} distinct "
            "prompts; lower n_folds or add data."
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
        raise InvalidParameterError(
            f"max_rows must be >= 1 or None (every row). Got {max_rows!r}."
        )
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


def check_n_folds(n_folds: Any) -> None:
    """Check a fold count: an int >= 2.

    Raises
    ------
    InvalidParameterError
        If `n_folds` is not an int or is below 2.

    Examples
    --------
    >>> check_n_folds(5)
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise InvalidParameterError(
            f"n_folds must be an int >= 2 (one fold to score, the rest to train). "
            f"Got {n_folds!r}."
        )


def check_tuning_rows(max_rows: Any) -> None:
    """Check the row budget of the tuning trials: None or an int >= 100.

    Raises
    ------
    InvalidParameterError
        If `max_rows` is not None and not an int >= :data:`MIN_TUNING_ROWS`.

    Examples
    --------
    >>> check_tuning_rows(6000)
    >>> check_tuning_rows(None)
    """
    if max_rows is None:
        return
    if isinstance(max_rows, bool) or not isinstance(max_rows, int):
        raise InvalidParameterError(
            f"max_rows must be None (every row) or an int. Got {max_rows!r}."
        )
    if max_rows < MIN_TUNING_ROWS:
        raise InvalidParameterError(
            f"max_rows must be None (every row) or >= {MIN_TUNING_ROWS}: fewer rows "
            f"score params on noise. Got {max_rows!r}."
        )


def tuning_sample(
    labels: NDArray[np.int64],
    groups: NDArray[np.int64],
    *,
    max_rows: int | None,
    n_folds: int,
    seed: int = 0,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rows the tuning trials train on and their folds.

    The rows are whole prompt groups, about `max_rows` in total
    (:func:`subsample_groups`), and get prompt-grouped folds of their own, so
    a trial costs about the same on any data size; the final fit uses every
    row and its own folds.

    Parameters
    ----------
    labels : ndarray of int64 of shape (n_rows,)
        0 = A wins, 1 = B wins, 2 = tie.
    groups : ndarray of int64 of shape (n_rows,)
        Prompt group of each row (:func:`prompt_groups`).
    max_rows : int or None
        Row budget, >= :data:`MIN_TUNING_ROWS`; None keeps every row.
    n_folds : int
        Folds per trial, >= 2.
    seed : int, default=0
        Seed of the subsample and the folds.

    Returns
    -------
    rows : ndarray of int64
        Sorted indices of the chosen rows.
    folds : ndarray of int64
        Fold of each chosen row, aligned with `rows`.

    Raises
    ------
    InvalidParameterError
        If `max_rows` or `n_folds` is out of range, or the rows hold fewer
        prompts than `n_folds`.

    Examples
    --------
    >>> import numpy as np
    >>> labels, groups = np.arange(400) % 3, np.arange(400) // 2
    >>> rows, folds = tuning_sample(labels, groups, max_rows=150, n_folds=3)
    >>> len(rows), sorted(set(folds.tolist()))
    (150, [0, 1, 2])
    """
    check_tuning_rows(max_rows)
    rows = subsample_groups(groups, max_rows, seed)
    return rows, make_folds(labels[rows], groups[rows], n_folds, seed)
