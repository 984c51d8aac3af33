"""Tests of the parameter checker: each constraint kind, the message, the tables."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone

from features.blocks.embeddings import EmbeddingsBlock
from features.blocks.flags import FlagsBlock
from features.blocks.lengths import LengthsBlock
from features.blocks.similarity import SimilarityBlock
from features.blocks.style import StyleBlock
from features.blocks.tfidf import TfidfBlock
from features.blocks.word2vec import Word2VecBlock
from features.errors import InvalidParameterError
from features.validation import (
    Interval,
    Options,
    Predicate,
    check_parameter,
    check_parameters,
    describe,
)
from models.calibration import TemperatureScaler
from models.preference import PreferenceModel
from models.stacking import BoosterStacker

VALIDATED_CLASSES = [
    EmbeddingsBlock,
    FlagsBlock,
    LengthsBlock,
    SimilarityBlock,
    StyleBlock,
    TfidfBlock,
    Word2VecBlock,
    TemperatureScaler,
    BoosterStacker,
    PreferenceModel,
]


class _Smoother(BaseEstimator):
    """A toy estimator with a table and a combination hook."""

    _allowed_values = {
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "mode": [Options(("fast", "exact")), None],
        "low": [Interval(Integral, 0, None)],
        "high": [Interval(Integral, 0, None)],
    }

    def __init__(self, *, alpha=1.0, mode="fast", low=0, high=1):
        self.alpha = alpha
        self.mode = mode
        self.low = low
        self.high = high

    def _check_parameter_combinations(self):
        self.combinations_checked_ = True
        if self.low > self.high:
            raise InvalidParameterError(
                f"_Smoother has low={self.low} above high={self.high}; lower 'low'."
            )


# --- Interval -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "value", "allowed"),
    [
        (Interval(Integral, 1, None), 1, True),
        (Interval(Integral, 1, None), np.int64(7), True),
        (Interval(Integral, 1, None), 0, False),
        (Interval(Integral, 1, None), 2.0, False),
        (Interval(Integral, 1, None), True, False),
        (Interval(Integral, 1, None), "3", False),
        (Interval(Integral, 0, 10, closed="left"), 10, False),
        (Interval(Integral, 0, 10, closed="right"), 0, False),
        (Interval(Integral, 0, 10, closed="right"), 10, True),
        (Interval(Real, 0, 1, closed="neither"), 0.5, True),
        (Interval(Real, 0, 1, closed="neither"), 1, False),
        (Interval(Real, 0, 1, closed="both"), 1, True),
        (Interval(Real, 0, 1), np.float32(0.25), True),
        (Interval(Real, 0, None), float("inf"), False),
        (Interval(Real, None, None), float("-inf"), False),
        (Interval(Real, None, None), float("nan"), False),
        (Interval(Real, None, None), np.bool_(True), False),
    ],
)
def test_interval_allows_numbers_of_its_kind_within_its_bounds(
    interval, value, allowed
):
    assert interval.is_satisfied_by(value) is allowed


@pytest.mark.parametrize(
    ("interval", "words"),
    [
        (Interval(Integral, 1, None), "an int in [1, inf)"),
        (Interval(Integral, None, 5, closed="left"), "an int in (-inf, 5)"),
        (Interval(Real, 0, 1, closed="right"), "a float in (0, 1]"),
        (Interval(Real, 0, None, closed="neither"), "a float in (0, inf)"),
    ],
)
def test_interval_describes_itself_in_interval_notation(interval, words):
    assert str(interval) == words


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((int, 0, 1), {}, "kind must be Integral or Real"),
        ((Real, 0, 1), {"closed": "open"}, "closed must be 'both'"),
        ((Real, 2, 1), {}, "low 2 is above high 1"),
    ],
)
def test_interval_refuses_a_malformed_definition(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Interval(*args, **kwargs)


# --- Options, types, None and predicates ----------------------------------------


@pytest.mark.parametrize(
    ("options", "value", "allowed"),
    [
        (("auto", "blend"), "blend", True),
        (("auto", "blend"), np.str_("auto"), True),
        (("auto", "blend"), "mean", False),
        ((False, True), np.bool_(True), True),
        ((False, True), 1, False),
        ((None, "8bit"), 0, False),
        ((None, "8bit"), False, False),
        ((None, "8bit"), None, True),
        ((-1,), -1, True),
        ((-1,), np.int64(-1), True),
        ((-1,), True, False),
        ((1,), np.ones(3), False),
    ],
)
def test_options_compare_values_with_their_type(options, value, allowed):
    assert Options(options).is_satisfied_by(value) is allowed


def test_options_describe_one_value_or_a_list():
    assert str(Options(("int8",))) == "'int8'"
    assert str(Options(("a", True, None))) == "one of 'a', True, None"
    with pytest.raises(ValueError, match="at least one allowed value"):
        Options(())


@pytest.mark.parametrize(
    ("constraints", "value", "allowed"),
    [
        ([bool], True, True),
        ([bool], np.bool_(False), True),
        ([bool], 1, False),
        ([int], True, False),
        ([int], 3, True),
        ([Mapping], {"a": 1}, True),
        ([Mapping], [("a", 1)], False),
        ([None], None, True),
        ([None], 0, False),
        ([str, None], "x", True),
    ],
)
def test_types_and_none_allow_their_instances_and_never_take_bools_for_numbers(
    constraints, value, allowed
):
    if allowed:
        check_parameter("p", value, constraints, owner="Owner")
        return
    with pytest.raises(InvalidParameterError, match="The 'p' parameter of Owner"):
        check_parameter("p", value, constraints, owner="Owner")


def test_predicate_uses_its_words_and_treats_a_failing_test_as_not_allowed():
    positive = Predicate(lambda value: value > 0, "a positive number")
    assert positive.is_satisfied_by(2)
    assert not positive.is_satisfied_by(-2)
    assert not positive.is_satisfied_by("2")  # "2" > 0 raises TypeError
    assert str(positive) == "a positive number"


def test_describe_joins_the_allowed_values_with_or():
    assert describe([bool]) == "a bool"
    assert describe([Interval(Integral, 1, None), None]) == "an int in [1, inf) or None"
    assert (
        describe([Interval(Integral, 1, None), Options((-1,)), None])
        == "an int in [1, inf), -1 or None"
    )
    assert describe([Mapping, str]) == "a Mapping or a str"


def test_a_table_entry_that_is_no_constraint_is_a_bug():
    with pytest.raises(TypeError, match="must be a Constraint, a type or None"):
        describe(["fast"])


# --- the message and the checker -------------------------------------------------


def test_message_names_parameter_owner_allowed_values_and_value():
    with pytest.raises(InvalidParameterError) as caught:
        check_parameters(_Smoother(alpha=-1.0))
    assert str(caught.value) == (
        "The 'alpha' parameter of _Smoother must be a float in (0, inf). Got -1.0."
    )


def test_message_cuts_a_long_value():
    with pytest.raises(InvalidParameterError, match=r"Got 'xxxx.*x\.\.\.\.$") as caught:
        check_parameter("mode", "x" * 1000, [Options(("fast",))], owner="Owner")
    assert len(str(caught.value)) < 300


def test_a_wrong_type_is_both_a_type_error_and_a_value_error():
    for error in (TypeError, ValueError):
        with pytest.raises(error, match=r"'mode' parameter of _Smoother .* Got 3\."):
            check_parameters(_Smoother(mode=3))


def test_checker_checks_the_table_then_the_combinations():
    smoother = _Smoother(low=1, high=3)
    check_parameters(smoother)
    assert smoother.combinations_checked_
    with pytest.raises(InvalidParameterError, match="low=4 above high=3"):
        check_parameters(_Smoother(low=4, high=3))
    bad_table = _Smoother(low=-1, high=3)
    with pytest.raises(InvalidParameterError, match="'low' parameter of _Smoother"):
        check_parameters(bad_table)
    assert not hasattr(bad_table, "combinations_checked_")


def test_checker_checks_in_table_order():
    with pytest.raises(InvalidParameterError, match="'alpha' parameter"):
        check_parameters(_Smoother(alpha=0.0, mode="slow"))


def test_clone_keeps_the_params_of_a_checked_estimator():
    smoother = _Smoother(alpha=0.5, mode=None, low=2, high=5)
    check_parameters(smoother)
    copy = clone(smoother)
    assert copy.get_params() == smoother.get_params()
    check_parameters(copy)


# --- every validated class -------------------------------------------------------


@pytest.mark.parametrize("cls", VALIDATED_CLASSES, ids=lambda cls: cls.__name__)
def test_each_table_lists_exactly_the_class_params(cls):
    assert set(cls._allowed_values) == set(cls().get_params(deep=False))


@pytest.mark.parametrize("cls", VALIDATED_CLASSES, ids=lambda cls: cls.__name__)
def test_defaults_pass_and_clone_keeps_the_params(cls):
    instance = cls()
    check_parameters(instance)
    assert clone(instance).get_params() == instance.get_params()


@pytest.mark.parametrize(
    ("cls", "param"),
    [(cls, param) for cls in VALIDATED_CLASSES for param in cls._allowed_values],
    ids=lambda item: getattr(item, "__name__", item),
)
def test_a_value_of_no_allowed_type_raises_naming_param_and_class(cls, param):
    instance = cls().set_params(**{param: object()})
    with pytest.raises(
        InvalidParameterError,
        match=rf"^The '{param}' parameter of {cls.__name__} must be .*\. Got <object",
    ):
        check_parameters(instance)
