"""Length-anchored boosting: a small interpretable model the boosters start from.

Voters everywhere reward longer, more structured answers and punish refusals
and empty answers; how much differs by source, but the direction does not.
:class:`StyleAnchor` fits that knowledge as a Bradley-Terry-style model on a
few universal covariates (the arena "style control" differences), with each
coefficient's sign fixed by what voters are known to do, plus one tie logit.
Its log-probabilities are the boosters' starting score (LightGBM
``init_score``, XGBoost ``base_margin``) in fit and predict, so the trees learn
only what the anchor misses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from features.errors import InvalidParameterError, NotFittedError
from models._blas import single_blas_thread

__all__ = ["ANCHOR_COVARIATES", "StyleAnchor"]

ANCHOR_COVARIATES: dict[str, int] = {
    "d_len_tokens_tanh": 1,
    "d_len_tokens_logratio": 1,
    "d_style_headers_norm": 1,
    "d_style_list_items_norm": 1,
    "d_style_bold_norm": 1,
    "d_flag_refusal": -1,
    "d_flag_empty": -1,
}
"""Antisymmetric covariate (A minus B) -> the sign its coefficient must have.

A longer answer, or one with more headers, list items or bold, can only raise
its win chance; a refusal or an empty answer can only lower it.
"""

_L2 = 1.0  # ridge on the coefficients: a handful of params, thousands of rows


class StyleAnchor:
    """Sign-constrained direction model plus a constant tie logit.

    The logits are ``(m / 2, -m / 2, c)`` with ``m = x @ coef_`` over the
    covariates present in the feature matrix, so swapping A and B (negating the
    covariates) exactly mirrors the probabilities.

    Parameters
    ----------
    covariates : mapping of str to {1, -1}, default=ANCHOR_COVARIATES
        Column name -> required sign of its coefficient.

    Attributes
    ----------
    columns_ : list of str
        Covariates found in the fitted feature matrix.
    coef_ : ndarray of shape (n_covariates,)
        Direction coefficients (each with its required sign, or 0).
    tie_logit_ : float
        Log-odds of a tie against each decisive class.
    """

    def __init__(self, *, covariates: Mapping[str, int] | None = None) -> None:
        self.covariates = covariates

    def _signs(self) -> dict[str, int]:
        return dict(ANCHOR_COVARIATES if self.covariates is None else self.covariates)

    def fit(
        self,
        X: Any,
        columns: Sequence[str],
        y: NDArray[np.int64],
        weight: NDArray[np.float64] | None = None,
    ) -> StyleAnchor:
        """Fit coefficients on decisive rows and the tie logit on all rows."""
        signs = self._signs()
        self.columns_ = [name for name in signs if name in set(columns)]
        if not self.columns_:
            raise InvalidParameterError(
                f"the anchor needs at least one of the columns {sorted(signs)}; the "
                "feature blocks produced none. Add the lengths, style or flags "
                "block, or set training.anchor: false."
            )
        Z = self._covariates(X, columns)
        w = np.ones(len(y)) if weight is None else np.asarray(weight, np.float64)
        decisive = y < 2
        self.coef_ = _fit_signed_logistic(
            Z[decisive],
            (y[decisive] == 0).astype(np.float64),
            w[decisive],
            np.array([signs[name] for name in self.columns_]),
        )
        tie_share = float(np.sum(w * (y == 2)) / np.sum(w))
        tie_share = min(max(tie_share, 1e-4), 1 - 1e-4)
        # P(tie) = e^c / (e^{m/2} + e^{-m/2} + e^c) ~ e^c / (2 + e^c) at m = 0
        self.tie_logit_ = float(np.log(2 * tie_share / (1 - tie_share)))
        return self

    def _covariates(self, X: Any, columns: Sequence[str]) -> NDArray[np.float64]:
        index = {name: i for i, name in enumerate(columns)}
        picked = X[:, [index[name] for name in self.columns_]]
        if hasattr(picked, "toarray"):
            picked = picked.toarray()
        return np.asarray(picked, dtype=np.float64)

    def margin_terms(self, X: Any, columns: Sequence[str]) -> NDArray[np.float64]:
        """Each covariate's share ``coef * x`` (n, n_covariates) of the margin ``m``.

        The rows sum to the A-minus-B margin: the logits are ``(m / 2, -m / 2,
        tie_logit_)``, so these terms split the anchor's score exactly
        (:mod:`models.explain`).
        """
        self._check_columns(columns)
        return self._covariates(X, columns) * self.coef_

    def _check_columns(self, columns: Sequence[str]) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("This StyleAnchor is not fitted; call fit first.")
        missing = sorted(set(self.columns_) - set(columns))
        if missing:
            raise InvalidParameterError(
                f"the feature matrix lacks the anchor's columns {missing}; predict "
                "with the blocks the model was fitted with."
            )

    def log_proba(self, X: Any, columns: Sequence[str]) -> NDArray[np.float64]:
        """Log-probabilities (n, 3): the boosters' starting score."""
        self._check_columns(columns)
        margin = self._covariates(X, columns) @ self.coef_
        logits = np.column_stack(
            [margin / 2, -margin / 2, np.full(len(margin), self.tie_logit_)]
        )
        shift = logits.max(axis=1, keepdims=True)
        log_norm = shift + np.log(np.exp(logits - shift).sum(axis=1, keepdims=True))
        return logits - log_norm

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {
            "covariates": self._signs(),
            "columns": list(self.columns_),
            "coef": [float(v) for v in self.coef_],
            "tie_logit": self.tie_logit_,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> StyleAnchor:
        """Rebuild from :meth:`to_dict` output."""
        anchor = cls(covariates=dict(state["covariates"]))
        anchor.columns_ = list(state["columns"])
        anchor.coef_ = np.asarray(state["coef"], dtype=np.float64)
        anchor.tie_logit_ = float(state["tie_logit"])
        if len(anchor.coef_) != len(anchor.columns_):
            raise InvalidParameterError(
                "anchor state has "
                f"{len(anchor.coef_)} coefficients for {len(anchor.columns_)} columns."
            )
        return anchor


def _fit_signed_logistic(
    Z: NDArray, target: NDArray, weight: NDArray, signs: NDArray
) -> NDArray[np.float64]:
    """Ridge logistic regression without intercept, each coefficient's sign fixed.

    No intercept keeps the model antisymmetric; the rows are used with their
    swapped copies implicitly (a swap negates ``Z`` and flips the target, which
    adds nothing to an intercept-free fit's optimum).
    """
    scale = Z.std(axis=0)
    scale[scale == 0] = 1.0
    Zs = Z / scale
    total = weight.sum()

    def loss(beta: NDArray) -> tuple[float, NDArray]:
        margin = Zs @ beta
        log_p = -np.logaddexp(0, -margin)
        log_q = -np.logaddexp(0, margin)
        nll = -np.sum(weight * (target * log_p + (1 - target) * log_q)) / total
        grad = -Zs.T @ (weight * (target - np.exp(log_p))) / total
        return nll + 0.5 * _L2 * beta @ beta / total, grad + _L2 * beta / total

    bounds = [(0.0, None) if sign > 0 else (None, 0.0) for sign in signs]
    # The gradient sums over every row: one BLAS thread keeps that sum, and so
    # the coefficients, bit-identical whatever the process's thread count.
    with single_blas_thread():
        result = minimize(
            loss, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds
        )
    return result.x / scale
