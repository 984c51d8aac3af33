"""bench_compiled: engines are compared on the same rows, against native.

Speeds are not checked (they depend on the machine); the structure of the
results and the agreement of the probabilities are.
"""

from __future__ import annotations

import shutil

import pytest

from benchmarks.bench_compiled import measure_engines, results_table
from models import PreferenceModel
from pipelines.make_demo_data import make_demo_battles

FAST = {
    "lightgbm": {"num_boost_round": 20, "num_leaves": 7, "num_threads": 1},
    "xgboost": {"num_boost_round": 20, "max_depth": 3, "nthread": 1},
}


@pytest.fixture(scope="module")
def demo_frame():
    return make_demo_battles(n_rows=300, seed=5)


@pytest.fixture(scope="module")
def small_model(demo_frame) -> PreferenceModel:
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        boosters=("lightgbm", "xgboost"),
        booster_params=FAST,
        n_folds=2,
        seed=0,
    )
    return model.fit(demo_frame)


def test_native_engine_rows_cover_every_kind_and_the_stage(small_model, demo_frame):
    rows = measure_engines(
        small_model,
        demo_frame,
        engines=("native",),
        batch_sizes=(1, 40),
        threads=(1,),
        repeats=2,
    )
    assert [(r.engine, r.kind) for r in rows] == [
        ("native", "lightgbm"),
        ("native", "xgboost"),
        ("native+native", "stage"),
    ]
    assert all(r.max_abs_dp == 0 for r in rows)
    assert all(len(r.seconds[40]) == 2 and r.threads == 1 for r in rows)
    table = results_table(rows, (1, 40))
    assert "| ms per 1 row (median) | speed-up vs native |" in table
    assert "| ms per 40 rows (median) |" in table
    assert table.count("\n") == 2 + len(rows) - 1


def test_measure_engines_refuses_fewer_battles_than_the_batch(small_model, demo_frame):
    with pytest.raises(ValueError, match=r"need 1000 battles, got 300"):
        measure_engines(small_model, demo_frame, batch_sizes=(1000,), repeats=1)


@pytest.mark.slow
def test_compiled_engines_give_the_native_probabilities(small_model, demo_frame):
    pytest.importorskip("lleaves")
    pytest.importorskip("tl2cgen")
    if shutil.which("gcc") is None:
        pytest.skip("treelite's compiled path needs gcc")
    rows = measure_engines(
        small_model,
        demo_frame,
        engines=("native", "treelite", "lleaves", "treelite-gtil"),
        batch_sizes=(40,),
        threads=(1,),
        repeats=1,
    )
    engines = {(r.engine, r.kind) for r in rows}
    assert {("lleaves", "lightgbm"), ("treelite", "xgboost")} <= engines
    assert max(r.max_abs_dp for r in rows) <= 1e-6


def test_measure_engines_refuses_an_anchored_model(demo_frame):
    model = PreferenceModel(
        blocks={"lengths": {}, "style": {}, "flags": {}},
        boosters=("lightgbm",),
        booster_params=FAST,
        n_folds=2,
        anchor=True,
        seed=0,
    ).fit(demo_frame)
    with pytest.raises(ValueError, match=r"has an anchor \(training\.anchor\)"):
        measure_engines(model, demo_frame, batch_sizes=(10,), repeats=1)
