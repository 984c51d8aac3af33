"""Explanations that add up: the raw score split into parts, grouped by concept.

A booster of kind ``k`` trained in fold ``f`` starts from the anchor's
log-probabilities (:class:`models.anchor.StyleAnchor`, its per-class score is
the LightGBM ``init_score`` / XGBoost ``base_margin``) and adds its trees. The
**raw score** of kind ``k`` for battle ``x`` and class ``c`` is

``r_k(x)[c] = anchor(x)[c] + mean_f trees_kf(x)[c]``

and, with ``swap_average``, the mean of that and the mirrored score of the
swapped battle: ``(r_k(x)[c] + r_k(swap(x))[swap(c)]) / 2``. It splits exactly
into

- one anchor term per covariate: ``+coef * z / 2`` for class A, ``-coef * z /
  2`` for B, 0 for tie (the anchor is linear in its covariates);
- ``anchor_bias``: the anchor's tie logit and log-normaliser (the same for A
  and B, so it cancels in A minus B);
- one tree contribution per feature column (LightGBM ``pred_contrib``,
  XGBoost ``pred_contribs``, averaged over folds);
- ``tree_bias``: the trees' expected value.

The model's probability is not a function of this score alone (fold
*probabilities* are averaged, then stacked and temperature-scaled; see
``docs/explanations.md``), but every step is monotone in it for a single
booster kind. :func:`score_parts` with ``booster=None`` explains the fixed
combination ``sum_k w_k r_k`` with the stacker's blend weights ``w_k`` (equal
weights for a logistic-regression stacker).

Explanations read the **A minus B** direction: ``parts[A] - parts[B]``; a
positive weight pushes toward A, a negative one toward B. Parts are grouped
into concepts a person knows through :data:`CONCEPT_PATTERNS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.battles import CLASSES, SWAP_LABELS
from features.errors import InvalidParameterError
from models._sentences import SENTENCES, BattleFacts

if TYPE_CHECKING:
    from models.anchor import StyleAnchor
    from models.gbdt import FoldResult
    from models.preference import PreferenceModel

__all__ = [
    "ANCHOR_PREFIX",
    "CONCEPT_PATTERNS",
    "CONCEPTS",
    "ScoreParts",
    "concept_of",
    "explain_frame",
    "score_parts",
]

ANCHOR_PREFIX = "anchor:"
"""Part names of the anchor's terms: ``anchor:<covariate>``."""

_A, _B = 0, 1
# Concept weights below this (raw-score units) are float rounding, not signal:
# XGBoost computes in float32, so a bias that cancels exactly in theory
# leaves ~1e-7.
_NEGLIGIBLE = 1e-6

CONCEPT_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^(tree|anchor)_bias$", "position"),
    (r"^s_(len|flag|tie)_prompt_", "prompt"),
    (r"_len_", "length"),
    (
        r"_style_(h\d|headers|ordered_items|unordered_items|list_items|bold|italics"
        r"|code_blocks|code_lines|inline_code|table_rows|links|urls|latex|emoji"
        r"|blockquotes|hrules|paragraphs)(_|$)",
        "markdown style",
    ),
    (r"_style_(opener_|closer_|exclamations|questions)", "tone"),
    (r"_style_", "readability"),
    (
        r"_flag_(refusal|hard_refusal|empty|whitespace_only|any_empty_turn)"
        r"|^s_flag_(both|any)_(refus|hard_refusal|blank)",
        "refusal or empty answer",
    ),
    (
        r"_flag_(truncated|unclosed_code)|^s_flag_(both|any)_truncated",
        "cut-off answer",
    ),
    (r"_flag_script_|^s_flag_(both|any)_script_", "language"),
    (r"^s_flag_(near_)?identical|_sim_|_cos_|^s_tie_", "similarity"),
    (r"_tfidf_|_w\d+v_|_emb_", "content"),
)
"""Part-name pattern (``re.search``) -> concept, first match wins.

Anchor terms are matched by their covariate name (``anchor:d_len_tokens_tanh``
is "length"). A name no pattern matches is "other".
"""

CONCEPTS: tuple[str, ...] = (
    "length",
    "markdown style",
    "refusal or empty answer",
    "cut-off answer",
    "readability",
    "tone",
    "language",
    "similarity",
    "content",
    "prompt",
    "position",
    "other",
)
"""Every concept an explanation can name: those of :data:`CONCEPT_PATTERNS`
and "other"."""

