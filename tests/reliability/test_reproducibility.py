"""Reproducibility: same data, config and seed give the same numbers.

What keeps each source of randomness fixed:

- folds: ``make_folds`` draws from ``seed``;
- LightGBM: ``seed`` per fold, ``deterministic=True`` and ``force_row_wise``
  (bagging and feature fractions included);
- XGBoost: ``seed`` per fold and ``tree_method="hist"`` on CPU, whose
  histograms are summed in a fixed order;
- Optuna: each trial's TPE sampler is seeded with ``seed`` plus the number of
  trials finished before it;
- feature blocks: TF-IDF and similarity are deterministic; Word2Vec runs with
  ``workers=1`` and a string hash that does not depend on ``PYTHONHASHSEED``;
- stacker, temperature and anchor: their solvers run on one BLAS thread, so
  sums over rows are added in one order whatever the process's BLAS thread
  count (see test_blas_threads.py).

The tests show the out-of-fold predictions agree bit for bit between runs,
between thread counts (boosters' and BLAS's) and between processes with
different hash seeds, and that the seed is what decides them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from threadpoolctl import threadpool_info

from features.blocks.base import FeatureMatrix
from models import PreferenceModel
from models.search_space import parse_search_space
from models.tuning import tune_boosters
from pipelines import train_gbdt
from pipelines.make_demo_data import make_demo_battles

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = {
    "lengths": {},
    "flags": {},
    "similarity": {},
    "tfidf": {"word_max_features": 50, "char_max_features": 50},
}


def _params(threads: int) -> dict:
    # Bagging and column sampling on: the seeded paths must be stable too.
    return {
        "lightgbm": {
            "num_boost_round": 30,
            "num_threads": threads,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "feature_fraction": 0.8,
        },
        "xgboost": {
            "num_boost_round": 30,
            "nthread": threads,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
        },
    }


def _fit(battles, *, threads: int = 1, seed: int = 0, blocks=None):
    return PreferenceModel(
        blocks=blocks or {"lengths": {}, "flags": {}},
        boosters=("lightgbm", "xgboost"),
        booster_params=_params(threads),
        n_folds=3,
        seed=seed,
    ).fit(battles)


DATA_SEED = 12
# The two-thread fit runs in its own process with passive OpenMP waiting: on a
# busy machine, spinning threads make it many times slower, not different. Its
# BLAS runs on another thread count than this process's: 1 when this one has
# several (as in a full test run, where a Dask LocalCluster exported
# OPENBLAS_NUM_THREADS=1 to every later child process, the other way round).
THREADS_SCRIPT = """
import json, sys
import numpy as np
from threadpoolctl import threadpool_limits
from models import PreferenceModel
from pipelines.make_demo_data import make_demo_battles

with threadpool_limits(limits={blas_threads}, user_api="blas"):
    model = PreferenceModel(
        blocks={{"lengths": {{}}, "flags": {{}}}},
        boosters=("lightgbm", "xgboost"),
        booster_params=json.loads({params!r}),
        n_folds=3,
        seed=0,
    ).fit(make_demo_battles(n_rows=300, seed={data_seed}))
np.savez(
    {out!r},
    oof=model.oof_proba_,
    **{{name: result.oof for name, result in model.fold_results_.items()}},
)
"""


@pytest.fixture(scope="module")
def battles():
    return make_demo_battles(n_rows=300, seed=DATA_SEED)


@pytest.fixture(scope="module")
def fitted(battles):
    return _fit(battles, blocks=BLOCKS)


@pytest.fixture(scope="module")
def simple(battles):
    return _fit(battles)


def _assert_same_oof(first: PreferenceModel, second: PreferenceModel) -> None:
    for name in first.boosters:
        np.testing.assert_array_equal(
            first.fold_results_[name].oof, second.fold_results_[name].oof
        )
    np.testing.assert_array_equal(first.oof_proba_, second.oof_proba_)


def test_same_data_config_and_seed_give_the_same_oof_and_predictions(battles, fitted):
    again = _fit(battles, blocks=BLOCKS)

    np.testing.assert_array_equal(again.folds_, fitted.folds_)
    _assert_same_oof(fitted, again)  # bit for bit
    new = make_demo_battles(n_rows=40, seed=13)
    np.testing.assert_array_equal(again.predict_proba(new), fitted.predict_proba(new))


def test_the_seed_decides_the_result(battles, simple):
    other = _fit(battles, seed=1)

    assert not np.array_equal(other.folds_, simple.folds_)
    assert np.abs(other.oof_proba_ - simple.oof_proba_).max() > 1e-6


@pytest.mark.slow
def test_thread_count_does_not_change_the_boosters(simple, tmp_path):
    out = tmp_path / "two_threads.npz"
    ours = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    script = THREADS_SCRIPT.format(
        params=json.dumps(_params(2)),
        data_seed=DATA_SEED,
        out=str(out),
        blas_threads=1 if ours > 1 else 4,
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True)

    with np.load(out) as two:
        for name in simple.boosters:
            np.testing.assert_array_equal(two[name], simple.fold_results_[name].oof)
        np.testing.assert_array_equal(two["oof"], simple.oof_proba_)


@pytest.mark.slow
def test_saved_and_loaded_models_predict_bit_for_bit_alike(battles, simple, tmp_path):
    loaded = PreferenceModel.load(simple.save(tmp_path / "model"))

    np.testing.assert_array_equal(
        loaded.predict_proba(battles), simple.predict_proba(battles)
    )
    np.testing.assert_array_equal(loaded.oof_proba_, simple.oof_proba_)


PROFILE = """
seed: 5
features:
  store: {root}/store
  blocks:
{blocks}
training:
  n_folds: 3
  boosters: [lightgbm, xgboost]
  booster_params:
    lightgbm: {{num_boost_round: 30, num_threads: 1}}
    xgboost: {{num_boost_round: 30, nthread: 1, max_depth: 3}}
