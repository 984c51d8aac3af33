"""Folds and the tuning sample keep prompt groups whole and are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from features.errors import InvalidParameterError
from models import make_folds, subsample_groups
from models.folds import MIN_TUNING_ROWS, tuning_sample


def test_subsample_keeps_whole_groups_under_the_limit():
    groups = np.repeat(np.arange(300), np.arange(300) % 7 + 1)
    rows = subsample_groups(groups, 500, seed=1)
    assert 450 <= len(rows) <= 500
    assert np.all(np.diff(rows) > 0)
    chosen = np.unique(groups[rows])
    assert len(rows) == np.isin(groups, chosen).sum()  # no group split


def test_subsample_is_seeded():
    groups = np.repeat(np.arange(200), 3)
    a, b = subsample_groups(groups, 90, seed=4), subsample_groups(groups, 90, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, subsample_groups(groups, 90, seed=5))


def test_a_group_too_big_is_skipped_not_the_whole_sample():
    groups = np.concatenate([np.zeros(1000, dtype=np.int64), np.arange(1, 101)])
    rows = subsample_groups(groups, 50, seed=0)
    assert len(rows) == 50 and not np.any(groups[rows] == 0)


def test_no_limit_or_a_large_one_keeps_every_row():
    groups = np.arange(10)
    np.testing.assert_array_equal(subsample_groups(groups, None), np.arange(10))
    np.testing.assert_array_equal(subsample_groups(groups, 10), np.arange(10))
    with pytest.raises(InvalidParameterError, match="max_rows must be >= 1"):
        subsample_groups(groups, 0)


def test_tuning_sample_has_its_own_grouped_folds_over_whole_groups():
    groups = np.repeat(np.arange(200), 3)
    labels = np.arange(600) % 3
    rows, folds = tuning_sample(labels, groups, max_rows=300, n_folds=3, seed=2)

    np.testing.assert_array_equal(rows, subsample_groups(groups, 300, seed=2))
    assert len(folds) == len(rows) and set(folds.tolist()) == {0, 1, 2}
    for group in np.unique(groups[rows]):
        assert len(set(folds[groups[rows] == group].tolist())) == 1


def test_tuning_sample_without_a_limit_keeps_every_row():
    groups, labels = np.arange(150), np.arange(150) % 3
    rows, folds = tuning_sample(labels, groups, max_rows=None, n_folds=2)
    np.testing.assert_array_equal(rows, np.arange(150))
    np.testing.assert_array_equal(folds, make_folds(labels, groups, 2, 0))


@pytest.mark.parametrize(
    ("max_rows", "n_folds", "match"),
    [
        (MIN_TUNING_ROWS - 1, 3, r"max_rows must be None \(every row\) or >= 100"),
        (500.0, 3, r"max_rows must be None \(every row\) or an int. Got 500.0"),
        (True, 3, "max_rows must be None"),
        (None, 1, r"n_folds must be an int >= 2 .* Got 1"),
        (None, 3.0, "n_folds must be an int >= 2"),
        (None, 200, "cannot make 200 prompt-grouped folds from 150 distinct prompts"),
    ],
)
def test_bad_tuning_sample_settings_raise(max_rows, n_folds, match):
    groups, labels = np.arange(150), np.arange(150) % 3
    with pytest.raises(InvalidParameterError, match=match):
        tuning_sample(labels, groups, max_rows=max_rows, n_folds=n_folds)
