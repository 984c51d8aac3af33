"""Tests for models.calibration: temperature scaling of out-of-fold logits."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import scipy.sparse
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from features.errors import InvalidParameterError
from models.calibration import TemperatureScaler
from models.metrics import log_softmax, multiclass_log_loss

N_CLASSES = 3


def _sample_labels(
    logits: np.ndarray, rng: np.random.Generator, temperature: float, bias=0.0
) -> np.ndarray:
    """Draw one label per row from softmax(logits / temperature + bias)."""
    proba = np.exp(log_softmax(logits / temperature + bias))
    cumulative = proba.cumsum(axis=1)
    return (cumulative[:, :-1] < rng.random((len(proba), 1))).sum(axis=1)


def _planted(
    temperature: float, bias=0.0, n_samples: int = 20_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n_samples, N_CLASSES))
    return logits, _sample_labels(logits, rng, temperature, bias)


@pytest.fixture(scope="module")
def overconfident() -> tuple[np.ndarray, np.ndarray]:
    return _planted(temperature=2.5, n_samples=3_000, seed=1)


# --- fitting behaviour ----------------------------------------------------------


@pytest.mark.parametrize("true_temperature", [2.5, 0.6])
def test_fit_recovers_planted_temperature(true_temperature):
    logits, labels = _planted(true_temperature)
    scaler = TemperatureScaler().fit(logits, labels)
    assert scaler.temperature_ == pytest.approx(true_temperature, rel=0.05)
    np.testing.assert_array_equal(scaler.bias_, np.zeros(N_CLASSES))
    assert scaler.log_loss_after_ < scaler.log_loss_before_


def test_fit_never_increases_log_loss_on_calibrated_logits():
    logits, labels = _planted(temperature=1.0, n_samples=2_000, seed=3)
    scaler = TemperatureScaler(per_class_bias=True).fit(logits, labels)
    assert scaler.log_loss_after_ <= scaler.log_loss_before_
    assert scaler.log_loss_before_ == pytest.approx(
        multiclass_log_loss(labels, np.exp(log_softmax(logits)))
    )


def test_per_class_bias_recovers_planted_bias():
    true_bias = np.array([0.0, 0.5, -0.7])
    logits, labels = _planted(temperature=1.5, bias=true_bias)
    scaler = TemperatureScaler(per_class_bias=True).fit(logits, labels)
    assert scaler.temperature_ == pytest.approx(1.5, rel=0.05)
    assert scaler.bias_[0] == 0.0
    np.testing.assert_allclose(scaler.bias_, true_bias, atol=0.1)


def test_predict_proba_rows_sum_to_one(overconfident):
    logits, labels = overconfident
    proba = TemperatureScaler().fit(logits, labels).predict_proba(logits * 50)
    assert proba.shape == logits.shape
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


def test_transform_is_log_of_predict_proba_and_keeps_argmax(overconfident):
    logits, labels = overconfident
    scaler = TemperatureScaler().fit(logits, labels)
    calibrated = scaler.transform(logits)
    np.testing.assert_allclose(np.exp(calibrated), scaler.predict_proba(logits))
    np.testing.assert_array_equal(calibrated.argmax(axis=1), logits.argmax(axis=1))
    np.testing.assert_allclose(
        calibrated, log_softmax(logits / scaler.temperature_), atol=1e-12
    )


def test_integer_sample_weight_equals_repeating_rows(overconfident):
    logits, labels = overconfident
    counts = np.random.default_rng(0).integers(0, 3, size=len(labels))
    weighted = TemperatureScaler().fit(logits, labels, sample_weight=counts)
    repeated = TemperatureScaler().fit(
        np.repeat(logits, counts, axis=0), np.repeat(labels, counts)
    )
    assert weighted.temperature_ == pytest.approx(repeated.temperature_, rel=1e-6)


def test_fit_does_not_modify_caller_arrays(overconfident):
    logits, labels = overconfident
    logits_before, labels_before = logits.copy(), labels.copy()
    TemperatureScaler(per_class_bias=True).fit(logits, labels)
    np.testing.assert_array_equal(logits, logits_before)
    np.testing.assert_array_equal(labels, labels_before)


def test_max_iter_too_small_warns_with_a_fix(overconfident):
    logits, labels = overconfident
    with pytest.warns(ConvergenceWarning, match="did not converge.*Increase max_iter"):
        TemperatureScaler(per_class_bias=True, max_iter=1, tol=1e-12).fit(
            logits, labels
        )


# --- persistence ------------------------------------------------------------------


@pytest.mark.parametrize("per_class_bias", [False, True])
def test_from_dict_round_trip_gives_identical_predictions(
    overconfident, per_class_bias
):
    logits, labels = overconfident
    scaler = TemperatureScaler(per_class_bias=per_class_bias).fit(logits, labels)
    state = json.loads(json.dumps(scaler.to_dict()))
    rebuilt = TemperatureScaler.from_dict(state)
    np.testing.assert_array_equal(
        rebuilt.predict_proba(logits), scaler.predict_proba(logits)
    )
    assert rebuilt.get_params() == scaler.get_params()
    assert rebuilt.log_loss_after_ == scaler.log_loss_after_
    np.testing.assert_array_equal(rebuilt.classes_, np.arange(N_CLASSES))


def test_from_dict_rejects_state_of_another_estimator(overconfident):
    state = TemperatureScaler().fit(*overconfident).to_dict()
    state["estimator"] = "BoosterStacker"
    with pytest.raises(ValueError, match="expected 'TemperatureScaler' format 1"):
        TemperatureScaler.from_dict(state)


def test_from_dict_rejects_non_dict_state():
    with pytest.raises(TypeError, match="expects a dict from to_dict"):
        TemperatureScaler.from_dict([1.0])


def test_from_dict_rejects_missing_field(overconfident):
    state = TemperatureScaler().fit(*overconfident).to_dict()
    del state["bias"]
    with pytest.raises(ValueError, match="missing or has a bad field.*'bias'"):
        TemperatureScaler.from_dict(state)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("temperature", -1.0, r"'temperature' of TemperatureScaler must be > 0"),
        ("bias", [0.0], r"'bias' of saved TemperatureScaler must be a finite list"),
    ],
)
def test_from_dict_rejects_bad_values(overconfident, field, value, match):
    state = TemperatureScaler().fit(*overconfident).to_dict()
    state[field] = value
    with pytest.raises(ValueError, match=match):
        TemperatureScaler.from_dict(state)


# --- validation errors ----------------------------------------------------------


@pytest.mark.parametrize("method", ["predict_proba", "transform", "to_dict"])
def test_methods_before_fit_raise_not_fitted(method):
    args = () if method == "to_dict" else (np.zeros((2, 3)),)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        getattr(TemperatureScaler(), method)(*args)


@pytest.mark.parametrize(
    ("logits", "match"),
    [
        (np.zeros(4), r"must be a 2-D array .*got 1-D"),
        (np.zeros((4, 1)), r"has 1 feature\(s\) .* minimum of 2"),
        (np.zeros((0, 3)), r"has 0 sample\(s\)"),
        (np.array([[0.0, np.nan], [0.0, 1.0]]), r"NaN or infinity in row\(s\) \[0\]"),
        (np.array([[0.0, 1.0], [-np.inf, 1.0]]), r"NaN or infinity in row\(s\) \[1\]"),
        (np.array([[1j, 0.0], [0.0, 1.0]]), "Complex data not supported"),
    ],
)
def test_fit_rejects_malformed_logits(logits, match):
    with pytest.raises(ValueError, match=match):
        TemperatureScaler().fit(logits, np.zeros(len(logits), dtype=int))


def test_fit_rejects_non_numeric_logits():
    logits = np.array([[{"a": 1}, 0.0], [0.0, 1.0]], dtype=object)
    with pytest.raises(TypeError, match="logits must hold numbers"):
        TemperatureScaler().fit(logits, [0, 1])


def test_fit_rejects_sparse_logits():
    with pytest.raises(TypeError, match=r"sparse matrix.*\.toarray\(\)"):
        TemperatureScaler().fit(scipy.sparse.csr_matrix(np.eye(3)), [0, 1, 2])


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (None, "requires y to be passed"),
        ([0, 1], "inconsistent numbers of samples"),
        ([[0], [1], [2]], "y should be a 1d array"),
        ([0, 1, 3], r"integer labels 0 \.\. 2 .*got \[3\]"),
        ([0, 1, 0.5], r"integer labels 0 \.\. 2 .*got \[0\.5\]"),
        (["a", "b", "c"], r"integer labels 0 \.\. 2 \(could not convert"),
    ],
)
def test_fit_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        TemperatureScaler().fit(np.eye(3), labels)


@pytest.mark.parametrize(
    ("sample_weight", "match"),
    [
        ([1.0, 1.0], r"sample_weight has shape \(2,\) but expected \(3,\)"),
        ([1.0, -1.0, 1.0], "finite and non-negative"),
        ([0.0, 0.0, 0.0], "sums to zero"),
    ],
)
def test_fit_rejects_bad_sample_weight(sample_weight, match):
    with pytest.raises(ValueError, match=match):
        TemperatureScaler().fit(np.eye(3), [0, 1, 2], sample_weight=sample_weight)


def test_predict_rejects_other_number_of_classes(overconfident):
    scaler = TemperatureScaler().fit(*overconfident)
    with pytest.raises(
        ValueError, match="X has 2 features, but TemperatureScaler is expecting 3"
    ):
        scaler.predict_proba(np.zeros((4, 2)))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"max_iter": 0},
            r"The 'max_iter' parameter of TemperatureScaler must be an int in "
            r"\[1, inf\)\. Got 0\.",
        ),
        ({"max_iter": 2.5}, r"'max_iter' parameter .* Got 2\.5\."),
        ({"max_iter": True}, r"'max_iter' parameter .* Got True\."),
        (
            {"tol": 0.0},
            r"The 'tol' parameter of TemperatureScaler must be a float in \(0, 1\)\. "
            r"Got 0\.0\.",
        ),
        (
            {"per_class_bias": "yes"},
            r"'per_class_bias' parameter of TemperatureScaler must be a bool\. "
            r"Got 'yes'\.",
        ),
    ],
)
def test_fit_rejects_bad_parameters(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        TemperatureScaler(**params).fit(np.eye(3), [0, 1, 2])


# --- scikit-learn contract -----------------------------------------------------


def test_clone_gives_equal_params():
    scaler = TemperatureScaler(per_class_bias=True, max_iter=7, tol=1e-6)
    assert clone(scaler).get_params() == scaler.get_params()


def test_get_params_and_set_params_round_trip():
    scaler = TemperatureScaler()
    assert scaler.get_params() == {
        "per_class_bias": False,
        "max_iter": 100,
        "tol": 1e-10,
    }
    assert scaler.set_params(per_class_bias=True) is scaler
    assert scaler.per_class_bias is True


def test_fit_returns_self_and_sets_classes_in_column_order(overconfident):
    scaler = TemperatureScaler()
    assert scaler.fit(*overconfident) is scaler
    np.testing.assert_array_equal(scaler.classes_, [0, 1, 2])
    assert scaler.n_classes_ == scaler.n_features_in_ == N_CLASSES


# Generic checks feed generic data: X has any number of columns and y has labels
# that need not index a column, while here y must be a column index (0..K-1).
_LABELS_OUTSIDE_COLUMNS = (
    "generic data has labels >= the number of columns; TemperatureScaler needs "
    "labels 0..n_classes-1 that index the logit columns"
)
_EXPECTED_FAILED_CHECKS = {
    name: _LABELS_OUTSIDE_COLUMNS
    for name in (
        "check_estimators_overwrite_params",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_sample_weights_pandas_series",
        "check_sample_weights_not_an_array",
        "check_sample_weights_shape",
        "check_sample_weights_not_overwritten",
    )
}
# Not a failure: the project never pickles (models are saved with to_dict).
_SKIPPED_CHECKS = {"check_estimators_pickle": "persistence is to_dict/from_dict"}


def _check_name(check) -> str:
    while isinstance(check, partial):
        check = check.func
    return check.__name__


@parametrize_with_checks(
    [TemperatureScaler(), TemperatureScaler(per_class_bias=True)],
    expected_failed_checks=lambda estimator: _EXPECTED_FAILED_CHECKS,
    xfail_strict=True,
)
def test_scikit_learn_estimator_checks(estimator, check):
    if _check_name(check) in _SKIPPED_CHECKS:
        pytest.skip(_SKIPPED_CHECKS[_check_name(check)])
    check(estimator)
