"""Booster names and params are checked before any booster is built."""

from __future__ import annotations

import pytest

from features.errors import InvalidParameterError
from models.gbdt import check_booster_names, check_booster_params, make_booster


def test_valid_names_and_params_pass_and_build_a_booster():
    check_booster_names(["lightgbm", "xgboost"])
    params = {"learning_rate": 0.1, "metric": ["multi_logloss"], "num_boost_round": 5}
    check_booster_params(params)
    check_booster_params(None)
    booster = make_booster("lightgbm", params, seed=0)
    assert booster.num_boost_round == 5
    assert params == {
        "learning_rate": 0.1,
        "metric": ["multi_logloss"],
        "num_boost_round": 5,
    }


@pytest.mark.parametrize("names", [["catboost"], ["lightgbm", 3]])
def test_unknown_booster_lists_the_valid_ones(names):
    with pytest.raises(
        InvalidParameterError,
        match=r"unknown booster\(s\) .*; valid boosters are \['lightgbm', 'xgboost'\]",
    ):
        check_booster_names(names)
    with pytest.raises(InvalidParameterError, match=r"unknown booster\(s\)"):
        make_booster(names[-1], {}, seed=0)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ([("max_bin", 63)], "booster params must be a mapping"),
        ({"max_bin": {"a": 1}}, r"booster param 'max_bin' must be null, a bool"),
        ({"metric": [["multi_logloss"]]}, r"booster param 'metric' must be null"),
        ({3: 1}, r"booster param 3 must be"),
        ({"num_boost_round": 0}, r"num_boost_round must be an int >= 1. Got 0"),
        ({"num_boost_round": 10.0}, r"num_boost_round must be an int >= 1"),
        ({"early_stopping_rounds": True}, r"early_stopping_rounds must be an int"),
    ],
)
def test_bad_booster_params_name_the_param(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        check_booster_params(params)
    with pytest.raises(InvalidParameterError, match=match):
        make_booster("xgboost", params, seed=0)
