"""Checks of the numeric inputs the models share: scores, labels, weights, state.

Probabilities, logits, labels and sample weights reach the metric, the
calibration and the stacking from user code, so each is checked once, here,
with a message that names the function that got it and what to pass instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "check_labels",
    "check_n_columns",
    "check_sample_weight",
    "check_scores",
    "check_state_header",
    "check_targets",
]


def check_scores(
    values: ArrayLike,
    *,
    name: str,
    owner: str,
    min_columns: int = 2,
) -> NDArray[np.float64]:
    """Return `values` as a finite float64 (n_samples, n_columns) array, or raise.

    `name` and `owner` say where the bad input went, e.g. ``logits`` and
    ``TemperatureScaler.fit``.
    """
    if scipy.sparse.issparse(values):
        raise TypeError(
            f"{owner}: {name} is a sparse matrix, which is not supported. "
            "Convert it with .toarray() first."
        )
    raw = np.asarray(values)
    if np.iscomplexobj(raw):
        raise ValueError(
            f"{owner}: Complex data not supported in {name}. Pass real numbers."
        )
    if raw.ndim != 2:
        raise ValueError(
            f"{owner}: {name} must be a 2-D array of shape (n_samples, n_classes); "
            f"got {raw.ndim}-D with shape {raw.shape}. Reshape your data, e.g. "
            "with array.reshape(1, -1) for a single sample."
        )
    try:
        array = raw.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise type(err)(
            f"{owner}: {name} must hold numbers ({err}). Convert it to floats."
        ) from err
    n_samples, n_columns = array.shape
    if n_samples == 0:
        raise ValueError(
            f"{owner}: {name} has 0 sample(s) (shape={array.shape}) while a "
            "minimum of 1 is required. Pass at least one row."
        )
    if n_columns < min_columns:
        raise ValueError(
            f"{owner}: {name} has {n_columns} feature(s) (shape={array.shape}) "
            f"while a minimum of {min_columns} is required. Pass one column per "
            "class."
        )
    if not np.all(np.isfinite(array)):
        bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise ValueError(
            f"{owner}: {name} contains NaN or infinity in row(s) "
            f"{bad_rows[:5].tolist()}. Clip probabilities before taking logs, "
            "e.g. with models.metrics.clipped_log(proba)."
        )
    return array


def check_n_columns(array: NDArray, n_expected: int, name: str) -> None:
    """Raise when `array` has another number of columns than seen in fit."""
    if array.shape[1] != n_expected:
        raise ValueError(
            f"X has {array.shape[1]} features, but {name} is expecting "
            f"{n_expected} features as input. Pass one column per class, in the "
            "same order as in fit."
        )


def check_labels(
    y: ArrayLike | None,
    *,
    n_samples: int,
    n_classes: int,
    owner: str,
) -> NDArray[np.intp]:
    """Return `y` as integer labels in ``0 .. n_classes - 1``, or raise."""
    if y is None:
        raise ValueError(
            f"{owner} requires y to be passed, but the target y is None. "
            "Pass integer labels 0 .. n_classes - 1."
        )
    raw = np.asarray(y)
    if raw.ndim != 1:
        raise ValueError(
            f"{owner}: y should be a 1d array; got shape {raw.shape}. "
            "Pass one integer label per row, e.g. y.ravel()."
        )
    if raw.shape[0] != n_samples:
        raise ValueError(
            f"{owner}: y has {raw.shape[0]} labels but there are {n_samples} rows "
            "(inconsistent numbers of samples). Pass one label per row."
        )
    try:
        numeric = raw.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{owner}: y must hold integer labels 0 .. {n_classes - 1} ({err}). "
            "Encode the classes as integers in column order."
        ) from err
    valid = np.isfinite(numeric) & (numeric == np.round(numeric))
    valid &= (numeric >= 0) & (numeric <= n_classes - 1)
    if not np.all(valid):
        bad = np.unique(raw[~valid])[:5].tolist()
        raise ValueError(
            f"{owner}: y must hold integer labels 0 .. {n_classes - 1} (one per "
            f"column); got {bad!r}. Encode the classes as integers in column order."
        )
    return numeric.astype(np.intp)


def check_sample_weight(
    sample_weight: ArrayLike | None,
    *,
    n_samples: int,
    owner: str,
) -> NDArray[np.float64]:
    """Return finite non-negative weights with a positive sum (ones for None)."""
    if sample_weight is None:
        return np.ones(n_samples)
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_samples,):
        raise ValueError(
            f"{owner}: sample_weight has shape {weights.shape} but expected "
            f"({n_samples},). Pass one weight per row."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            f"{owner}: sample_weight must be finite and non-negative; got min "
            f"{np.nanmin(weights)!r}. Fix or drop the bad weights."
        )
    if weights.sum() <= 0:
        raise ValueError(
            f"{owner}: sample_weight sums to zero (every weight is zero). Give at "
            "least one row a positive weight."
        )
    return weights


def check_targets(
    y: ArrayLike | None,
    sample_weight: ArrayLike | None,
    *,
    n_samples: int,
    n_classes: int,
    owner: str,
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Return ``(labels, weights)``, checked by :func:`check_labels` and
    :func:`check_sample_weight`."""
    labels = check_labels(y, n_samples=n_samples, n_classes=n_classes, owner=owner)
    weights = check_sample_weight(sample_weight, n_samples=n_samples, owner=owner)
    return labels, weights


def check_state_header(
    state: Mapping[str, Any], estimator_name: str, format_version: int
) -> None:
    """Check that `state` is a saved `estimator_name` of a known format version."""
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{estimator_name}.from_dict expects a dict from to_dict(); got "
            f"{type(state).__name__}. Pass the parsed JSON object."
        )
    found = (state.get("estimator"), state.get("format_version"))
    if found != (estimator_name, format_version):
        raise ValueError(
            f"{estimator_name}.from_dict: state is for estimator {found[0]!r} "
            f"format {found[1]!r}, expected {estimator_name!r} format "
            f"{format_version}. Save it again with {estimator_name}.to_dict()."
        )
