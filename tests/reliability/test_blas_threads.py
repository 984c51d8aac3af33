"""The small solvers give bit-identical results whatever the BLAS thread count.

The stacker's blend and logistic regression, the temperature and the style
anchor minimise sums over every training row. With several BLAS threads,
OpenBLAS splits such a sum (``X.T @ v``, ``ddot``) between threads and adds
the partial sums in another order than one thread does, so the last bits of
the solution moved with the thread count (1.8e-13 in the stacked out-of-fold
probabilities). A process's BLAS thread count is not always its own choice:
a Dask ``LocalCluster`` sets ``OPENBLAS_NUM_THREADS=1`` in the environment
that later child processes inherit. Each test below fits under one BLAS
thread and under four (``threadpoolctl`` grants four even on fewer cores)
and asserts exact equality.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from models import PreferenceModel
from models.anchor import StyleAnchor
from models.calibration import TemperatureScaler
from models.metrics import log_softmax
from models.stacking import BoosterStacker
from pipelines.make_demo_data import make_demo_battles

# Large enough that OpenBLAS splits the row sums between threads.
N_ROWS = 20_000
THREAD_COUNTS = (1, 4)


def _under_each_thread_count(fit):
    """``{threads: fit()}``, each call run with that many BLAS threads."""
    results = {}
    for threads in THREAD_COUNTS:
        with threadpool_limits(limits=threads, user_api="blas"):
            results[threads] = fit()
    return results


def _labels_and_probas(seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(N_ROWS, 3))
    cumulative = np.exp(log_softmax(logits)).cumsum(axis=1)
    labels = (cumulative[:, :-1] < rng.random((N_ROWS, 1))).sum(axis=1)
    probas = [
        np.exp(log_softmax((logits + noise * rng.normal(size=logits.shape)) * sharp))
        for noise, sharp in ((0.8, 1.6), (1.2, 0.7), (2.0, 1.0))
    ]
    return labels, probas


def test_four_blas_threads_are_granted_so_the_comparison_means_something():
    with threadpool_limits(limits=4, user_api="blas"):
        counts = [
            i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
        ]
    assert counts and set(counts) == {4}


@pytest.mark.parametrize("method", ["blend", "logreg"])
def test_stacker_fit_does_not_depend_on_the_blas_thread_count(method):
    labels, probas = _labels_and_probas()
    fits = _under_each_thread_count(
        lambda: BoosterStacker(method=method).fit(probas, labels)
    )

    one, four = fits.values()
    assert one.method_ == method
    for name in ("weights_", "coef_", "intercept_"):
        first, second = getattr(one, name), getattr(four, name)
        assert (first is None) == (second is None)
        if first is not None:
            np.testing.assert_array_equal(first, second)
    assert one.oof_log_loss_ == four.oof_log_loss_
    np.testing.assert_array_equal(one.predict_proba(probas), four.predict_proba(probas))


@pytest.mark.parametrize("per_class_bias", [False, True])
def test_temperature_does_not_depend_on_the_blas_thread_count(per_class_bias):
    labels, probas = _labels_and_probas(seed=1)
    logits = np.log(probas[0])
    fits = _under_each_thread_count(
        lambda: TemperatureScaler(per_class_bias=per_class_bias).fit(logits, labels)
    )

    one, four = fits.values()
    assert one.temperature_ == four.temperature_
    np.testing.assert_array_equal(one.bias_, four.bias_)


def test_anchor_does_not_depend_on_the_blas_thread_count():
    rng = np.random.default_rng(2)
    columns = ["d_len_tokens_tanh", "d_style_bold_norm", "d_flag_refusal"]
    X = rng.normal(size=(N_ROWS, 3))
    margin = 1.2 * X[:, 0] + 0.4 * X[:, 1] - 0.8 * X[:, 2]
    labels = np.where(
        rng.random(N_ROWS) < 0.2, 2, (rng.random(N_ROWS) >= 1 / (1 + np.exp(-margin)))
    ).astype(np.int64)
    fits = _under_each_thread_count(lambda: StyleAnchor().fit(X, columns, labels))

    one, four = fits.values()
    np.testing.assert_array_equal(one.coef_, four.coef_)
    assert one.tie_logit_ == four.tie_logit_
    np.testing.assert_array_equal(one.log_proba(X, columns), four.log_proba(X, columns))


def _booster_params(sampling: bool) -> dict:
    sampled = {
        "lightgbm": {
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "feature_fraction": 0.8,
        },
        "xgboost": {"subsample": 0.8, "colsample_bytree": 0.8},
    }
    return {
        "lightgbm": {
            "num_boost_round": 30,
            "num_threads": 1,
            **(sampled["lightgbm"] if sampling else {}),
        },
        "xgboost": {
            "num_boost_round": 30,
            "nthread": 1,
            **(sampled["xgboost"] if sampling else {}),
        },
    }


# Each case moved in the last bits with the BLAS thread count before the
# solvers ran on one thread; "auto" is the test_reproducibility model.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "sampling"),
    [
        ({"stack_method": "auto"}, True),
        ({"stack_method": "logreg", "per_class_bias": True}, True),
        ({"anchor": True}, False),
    ],
    ids=["auto", "logreg-bias", "anchor"],
)
def test_model_oof_and_predictions_do_not_depend_on_the_blas_thread_count(
    settings, sampling
):
    """The failure seen in a full test run, reproduced in one process."""
    battles = make_demo_battles(n_rows=300, seed=12)
    new = make_demo_battles(n_rows=40, seed=13)
    blocks = {"lengths": {}, "flags": {}}
    if settings.get("anchor"):
        blocks["style"] = {}

    def fit():
        return PreferenceModel(
            blocks=blocks,
            boosters=("lightgbm", "xgboost"),
            booster_params=_booster_params(sampling),
            n_folds=3,
            seed=0,
            **settings,
        ).fit(battles)

    one, four = _under_each_thread_count(fit).values()
    for name in one.boosters:
        np.testing.assert_array_equal(
            one.fold_results_[name].oof, four.fold_results_[name].oof
        )
    np.testing.assert_array_equal(one.oof_proba_, four.oof_proba_)
    np.testing.assert_array_equal(one.predict_proba(new), four.predict_proba(new))