tuning:
  storage: sqlite:///{root}/optuna.db
  n_folds: 2
  booster_share: {{lightgbm: 0.5, xgboost: 0.5}}
  search_spaces:
    lightgbm:
      learning_rate: {{low: 0.05, high: 0.3, log: true}}
    xgboost:
      max_depth: {{low: 2, high: 4, type: int}}
"""


TRAINING_BLOCKS = {"lengths": "{}", "flags": "{}"}
HASHING_BLOCKS = {
    "lengths": "{}",
    "similarity": "{}",
    "tfidf": "{word_max_features: 300, char_max_features: 300}",
    "word2vec": "{vector_size: 16, epochs: 2}",
}


def _workspace(root: Path, blocks: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    listed = "\n".join(f"    {name}: {params}" for name, params in blocks.items())
    config = root / "profile.yaml"
    config.write_text(PROFILE.format(root=root, blocks=listed))
    return config


def _files(directory: Path, pattern: str) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.glob(pattern))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.mark.slow
def test_two_training_runs_write_identical_models(tmp_path):
    """Tuning included: same trials, same best params, same booster files."""
    data = tmp_path / "train.csv"
    make_demo_battles(n_rows=300, seed=14).to_csv(data, index=False)
    outs = []
    for run in ("first", "second"):
        config = _workspace(tmp_path / run, TRAINING_BLOCKS)
        out = tmp_path / run / "model"
        argv = ["--config", str(config), "--data", str(data), "--quiet"]
        assert train_gbdt.main([*argv, "--trials", "2", "--out", str(out)]) == 0
        outs.append(out)

    first, second = outs
    assert _files(first, "boosters/*") == _files(second, "boosters/*")
    assert _files(first, "blocks/**/*") == _files(second, "blocks/**/*")
    assert _files(first, "*.npy") == _files(second, "*.npy")


@pytest.mark.slow
def test_features_do_not_depend_on_the_python_hash_seed(tmp_path):
    """Two processes with different PYTHONHASHSEED build identical stores."""
    data = tmp_path / "train.csv"
    make_demo_battles(n_rows=200, seed=15).to_csv(data, index=False)
    processes = []
    try:
        for hash_seed in ("1", "2"):
            config = _workspace(tmp_path / f"hash{hash_seed}", HASHING_BLOCKS)
            with (tmp_path / f"hash{hash_seed}.log").open("w") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "pipelines.build_features"]
                        + ["--config", str(config), "--data", str(data), "--quiet"],
                        cwd=ROOT,
                        env={**os.environ, "PYTHONHASHSEED": hash_seed},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        codes = [process.wait(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:  # a failed test leaves nothing running
                process.kill()
                process.wait()

    assert codes == [0, 0]
    first = _files(tmp_path / "hash1" / "store", "*/*")
    assert first and first == _files(tmp_path / "hash2" / "store", "*/*")


def test_a_study_extended_in_two_runs_draws_the_trials_of_one_run(tmp_path):
    """Trial k samples with seed + k: stopping and resuming changes nothing."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(240, 4)).astype(np.float32)
    labels = (values[:, 0] > 0).astype(np.int64) + (values[:, 1] > 1).astype(np.int64)
    folds = np.arange(240, dtype=np.int64) % 2
    matrix = FeatureMatrix(values, tuple(f"d_{i}" for i in range(4)))
    space = parse_search_space(
        {"learning_rate": {"low": 0.05, "high": 0.3, "log": True}}
    )
    base = {"lightgbm": {"num_boost_round": 10, "num_threads": 1}}

    def tune(name: str, n_trials: int) -> dict:
        return tune_boosters(
            matrix,
            labels,
            folds,
            boosters=["lightgbm"],
            search_spaces={"lightgbm": space},
            base_params=base,
            n_trials=n_trials,
            storage=f"sqlite:///{tmp_path / name}.db",
            seed=7,
        )

    tune("split", 2)
    split = tune("split", 4)
    whole = tune("whole", 4)

    def trials(name: str) -> list[tuple]:
        study = optuna.load_study(
            study_name=whole["studies"]["lightgbm"],
            storage=f"sqlite:///{tmp_path / name}.db",
        )
        return [(t.params, t.value) for t in study.trials]

    assert trials("split") == trials("whole")
    assert split["best_params"] == whole["best_params"]
