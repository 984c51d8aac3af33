"""LightGBM and XGBoost behind one small interface, trained per fold.

Each booster is saved in its library's own format (LightGBM text, XGBoost
JSON), so loading a model never runs code. Fold models are averaged at
prediction time; out-of-fold predictions feed stacking and calibration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from tqdm.auto import tqdm

from features.errors import InvalidParameterError

if TYPE_CHECKING:
    from models.dask_engine import DaskEngine

__all__ = [
    "BOOSTERS",
    "THREAD_PARAMS",
    "FoldResult",
    "LightGBMBooster",
    "XGBoostBooster",
    "check_booster_names",
    "check_booster_params",
    "make_booster",
    "stack_rows",
    "train_folds",
    "unknown_boosters",
]

logger = logging.getLogger(__name__)

Matrix = NDArray[np.float32] | sp.csr_matrix
EvalSet = tuple[Any, ...]
"""(X_valid, y_valid[, init_score_valid[, weight_valid]])."""

THREAD_PARAMS = frozenset(
    {"n_jobs", "nthread", "nthreads", "num_thread", "num_threads"}
)
"""Thread-count params of both libraries (with LightGBM's aliases).

The boosters give bit-identical results for any thread count, so these change
the speed of a fit, never its numbers.
"""

_SCALAR_TYPES = (type(None), bool, int, float, str)


class _Booster:
    """Common part: params split into library params and training controls."""

    library: ClassVar[str] = ""
    file_name: ClassVar[str] = ""

    def __init__(
        self, params: Mapping[str, Any] | None = None, *, seed: int = 0
    ) -> None:
        params = dict(params or {})
        self.num_boost_round = int(params.pop("num_boost_round", 1000))
        self.early_stopping_rounds = int(params.pop("early_stopping_rounds", 50))
        self.params = params
        self.seed = seed
        self.model_ = None
        self.best_iteration_ = 0

    def save(self, directory: Path, stem: str) -> Path:
        """Write the booster in its native format; returns the file path."""
        path = directory / f"{stem}.{self.file_name}"
        self.model_.save_model(str(path))
        return path


class LightGBMBooster(_Booster):
    """LightGBM multiclass booster (text model format)."""

    library = "lightgbm"
    file_name = "lgb.txt"

    def _library_params(self) -> dict[str, Any]:
        return {
            "objective": "multiclass",
            "num_class": 3,
            "metric": "multi_logloss",
            "verbosity": -1,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 0,
            **self.params,
        }

    def fit(
        self,
        X: Matrix,
        y: NDArray,
        weight: NDArray | None = None,
        eval_set: EvalSet | None = None,
        callbacks: Sequence[Callable] = (),
        init_score: NDArray | None = None,
    ) -> LightGBMBooster:
        """Train; with ``eval_set``, stop early on its log loss.

        ``init_score`` (n, 3) is the starting log-score of each row (the
        anchor); ``eval_set`` may carry the validation rows' as a third item.
        """
        import lightgbm as lgb

        train = lgb.Dataset(
            X, label=y, weight=weight, init_score=init_score, free_raw_data=True
        )
        valid_sets, all_callbacks = [], list(callbacks)
        if eval_set is not None:
            valid_sets = [
                lgb.Dataset(
                    eval_set[0],
                    label=eval_set[1],
                    weight=_eval_weight(eval_set),
                    init_score=_eval_init(eval_set),
                    reference=train,
                )
            ]
            all_callbacks.append(
                lgb.early_stopping(self.early_stopping_rounds, verbose=False)
            )
        self.model_ = lgb.train(
            self._library_params(),
            train,
            num_boost_round=self.num_boost_round,
            valid_sets=valid_sets,
            callbacks=all_callbacks,
        )
        self.best_iteration_ = int(
            self.model_.best_iteration or self.model_.num_trees() // 3
        )
        return self

    def predict_proba(
        self, X: Matrix, init_score: NDArray | None = None
    ) -> NDArray[np.float64]:
        """Class probabilities (n, 3), from ``init_score`` when trained with one."""
        if init_score is None:
            return self.model_.predict(X, num_iteration=self.best_iteration_)
        raw = self.model_.predict(X, num_iteration=self.best_iteration_, raw_score=True)
        return _softmax(np.asarray(raw).reshape(-1, 3) + init_score)

    def contributions(self, X: Matrix) -> NDArray[np.float64]:
        """Per-class SHAP-style contributions (n, 3, n_features + 1)."""
        raw = self.model_.predict(
            X, num_iteration=self.best_iteration_, pred_contrib=True
        )
        if sp.issparse(raw):
            raw = (
                np.hstack([m.toarray() for m in raw])
                if isinstance(raw, list)
                else raw.toarray()
            )
        raw = np.asarray(raw)
        return raw.reshape(raw.shape[0], 3, -1)

    @classmethod
    def load(cls, path: Path, best_iteration: int) -> LightGBMBooster:
        """Read a booster written by :meth:`save`."""
        import lightgbm as lgb

        booster = cls()
        booster.model_ = lgb.Booster(model_file=str(path))
        booster.best_iteration_ = best_iteration
        return booster


class XGBoostBooster(_Booster):
    """XGBoost multiclass booster (JSON model format)."""

    library = "xgboost"
    file_name = "xgb.json"

    def _library_params(self) -> dict[str, Any]:
        return {
            "objective": "multi:softprob",
            "num_class": 3,
            "eval_metric": "mlogloss",
            "tree_method": "hist",
            "seed": self.seed,
            "verbosity": 0,
            **self.params,
        }

    def fit(
        self,
        X: Matrix,
        y: NDArray,
        weight: NDArray | None = None,
        eval_set: EvalSet | None = None,
        callbacks: Sequence[Any] = (),
        init_score: NDArray | None = None,
    ) -> XGBoostBooster:
        """Train; with ``eval_set``, stop early on its log loss.

        ``init_score`` (n, 3) is the starting log-score of each row (XGBoost's
        ``base_margin``); ``eval_set`` may carry the validation rows' as a
        third item.
        """
        import xgboost as xgb

        train = xgb.DMatrix(X, label=y, weight=weight, base_margin=init_score)
        evals, stopping = [], None
        if eval_set is not None:
            valid = xgb.DMatrix(
                eval_set[0],
                label=eval_set[1],
                weight=_eval_weight(eval_set),
                base_margin=_eval_init(eval_set),
            )
            evals = [(valid, "valid")]
            stopping = self.early_stopping_rounds
        self.model_ = xgb.train(
            self._library_params(),
            train,
            num_boost_round=self.num_boost_round,
            evals=evals,
            early_stopping_rounds=stopping,
            callbacks=list(callbacks) or None,
            verbose_eval=False,
        )
        best = getattr(self.model_, "best_iteration", None)
        self.best_iteration_ = int(
            best + 1 if best is not None else self.model_.num_boosted_rounds()
        )
        return self

    def predict_proba(
        self, X: Matrix, init_score: NDArray | None = None
    ) -> NDArray[np.float64]:
        """Class probabilities (n, 3), from ``init_score`` when trained with one."""
        # inplace_predict skips building a DMatrix: the same numbers, and for
        # small batches most of the cost (profiled: 0.2-0.8 ms of a 0.3-1 ms call).
        proba = self.model_.inplace_predict(
            X, iteration_range=(0, self.best_iteration_), base_margin=init_score
        )
        return np.asarray(proba, dtype=np.float64).reshape(-1, 3)

    def contributions(self, X: Matrix) -> NDArray[np.float64]:
        """Per-class SHAP contributions (n, 3, n_features + 1)."""
        import xgboost as xgb

        return np.asarray(
            self.model_.predict(
                xgb.DMatrix(X),
                pred_contribs=True,
                iteration_range=(0, self.best_iteration_),
            ),
            dtype=np.float64,
        )

    @classmethod
    def load(cls, path: Path, best_iteration: int) -> XGBoostBooster:
        """Read a booster written by :meth:`save`."""
        import xgboost as xgb

        booster = cls()
        booster.model_ = xgb.Booster()
        booster.model_.load_model(str(path))
        booster.best_iteration_ = best_iteration
        return booster


BOOSTERS: dict[str, type[_Booster]] = {
    "lightgbm": LightGBMBooster,
    "xgboost": XGBoostBooster,
}
"""Config name -> booster class."""


def unknown_boosters(names: Iterable[Any]) -> list[Any]:
    """The names that are not keys of :data:`BOOSTERS` (the one membership rule).

    >>> unknown_boosters(["lightgbm", "catboost"])
    ['catboost']
    """
    return [name for name in names if not isinstance(name, str) or name not in BOOSTERS]


def check_booster_names(names: Iterable[Any]) -> None:
    """Check that every name is a key of :data:`BOOSTERS`.

    Parameters
    ----------
    names : iterable of str
        Booster names (``training.boosters`` or the keys of a per-booster
        mapping).

    Raises
    ------
    InvalidParameterError
        If a name is not a booster; the message lists the valid ones.

    Examples
    --------
    >>> check_booster_names(["lightgbm", "xgboost"])
    >>> check_booster_names(["catboost"])
    Traceback (most recent call last):
    ...
    features.errors.InvalidParameterError: unknown booster(s) ['catboost']; valid \
boosters are ['lightgbm', 'xgboost'].
    """
    unknown = unknown_boosters(names)
    if unknown:
        raise InvalidParameterError(
            f"unknown booster(s) {unknown!r}; valid boosters are {sorted(BOOSTERS)}."
        )


def check_booster_params(params: Any) -> None:
    """Check the params of one booster: library params and training controls.

    Library params are passed on as given, so only their types are checked:
    each is null, a bool, a number, a string or a list of these.
    ``num_boost_round`` and ``early_stopping_rounds`` must be ints >= 1.

    Parameters
    ----------
    params : mapping of str to scalar or None
        Params of one booster; None means none.

    Raises
    ------
    InvalidParameterError
        If `params` is not a mapping, a name is not a string, a value has
        another type or a training control is not an int >= 1.

    Examples
    --------
    >>> check_booster_params({"learning_rate": 0.05, "num_boost_round": 500})
    >>> check_booster_params({"num_boost_round": 0})
    Traceback (most recent call last):
    ...
    features.errors.InvalidParameterError: num_boost_round must be an int >= 1. \
Got 0.
    """
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise InvalidParameterError(
            f"booster params must be a mapping of param name to value. Got {params!r}."
        )
    for name, value in params.items():
        scalars = value if isinstance(value, list) else [value]
        if not isinstance(name, str) or not all(
            isinstance(item, _SCALAR_TYPES) for item in scalars
        ):
            raise InvalidParameterError(
                f"booster param {name!r} must be null, a bool, a number, a string or "
                f"a list of these. Got {value!r}."
            )
    for name in ("num_boost_round", "early_stopping_rounds"):
        value = params.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidParameterError(f"{name} must be an int >= 1. Got {value!r}.")


def make_booster(name: str, params: Mapping[str, Any] | None, *, seed: int) -> _Booster:
    """A fresh booster of kind ``name``; unknown names list the valid ones."""
    check_booster_names([name])
    check_booster_params(params)
    return BOOSTERS[name](params, seed=seed)


def _eval_init(eval_set: EvalSet) -> NDArray | None:
    return eval_set[2] if len(eval_set) > 2 else None


def _eval_weight(eval_set: EvalSet) -> NDArray | None:
    return eval_set[3] if len(eval_set) > 3 else None


def _softmax(logits: NDArray) -> NDArray[np.float64]:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class FoldResult:
    """Out-of-fold predictions and the per-fold models of one booster."""

    def __init__(self, oof: NDArray[np.float64], models: list[_Booster]) -> None:
        self.oof = oof
        self.models = models

    def predict_proba(
        self, X: Matrix, init_score: NDArray | None = None
    ) -> NDArray[np.float64]:
        """Average of the fold models' probabilities (``init_score``: the anchor)."""
        return np.mean([m.predict_proba(X, init_score) for m in self.models], axis=0)


def _take(X: Matrix, rows: NDArray) -> Matrix:
    return X[rows]


def train_folds(
    name: str,
    params: Mapping[str, Any] | None,
    X: Matrix,
    y: NDArray,
    folds: NDArray[np.int64],
    *,
    seed: int = 0,
    weight: NDArray | None = None,
    swap_features: Callable[[Matrix], Matrix] | None = None,
    swap_augment: bool = False,
    on_fold: Callable[[int, float], None] | None = None,
    verbose: bool = False,
    init_score: NDArray | None = None,
    engine: DaskEngine | None = None,
) -> FoldResult:
    """Train one booster per fold; return OOF probabilities and the models.

    Parameters
    ----------
    folds : ndarray of int
        Fold index of each row (0 .. n_folds-1).
    swap_features : callable, default=None
        Maps a feature matrix to that of the A/B-swapped battles. Needed for
        ``swap_augment`` and for swap-averaged OOF predictions.
    swap_augment : bool, default=False
        Add swapped copies of the training rows (labels 0 <-> 1;
        :func:`models.recipe.swap_copies`).
    on_fold : callable, default=None
        Called with (fold, fold log loss) after each fold (pruning hook); it
        may raise to stop early.
    init_score : ndarray of shape (n, 3), default=None
        Starting log-score of each row (the anchor), used in fit, early
        stopping and the out-of-fold predictions alike. It must mirror under
        a swap (``init_score(swap(x)) == init_score(x)[:, SWAP_LABELS]``).
    engine : DaskEngine, default=None
        Where each fold's booster trains: None in this process, else on the
        engine's Dask cluster (:func:`models.dask_engine.open_engine`). The
        rows, labels, weights and scores are the same either way.
    """
    from models.metrics import multiclass_log_loss
    from models.recipe import swap_copies

    n_folds = int(folds.max()) + 1
    oof = np.zeros((len(y), 3))
    models = []
    for fold in tqdm(range(n_folds), desc=name, unit="fold", disable=not verbose):
        train_rows = np.flatnonzero(folds != fold)
        valid_rows = np.flatnonzero(folds == fold)
        X_train, y_train = _take(X, train_rows), y[train_rows]
        w_train = None if weight is None else weight[train_rows]
        w_valid = None if weight is None else weight[valid_rows]
        init_train = None if init_score is None else init_score[train_rows]
        init_valid = None if init_score is None else init_score[valid_rows]
        if swap_augment:
            X_train, y_train, w_train, init_train = swap_copies(
                X_train, y_train, w_train, init_train, swap_features
            )
        X_valid = _take(X, valid_rows)
        booster = make_booster(name, params, seed=seed + fold)
        fit = booster.fit if engine is None else partial(engine.fit, booster)
        fit(
            X_train,
            y_train,
            w_train,
            eval_set=(X_valid, y[valid_rows], init_valid, w_valid),
            init_score=init_train,
        )
        oof[valid_rows] = booster.predict_proba(X_valid, init_valid)
        models.append(booster)
        if on_fold is not None:
            on_fold(fold, multiclass_log_loss(y[valid_rows], oof[valid_rows], w_valid))
    return FoldResult(oof, models)


def stack_rows(top: Matrix, bottom: Matrix) -> Matrix:
    """Rows of ``top`` then ``bottom`` (CSR when sparse, else a dense array)."""
    if sp.issparse(top):
        return sp.vstack([top, bottom]).tocsr()
    return np.vstack([top, bottom])
