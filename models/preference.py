"""PreferenceModel: raw battles in, calibrated P(A wins, B wins, tie) out.

The model owns every fitted piece: the feature blocks, one booster per fold
for each booster kind, the stacker that blends them and the temperature that
calibrates the blend. Predictions are exactly A/B swap-symmetric by default:
``p(swap(x)) == p(x)[:, SWAP_LABELS]``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator

from features.battles import CLASSES, SWAP_LABELS, TIE
from features.blocks.base import FeatureMatrix, swap_permutation
from features.errors import InvalidParameterError, NotFittedError
from features.pipeline import FeaturePipeline
from features.store import FeatureStore
from features.validation import (
    Interval,
    Options,
    ParameterTable,
    Predicate,
    check_parameters,
)
from models.anchor import StyleAnchor
from models.artifact import MODEL_FILE, read_model_dir, reading_file, write_model_dir
from models.calibration import TemperatureScaler
from models.dask_engine import ENGINES, SCHEDULER_FORMS, is_scheduler, open_engine
from models.explain import ScoreParts, explain_frame, score_parts
from models.gbdt import (
    BOOSTERS,
    FoldResult,
    stack_rows,
    train_folds,
    unknown_boosters,
)
from models.label_shift import (
    adjust_to_prior,
    constant_tie_share,
    estimate_prior_em,
    estimate_tie_share,
    tie_confusion,
    tie_only_prior,
)
from models.metrics import clipped_log, multiclass_log_loss
from models.recipe import TrainingRecipe, anchor_offsets, battle_table
from models.rules import apply_degenerate_rules
from models.stacking import STACK_METHODS, BoosterStacker
from models.target import TargetTieHead, target_weights
from models.target_weights import (
    density_ratio_weights,
    search_family_weights,
    search_other_weight,
)

__all__ = ["DEFAULT_BLOCKS", "TIE_HEADS", "PreferenceModel"]

logger = logging.getLogger(__name__)

DEFAULT_BLOCKS: dict[str, dict[str, Any]] = {"lengths": {}, "flags": {}}

TIE_HEADS: tuple[str, ...] = ("model", "constant", "auto")
"""Values of ``tie_head``: where P(tie) comes from."""


def _mirror(proba: NDArray) -> NDArray:
    return proba[:, SWAP_LABELS]


def _is_weight_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(name, str)
        and isinstance(weight, Real)
        and not isinstance(weight, bool)
        and weight >= 0
        for name, weight in value.items()
    )


def _is_booster_list(value: Any) -> bool:
    """A non-empty list of names from :data:`models.gbdt.BOOSTERS`."""
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) > 0
        and not unknown_boosters(value)
    )


class PreferenceModel(BaseEstimator):
    """Predict which of two responses a person prefers: A, B or tie.

    Parameters
    ----------
    blocks : dict of str to dict, default=None
        Feature blocks (name -> params); None uses ``lengths`` and ``flags``.
    boosters : sequence of str, default=("lightgbm",)
        Booster kinds to train and stack: ``"lightgbm"``, ``"xgboost"``.
    booster_params : dict of str to dict, default=None
        Params per booster kind, including ``num_boost_round`` and
        ``early_stopping_rounds``.
    n_folds : int, default=5
        Prompt-grouped, label-stratified folds; at least 2.
    seed : int, default=0
        Seed for folds and boosters; >= 0.
    max_chars : int or None, default=50000
        Characters kept per field (the start is cut first), in fit and predict;
        >= 1, or None to keep everything.
    stack_method : {"auto", "blend", "logreg"}, default="auto"
        How booster predictions are combined (see ``BoosterStacker``).
    calibrate : bool, default=True
        Fit a temperature on out-of-fold logits.
    per_class_bias : bool, default=False
        Also fit a per-class bias with the temperature (kept only if it helps).
    swap_augment : bool, default=False
        Train on A/B-swapped copies too.
    swap_average : bool, default=True
        Average each prediction with its mirrored swap: exact symmetry.
    degenerate_rules : bool or "auto", default=False
        Fixed answers for empty and identical responses; "auto" keeps them
        only if they lower the out-of-fold log loss.
    group_by : {"prompt", "source", "auto"}, default="prompt"
        What the folds keep together, and so what early stopping, stacking,
        the temperature and :meth:`fit_prior` are validated on:

        - "prompt": battles with the same prompt (in-source accuracy);
        - "source": whole source families (the part of the ``source`` column
          before ``:``), so that all of these are chosen for battles from a
          source the model never saw;
        - "auto": "source" when the battles name 2+ source families, else
          "prompt".
    source_weights : "balanced", dict of str to float, or None, default=None
        Row weights by source: "balanced" gives every source family the same
        total weight; a dict names a weight (>= 0; 0 excludes the source from
        fitting) per family or full source name (unnamed: 1). "balanced" on
        battles without a ``source`` column weighs every battle 1; a dict
        needs the column. The boosters and the anchor always fit with these
        weights; the stacker and the temperature only when the folds keep
        every source family whole (their out-of-fold predictions then stand
        for new sources, each alike). With other folds those predictions
        stand for battles like the training ones, so the head fits them as
        they come (a weight of 0 still excludes a source).
    anchor : bool, default=False
        Start the boosters from a :class:`models.anchor.StyleAnchor` (a
        sign-constrained model of length, markdown style, refusals and empty
        answers) so the trees learn only what it misses; used identically in
        fit and predict.
    tie_head : {"model", "constant", "auto"}, default="model"
        Where P(tie) comes from; P(A) / (P(A) + P(B)) is the same either way:

        - "model": the boosters, stacker and temperature, as for A and B;
        - "constant": the training tie share for every battle. On a source
          the model never saw, the boosters' ranking of ties has not carried
          over (tie AUC under 0.5 on each held-out corpus source with ties,
          BENCHMARKS.md), so a constant share scores better there; inside
          the training sources it scores worse (it forgets which sources
          tie). ``class_prior``, ``tie_rate`` and :meth:`fit_prior` still
          move it (black-box shift estimation reads the boosters' P(tie));
        - "auto": "constant" when the folds keep every source family whole
          (``group_by`` "source", or "auto" on 2+ families: a model meant for
          new sources), else "model" (one source, or prompt-grouped folds).
    target : str or None, default=None
        The source family the model predicts for (e.g. ``"kaggle-lmsys"``);
        None: every source alike. With a target and 2+ families, "auto" folds
        group by prompt, the other sources weigh ``target_other_weight`` times
        their ``source_weights``, and ``target_head`` / ``target_tie`` fit the
        head on the target's out-of-fold rows (:mod:`models.target`). With
        one family it changes nothing.
    target_other_weight : float or "auto", default=1.0
        Factor on the weight of every non-target row (> 0). "auto" picks it
        from :data:`models.target_weights.OTHER_WEIGHT_CANDIDATES` by the
        target's out-of-fold log loss of a fast LightGBM on the model's folds
        (``metrics_["target"]["weight_search"]`` keeps every candidate's loss);
        "auto-family" then tries each other source family at 0 and 3 times
        that factor, one pass (:func:`models.target_weights.search_family_weights`).
    target_density_weights : bool, default=False
        With a target: multiply each non-target row's weight by its odds of
        being a target row, from a cross-fitted logistic regression on the
        features (:func:`models.target_weights.density_ratio_weights`).
    anchor_per_source : bool, default=False
        With ``anchor`` and a ``source`` column: the anchor has a shared part
        and one per source family, shrunk toward the shared one; each training
        row starts from its family's part, and predictions from the target's
        (the shared part without a target).
    target_head : bool, default=True
        Fit the stacker and the temperature on the target's out-of-fold rows
        only (with a target).
    target_tie : bool, default=True
        Refit P(tie) on the target's out-of-fold rows
        (:class:`models.target.TargetTieHead`; with a target).
    target_tie_features : bool, default=False
        Give that tie head the symmetric feature columns (``s_``: prompt
        kind, answer similarity, length ratios, both refusing...) besides the
        model's own tie logit and margin.
    n_jobs : int or None, default=None
        Worker processes for the row-parallel feature blocks (fit and
        predict): None or 1 serial, -1 one per core. Batches under 400 rows
        always run serially; the numbers do not depend on it.
    engine : {"local", "dask"}, default="local"
        Where the fold boosters train (features, stacking and the temperature
        always run here):

        - "local": in this process;
        - "dask": on the Dask cluster ``scheduler`` names, the rows of each
          fold partitioned across its workers (:mod:`models.dask_engine`
          lists what differs). The boosters are the same native models, so
          prediction, saving and loading do not depend on it.
    scheduler : str or None, default=None
        The cluster of ``engine="dask"`` (unused with "local"), in the forms
        of the ``--scheduler`` option: "local" or None starts a LocalCluster
        of one single-threaded worker per core, "local:N" one of N workers,
        and "tcp://host:port" connects to a running scheduler.
    verbose : bool, default=False
        Progress bars.

    Attributes
    ----------
    classes_ : ndarray of str
        :data:`features.battles.CLASSES`.
    feature_names_out_ : list of str
        Feature columns the boosters see.
    folds_ : ndarray of int
        Fold of each training battle.
    train_prior_ : ndarray of shape (3,)
        Class shares in the training labels.
    target_prior_ : ndarray of shape (3,) or None
        Prior set by :meth:`fit_prior`; predictions are shifted to it.
    tie_head_ : {"model", "constant"}
        The tie head in use (``tie_head`` with "auto" resolved).
    oof_proba_ : ndarray of shape (n, 3)
        Out-of-fold probabilities of the whole pipeline.
    metrics_ : dict
        Out-of-fold log losses of every stage and baseline.

    Examples
    --------
    >>> from models import PreferenceModel  # doctest: +SKIP
    >>> model = PreferenceModel(n_folds=3).fit(train_df)  # doctest: +SKIP
    >>> model.predict_proba(test_df)  # doctest: +SKIP
    """

    _allowed_values: ClassVar[ParameterTable] = {
        "blocks": [Mapping, None],
        "boosters": [
            Predicate(
                _is_booster_list, f"a non-empty list of names from {sorted(BOOSTERS)}"
            )
        ],
        "booster_params": [Mapping, None],
        "n_folds": [Interval(Integral, 2, None)],
        "seed": [Interval(Integral, 0, None)],
        "max_chars": [Interval(Integral, 1, None), None],
        "stack_method": [Options(STACK_METHODS)],
        "calibrate": [bool],
        "per_class_bias": [bool],
        "swap_augment": [bool],
        "swap_average": [bool],
        "degenerate_rules": [bool, Options(("auto",))],
        "group_by": [Options(("prompt", "source", "auto"))],
        "source_weights": [
            Options(("balanced",)),
            Predicate(_is_weight_map, "a dict of source name to a weight >= 0"),
            None,
        ],
        "anchor": [bool],
        "tie_head": [Options(TIE_HEADS)],
        "target": [str, None],
        "target_other_weight": [
            Interval(Real, 0, None, closed="neither"),
            Options(("auto", "auto-family")),
        ],
        "target_density_weights": [bool],
        "anchor_per_source": [bool],
        "target_head": [bool],
        "target_tie": [bool],
        "target_tie_features": [bool],
        "n_jobs": [Interval(Integral, 1, None), Options((-1,)), None],
        "engine": [Options(ENGINES)],
        "scheduler": [Predicate(is_scheduler, SCHEDULER_FORMS), None],
        "verbose": [bool],
    }

    def __init__(
        self,
        *,
        blocks: dict[str, dict[str, Any]] | None = None,
        boosters: Sequence[str] = ("lightgbm",),
        booster_params: dict[str, dict[str, Any]] | None = None,
        n_folds: int = 5,
        seed: int = 0,
        max_chars: int | None = 50_000,
        stack_method: str = "auto",
        calibrate: bool = True,
        per_class_bias: bool = False,
        swap_augment: bool = False,
        swap_average: bool = True,
        degenerate_rules: bool | str = False,
        group_by: str = "prompt",
        source_weights: str | dict[str, float] | None = None,
        anchor: bool = False,
        tie_head: str = "model",
        target: str | None = None,
        target_other_weight: float | str = 1.0,
        target_density_weights: bool = False,
        anchor_per_source: bool = False,
        target_head: bool = True,
        target_tie: bool = True,
        target_tie_features: bool = False,
        n_jobs: int | None = None,
        engine: str = "local",
        scheduler: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.blocks = blocks
        self.boosters = boosters
        self.booster_params = booster_params
        self.n_folds = n_folds
        self.seed = seed
        self.max_chars = max_chars
        self.stack_method = stack_method
        self.calibrate = calibrate
        self.per_class_bias = per_class_bias
        self.swap_augment = swap_augment
        self.swap_average = swap_average
        self.degenerate_rules = degenerate_rules
        self.group_by = group_by
        self.source_weights = source_weights
        self.anchor = anchor
        self.tie_head = tie_head
        self.target = target
        self.target_other_weight = target_other_weight
        self.target_density_weights = target_density_weights
        self.anchor_per_source = anchor_per_source
        self.target_head = target_head
        self.target_tie = target_tie
        self.target_tie_features = target_tie_features
        self.n_jobs = n_jobs
        self.engine = engine
        self.scheduler = scheduler
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def training_recipe(self) -> TrainingRecipe:
        """The :class:`~models.recipe.TrainingRecipe` :meth:`fit` makes its rows
        with: truncation, labels, source weights, folds, anchor, swap copies."""
        return TrainingRecipe(
            max_chars=self.max_chars,
            source_weights=self.source_weights,
            group_by=self.group_by,
            n_folds=self.n_folds,
            seed=self.seed,
            anchor=self.anchor,
            swap_augment=self.swap_augment,
            target=self.target,
            target_other_weight=self.target_other_weight,
            target_head=self.target_head,
            anchor_per_source=self.anchor_per_source,
        )

    def _prepare(self, battles: Any) -> pd.DataFrame:
        return battle_table(battles, self.max_chars)

    def _swap_features(self, X: Any) -> Any:
        if hasattr(X, "tocsr"):
            import scipy.sparse as sp

            return (X[:, self._swap_order] @ sp.diags(self._swap_sign)).tocsr()
        return X[:, self._swap_order] * self._swap_sign

    def fit(
        self,
        battles: Any,
        y: ArrayLike | None = None,
        *,
        store: FeatureStore | None = None,
        folds: ArrayLike | None = None,
    ) -> PreferenceModel:
        """Fit blocks, fold boosters, stacker and temperature on labelled battles.

        Parameters
        ----------
        battles : DataFrame, list of dict or dict of lists
            Kaggle layout (JSON strings) or the canonical table.
        y : array-like of int, default=None
            Labels (0 = A, 1 = B, 2 = tie); None takes the table's ``label``.
        store : FeatureStore, default=None
            Feature cache to read from and fill.
        folds : array-like of int, default=None
            Fold per battle; None makes the folds ``group_by`` says.

        The rows (cut battles, labels, source weights, folds, anchor, swap
        copies) come from :meth:`training_recipe`, as in every command.

        Returns
        -------
        self

        Raises
        ------
        InvalidParameterError
            A parameter outside its allowed values (see Parameters), or
            ``folds`` not one integer >= 0 per battle.
        ValueError
            No labels, or ``y`` not one label 0, 1 or 2 per battle.
        """
        check_parameters(self)
        recipe = self.training_recipe()
        rows = recipe.rows(battles, y, folds=folds)
        table, labels, weight = rows.table, rows.labels, rows.weight
        pipeline = FeaturePipeline(
            self.blocks if self.blocks is not None else DEFAULT_BLOCKS,
            store=store,
            verbose=self.verbose,
            n_jobs=self.n_jobs,
        )
        features = pipeline.fit_transform(table)
        self.pipeline_ = pipeline
        self.feature_names_out_ = list(features.columns)
        self._swap_order, self._swap_sign = swap_permutation(features.columns)
        self.folds_ = rows.folds
        is_target = rows.is_target
        self.tie_head_ = self.tie_head
        if self.tie_head == "auto":
            self.tie_head_ = "constant" if rows.holds_out_sources else "model"
        self.train_prior_ = np.bincount(labels, minlength=3) / len(labels)
        self.target_prior_ = None
        families = rows.all_families
        self.anchor_ = recipe.fit_anchor(
            features.values, features.columns, labels, weight, families
        )
        init = anchor_offsets(self.anchor_, features.values, features.columns, families)
        weight_search = None
        if is_target is not None:
            weight, weight_search = self._target_weights(
                features.values, labels, is_target, weight, init, families
            )
        self.fold_results_: dict[str, FoldResult] = {}
        booster_oof = []
        with open_engine(self.engine, self.scheduler) as engine:
            for name in self.boosters:
                params = (self.booster_params or {}).get(name, {})
                result = train_folds(
                    name,
                    params,
                    features.values,
                    labels,
                    self.folds_,
                    seed=self.seed,
                    weight=weight,
                    swap_features=self._swap_features,
                    swap_augment=recipe.swap_augment,
                    verbose=self.verbose,
                    init_score=init,
                    engine=engine,
                )
                self.fold_results_[name] = result
                booster_oof.append(self._oof_booster(result, features.values, init))
        self._fit_head(
            booster_oof, labels, rows.head_weight, is_target, features.values
        )
        # Black-box shift estimation reads how the boosters' P(tie) behaved,
        # which a constant tie head keeps (it only replaces what is returned).
        boosters_oof = (
            self.oof_proba_
            if self.tie_head_ == "model"
            else self._head(booster_oof, boosters_tie=True)
        )
        self.tie_confusion_ = tie_confusion(boosters_oof, labels, weight)
        self._choose_rules(table, labels)
        if is_target is not None:
            self.metrics_["target"] = {
                "family": self.target,
                "n_rows": int(is_target.sum()),
                "oof_log_loss": multiclass_log_loss(
                    labels[is_target], self.oof_proba_[is_target]
                ),
                "weight_search": weight_search,
            }
        self.classes_ = np.asarray(CLASSES)
        self.n_features_in_ = len(self.feature_names_out_)
        return self

    def _target_weights(
        self,
        X: Any,
        labels: NDArray[np.int64],
        is_target: NDArray[np.bool_],
        weight: NDArray[np.float64] | None,
        init: NDArray | None,
        families: NDArray[np.object_],
    ) -> tuple[NDArray[np.float64] | None, dict[str, Any] | None]:
        """The row weights after the target's learned factors, and the search."""
        if self.target_density_weights:
            ratio = density_ratio_weights(X, is_target, self.folds_)
            base = np.ones(len(labels)) if weight is None else weight
            weight = base * ratio / np.mean(base * ratio)
        if self.target_other_weight == "auto-family":
            factors, search = search_family_weights(
                X,
                labels,
                self.folds_,
                is_target,
                weight,
                families,
                init_score=init,
                seed=self.seed,
            )
            factor = np.array([factors.get(f, 1.0) for f in families.astype(str)])
            return target_weights(is_target, weight, factor), search
        if self.target_other_weight != "auto":
            return weight, None
        best, losses = search_other_weight(
            X,
            labels,
            self.folds_,
            is_target,
            weight,
            init_score=init,
            seed=self.seed,
        )
        proxy = {str(factor): loss for factor, loss in losses.items()}
        search = {"chosen": best, "proxy_log_loss": proxy}
        return target_weights(is_target, weight, best), search

    def _init_score(self, X: Any) -> NDArray | None:
        """The anchor's log-probabilities: the boosters' starting score."""
        return anchor_offsets(
            getattr(self, "anchor_", None), X, self.feature_names_out_
        )

    def _oof_booster(self, result: FoldResult, X: Any, init: NDArray | None) -> NDArray:
        if not self.swap_average:
            return result.oof
        swapped = np.zeros_like(result.oof)
        X_swapped = self._swap_features(X)
        init_swapped = None if init is None else _mirror(init)
        for fold, model in enumerate(result.models):
            rows = np.flatnonzero(self.folds_ == fold)
            swapped[rows] = model.predict_proba(
                X_swapped[rows], None if init_swapped is None else init_swapped[rows]
            )
        return (result.oof + _mirror(swapped)) / 2

    def _fit_head(
        self,
        booster_oof: list[NDArray],
        labels: NDArray,
        weight: NDArray | None,
        is_target: NDArray[np.bool_] | None = None,
        X: Any = None,
    ) -> None:
        self.stacker_ = BoosterStacker(method=self.stack_method).fit(
            booster_oof, labels, sample_weight=weight
        )
        self.scaler_ = None
        stacked = self._stacked(booster_oof)
        if self.calibrate:
            self.scaler_ = TemperatureScaler(per_class_bias=self.per_class_bias)
            self.scaler_.fit(clipped_log(stacked), labels, sample_weight=weight)
        self.target_tie_ = None
        if is_target is not None and self.target_tie:
            tie_features = None
            if self.target_tie_features:
                tie_features = self._tie_features(X)[is_target]
            self.target_tie_ = TargetTieHead().fit(
                self._head(booster_oof)[is_target],
                labels[is_target],
                features=tie_features,
            )
        self.oof_proba_ = self._head(booster_oof, X=X)
        self.metrics_ = {
            "n_rows": int(len(labels)),
            "class_prior": multiclass_log_loss(
                labels, np.tile(self.train_prior_, (len(labels), 1))
            ),
            "boosters": {
                name: multiclass_log_loss(labels, oof)
                for name, oof in zip(self.boosters, booster_oof, strict=True)
            },
            "stacked": multiclass_log_loss(labels, stacked),
            "stack_method": self.stacker_.method_,
            "temperature": None if self.scaler_ is None else self.scaler_.temperature_,
            "oof_log_loss": multiclass_log_loss(labels, self.oof_proba_),
            "oof_accuracy": float(np.mean(self.oof_proba_.argmax(axis=1) == labels)),
        }
        logger.info("out-of-fold log loss %.4f", self.metrics_["oof_log_loss"])

    def _choose_rules(self, table: pd.DataFrame, labels: NDArray) -> None:
        """Measure the degenerate-row rules on OOF; keep them as configured."""
        with_rules = apply_degenerate_rules(table, self.oof_proba_)
        score = multiclass_log_loss(labels, with_rules)
        self.metrics_["oof_log_loss_with_rules"] = score
        if self.degenerate_rules == "auto":
            self.use_rules_ = bool(score < self.metrics_["oof_log_loss"])
        else:
            self.use_rules_ = bool(self.degenerate_rules)
        if self.use_rules_:
            self.oof_proba_ = with_rules
        self.metrics_["degenerate_rules_used"] = self.use_rules_

    def _stacked(self, booster_proba: list[NDArray]) -> NDArray:
        """Stacker output, mirror-averaged so that it is exactly swap-symmetric.

        The temperature is fitted on this very quantity, so what is calibrated
        is what the model outputs.
        """
        stacked = self.stacker_.predict_proba(booster_proba)
        if self.swap_average:
            mirrored = self.stacker_.predict_proba([_mirror(p) for p in booster_proba])
            stacked = (stacked + _mirror(mirrored)) / 2
        return stacked

    def _calibrated(self, stacked: NDArray) -> NDArray:
        if self.scaler_ is None:
            return stacked
        return self.scaler_.predict_proba(clipped_log(stacked))

    def _tie_features(self, X: Any) -> Any:
        """The symmetric (``s_``) feature columns: the tie head's extra inputs."""
        columns = [i for i, c in enumerate(self.feature_names_out_) if c[:2] == "s_"]
        return X[:, columns]

    def _head(
        self,
        booster_proba: list[NDArray],
        *,
        boosters_tie: bool = False,
        X: Any = None,
    ) -> NDArray:
        """Stack, calibrate, then the tie head; each step keeps the A/B symmetry.

        ``X`` (the battles' features) is needed by a tie head fitted with
        feature columns (``target_tie_features``).
        """
        stacked = self._stacked(booster_proba)
        proba = self._calibrated(stacked)
        if self.swap_average and self.per_class_bias:
            # A per-class bias may treat A and B differently: mirror once more.
            proba = (proba + _mirror(self._calibrated(_mirror(stacked)))) / 2
        proba = proba / proba.sum(axis=1, keepdims=True)
        if self.tie_head_ == "constant" and not boosters_tie:
            proba = constant_tie_share(proba, float(self.train_prior_[TIE]))
        target_tie = getattr(self, "target_tie_", None)
        if target_tie is not None and not boosters_tie:
            extra = None
            if getattr(target_tie, "n_features_", 0) and X is not None:
                extra = self._tie_features(X)
            proba = target_tie.transform(proba, extra)
        return proba

    # -------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "stacker_"):
            raise NotFittedError(
                "This PreferenceModel is not fitted; call fit first (or "
                "PreferenceModel.load(dir))."
            )

    def _features(self, battles: Any) -> tuple[pd.DataFrame, FeatureMatrix]:
        table = self._prepare(battles)
        return table, self.pipeline_.transform(table)

    def _booster_proba(self, X: Any) -> list[NDArray]:
        n_rows = X.shape[0]
        if self.swap_average:
            # Both A/B orders in one call per fold model: half the per-call
            # overhead, which dominates small batches (same numbers: rows are
            # predicted independently).
            X = stack_rows(X, self._swap_features(X))
        init = self._init_score(X)
        outputs = []
        for name in self.boosters:
            proba = self.fold_results_[name].predict_proba(X, init)
            if self.swap_average:
                proba = (proba[:n_rows] + _mirror(proba[n_rows:])) / 2
            outputs.append(proba)
        return outputs

    def predict_proba(
        self,
        battles: Any,
        *,
        class_prior: ArrayLike | None = None,
        tie_rate: float | None = None,
    ) -> NDArray[np.float64]:
        """Probabilities (n, 3) of A wins, B wins, tie, in :data:`CLASSES` order.

        Parameters
        ----------
        battles : DataFrame, list of dict or dict of lists
            Kaggle layout (JSON strings) or the canonical table.
        class_prior : array-like of shape (3,), default=None
            Shift predictions from the training prior to this one (label
            shift); None uses the prior from :meth:`fit_prior`, if any.
        tie_rate : float, default=None
            Shift only the tie share to this target rate: P(A) / (P(A) + P(B))
            stays as predicted. Exclusive with ``class_prior``.

        Raises
        ------
        InvalidParameterError
            Both ``class_prior`` and ``tie_rate``, or a value out of range.
        """
        if class_prior is not None and tie_rate is not None:
            raise InvalidParameterError(
                "predict_proba takes class_prior or tie_rate, not both: tie_rate "
                "moves only the tie share, class_prior all three."
            )
        table, proba = self._unshifted_proba(battles)
        if table.empty:
            return proba
        prior = class_prior if class_prior is not None else self.target_prior_
        if tie_rate is not None:
            prior = tie_only_prior(self.train_prior_, tie_rate)
        if prior is not None:
            proba = adjust_to_prior(proba, self.train_prior_, prior)
        if self.use_rules_:
            proba = apply_degenerate_rules(table, proba)
        return proba

    def _unshifted_proba(
        self, battles: Any, *, boosters_tie: bool = False
    ) -> tuple[pd.DataFrame, NDArray]:
        """The canonical table and its head output, before any prior or rule."""
        self._check_fitted()
        table = self._prepare(battles)
        if table.empty:
            return table, np.empty((0, len(CLASSES)))
        self.pipeline_.n_jobs = self.n_jobs  # the model's setting, after fit or load
        features = self.pipeline_.transform(table)
        proba = self._head(
            self._booster_proba(features.values),
            boosters_tie=boosters_tie,
            X=features.values,
        )
        return table, proba

    def predict(self, battles: Any) -> NDArray:
        """Most probable class name per battle."""
        return self.classes_[self.predict_proba(battles).argmax(axis=1)]

    def fit_prior(
        self, battles: Any, *, method: str = "bbse", prior_strength: float = 1.0
    ) -> PreferenceModel:
        """Estimate the tie share (or class prior) of unlabelled battles; use it.

        Tie rates differ between sources (0% to 50% in the corpus); this
        re-targets predictions without labels.

        Parameters
        ----------
        battles : DataFrame, list of dict or dict of lists
            Unlabelled battles of the target set.
        method : {"bbse", "em"}, default="bbse"
            - "bbse": black-box shift estimation of the tie share alone
              (:func:`models.label_shift.estimate_tie_share`) from how the
              out-of-fold predictions behaved; only the tie share moves. Fit
              with ``group_by="source"`` so that those predictions hold out
              whole sources, as the target set is.
            - "em": MAP-EM over all three classes (Saerens et al., 2002) with
              ``prior_strength``. It trusts the posteriors on the target set;
              on a source whose answers look like those of tie-heavy sources
              it moves toward more ties even when there are none.
        prior_strength : float, default=1.0
            Pseudo-counts of the training prior for "em".

        Raises
        ------
        InvalidParameterError
            An unknown method, or "bbse" on a model saved without its
            out-of-fold tie confusion.
        """
        self._check_fitted()
        if method not in ("bbse", "em"):
            raise InvalidParameterError(
                f"The 'method' parameter of fit_prior must be 'bbse' or 'em'. "
                f"Got {method!r}."
            )
        self.target_prior_ = None
        if method == "em":
            self.target_prior_ = estimate_prior_em(
                self.predict_proba(battles),
                self.train_prior_,
                prior_strength=prior_strength,
            )
            return self
        if getattr(self, "tie_confusion_", None) is None:
            raise InvalidParameterError(
                "this model was saved without its out-of-fold tie confusion; refit "
                "it, or use fit_prior(..., method='em')."
            )
        # The boosters' P(tie), as the tie confusion was measured on.
        table, proba = self._unshifted_proba(battles, boosters_tie=True)
        if self.use_rules_:
            proba = apply_degenerate_rules(table, proba)
        tie_share = estimate_tie_share(self.tie_confusion_, proba)
        self.target_prior_ = tie_only_prior(self.train_prior_, tie_share)
        return self

    def explain_scores(self, battles: Any, *, booster: str | None = None) -> ScoreParts:
        """The exact parts of each battle's raw score, per class.

        The raw score of one booster kind is the anchor's log-probabilities
        plus the fold-averaged trees' raw output (swap-averaged when
        ``swap_average``); it is split into one term per anchor covariate,
        one tree contribution per feature, an anchor bias and a tree bias
        (:mod:`models.explain`). ``contributions.sum(axis=2)`` equals ``raw``
        up to float rounding (float32 for XGBoost).

        Parameters
        ----------
        battles : DataFrame, list of dict or dict of lists
            Kaggle layout (JSON strings) or the canonical table.
        booster : str or None, default=None
            The booster kind to split ("lightgbm", "xgboost"); None splits the
            stacker's blend of the kinds (their raw scores weighted by the
            blend weights, equally for a logistic-regression stacker).

        Returns
        -------
        models.explain.ScoreParts

        Raises
        ------
        InvalidParameterError
            ``booster`` is not one of the model's booster kinds.
        """
        self._check_fitted()
        table, features = self._features(battles)
        return score_parts(self, table["id"].tolist(), features.values, booster=booster)

    def explain(self, battles: Any, top: int = 5) -> pd.DataFrame:
        """Each battle's strongest reasons, by concept, in plain words.

        The A-minus-B raw score (the stacker's blend of the booster kinds, see
        :meth:`explain_scores`) is split into concepts (length, markdown
        style, refusal or empty answer, readability, similarity, content,
        ...; :data:`models.explain.CONCEPT_PATTERNS`); the ``top`` with the
        largest |weight| are returned, each with a sentence computed from the
        battle's texts. The weights of all concepts of a battle add up to its
        A-minus-B raw score.

        Parameters
        ----------
        battles : DataFrame, list of dict or dict of lists
            Kaggle layout (JSON strings) or the canonical table.
        top : int, default=5
            Concepts per battle (>= 1).

        Returns
        -------
        pandas.DataFrame
            Columns ``id, predicted, rank, concept, toward, weight, sentence``:
            ``toward`` is "A" for a weight > 0 and "B" for one < 0; a weight
            is in raw-score (log-odds) units of A over B.

        Raises
        ------
        InvalidParameterError
            ``top`` is not an int >= 1.
        """
        if isinstance(top, bool) or not isinstance(top, Integral) or top < 1:
            raise InvalidParameterError(
                f"explain's 'top' must be an int >= 1 (concepts per battle). "
                f"Got {top!r}."
            )
        self._check_fitted()
        table, features = self._features(battles)
        if table.empty:
            return explain_frame(None, table, np.empty(0, np.int64), int(top))
        parts = score_parts(self, table["id"].tolist(), features.values)
        predicted = self.predict_proba(table).argmax(axis=1)
        return explain_frame(parts, table, predicted, int(top))

    # ---------------------------------------------------------- save/load
    def save(self, directory: str | Path, *, attachments: Path | None = None) -> Path:
        """Write the model directory (native boosters, JSON state, manifest).

        ``attachments`` (a directory, e.g. the training report) is copied in
        under ``report/`` and covered by the manifest too.
        """
        self._check_fitted()

        def fill(tmp: Path) -> None:
            if attachments is not None:
                shutil.copytree(attachments, tmp / "report")
            self.pipeline_.save_state(tmp / "blocks")
            booster_dir = tmp / "boosters"
            booster_dir.mkdir()
            for name, result in self.fold_results_.items():
                for fold, model in enumerate(result.models):
                    model.save(booster_dir, f"{name}-fold{fold}")
            np.save(tmp / "folds.npy", self.folds_)
            np.save(tmp / "oof_proba.npy", self.oof_proba_)

        meta = {
            "params": _json_params(self.get_params()),
            "classes": list(CLASSES),
            "block_order": list(self.pipeline_.blocks_),
            "feature_names": self.feature_names_out_,
            "train_prior": self.train_prior_.tolist(),
            "target_prior": None
            if self.target_prior_ is None
            else np.asarray(self.target_prior_).tolist(),
            "best_iterations": {
                name: [m.best_iteration_ for m in result.models]
                for name, result in self.fold_results_.items()
            },
            "stacker": self.stacker_.to_dict(),
            "scaler": None if self.scaler_ is None else self.scaler_.to_dict(),
            "metrics": self.metrics_,
            "use_rules": self.use_rules_,
            "anchor": None if self.anchor_ is None else self.anchor_.to_dict(),
            "tie_head": self.tie_head_,
            "tie_confusion": np.asarray(self.tie_confusion_).tolist(),
            "target_tie": None
            if getattr(self, "target_tie_", None) is None
            else self.target_tie_.to_dict(),
        }
        return write_model_dir(directory, fill, meta)

    @classmethod
    def load(cls, directory: str | Path) -> PreferenceModel:
        """Load a model directory after verifying its manifest and version.

        Raises
        ------
        FileNotFoundError
            No model at ``directory``.
        ModelIntegrityError
            A file is modified, missing, extra or unreadable, or the format
            version is newer than this code reads. Nothing is unpickled.
        """
        directory = Path(directory)
        meta = read_model_dir(directory)
        with reading_file(directory, MODEL_FILE):
            model = cls(**meta["params"])
            blocks = model.blocks if model.blocks is not None else DEFAULT_BLOCKS
            blocks = {name: blocks[name] for name in meta["block_order"]}
            model.feature_names_out_ = list(meta["feature_names"])
            model._swap_order, model._swap_sign = swap_permutation(
                model.feature_names_out_
            )
            model.train_prior_ = np.asarray(meta["train_prior"])
            prior = meta["target_prior"]
            model.target_prior_ = None if prior is None else np.asarray(prior)
            model.stacker_ = BoosterStacker.from_dict(meta["stacker"])
            model.scaler_ = (
                None
                if meta["scaler"] is None
                else TemperatureScaler.from_dict(meta["scaler"])
            )
            model.metrics_ = meta["metrics"]
            model.use_rules_ = bool(meta["use_rules"])
            anchor = meta.get("anchor")
            model.anchor_ = None if anchor is None else StyleAnchor.from_dict(anchor)
            # Saved before tie_head existed: P(tie) came from the boosters.
            model.tie_head_ = meta.get("tie_head", "model")
            confusion = meta.get("tie_confusion")
            model.tie_confusion_ = None if confusion is None else np.asarray(confusion)
            target_tie = meta.get("target_tie")
            model.target_tie_ = (
                None if target_tie is None else TargetTieHead.from_dict(target_tie)
            )
            model.classes_ = np.asarray(meta["classes"])
            model.n_features_in_ = len(model.feature_names_out_)
            best_iterations = {
                name: (BOOSTERS[name], list(iterations))
                for name, iterations in meta["best_iterations"].items()
            }
        with reading_file(directory, "blocks") as path:
            model.pipeline_ = FeaturePipeline.load_state(path, blocks)
        model.fold_results_ = {}
        for name, (booster_cls, iterations) in best_iterations.items():
            models = []
            for fold, best_iteration in enumerate(iterations):
                file_name = f"boosters/{name}-fold{fold}.{booster_cls.file_name}"
                with reading_file(directory, file_name) as path:
                    models.append(booster_cls.load(path, best_iteration))
            model.fold_results_[name] = FoldResult(np.empty((0, 3)), models)
        with reading_file(directory, "folds.npy") as path:
            model.folds_ = np.load(path, allow_pickle=False)
        with reading_file(directory, "oof_proba.npy") as path:
            model.oof_proba_ = np.load(path, allow_pickle=False)
        return model


def _json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as plain JSON data (tuples become lists and back on load)."""
    return json.loads(json.dumps(dict(params)))
