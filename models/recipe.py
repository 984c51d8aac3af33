"""The training recipe: from labelled battles to the rows the boosters fit on.

Every fit in the project trains on rows made the same way, and this module is
the one place that makes them:

1. the canonical battle table, each field cut to ``max_chars`` (the start is
   cut first), as prediction cuts it too (:func:`battle_table`);
2. the labels (0 = A wins, 1 = B wins, 2 = tie), from ``y`` or the table;
3. the row weights by source (``source_weights``: "balanced", a weight per
   family or source name, or None), and the weights the stacking and
   calibration head fits with (:attr:`TrainingRows.head_weight`);
4. the folds, prompt-grouped or holding out whole source families
   (``group_by``), and the prompt groups and source families they come from;
5. the anchor, a :class:`~models.anchor.StyleAnchor` fitted on the rows, whose
   log-probabilities are the boosters' starting score (the init offsets);
6. the A/B-swapped copies of the training rows (``swap_augment``,
   :func:`swap_copies`);
7. the smaller sample Optuna trials see, with folds and an anchor of its own
   (:meth:`TrainingRecipe.tuning_rows`).

:class:`~models.PreferenceModel` (``fit``), ``pipelines.train_gbdt``, the
tune workers and the tuning studies all call it, so a trial scores the rows the
final fit trains on, and a new option (a per-row weight, a per-family setting)
is added here once rather than in each caller.

Examples
--------
>>> recipe = TrainingRecipe(n_folds=3, seed=0)  # doctest: +SKIP
>>> rows = recipe.rows(battles)  # doctest: +SKIP
>>> rows.labels, rows.weight, rows.folds  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from features.battles import CLASSES, SWAP_LABELS, as_battles, truncate_battles
from features.errors import InvalidParameterError
from models.anchor import StyleAnchor
from models.folds import prompt_groups, tuning_sample
from models.sources import (
    battle_families,
    folds_hold_out_sources,
    resolve_group_by,
    row_weights,
    source_families,
    source_folds,
    training_folds,
)
from models.target import target_rows, target_weights

__all__ = [
    "SwapCopies",
    "TrainingRecipe",
    "TrainingRows",
    "TuningRows",
    "anchor_offsets",
    "battle_table",
    "swap_copies",
]


def battle_table(battles: Any, max_chars: int | None) -> pd.DataFrame:
    """The canonical table of any accepted form, each field cut to `max_chars`.

    Training and prediction both read battles through it, so a model sees the
    same text in both.
    """
    return truncate_battles(as_battles(battles), max_chars)


def _labels(table: pd.DataFrame, y: ArrayLike | None) -> NDArray[np.int64]:
    if y is not None:
        labels = np.asarray(y)
        if labels.shape != (len(table),) or not np.isin(labels, (0, 1, 2)).all():
            raise ValueError(
                f"y must hold one label (0 = A, 1 = B, 2 = tie) per battle: "
                f"{len(table)} expected, got shape {labels.shape}."
            )
        return labels.astype(np.int64)
    if "label" not in table.columns:
        raise ValueError(
            "no labels: pass y or battles with the target columns "
            f"{list(CLASSES)} (Kaggle layout) or a 'label' column."
        )
    return table["label"].to_numpy(dtype=np.int64)


def _checked_folds(folds: ArrayLike, n_rows: int) -> NDArray[np.int64]:
    values = np.asarray(folds)
    if values.shape != (n_rows,):
        raise InvalidParameterError(
            f"folds must hold one fold index per battle: {n_rows} expected, got "
            f"shape {values.shape}. Pass one integer per row, or None to make "
            f"the folds."
        )
    if not np.issubdtype(values.dtype, np.integer) or (values < 0).any():
        raise InvalidParameterError(
            f"folds must be integers >= 0; got {values.dtype} values such as "
            f"{values[:3].tolist()!r}."
        )
    return values.astype(np.int64)


def anchor_offsets(
    anchor: StyleAnchor | None,
    values: Any,
    columns: Sequence[str],
    families: NDArray[np.object_] | None = None,
) -> NDArray[np.float64] | None:
    """The boosters' starting score: the anchor's log-probabilities, or None.

    Parameters
    ----------
    anchor : StyleAnchor or None
        A fitted anchor (None: the boosters start from zero).
    values : ndarray or sparse matrix of shape (n_rows, n_features)
        Feature values.
    columns : sequence of str
        Their column names.
    families : ndarray of str, default=None
        Source family per row (training rows): each starts from its family's
        part of a per-source anchor. None: the anchor's prediction part.

    Returns
    -------
    ndarray of shape (n_rows, 3) or None
        They mirror under an A/B swap, as ``train_folds`` needs.
    """
    if anchor is None:
        return None
    return anchor.log_proba(values, list(columns), families)


class SwapCopies(NamedTuple):
    """Training rows followed by their A/B-swapped copies."""

    X: Any
    labels: NDArray[np.int64]
    weight: NDArray[np.float64] | None
    init_score: NDArray[np.float64] | None


def swap_copies(
    X: Any,
    labels: NDArray[np.int64],
    weight: NDArray[np.float64] | None,
    init_score: NDArray[np.float64] | None,
    swap_features: Callable[[Any], Any],
) -> SwapCopies:
    """The rows, then their swapped copies (``swap_augment``).

    A copy has the swapped features, the swapped label (0 <-> 1, ties stay),
    its row's weight and the mirrored starting score.

    >>> import numpy as np
    >>> out = swap_copies(np.array([[1.0]]), np.array([0]), None, None, lambda X: -X)
    >>> out.X.ravel().tolist(), out.labels.tolist()
    ([1.0, -1.0], [0, 1])
    """
    from models.gbdt import stack_rows

    return SwapCopies(
        stack_rows(X, swap_features(X)),
        np.concatenate([labels, SWAP_LABELS[labels]]),
        None if weight is None else np.concatenate([weight, weight]),
        None
        if init_score is None
        else np.vstack([init_score, init_score[:, SWAP_LABELS]]),
    )


@dataclass(frozen=True, eq=False)
class TrainingRows:
    """Labelled battles as training sees them (:meth:`TrainingRecipe.rows`).

    Attributes
    ----------
    table : DataFrame
        Canonical battles, fields cut to ``max_chars``.
    labels : ndarray of int64 of shape (n_rows,)
        0 = A wins, 1 = B wins, 2 = tie.
    weight : ndarray of float64 of shape (n_rows,) or None
        Row weights by source (mean 1), or None: every row weighs 1.
    folds : ndarray of int64 of shape (n_rows,)
        Fold of each row.
    group_by : {"prompt", "source"}
        What the recipe's folds keep together (``group_by`` resolved).
    is_target : ndarray of bool of shape (n_rows,) or None
        Rows of the recipe's ``target`` family; None without a target, or
        when every row is the target's (nothing then changes).
    target_head : bool
        Whether the head fits on the target's rows alone.
    """

    table: pd.DataFrame
    labels: NDArray[np.int64]
    weight: NDArray[np.float64] | None
    folds: NDArray[np.int64]
    group_by: str
    is_target: NDArray[np.bool_] | None = None
    target_head: bool = True

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def groups(self) -> NDArray[np.int64]:
        """Prompt group of each row (:func:`models.folds.prompt_groups`)."""
        return prompt_groups(self.table)

    @cached_property
    def families(self) -> NDArray[np.object_] | None:
        """Source family of each row when the folds group by source, else None."""
        if self.group_by != "source":
            return None
        return battle_families(self.table, needed_for="group_by='source'")

    @cached_property
    def all_families(self) -> NDArray[np.object_] | None:
        """Source family of each row, or None without a ``source`` column."""
        if "source" not in self.table.columns:
            return None
        return source_families(self.table["source"])

    @cached_property
    def holds_out_sources(self) -> bool:
        """Whether the folds keep every source family (weight > 0) whole."""
        return folds_hold_out_sources(self.table, self.folds, self.weight)

    @cached_property
    def head_weight(self) -> NDArray[np.float64] | None:
        """Weights of the stacker and the temperature.

        The row weights when the folds hold out whole sources (the
        out-of-fold predictions then stand for new sources, each alike);
        otherwise 1 per row, 0 for an excluded source. With a target (and
        ``target_head``): 1 on the target's rows, 0 elsewhere, so the head
        fits the target's voters.
        """
        if self.is_target is not None and self.target_head:
            return self.is_target.astype(np.float64)
        if self.weight is None or self.holds_out_sources:
            return self.weight
        return (self.weight > 0).astype(np.float64)


class TuningRows(NamedTuple):
    """The sample Optuna trials see (:meth:`TrainingRecipe.tuning_rows`)."""

    rows: NDArray[np.int64]
    """Positions of the sample in the training rows."""
    values: Any
    labels: NDArray[np.int64]
    folds: NDArray[np.int64]
    weight: NDArray[np.float64] | None
    init_score: NDArray[np.float64] | None


@dataclass(frozen=True)
class TrainingRecipe:
    """How labelled battles become training rows; one recipe for every fit.

    The parameters mean what the :class:`~models.PreferenceModel` parameters
    of the same names mean (``PreferenceModel.training_recipe`` builds the
    recipe of a model).

    Parameters
    ----------
    max_chars : int or None, default=50000
        Characters kept per field (the start is cut first).
    source_weights : "balanced", dict of str to float, or None, default=None
        Row weights by source family or source name.
    group_by : {"prompt", "source", "auto"}, default="prompt"
        What the folds keep together.
    n_folds : int, default=5
        Folds (at most one per source family when grouped by source).
    seed : int, default=0
        Seed of the folds and of the tuning sample.
    anchor : bool, default=False
        Fit a :class:`~models.anchor.StyleAnchor` that the boosters start from.
    swap_augment : bool, default=False
        Train on the A/B-swapped copies of the training rows too.
    target : str or None, default=None
        Source family the model predicts for (:mod:`models.target`): the
        other families' weights are multiplied by ``target_other_weight`` and
        "auto" folds group by prompt. With one family it changes nothing.
    target_other_weight : float, "auto" or "auto-family", default=1.0
        Factor on the weight of every non-target row ("auto", "auto-family":
        1 here; the model searches it once the features are built).
    target_head : bool, default=True
        Fit the stacker and the temperature on the target's rows alone.
    anchor_per_source : bool, default=False
        Give the anchor a part per source family (``fit_anchor``'s
        ``families``), shrunk toward a shared part.
    """

    max_chars: int | None = 50_000
    source_weights: str | Mapping[str, float] | None = None
    group_by: str = "prompt"
    n_folds: int = 5
    seed: int = 0
    anchor: bool = False
    swap_augment: bool = False
    target: str | None = None
    target_other_weight: float | str = 1.0
    target_head: bool = True
    anchor_per_source: bool = False

    def target_rows(self, table: pd.DataFrame) -> NDArray[np.bool_] | None:
        """The target's rows; None without a target or when every row is one.

        Raises
        ------
        InvalidParameterError
            The target has no labelled battles here (the message lists the
            families there are).
        """
        if self.target is None:
            return None
        is_target = target_rows(table, self.target)
        return None if is_target.all() else is_target

    def row_weights(self, table: pd.DataFrame) -> NDArray[np.float64] | None:
        """Weight of each battle (mean 1), or None: every battle weighs 1."""
        weight = row_weights(table, self.source_weights)
        is_target = self.target_rows(table)
        if is_target is None:
            return weight
        factor = self.target_other_weight
        searched = isinstance(factor, str)  # "auto", "auto-family": the model's
        return target_weights(is_target, weight, 1.0 if searched else factor)

    def _group_by(self, table: pd.DataFrame) -> str:
        # With a target, "auto" folds spread the target's rows over every fold.
        if self.group_by == "auto" and self.target_rows(table) is not None:
            return "prompt"
        return self.group_by

    def rows(
        self,
        battles: Any,
        y: ArrayLike | None = None,
        *,
        folds: ArrayLike | None = None,
    ) -> TrainingRows:
        """The training rows of labelled battles.

        Parameters
        ----------
        battles : DataFrame, list of dict or dict of lists
            Kaggle layout (JSON strings) or the canonical table.
        y : array-like of int, default=None
            Labels (0 = A, 1 = B, 2 = tie); None takes the table's ``label``.
        folds : array-like of int, default=None
            Fold per battle; None makes them as ``group_by`` says.

        Returns
        -------
        TrainingRows

        Raises
        ------
        ValueError
            No labels, or ``y`` not one label 0, 1 or 2 per battle.
        InvalidParameterError
            ``folds`` not one integer >= 0 per battle, or source weights or
            source folds asked of battles without a ``source`` column.
        """
        table = battle_table(battles, self.max_chars)
        labels = _labels(table, y)
        weight = self.row_weights(table)
        group_by = self._group_by(table)
        if folds is None:
            folds = training_folds(
                table,
                labels,
                group_by=group_by,
                n_folds=self.n_folds,
                seed=self.seed,
                weight=weight,
            )
        return TrainingRows(
            table,
            labels,
            weight,
            _checked_folds(folds, len(table)),
            resolve_group_by(table, group_by, weight),
            self.target_rows(table),
            self.target_head,
        )

    def fit_anchor(
        self,
        values: Any,
        columns: Sequence[str],
        labels: NDArray[np.int64],
        weight: NDArray[np.float64] | None,
        families: NDArray[np.object_] | None = None,
    ) -> StyleAnchor | None:
        """The anchor fitted on these rows, or None without ``anchor``.

        With ``anchor_per_source`` and ``families`` (one per row, 2+ of them),
        the anchor has a part per family and predicts with the target's.
        """
        if not self.anchor:
            return None
        if not self.anchor_per_source or families is None:
            families = None
        elif len(set(families)) < 2:
            families = None
        return StyleAnchor().fit(
            values, columns, labels, weight, families=families, target=self.target
        )

    def tuning_rows(
        self,
        values: Any,
        columns: Sequence[str],
        labels: NDArray[np.int64],
        groups: NDArray[np.int64],
        *,
        weight: NDArray[np.float64] | None = None,
        families: NDArray[np.object_] | None = None,
        max_rows: int | None = None,
        n_folds: int | None = None,
    ) -> TuningRows:
        """The rows, folds, weights and starting score of the tuning trials.

        Trials see whole prompt groups of at most `max_rows` rows
        (:func:`models.folds.tuning_sample`) with `n_folds` folds of their
        own; these hold out whole source families when `families` is given,
        as the final folds do. The anchor is fitted on the sample, as the
        final fit fits it on every row.

        Parameters
        ----------
        values : ndarray or sparse matrix of shape (n_rows, n_features)
            Features of every training row.
        columns : sequence of str
            Their names.
        labels, groups : ndarray of int64 of shape (n_rows,)
            Labels and prompt groups (:attr:`TrainingRows.groups`).
        weight : ndarray of shape (n_rows,), default=None
            Row weights.
        families : ndarray of str, default=None
            Source family per row (:attr:`TrainingRows.families`).
        max_rows : int or None, default=None
            Most rows the trials see (None: every row).
        n_folds : int or None, default=None
            Folds of the trials (None: the recipe's ``n_folds``).

        Returns
        -------
        TuningRows

        Raises
        ------
        InvalidParameterError
            ``group_by`` is "source" and no `families` are given.
        """
        n_folds = n_folds or self.n_folds
        sample, folds = tuning_sample(
            labels, groups, max_rows=max_rows, n_folds=n_folds, seed=self.seed
        )
        sample_values, sample_labels = values[sample], labels[sample]
        sample_weight = None if weight is None else weight[sample]
        if self.group_by == "source" and families is None:
            raise InvalidParameterError(
                "tuning rows: group_by is 'source', so the trial folds hold out "
                "source families; pass families (TrainingRows.families)."
            )
        if families is not None:
            folds = source_folds(
                sample_labels, families[sample], n_folds, self.seed, sample_weight
            )
        anchor = self.fit_anchor(sample_values, columns, sample_labels, sample_weight)
        return TuningRows(
            sample,
            sample_values,
            sample_labels,
            folds,
            sample_weight,
            anchor_offsets(anchor, sample_values, columns),
        )
