"""Row subsamples for tuning keep prompt groups whole and are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from models import subsample_groups


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
    with pytest.raises(ValueError, match="max_rows"):
        subsample_groups(groups, 0)
