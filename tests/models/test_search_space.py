"""Search spaces: profile mappings become Optuna distributions or clear errors."""

from __future__ import annotations

import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from features.errors import InvalidParameterError
from models.search_space import parse_search_space


def test_ranges_and_choices_become_distributions_in_order():
    space = parse_search_space(
        {
            "learning_rate": {"low": 0.05, "high": 0.3, "log": True},
            "num_leaves": {"low": 4, "high": 16, "type": "int"},
            "feature_fraction": {"low": 0, "high": 1},
            "boosting": {"choices": ["gbdt", "dart"]},
        }
    )
    assert space == {
        "learning_rate": FloatDistribution(0.05, 0.3, log=True),
        "num_leaves": IntDistribution(4, 16),
        "feature_fraction": FloatDistribution(0.0, 1.0),
        "boosting": CategoricalDistribution(("gbdt", "dart")),
    }
    assert list(space) == [
        "learning_rate",
        "num_leaves",
        "feature_fraction",
        "boosting",
    ]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([1, 2], "a search space must be a mapping of param name"),
        ({"num_leaves": 31}, r"'num_leaves' must be a mapping like"),
        ({"num_leaves": {"low": 4, "hi": 9}}, r"unknown keys \['hi'\]"),
        ({"num_leaves": {"low": 4}}, r"a range takes 'low' and 'high'"),
        ({"num_leaves": {"low": 4, "high": 9, "type": "long"}}, "type must be one"),
        ({"num_leaves": {"low": 4, "high": 9, "log": "yes"}}, "log must be true"),
        (
            {"num_leaves": {"low": 4.5, "high": 9, "type": "int"}},
            r"low and high must be ints \(type: int\). Got low=4.5",
        ),
        (
            {"learning_rate": {"low": "0.1", "high": 0.3}},
            r"low and high must be numbers \(type: float\)",
        ),
        ({"learning_rate": {"low": True, "high": 3}}, "must be numbers"),
        ({"learning_rate": {"low": 0.3, "high": 0.1}}, r"low must be < high"),
        ({"learning_rate": {"low": 0.3, "high": 0.3}}, r"low must be < high"),
        (
            {"learning_rate": {"low": 0.0, "high": 0.3, "log": True}},
            r"a log range needs low > 0. Got low=0.0",
        ),
        ({"boosting": {"choices": []}}, "non-empty list"),
        ({"boosting": {"choices": [[1]]}}, "non-empty list of null"),
        ({"boosting": {"choices": "gbdt"}}, "takes only 'choices'"),
        ({"boosting": {"choices": ["gbdt"], "low": 1}}, "takes only 'choices'"),
    ],
)
def test_bad_search_space_names_the_param_and_the_fix(spec, match):
    with pytest.raises(InvalidParameterError, match=match):
        parse_search_space(spec)
