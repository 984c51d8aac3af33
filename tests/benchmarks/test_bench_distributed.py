"""The distributed benchmark section runs in quick mode and reports its targets."""

from __future__ import annotations

import os

import pytest

from benchmarks._context import BenchContext, BenchOptions
from benchmarks._tune_workers import (
    NOT_MEASURED,
    POSTGRES_ENV,
    TRIALS,
    measure_tune_workers,
    storage_url,
    tune_workers_part,
)
from benchmarks.bench_distributed import CostModel, fit_cost_model, run
from features.battles import CLASSES
from models import PreferenceModel
from pipelines.make_demo_data import make_demo_battles

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Unlabelled demo battles and a small lengths + flags model."""
    root = tmp_path_factory.mktemp("bench-distributed")
    data = root / "battles.csv"
    make_demo_battles(n_rows=900, seed=4).drop(columns=list(CLASSES)).to_csv(
        data, index=False
    )
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        boosters=("lightgbm",),
        booster_params={"lightgbm": {"num_boost_round": 10, "num_threads": 1}},
        n_folds=2,
    ).fit(make_demo_battles(n_rows=200, seed=3))
    return data, model.save(root / "model")


@pytest.mark.slow
def test_quick_run_compares_predictions_and_projects_the_wall_time(inputs, tmp_path):
    data, model_dir = inputs
    options = BenchOptions.for_quick(
        work_dir=tmp_path / "work",
        store=tmp_path / "store",
        extra={
            "distributed_data": data,
            "distributed_model": model_dir,
            "distributed_partition_rows": 300,
            "distributed_compare_rows": 200,
            "distributed_small_partition_rows": 100,
        },
    )

    section = run(BenchContext(options))

    text = section.to_markdown()
    assert section.key == "distributed"
    for title in (
        "### Single process against --scheduler local:2",
        "### Per-partition times",
        "### Cost model: predicted wall time for 10M and 100M battles",
    ):
        assert title in text
    targets = {target.name: target for target in section.targets}
    equal = targets["predictions equal to single process on 200 rows"]
    assert equal.measured == "0" and equal.met is True
    rss = targets["peak RSS per worker, --scheduler local:2, 900 rows"]
    assert rss.met is True  # a lengths + flags model stays far below 2 GB
    projection = section.tables[-1].rows
    assert [(row["battles"], row["workers"]) for row in projection] == [
        (rows, workers) for rows in (10_000_000, 100_000_000) for workers in (2, 8, 32)
    ]
    walls = [row["predicted wall (min)"] for row in projection]
    assert walls[0] > walls[1] > walls[2] > 0  # more workers, less time


def test_cost_model_is_linear_in_rounds_of_partitions():
    parts = [
        {"rows": rows, "seconds": 0.2 + rows / 500, "model_seconds": 0.0, "main": True}
        for rows in (100, 100, 400, 400)
    ]
    model = fit_cost_model(
        parts,
        n_workers=2,
        parts_seconds=2.0,
        wall_seconds=6.0,
        scan_seconds=0.5,
        n_rows=1000,
    )
    assert model.a == pytest.approx(0.2) and model.b == pytest.approx(1 / 500)
    assert model.startup == pytest.approx(3.5)
    assert model.scan_per_row == pytest.approx(0.5 / 1000)
    # (2 * 2.0 - 2.8) / 4 seconds of worker time per partition outside tasks
    assert model.overhead == pytest.approx(0.3)
    fixed = CostModel(
        a=1.0, b=0.0, overhead=0.0, startup=0.0, model_load=0.0, scan_per_row=0.0
    )
    assert fixed.wall(10, 2, 1) == 5.0 and fixed.wall(10, 3, 1) == 4.0


@pytest.fixture(scope="module")
def tune_workers(tmp_path_factory):
    """Both tune-worker runs in quick mode: on PostgreSQL when its URL is set."""
    root = tmp_path_factory.mktemp("tune-workers")
    storage = os.environ.get(POSTGRES_ENV) or f"sqlite:///{root / 'studies.db'}"
    return measure_tune_workers(storage, n_trials=TRIALS["quick"], work_dir=root)


@pytest.mark.slow
def test_tune_workers_and_leader_finish_the_study_with_each_trial_run_once(
    tune_workers,
):
    target = tune_workers.targets[0]
    assert target.met is True, target.measured
    count = tune_workers.shared.count
    assert count.done == TRIALS["quick"] == count.budget
    assert count.duplicated_numbers == count.duplicated_params == count.running == 0
    assert set(count.per_process) == {"worker-1", "worker-2", "leader"}
    assert sum(count.per_process.values()) == count.done
    assert target.name.endswith(f"{TRIALS['quick']}-trial study, no trial run twice")


@pytest.mark.slow
def test_a_tune_worker_killed_mid_trial_leaves_a_study_the_survivor_completes(
    tune_workers,
):
    target = tune_workers.targets[1]
    assert target.name == "a worker killed mid-trial: the survivor completes the study"
    assert target.met is True, target.measured
    killed = tune_workers.killed
    assert killed.killed_mid_trial and killed.state_after == "FAIL"
    assert not killed.killed_counted
    assert killed.count.done == TRIALS["quick"] and killed.count.failed == 1
    assert killed.count.duplicated_numbers == killed.count.duplicated_params == 0
    assert killed.failed_after_kill is not None and killed.failed_after_kill > 0
    assert killed.count.per_process["victim"] >= 1  # it ran a trial before hanging
    table = tune_workers.tables[0].to_markdown()
    assert "| worker killed mid-trial |" in table and "FAIL" in table


def test_without_a_storage_url_the_tune_workers_are_not_measured(monkeypatch, tmp_path):
    monkeypatch.delenv(POSTGRES_ENV, raising=False)
    options = BenchOptions.for_quick(work_dir=tmp_path)

    part = tune_workers_part(options, tmp_path)

    assert NOT_MEASURED in part.tables[0].to_markdown()
    assert "bash .ci/postgres.sh python -m benchmarks.run --only distributed" in (
        part.tables[0].to_markdown()
    )
    assert [target.met for target in part.targets] == [None, None]
    assert all(t.measured.startswith("not measured") for t in part.targets)
    assert part.shared is None and part.killed is None
    assert not (tmp_path / "tune-workers").exists()


def test_the_tune_storage_option_comes_before_the_environment():
    environ = {POSTGRES_ENV: "postgresql://u@h/db"}

    assert storage_url({"distributed_storage": "sqlite:///a.db"}, environ) == (
        "sqlite:///a.db"
    )
    assert storage_url({}, environ) == "postgresql://u@h/db"
    assert storage_url({}, {}) is None
