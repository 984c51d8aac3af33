"""bench_profile_speed: timed batches are fresh battles, never the fit's."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.bench_profile_speed import _slices


def _raw(n_rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(n_rows)],
            "prompt": ['["q"]'] * n_rows,
            "response_a": ['["a"]'] * n_rows,
            "response_b": ['["b"]'] * n_rows,
            "winner_model_a": [1] * n_rows,
        }
    )


def test_fit_rows_timed_batches_and_warm_up_are_disjoint():
    fit, batches, warm_up = _slices(_raw(100), fit_rows=40, batch=20, calls=2, seed=0)
    ids = [set(fit["id"]), *(set(b["id"]) for b in batches), set(warm_up["id"])]
    assert [len(s) for s in ids] == [40, 20, 20, 8]
    assert len(set().union(*ids)) == 88
    assert "winner_model_a" in fit and "winner_model_a" not in batches[0]


def test_slices_refuse_a_corpus_too_small_for_the_plan():
    with pytest.raises(ValueError, match=r"has 50 battles; --fit-rows 40.*need 88"):
        _slices(_raw(50), fit_rows=40, batch=20, calls=2, seed=0)