_COMPILED = tuple(
    (re.compile(pattern), concept) for pattern, concept in CONCEPT_PATTERNS
)


def concept_of(name: str) -> str:
    """The concept of a part name (a feature column, anchor term or bias).

    >>> concept_of("d_len_chars_norm"), concept_of("anchor:d_flag_refusal")
    ('length', 'refusal or empty answer')
    >>> concept_of("a_tfidf_svd_17"), concept_of("d_mystery")
    ('content', 'other')
    """
    name = name.removeprefix(ANCHOR_PREFIX)
    return next((c for rx, c in _COMPILED if rx.search(name)), "other")


@dataclass(frozen=True)
class ScoreParts:
    """Exact additive parts of a raw score, per battle and class.

    Attributes
    ----------
    ids : list of str
        Battle ids, in input order.
    names : tuple of str
        Part names: the feature columns (tree contributions), then
        ``anchor:<covariate>`` per anchor covariate, ``anchor_bias`` and
        ``tree_bias``.
    contributions : ndarray of shape (n, 3, n_parts)
        Each part's share of each class's raw score.
    raw : ndarray of shape (n, 3)
        The raw score itself, computed by the boosters' own raw prediction
        (not by summing the parts).
    booster : str
        The booster kind explained, or "stacked" for the blend of kinds.
    """

    ids: list[str]
    names: tuple[str, ...]
    contributions: NDArray[np.float64]
    raw: NDArray[np.float64]
    booster: str

    def direction(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """A-minus-B parts (n, n_parts) and score (n,): > 0 favours A."""
        parts = self.contributions[:, _A] - self.contributions[:, _B]
        return parts, self.raw[:, _A] - self.raw[:, _B]

    def by_concept(self) -> pd.DataFrame:
        """A-minus-B weight per battle (rows, by id) and concept (columns)."""
        parts, _ = self.direction()
        concepts = [concept_of(name) for name in self.names]
        frame = pd.DataFrame(parts, columns=pd.Index(concepts), index=self.ids)
        return (
            frame.T.groupby(level=0, sort=False)
            .sum()
            .T.reindex(columns=[c for c in CONCEPTS if c in set(concepts)])
        )


def _anchor_parts(
    anchor: StyleAnchor | None, X: Any, columns: Sequence[str]
) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64]]:
    """Anchor terms (n, 3, n_cov), the anchor bias (n, 3) and the init score."""
    n_rows = X.shape[0]
    if anchor is None:
        return [], np.zeros((n_rows, 3, 0)), np.zeros((n_rows, 3))
    half = anchor.margin_terms(X, columns) / 2
    terms = np.zeros((n_rows, 3, len(anchor.columns_)))
    terms[:, _A], terms[:, _B] = half, -half
    init = anchor.log_proba(X, columns)
    names = [ANCHOR_PREFIX + name for name in anchor.columns_]
    return names, terms, init - terms.sum(axis=2)


