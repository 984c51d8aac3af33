"""Where battles come from: source-grouped folds and source weights.

A model that will meet battles from a source it never saw should choose its
rounds, params and temperature on folds that hold out whole source families,
and should not let the largest source's habits outvote the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from features.errors import InvalidParameterError
from models.folds import make_folds, prompt_groups

__all__ = [
    "battle_families",
    "folds_hold_out_sources",
    "resolve_group_by",
    "row_weights",
    "source_families",
    "source_folds",
    "source_weights",
    "training_folds",
]


def source_families(sources: ArrayLike) -> NDArray[np.object_]:
    """Family of each source name: the part before the first ``:``.

    Fine sources of one public set (``llmeval2:webgpt``, ``llmeval2:shp``)
    share annotators and habits, so transfer holds out a whole family.
    Missing names (None, NaN, empty) become ``"unknown"``.

    Parameters
    ----------
    sources : array-like of str
        The ``source`` column.

    Returns
    -------
    ndarray of str (object dtype)
        One family per row.

    Examples
    --------
    >>> source_families(["llmeval2:webgpt", "vibecheck-arena", None]).tolist()
    ['llmeval2', 'vibecheck-arena', 'unknown']
    """
    families = []
    for value in np.asarray(sources, dtype=object).ravel():
        missing = value is None or (isinstance(value, float) and np.isnan(value))
        text = "" if missing else str(value).split(":", 1)[0].strip()
        families.append(text or "unknown")
    return np.asarray(families, dtype=object)


def battle_families(battles: pd.DataFrame, *, needed_for: str) -> NDArray[np.object_]:
    """Source family of each battle; a clear error when there is no ``source``.

    Parameters
    ----------
    battles : DataFrame
        Canonical battle table.
    needed_for : str
        What asks for the families, for the error message.
    """
    if "source" not in battles.columns:
        raise InvalidParameterError(
            f"{needed_for} needs a 'source' column in the battles (the public set "
            "or product each battle came from). Add one, or use the default."
        )
    return source_families(battles["source"])


def source_folds(
    labels: NDArray[np.int64],
    families: NDArray[np.object_],
    n_folds: int,
    seed: int = 0,
    weight: NDArray[np.float64] | None = None,
) -> NDArray[np.int64]:
    """Label-stratified folds that never split a source family.

    With fewer families than ``n_folds``, each family is its own fold. The
    rows of a family with zero total ``weight`` (excluded by
    ``source_weights``) count for nothing, so they get no fold of their own:
    they are spread over the others (prompt-grouped) and still get
    out-of-fold predictions.

    >>> import numpy as np
    >>> labels = np.array([0, 1, 2, 0, 1, 2])
    >>> families = np.array(["x", "x", "y", "y", "z", "z"], dtype=object)
    >>> folds = source_folds(labels, families, n_folds=5)
    >>> len(set(folds.tolist())), bool(folds[0] == folds[1])
    (3, True)
    """
    families = np.asarray(families, dtype=object).astype(str)
    counted = np.ones(len(labels), bool)
    if weight is not None:
        totals = pd.Series(weight).groupby(families).sum()
        counted = np.isin(families, totals.index[totals > 0])
    names, codes = np.unique(families[counted], return_inverse=True)
    if len(names) < 2:
        raise InvalidParameterError(
            f"group_by='source' needs battles from at least 2 source families "
            f"with weight > 0; got {names.tolist()!r}. Use group_by='prompt'."
        )
    n_source_folds = min(n_folds, len(names))
    folds = np.empty(len(labels), dtype=np.int64)
    folds[counted] = (
        codes
        if len(names) <= n_folds
        else make_folds(labels[counted], codes, n_source_folds, seed)
    )
    rest = np.flatnonzero(~counted)
    folds[rest] = np.arange(len(rest)) % n_source_folds
    return folds


def row_weights(
    battles: pd.DataFrame, spec: str | Mapping[str, Any] | None
) -> NDArray[np.float64] | None:
    """:func:`source_weights` of a battle table.

    None when ``spec`` is None, and for "balanced" when the battles have no
    ``source`` column (one source: nothing to balance).
    """
    if spec is None or (spec == "balanced" and "source" not in battles.columns):
        return None
    families = battle_families(battles, needed_for="source_weights")
    return source_weights(families, battles["source"].astype(str).to_numpy(), spec)


def resolve_group_by(
    battles: pd.DataFrame,
    group_by: str,
    weight: NDArray[np.float64] | None = None,
) -> str:
    """``"prompt"`` or ``"source"``: what ``group_by`` means for these battles.

    ``"auto"`` groups by source when the battles name at least 2 source
    families with weight > 0, else by prompt (a single-source file such as
    the Kaggle train.csv).
    """
    if group_by != "auto":
        return group_by
    if "source" not in battles.columns:
        return "prompt"
    families = source_families(battles["source"]).astype(str)
    if weight is not None:
        families = families[weight > 0]
    return "source" if len(set(families)) >= 2 else "prompt"


def folds_hold_out_sources(
    battles: pd.DataFrame,
    folds: NDArray[np.int64],
    weight: NDArray[np.float64] | None = None,
) -> bool:
    """Whether ``folds`` keep every source family whole (2+ families, weight > 0).

    Then each out-of-fold prediction is one for a source the fold's model
    never saw. Zero-weight families are spread over the folds by
    :func:`source_folds` and do not count.

    >>> import numpy as np, pandas as pd
    >>> battles = pd.DataFrame({"source": ["x:1", "x:2", "y", "y"]})
    >>> folds_hold_out_sources(battles, np.array([0, 0, 1, 1]))
    True
    >>> folds_hold_out_sources(battles, np.array([0, 1, 0, 1]))
    False
    """
    if "source" not in battles.columns:
        return False
    families = source_families(battles["source"]).astype(str)
    folds = np.asarray(folds)
    if weight is not None:
        totals = pd.Series(weight).groupby(families).sum()
        counted = np.isin(families, totals.index[totals > 0])
        families, folds = families[counted], folds[counted]
    if len(set(families)) < 2:
        return False
    return bool((pd.Series(folds).groupby(families).nunique() == 1).all())


def training_folds(
    battles: pd.DataFrame,
    labels: NDArray[np.int64],
    *,
    group_by: str,
    n_folds: int,
    seed: int = 0,
    weight: NDArray[np.float64] | None = None,
) -> NDArray[np.int64]:
    """The folds a model trains and validates on: by prompt or by source.

    Parameters
    ----------
    battles : DataFrame
        Canonical battle table (with ``source`` for ``group_by="source"``).
    labels : ndarray of int
        0 = A, 1 = B, 2 = tie.
    group_by : {"prompt", "source", "auto"}
        What a fold keeps together (:func:`resolve_group_by`).
    n_folds : int
        Folds (at most one per source family with ``"source"``).
    seed : int, default=0
    weight : ndarray, default=None
        Row weights; zero-weight families get no fold (:func:`source_folds`).
    """
    if resolve_group_by(battles, group_by, weight) == "source":
        families = battle_families(battles, needed_for="group_by='source'")
        return source_folds(labels, families, n_folds, seed, weight)
    return make_folds(labels, prompt_groups(battles), n_folds, seed)


def source_weights(
    families: NDArray[np.object_],
    sources: NDArray[np.object_] | None,
    spec: str | Mapping[str, Any] | None,
) -> NDArray[np.float64] | None:
    """Row weights from ``training.source_weights``.

    Parameters
    ----------
    families : ndarray of str
        Source family per row.
    sources : ndarray of str or None
        Full source name per row (``llmeval2:webgpt``); a mapping may name
        either.
    spec : {"balanced"}, mapping of str to float, or None
        - None: every row weighs 1 (returns None).
        - "balanced": every family weighs the same in total.
        - a mapping: weight per family or full source name (the full name
          wins); unnamed sources weigh 1. A weight of 0 excludes a source from
          fitting (its battles still get out-of-fold predictions).

    Returns
    -------
    ndarray of shape (n_rows,) or None
        Weights with mean 1, so learning rates and regularisation mean the
        same as without weights.

    Examples
    --------
    >>> import numpy as np
    >>> fam = np.array(["a", "a", "a", "b"], dtype=object)
    >>> source_weights(fam, None, "balanced").round(3).tolist()
    [0.667, 0.667, 0.667, 2.0]
    """
    if spec is None:
        return None
    families = np.asarray(families, dtype=object).astype(str)
    if spec == "balanced":
        names, codes, counts = np.unique(
            families, return_inverse=True, return_counts=True
        )
        weight = len(families) / (len(names) * counts[codes])
    else:
        full = families if sources is None else np.asarray(sources).astype(str)
        weight = np.array(
            [
                float(spec.get(name, spec.get(family, 1.0)))
                for name, family in zip(full, families, strict=True)
            ]
        )
    if not np.any(weight > 0):
        raise InvalidParameterError(
            "source_weights gives every battle a weight of 0; keep at least one "
            "source with a weight > 0."
        )
    return weight / weight.mean()
