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
        *,
        families: Sequence[str] | None = None,
        target: str | None = None,
        shrinkage: float = 200.0,
    ) -> StyleAnchor:
        """Fit coefficients on decisive rows and the tie logit on all rows.

        With ``families`` (one source family per row) the anchor has a shared
        part and one part per family: each family's coefficients are the
        shared ones plus a deviation, and its tie logit comes from its own tie
        share, both shrunk toward the shared value by ``shrinkage`` rows'
        worth of prior (a family of 200 rows moves halfway). The shared
        coefficients keep their signs; a family's may not (voters who reward
        refusals exist). ``coef_`` and ``tie_logit_``, what predictions use,
        are then ``target``'s, or the shared ones without a target.
        """
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
        sign_array = np.array([signs[name] for name in self.columns_])
        pooled_tie = float(np.sum(w * (y == 2)) / np.sum(w))
        self.family_coef_: dict[str, NDArray[np.float64]] = {}
        self.family_tie_logit_: dict[str, float] = {}
        if families is None:
            self.coef_ = _fit_signed_logistic(
                Z[decisive],
                (y[decisive] == 0).astype(np.float64),
                w[decisive],
                sign_array,
            )
            self.tie_logit_ = _tie_logit(pooled_tie)
            return self
        families = np.asarray(families, dtype=object).astype(str)
        names = sorted(set(families))
        shared, deviations = _fit_shared_and_family_logistic(
            Z[decisive],
            (y[decisive] == 0).astype(np.float64),
            w[decisive],
            sign_array,
            np.searchsorted(names, families[decisive]),
            len(names),
            shrinkage,
        )
        for index, name in enumerate(names):
            rows = families == name
            ties = float(np.sum(y[rows] == 2))
            share = (ties + shrinkage * pooled_tie) / (rows.sum() + shrinkage)
            self.family_coef_[name] = shared + deviations[index]
            self.family_tie_logit_[name] = _tie_logit(share)
        self.coef_ = self.family_coef_.get(target, shared)
        self.tie_logit_ = self.family_tie_logit_.get(target, _tie_logit(pooled_tie))
        self.shared_coef_ = shared
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

    def log_proba(
        self,
        X: Any,
        columns: Sequence[str],
        families: Sequence[str] | None = None,
    ) -> NDArray[np.float64]:
        """Log-probabilities (n, 3): the boosters' starting score.

        ``families`` (training rows only) gives each row its own family's
        part; rows of a family the anchor has no part for, and every row
        without ``families``, get the prediction part (``coef_``).
        """
        self._check_columns(columns)
        Z = self._covariates(X, columns)
        margin = Z @ self.coef_
        tie = np.full(len(margin), self.tie_logit_)
        if families is not None and getattr(self, "family_coef_", None):
            families = np.asarray(families, dtype=object).astype(str)
            for name, coef in self.family_coef_.items():
                rows = families == name
                margin[rows] = Z[rows] @ coef
                tie[rows] = self.family_tie_logit_[name]
        logits = np.column_stack([margin / 2, -margin / 2, tie])
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
            "families": {
                name: {
                    "coef": [float(v) for v in coef],
                    "tie_logit": self.family_tie_logit_[name],
                }
                for name, coef in getattr(self, "family_coef_", {}).items()
            },
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> StyleAnchor:
        """Rebuild from :meth:`to_dict` output."""
        anchor = cls(covariates=dict(state["covariates"]))
        anchor.columns_ = list(state["columns"])
        anchor.coef_ = np.asarray(state["coef"], dtype=np.float64)
        anchor.tie_logit_ = float(state["tie_logit"])
        families = state.get("families") or {}
        anchor.family_coef_ = {
            name: np.asarray(part["coef"], dtype=np.float64)
            for name, part in families.items()
        }
        anchor.family_tie_logit_ = {
            name: float(part["tie_logit"]) for name, part in families.items()
        }
        if any(len(c) != len(anchor.columns_) for c in anchor.family_coef_.values()):
            raise InvalidParameterError(
                "anchor state has a family part whose coefficients do not match "
                f"its {len(anchor.columns_)} columns."
            )
        if len(anchor.coef_) != len(anchor.columns_):
            raise InvalidParameterError(
                "anchor state has "
                f"{len(anchor.coef_)} coefficients for {len(anchor.columns_)} columns."
            )
        return anchor


def _tie_logit(tie_share: float) -> float:
    """The tie logit ``c`` whose P(tie) is ``tie_share`` at an even margin."""
    tie_share = min(max(tie_share, 1e-4), 1 - 1e-4)
    # P(tie) = e^c / (e^{m/2} + e^{-m/2} + e^c) ~ e^c / (2 + e^c) at m = 0
    return float(np.log(2 * tie_share / (1 - tie_share)))


def _fit_shared_and_family_logistic(
    Z: NDArray,
    target: NDArray,
    weight: NDArray,
    signs: NDArray,
    family: NDArray[np.int64],
    n_families: int,
    shrinkage: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Shared signed coefficients plus ridge-shrunk per-family deviations.

    The margin of a row of family ``f`` is ``z @ (beta + delta_f)``; ``beta``
    keeps the signs and the anchor's ridge, each ``delta_f`` a ridge worth
    ``shrinkage`` rows: a decisive row at even odds carries Fisher information
    1/4 per unit-variance covariate, so the ridge is ``shrinkage / 4`` (the
    loss is a mean over rows, hence the division by the total weight).
    Returns ``beta`` (k,) and ``delta`` (n_families, k), in ``Z``'s units.
    """
    ridge = shrinkage / 4
    scale = Z.std(axis=0)
    scale[scale == 0] = 1.0
    Zs = Z / scale
    k = Zs.shape[1]
    total = weight.sum()
    onehot = np.zeros((len(family), n_families))
    onehot[np.arange(len(family)), family] = 1.0

    def split(theta: NDArray) -> tuple[NDArray, NDArray]:
        return theta[:k], theta[k:].reshape(n_families, k)

    def loss(theta: NDArray) -> tuple[float, NDArray]:
        beta, delta = split(theta)
        margin = Zs @ beta + np.sum(Zs * delta[family], axis=1)
        log_p = -np.logaddexp(0, -margin)
        log_q = -np.logaddexp(0, margin)
        nll = -np.sum(weight * (target * log_p + (1 - target) * log_q)) / total
        residual = -weight * (target - np.exp(log_p)) / total
        grad_beta = Zs.T @ residual + _L2 * beta / total
        grad_delta = onehot.T @ (Zs * residual[:, None]) + ridge * delta / total
        penalty = 0.5 * (_L2 * beta @ beta + ridge * np.sum(delta**2)) / total
        return nll + penalty, np.concatenate([grad_beta, grad_delta.ravel()])

    bounds = [(0.0, None) if sign > 0 else (None, 0.0) for sign in signs]
    bounds += [(None, None)] * (n_families * k)
    with single_blas_thread():
        result = minimize(
            loss,
            np.zeros(k * (n_families + 1)),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
        )
    beta, delta = split(result.x)
    return beta / scale, delta / scale


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
