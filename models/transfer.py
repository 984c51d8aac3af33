"""Transfer: how a model fitted on some sources scores battles from another.

Users train on their battles and predict on new ones (next month's votes,
another product's logs), so the honest estimate of accuracy is on a source
the model never saw. :func:`transfer_table` holds out each source family in
turn (and optional external sets), fits on the rest, and puts the model's
scores next to references fitted on the same training rows: the class prior,
the raw difference of answer lengths and a length-only logistic regression.

Decisive scores (:mod:`models.metrics`) use ``q = P(A) / (P(A) + P(B))`` on
the rows A or B won, so a source without ties (and a model trained with ties)
is judged by how well it tells the winner, not by its tie share. Source
families come from :func:`models.sources.source_families`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from features.battles import TIE, as_battles
from features.blocks.lengths import LengthsBlock
from features.errors import BattleFormatError, InvalidParameterError
from models.baselines import length_features
from models.folds import make_folds, prompt_groups
from models.label_shift import adjust_to_prior
from models.metrics import (
    decisive_auc,
    decisive_log_loss,
    length_difference_auc,
    multiclass_log_loss,
    tie_auc,
)
from models.sources import source_families

__all__ = [
    "TRANSFER_COLUMNS",
    "WITHIN_SET_COLUMNS",
    "FitPredict",
    "length_difference",
    "model_fit_predict",
    "predict_with_prior",
    "transfer_table",
    "within_set_cv",
]

TRANSFER_COLUMNS: tuple[str, ...] = (
    "source",
    "kind",
    "n",
    "n_train",
    "tie_rate",
    "log_loss",
    "prior_log_loss",
    "log_loss_own_prior",
    "own_prior_log_loss",
    "tie_auc",
    "decisive_auc",
    "length_auc",
    "length_lr_auc",
    "decisive_log_loss",
    "prior_decisive_log_loss",
    "length_lr_decisive_log_loss",
    "ok",
    "missed",
    "seconds",
)
"""Columns of :func:`transfer_table`, in order (see its Returns)."""


class FitPredict(Protocol):
    """Fit on ``train`` battles, return probabilities (n, 3) for ``test``.

    ``class_prior`` (A, B, tie shares) is the held-out source's own prior when
    the caller knows it; None predicts as fitted.
    """

    def __call__(
        self,
        train: pd.DataFrame,
        test: pd.DataFrame,
        class_prior: NDArray[np.float64] | None = None,
    ) -> NDArray[np.float64]: ...


def length_difference(battles: Any) -> NDArray[np.float64]:
    """Token count of answer A minus that of answer B, per battle.

    The count is the ``lengths`` block's tokenizer-free ``tokens`` (words,
    each CJK character one word, plus punctuation marks; all turns joined),
    the raw signal "the longer answer wins" with no model at all.

    Parameters
    ----------
    battles : DataFrame, list of dict or dict of lists
        Kaggle layout or canonical table.

    Returns
    -------
    ndarray of shape (n,)

    Examples
    --------
    >>> import pandas as pd
    >>> length_difference(pd.DataFrame({"id": ["1"], "prompt": [["q"]],
    ...     "response_a": [["Hello there."]], "response_b": [["Hi."]]})).tolist()
    [1.0]
    """
    table = as_battles(battles)
    matrix = LengthsBlock().transform(table)
    return np.asarray(matrix.values[:, matrix.columns.index("d_len_tokens")], float)


# -------------------------------------------------------- fitting a model
def predict_with_prior(
    model: Any, battles: Any, class_prior: ArrayLike | None = None
) -> NDArray[np.float64]:
    """``model.predict_proba(battles)``, moved to ``class_prior`` when given.

    This is the one place the transfer table sets a held-out source's prior.
    A model whose ``predict_proba`` takes ``class_prior=`` (``PreferenceModel``)
    applies it itself, so a model with a tie head apart from the direction
    moves only what it chooses; any other model with a ``train_prior_`` gets
    the label-shift re-weighting that ``PreferenceModel.fit_prior`` uses.

    Parameters
    ----------
    model : fitted estimator
        With ``predict_proba``.
    battles : DataFrame, list of dict or dict of lists
        The battles to predict.
    class_prior : array-like of shape (3,), default=None
        A, B, tie shares; None predicts as fitted.

    Returns
    -------
    ndarray of shape (n, 3)

    Raises
    ------
    InvalidParameterError
        A prior is given for a model that neither takes ``class_prior=`` nor
        has a ``train_prior_``.
    """
    if class_prior is None:
        return np.asarray(model.predict_proba(battles), dtype=np.float64)
    if "class_prior" in inspect.signature(model.predict_proba).parameters:
        return np.asarray(
            model.predict_proba(battles, class_prior=class_prior), dtype=np.float64
        )
    if not hasattr(model, "train_prior_"):
        raise InvalidParameterError(
            f"{type(model).__name__}.predict_proba takes no class_prior and the "
            "model has no train_prior_ to shift from. Pass class_prior=None or "
            "use a model that records its training prior."
        )
    proba = np.asarray(model.predict_proba(battles), dtype=np.float64)
    return adjust_to_prior(proba, model.train_prior_, class_prior)


def model_fit_predict(
    make_model: Callable[[], Any],
    *,
    fit_params: Mapping[str, Any] | None = None,
) -> FitPredict:
    """A :class:`FitPredict` from a model factory, fitting once per training set.

    :func:`transfer_table` asks for a held-out source twice (as fitted, then
    with its own class prior) with the same ``train`` object; the model fitted
    for the first call answers the second.

    Parameters
    ----------
    make_model : callable
        Returns a new unfitted model (``fit(battles, **fit_params)``,
        ``predict_proba``), e.g. ``lambda: PreferenceModel(n_folds=3)``.
    fit_params : dict, default=None
        Keyword arguments of every ``fit``, e.g. ``{"store": store}``.

    Returns
    -------
    FitPredict

    Examples
    --------
    >>> from models import PreferenceModel  # doctest: +SKIP
    >>> fit_predict = model_fit_predict(lambda: PreferenceModel(n_folds=3))
    """
    last: dict[str, Any] = {}
    params = dict(fit_params or {})

    def fit_predict(
        train: pd.DataFrame,
        test: pd.DataFrame,
        class_prior: NDArray[np.float64] | None = None,
    ) -> NDArray[np.float64]:
        if last.get("train") is not train:
            last.clear()
            model = make_model()
            model.fit(train, **params)
            last.update(train=train, model=model)
        return predict_with_prior(last["model"], test, class_prior)

    return fit_predict


# ------------------------------------------------------------------ table
def _prior_proba(prior: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    return np.tile(prior, (n, 1))


def _length_lr_proba(
    X_train: NDArray, y_train: NDArray, X_test: NDArray
) -> NDArray[np.float64]:
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    proba = np.zeros((len(X_test), 3))
    proba[:, model.classes_] = model.predict_proba(X_test)
    return proba


def _verdict(row: dict[str, Any]) -> tuple[bool | None, str]:
    """Whether the model meets the transfer bar on a held-out source, and why not.

    Bar: decisive AUC at least the raw length difference's, and 3-class log
    loss at most the training prior's; a source without ties is judged by the
    decisive log loss against the training prior's instead.
    """
    auc, length_auc = row["decisive_auc"], row["length_auc"]
    if row["tie_rate"] == 0:
        loss, reference, what = (
            row["decisive_log_loss"],
            row["prior_decisive_log_loss"],
            "decisive log loss",
        )
    else:
        loss, reference, what = row["log_loss"], row["prior_log_loss"], "log loss"
    if any(np.isnan(v) for v in (auc, length_auc, loss, reference)):
        return None, "not judged: the decisive rows do not hold both winners"
    missed = []
    if auc < length_auc:
        missed.append(f"decisive AUC {auc:.4f} < raw length {length_auc:.4f}")
    if loss > reference:
        missed.append(f"{what} {loss:.4f} > training prior {reference:.4f}")
    return not missed, "; ".join(missed)


def _source_row(
    name: str,
    kind: str,
    fit_predict: FitPredict,
    train: pd.DataFrame,
    test: pd.DataFrame,
    length_train: NDArray,
    length_test: NDArray,
    difference_test: NDArray,
) -> dict[str, Any]:
    y_train = train["label"].to_numpy(dtype=np.int64)
    y_test = test["label"].to_numpy(dtype=np.int64)
    prior = np.bincount(y_train, minlength=3) / len(y_train)
    started = time.perf_counter()
    proba = fit_predict(train, test)
    own_counts = np.bincount(y_test, minlength=3)
    row: dict[str, Any] = {
        "source": name,
        "kind": kind,
        "n": len(test),
        "n_train": len(train),
        "tie_rate": float(np.mean(y_test == TIE)),
        "log_loss": multiclass_log_loss(y_test, proba),
        "prior_log_loss": multiclass_log_loss(y_test, _prior_proba(prior, len(test))),
        "log_loss_own_prior": float("nan"),
        "own_prior_log_loss": float("nan"),
        "tie_auc": tie_auc(y_test, proba),
    }
    # A source's own prior is given only when it has ties (and both winners):
    # a zero share cannot be shifted to, and a tie-free source is judged by
    # its decisive rows anyway.
    if (own_counts > 0).all():
        own = own_counts / len(y_test)
        with_own = fit_predict(train, test, class_prior=own)
        row["log_loss_own_prior"] = multiclass_log_loss(y_test, with_own)
        row["own_prior_log_loss"] = multiclass_log_loss(
            y_test, _prior_proba(own, len(test))
        )
    row["seconds"] = time.perf_counter() - started
    length_proba = _length_lr_proba(length_train, y_train, length_test)
    row.update(
        {
            "decisive_auc": decisive_auc(y_test, proba),
            "length_auc": length_difference_auc(y_test, difference_test),
            "length_lr_auc": decisive_auc(y_test, length_proba),
            "decisive_log_loss": decisive_log_loss(y_test, proba),
            "prior_decisive_log_loss": decisive_log_loss(
                y_test, _prior_proba(prior, len(test))
            ),
            "length_lr_decisive_log_loss": decisive_log_loss(y_test, length_proba),
        }
    )
    row["ok"], row["missed"] = _verdict(row)
    return {column: row[column] for column in TRANSFER_COLUMNS}


def _labelled(
    battles: Any, what: str, *, need_source: bool, caller: str = "transfer_table"
) -> pd.DataFrame:
    table = as_battles(battles)
    missing = [
        c for c in ("label", *(["source"] if need_source else [])) if c not in table
    ]
    if missing:
        raise BattleFormatError(
            f"{caller}: {what} has no {' or '.join(map(repr, missing))} "
            "column. Pass labelled battles (Kaggle targets or 'label')"
            + (
                " with a 'source' column naming the set each battle came from."
                if need_source
                else "."
            )
        )
    return table


def transfer_table(
    battles: Any,
    fit_predict: FitPredict,
    *,
    external: Mapping[str, Any] | None = None,
    holdout: Sequence[str] | None = None,
    verbose: bool = False,
) -> pd.DataFrame:
    """Score each source family held out of fit, next to references fitted alike.

    For every held-out family, ``fit_predict`` gets the battles of all the
    other families as ``train`` (everything the model learns, stateful
    feature blocks included, must come from it) and the family as ``test``;
    each external set is predicted by a fit on all of ``battles``.

    Parameters
    ----------
    battles : DataFrame, list of dict or dict of lists
        Labelled battles with a ``source`` column (families: the part of the
        name before ``:``, see :func:`source_families`).
    fit_predict : FitPredict
        ``fit_predict(train, test, class_prior=None) -> proba (n, 3)``; see
        :func:`model_fit_predict` to build one from a model factory.
    external : dict of str to battles, default=None
        Named labelled sets never in ``battles`` (e.g. arena votes).
    holdout : sequence of str, default=None
        Families to hold out; None holds out each in turn, ``[]`` none (only
        the external sets).
    verbose : bool, default=False
        A progress bar over the held-out sources.

    Returns
    -------
    pandas.DataFrame
        One row per held-out source, columns :data:`TRANSFER_COLUMNS`:

        - ``source``, ``kind`` (``"family"`` or ``"external"``), ``n``,
          ``n_train``, ``tie_rate``;
        - ``log_loss``: 3-class log loss of the model; ``prior_log_loss``:
          of the training rows' class prior;
        - ``log_loss_own_prior``: of the model given the held-out source's
          own class prior (``class_prior=``), and ``own_prior_log_loss``: of
          that prior alone; NaN for a source without ties; ``tie_auc``: how
          well P(tie) ranks the ties (:func:`tie_auc`; NaN without ties);
        - ``decisive_auc`` and ``decisive_log_loss`` of the model;
          ``length_auc``: of the raw token-count difference;
          ``length_lr_auc`` and ``length_lr_decisive_log_loss``: of a
          length-only logistic regression fitted on the training rows;
          ``prior_decisive_log_loss``: of the training prior;
        - ``ok``: decisive AUC >= ``length_auc`` and log loss <=
          ``prior_log_loss`` (decisive log loss <= ``prior_decisive_log_loss``
          for a source without ties); None when it cannot be judged;
          ``missed``: what fell short;
        - ``seconds``: fit and predict time of ``fit_predict``.

    Raises
    ------
    BattleFormatError
        ``battles`` (or an external set) has no labels, or ``battles`` has no
        ``source`` column.
    InvalidParameterError
        Fewer than two families, or ``holdout`` names an unknown family.

    Examples
    --------
    >>> from models import PreferenceModel  # doctest: +SKIP
    >>> fit_predict = model_fit_predict(lambda: PreferenceModel(n_folds=3))
    >>> transfer_table(corpus, fit_predict, external={"arena": arena})  # doctest: +SKIP
    """
    table = _labelled(battles, "battles", need_source=True)
    families = source_families(table["source"])
    names = sorted(set(families))
    if len(names) < 2:
        raise InvalidParameterError(
            f"transfer_table needs battles from at least 2 source families to hold "
            f"one out; got {names!r}. Add battles from another source, or score "
            "an external set with a model fitted on these."
        )
    chosen = names if holdout is None else list(holdout)
    unknown = [name for name in chosen if name not in names]
    if unknown:
        raise InvalidParameterError(
            f"transfer_table: holdout names unknown source families {unknown!r}; "
            f"the families are {names!r}."
        )
    externals = {
        name: _labelled(frame, f"external set {name!r}", need_source=False)
        for name, frame in (external or {}).items()
    }
    lengths = length_features(table)
    difference = length_difference(table)
    jobs = [(name, "family") for name in chosen] + [
        (name, "external") for name in externals
    ]
    rows = []
    for name, kind in tqdm(
        jobs, desc="held-out sources", unit="source", disable=not verbose
    ):
        if kind == "family":
            test_mask = families == name
            rows.append(
                _source_row(
                    name,
                    kind,
                    fit_predict,
                    table[~test_mask],
                    table[test_mask],
                    lengths[~test_mask],
                    lengths[test_mask],
                    difference[test_mask],
                )
            )
        else:
            test = externals[name]
            rows.append(
                _source_row(
                    name,
                    kind,
                    fit_predict,
                    table,
                    test,
                    lengths,
                    length_features(test),
                    length_difference(test),
                )
            )
    return pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS))


# ---------------------------------------------------------------- ceiling
WITHIN_SET_COLUMNS: tuple[str, ...] = (
    "seed",
    "n",
    "n_folds",
    "log_loss",
    "decisive_auc",
    "decisive_log_loss",
    "length_auc",
    "seconds",
)
"""Columns of :func:`within_set_cv`, in order."""


def within_set_cv(
    battles: Any,
    fit_predict: FitPredict,
    *,
    n_folds: int = 5,
    seeds: Sequence[int] = (0, 1, 2),
    verbose: bool = False,
) -> pd.DataFrame:
    """Cross-validate a model *inside* one labelled set: what its own battles teach.

    The transfer table fits on other sources; this fits on ``n_folds - 1``
    prompt-grouped folds of the set itself and scores the held-out fold, once
    per seed of the fold assignment. The gap between the two says how much of
    the set's signal is its own (learnable only from battles like it) rather
    than carried over from other sources.

    Parameters
    ----------
    battles : DataFrame, list of dict or dict of lists
        Labelled battles of one set.
    fit_predict : FitPredict
        As for :func:`transfer_table`; ``class_prior`` is never passed.
    n_folds : int, default=5
        Folds per seed (grouped by prompt, stratified by label).
    seeds : sequence of int, default=(0, 1, 2)
        Seeds of the fold assignment; one row each.
    verbose : bool, default=False
        A progress bar over the fits.

    Returns
    -------
    pandas.DataFrame
        One row per seed, columns :data:`WITHIN_SET_COLUMNS`: the out-of-fold
        3-class log loss, decisive AUC and decisive log loss of the model,
        and the raw length difference's AUC on the same rows.

    Raises
    ------
    BattleFormatError
        ``battles`` has no labels.
    InvalidParameterError
        Too few prompts for ``n_folds`` folds, or no seeds.
    """
    table = _labelled(
        battles, "battles", need_source=False, caller="within_set_cv"
    ).reset_index(drop=True)
    if not len(seeds):
        raise InvalidParameterError("within_set_cv needs at least one seed; got none.")
    labels = table["label"].to_numpy(dtype=np.int64)
    groups = prompt_groups(table)
    length_auc = length_difference_auc(labels, length_difference(table))
    rows = []
    progress = tqdm(
        total=len(seeds) * n_folds,
        desc="within-set fits",
        unit="fit",
        disable=not verbose,
    )
    with progress:
        for seed in seeds:
            folds = make_folds(labels, groups, n_folds=n_folds, seed=int(seed))
            proba = np.zeros((len(table), 3))
            started = time.perf_counter()
            for fold in range(n_folds):
                test = folds == fold
                proba[test] = fit_predict(
                    table[~test].reset_index(drop=True),
                    table[test].reset_index(drop=True),
                )
                progress.update()
            rows.append(
                {
                    "seed": int(seed),
                    "n": len(table),
                    "n_folds": n_folds,
                    "log_loss": multiclass_log_loss(labels, proba),
                    "decisive_auc": decisive_auc(labels, proba),
                    "decisive_log_loss": decisive_log_loss(labels, proba),
                    "length_auc": length_auc,
                    "seconds": time.perf_counter() - started,
                }
            )
    return pd.DataFrame(rows, columns=list(WITHIN_SET_COLUMNS))