def _booster_parts(
    result: FoldResult, X: Any, init: NDArray | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fold-averaged tree contributions (n, 3, F + 1; last: tree bias) and raw."""
    trees = np.mean([m.contributions(X, init) for m in result.models], axis=0)
    raw = np.mean([m.raw_score(X, init) for m in result.models], axis=0)
    if init is not None:
        trees[:, :, -1] -= init
    return trees, raw


def _one_order(
    model: PreferenceModel, X: Any, weights: dict[str, float]
) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64]]:
    """Part names, parts (n, 3, P) and raw score (n, 3) for one A/B order."""
    anchor_names, anchor_terms, anchor_bias = _anchor_parts(
        model.anchor_, X, model.feature_names_out_
    )
    init = model._init_score(X)
    n_features = len(model.feature_names_out_)
    trees = np.zeros((X.shape[0], 3, n_features + 1))
    raw = np.zeros((X.shape[0], 3))
    for name, weight in weights.items():
        booster_trees, booster_raw = _booster_parts(model.fold_results_[name], X, init)
        trees += weight * booster_trees
        raw += weight * booster_raw
    total = sum(weights.values())
    parts = np.concatenate(
        [
            trees[:, :, :n_features],
            total * anchor_terms,
            total * anchor_bias[:, :, None],
            trees[:, :, n_features:],
        ],
        axis=2,
    )
    names = [*model.feature_names_out_, *anchor_names, "anchor_bias", "tree_bias"]
    return names, parts, raw


def _booster_weights(model: PreferenceModel, booster: str | None) -> dict[str, float]:
    """Weight of each booster kind in the explained score."""
    if booster is None:
        blend = model.stacker_.weights_
        if blend is None:
            blend = np.full(len(model.boosters), 1 / len(model.boosters))
        return {
            name: float(w)
            for name, w in zip(model.boosters, blend, strict=True)
            if w > 0
        }
    if booster not in model.fold_results_:
        raise InvalidParameterError(
            f"booster {booster!r} is not one of this model's booster kinds "
            f"{sorted(model.fold_results_)}; pass one of them, or None for their "
            "stacked blend."
        )
    return {booster: 1.0}


def score_parts(
    model: PreferenceModel,
    ids: Sequence[str],
    X: Any,
    *,
    booster: str | None = None,
) -> ScoreParts:
    """Split a fitted model's raw score on feature matrix ``X`` into parts.

    Parameters
    ----------
    model : PreferenceModel
        A fitted model.
    ids : sequence of str
        Battle ids of the rows of ``X``.
    X : ndarray or sparse matrix
        The model's feature matrix of the battles.
    booster : str or None, default=None
        The booster kind whose raw score is split, or None for the stacker's
        blend of the kinds (see the module docstring).

    Returns
    -------
    ScoreParts

    Raises
    ------
    InvalidParameterError
        ``booster`` is not one of the model's booster kinds.
    """
    weights = _booster_weights(model, booster)
    names, parts, raw = _one_order(model, X, weights)
    if model.swap_average:
        _, swapped, swapped_raw = _one_order(model, model._swap_features(X), weights)
        # Column j of the swapped matrix holds column order[j] of this one
        # (A's length becomes B's): credit it there, with the classes mirrored.
        aligned = swapped[:, SWAP_LABELS].copy()
        n_features = len(model.feature_names_out_)
        aligned[:, :, model._swap_order] = swapped[:, SWAP_LABELS, :n_features]
        parts = (parts + aligned) / 2
        raw = (raw + swapped_raw[:, SWAP_LABELS]) / 2
    return ScoreParts(
        ids=[str(i) for i in ids],
        names=tuple(names),
        contributions=parts,
        raw=raw,
        booster=booster or "stacked",
    )


def explain_frame(
    parts: ScoreParts | None,
    table: pd.DataFrame,
    predicted: NDArray[np.int64],
    top: int,
) -> pd.DataFrame:
    """The top concepts of each battle, one row each, with a sentence.

    Parameters
    ----------
    parts : ScoreParts or None
        The battles' score parts; None for no battles.
    table : DataFrame
        The canonical battles (``prompt``, ``response_a``, ``response_b``).
    predicted : ndarray of int
        Predicted class index per battle.
    top : int
        Concepts kept per battle, by |weight|; concepts of weight 0 (under
        1e-6, e.g. "position" under swap averaging) are left out.

    Returns
    -------
    DataFrame
        Columns ``id, predicted, rank, concept, toward, weight, sentence``.
    """
    columns = ["id", "predicted", "rank", "concept", "toward", "weight", "sentence"]
    if parts is None:
        return pd.DataFrame(columns=columns)
    weights = parts.by_concept()
    rows = []
    for i, (battle_id, concept_weights) in enumerate(weights.iterrows()):
        battle = table.iloc[i]
        facts = BattleFacts(
            list(battle["prompt"]),
            list(battle["response_a"]),
            list(battle["response_b"]),
        )
        ranked = concept_weights[concept_weights.abs() >= _NEGLIGIBLE]
        ranked = ranked.iloc[np.argsort(-ranked.abs().to_numpy(), kind="stable")]
        for rank, (concept, weight) in enumerate(ranked.iloc[:top].items(), start=1):
            toward = "A" if weight > 0 else "B"
            rows.append(
                {
                    "id": battle_id,
                    "predicted": CLASSES[predicted[i]],
                    "rank": rank,
                    "concept": concept,
                    "toward": toward,
                    "weight": float(weight),
                    "sentence": SENTENCES[concept](facts, toward),
                }
            )
    return pd.DataFrame(rows, columns=columns)
