"""The feature-block contract and the side-tagged feature matrix.

Every column name starts with its side: ``a_`` / ``b_`` (one response),
``d_`` (antisymmetric: changes sign when A and B swap) or ``s_`` (symmetric:
prompt features, similarity of A and B). Swapping A and B in a feature
matrix is then one generic column operation, tested once for every block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.base import BaseEstimator

from features.validation import ParameterTable, check_parameters

__all__ = ["FeatureBlock", "FeatureMatrix", "SIDE_PREFIXES", "swap_columns"]

SIDE_PREFIXES = ("a_", "b_", "d_", "s_")


@dataclass(frozen=True)
class FeatureMatrix:
    """A block's output: float32 values (dense or CSR) with side-tagged names.

    Attributes
    ----------
    values : numpy.ndarray or scipy.sparse.csr_matrix
        Shape (n_battles, n_columns), float32.
    columns : tuple of str
        One name per column, each starting with a side prefix.
    """

    values: NDArray[np.float32] | sp.csr_matrix
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.columns):
            raise ValueError(
                f"FeatureMatrix has {self.values.shape} values but "
                f"{len(self.columns)} column names; they must match."
            )
        bad = [c for c in self.columns if not c.startswith(SIDE_PREFIXES)]
        if bad:
            raise ValueError(
                f"column names must start with one of {SIDE_PREFIXES}; got {bad[:5]}."
            )

    @property
    def n_rows(self) -> int:
        """Number of battles."""
        return int(self.values.shape[0])

    @property
    def is_sparse(self) -> bool:
        """Whether the values are a scipy sparse matrix."""
        return sp.issparse(self.values)

    def to_frame(self) -> pd.DataFrame:
        """Dense DataFrame view (for inspection; avoid on large sparse blocks)."""
        dense = self.values.toarray() if self.is_sparse else self.values
        return pd.DataFrame(dense, columns=list(self.columns))

    @classmethod
    def concat(cls, matrices: Sequence[FeatureMatrix]) -> FeatureMatrix:
        """Side-by-side concatenation; sparse if any part is sparse."""
        if not matrices:
            raise ValueError("FeatureMatrix.concat needs at least one matrix.")
        columns = tuple(c for m in matrices for c in m.columns)
        if any(m.is_sparse for m in matrices):
            values = sp.hstack([sp.csr_matrix(m.values) for m in matrices]).tocsr()
            return cls(values.astype(np.float32), columns)
        return cls(np.hstack([m.values for m in matrices]).astype(np.float32), columns)


def swap_permutation(columns: Sequence[str]) -> tuple[NDArray[np.int64], NDArray]:
    """Column permutation and sign vector that swap sides A and B.

    Returns ``(order, sign)`` such that ``swapped[:, j] = sign[j] *
    values[:, order[j]]``: ``a_x`` and ``b_x`` exchange, ``d_x`` changes sign,
    ``s_x`` stays.
    """
    index = {name: i for i, name in enumerate(columns)}
    order = np.arange(len(columns))
    sign = np.ones(len(columns), dtype=np.float32)
    for j, name in enumerate(columns):
        prefix, rest = name[:2], name[2:]
        if prefix in ("a_", "b_"):
            partner = ("b_" if prefix == "a_" else "a_") + rest
            if partner not in index:
                raise ValueError(
                    f"column {name!r} has no partner {partner!r}; per-side "
                    "columns must come in a_/b_ pairs."
                )
            order[j] = index[partner]
        elif prefix == "d_":
            sign[j] = -1.0
    return order, sign


def swap_columns(matrix: FeatureMatrix) -> FeatureMatrix:
    """The feature matrix of the swapped battles, computed from the columns.

    >>> import numpy as np
    >>> m = FeatureMatrix(np.array([[1, 2, 3, 4]], dtype=np.float32),
    ...                   ("a_len", "b_len", "d_len", "s_len"))
    >>> swap_columns(m).values.tolist()
    [[2.0, 1.0, -3.0, 4.0]]
    """
    order, sign = swap_permutation(matrix.columns)
    if matrix.is_sparse:
        values = (matrix.values[:, order] @ sp.diags(sign)).tocsr().astype(np.float32)
    else:
        values = (matrix.values[:, order] * sign).astype(np.float32)
    return FeatureMatrix(values, matrix.columns)


class FeatureBlock(BaseEstimator):
    """Base class of a feature block: params in ``__init__``, ``fit``, ``transform``.

    Subclasses set ``name`` and ``version`` (bump it whenever the output
    changes, so cached entries are recomputed) and implement
    :meth:`transform`. Stateful blocks override :meth:`fit`,
    :meth:`get_state` and :meth:`set_state`; state is JSON plus named numpy
    arrays, never pickle.

    Stateless blocks validate in :meth:`fit` and :meth:`transform` through
    :meth:`_validate`: params by the :attr:`_allowed_values` table and the
    ``_check_parameter_combinations`` hook (see :mod:`features.validation`),
    battles by :attr:`_battle_columns`.
    """

    name: ClassVar[str] = "base"
    version: ClassVar[int] = 1
    stateful: ClassVar[bool] = False
    _battle_columns: ClassVar[tuple[str, ...]] = ("prompt", "response_a", "response_b")
    """Columns :meth:`_check_battles` requires in the battle table."""
    _allowed_values: ClassVar[ParameterTable] = {}
    """Param -> allowed values (:func:`features.validation.check_parameters`)."""
    row_parallel: ClassVar[bool] = True
    """``transform`` treats rows independently and is cheap to fork for, so
    batches may be split over worker processes (:mod:`features.parallel`)."""
    progress: bool = False
    """Show progress bars inside the block (set by a verbose pipeline). A runtime
    switch, not a param: it is not part of the cache key."""

    def fit(self, battles: pd.DataFrame) -> FeatureBlock:
        """Learn state from the canonical battle table.

        Stateless blocks learn nothing: this validates the params and the
        battle columns (:meth:`_validate`) and returns ``self``.
        """
        self._validate(battles)
        self.is_fitted_ = True
        return self

    def transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """Compute the block's features for the canonical battle table."""
        raise NotImplementedError(f"block {self.name!r} must implement transform().")

    def fit_transform(self, battles: pd.DataFrame) -> FeatureMatrix:
        """``fit`` then ``transform`` on the same battles."""
        return self.fit(battles).transform(battles)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Fitted state as ``(json_dict, arrays)``; no pickle-able objects."""
        return {}, {}

    def set_state(
        self, state: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> FeatureBlock:
        """Restore the fitted state written by :meth:`get_state`."""
        self.is_fitted_ = True
        return self

    def _check_fitted(self) -> None:
        if self.stateful and not getattr(self, "is_fitted_", False):
            raise RuntimeError(
                f"feature block {self.name!r} is not fitted; call fit first."
            )

    def _validate(self, battles: pd.DataFrame) -> None:
        """Check the params, then the battle table's columns."""
        check_parameters(self)
        self._check_battles(battles)

    def _check_battles(
        self, battles: pd.DataFrame, columns: Sequence[str] | None = None
    ) -> None:
        """Raise ``ValueError`` naming the ``columns`` that ``battles`` lacks.

        ``columns`` defaults to :attr:`_battle_columns`.
        """
        needed = self._battle_columns if columns is None else columns
        missing = [c for c in needed if c not in battles.columns]
        if missing:
            raise ValueError(
                f"feature block {self.name!r} needs columns {missing} in the battle "
                f"table; got {list(battles.columns)}. Read battles with "
                "features.battles.read_battles or as_battles first."
            )

    def _check_state_format(self, state: dict[str, Any], expected: int) -> None:
        """Raise ``ValueError`` unless ``state`` was written in format ``expected``."""
        if state.get("format") != expected:
            raise ValueError(
                f"{type(self).__name__} state has format {state.get('format')!r}; "
                f"this version reads format {expected}. Refit the block."
            )
