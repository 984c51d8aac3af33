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
  ``workers=1`` and a string hash that does not depend on ``PYTHONHASHSEED``.

The tests show the out-of-fold predictions agree to 1e-9 (in fact bit for bit)
between runs, between thread counts and between processes with different hash
seeds, and that the seed is what decides them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import PreferenceModel
from pipelines import train_gbdt
from pipelines.make_demo_data import make_demo_battles

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = {
    "lengths": {},
    "flags": {},
    "style": {"readability_max_chars": 500},
    "similarity": {},
    "tfidf": {"word_max_features": 300, "char_max_features": 300},
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


@pytest.fixture(scope="module")
def battles():
    return make_demo_battles(n_rows=300, seed=12)


@pytest.fixture(scope="module")
def fitted(battles):
    return _fit(battles, blocks=BLOCKS)


def _assert_same_oof(first: PreferenceModel, second: PreferenceModel) -> None:
    for name in first.boosters:
        np.testing.assert_allclose(
            first.fold_results_[name].oof,
            second.fold_results_[name].oof,
            rtol=0,
            atol=1e-9,
        )
    np.testing.assert_allclose(first.oof_proba_, second.oof_proba_, rtol=0, atol=1e-9)


def test_same_data_config_and_seed_give_the_same_oof_and_predictions(battles, fitted):
    again = _fit(battles, blocks=BLOCKS)

    np.testing.assert_array_equal(again.folds_, fitted.folds_)
    _assert_same_oof(fitted, again)
    np.testing.assert_array_equal(again.oof_proba_, fitted.oof_proba_)  # bit for bit
    new = make_demo_battles(n_rows=40, seed=13)
    np.testing.assert_array_equal(again.predict_proba(new), fitted.predict_proba(new))


def test_the_seed_decides_the_result(battles, fitted):
    other = _fit(battles, seed=1, blocks=BLOCKS)

    assert not np.array_equal(other.folds_, fitted.folds_)
    assert np.abs(other.oof_proba_ - fitted.oof_proba_).max() > 1e-6


@pytest.mark.slow
def test_thread_count_does_not_change_the_boosters(battles):
    one = _fit(battles, threads=1)
    two = _fit(battles, threads=2)

    _assert_same_oof(one, two)
    np.testing.assert_array_equal(one.oof_proba_, two.oof_proba_)


@pytest.mark.slow
def test_saved_and_loaded_models_predict_bit_for_bit_alike(battles, fitted, tmp_path):
    loaded = PreferenceModel.load(fitted.save(tmp_path / "model"))

    np.testing.assert_array_equal(
        loaded.predict_proba(battles), fitted.predict_proba(battles)
    )
    np.testing.assert_array_equal(loaded.oof_proba_, fitted.oof_proba_)


PROFILE = """
seed: 5
features:
  store: {root}/store
  blocks:
    lengths: {{}}
    flags: {{}}
    style: {{readability_max_chars: 500}}
    tfidf: {{word_max_features: 300, char_max_features: 300}}
    word2vec: {{vector_size: 16, epochs: 2}}
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


def _workspace(root: Path) -> Path:
    root.mkdir(parents=True)
    config = root / "profile.yaml"
    config.write_text(PROFILE.format(root=root))
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
        config = _workspace(tmp_path / run)
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
    processes, logs = [], []
    for hash_seed in ("1", "2"):
        config = _workspace(tmp_path / f"hash{hash_seed}")
        log = (tmp_path / f"hash{hash_seed}.log").open("w")
        logs.append(log)
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
    for log in logs:
        log.close()

    assert codes == [0, 0]
    first = _files(tmp_path / "hash1" / "store", "*/*")
    assert first and first == _files(tmp_path / "hash2" / "store", "*/*")
