"""Resource guards: a 5 MB answer costs bounded memory and time.

``data.max_chars`` (``PreferenceModel(max_chars=...)``) keeps the last
``max_chars`` characters of each field. It is applied by
``features.battles.truncate_battles`` inside ``PreferenceModel`` for fit and
predict alike, and by the pipelines with the same config value, so a battle
with a huge answer is featurised exactly like the same battle with the answer
already cut. The bounds below are generous: they catch blow-ups, they are not
a benchmark.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.battles import CLASSES, read_battles, repair_report
from features.store import FeatureStore
from models import PreferenceModel
from pipelines import build_features, predict
from pipelines.config import load_config
from pipelines.estimator import model_from_config
from pipelines.make_demo_data import make_demo_battles

MAX_CHARS = 20_000
HUGE_CHARS = 5_000_000
SECONDS_BOUND = 30.0  # measured well under 1 s on a laptop
PEAK_MB_BOUND = 150.0  # the input itself is ~10-20 MB in Python objects
BLOCKS = {
    "lengths": {},
    "flags": {},
    "style": {},
    "similarity": {},
    "tfidf": {"word_max_features": 200, "char_max_features": 200},
}
PARAMS = {"lightgbm": {"num_boost_round": 20, "num_threads": 1}}


def _huge_answer() -> str:
    sentence = "The quick brown fox jumps over the lazy dog. Ünïcödé 你好 🍍\n"
    return (sentence * (HUGE_CHARS // len(sentence) + 1))[:HUGE_CHARS]


def _battle(answer: str, battle_id: str = "huge") -> dict:
    return {
        "id": battle_id,
        "prompt": json.dumps(["Write as much as you can."]),
        "response_a": json.dumps([answer]),
        "response_b": json.dumps(["A short answer."]),
    }


def _with_label(row: dict, winner: str = "winner_model_b") -> dict:
    return {**row, **{name: int(name == winner) for name in CLASSES}}


def _model() -> PreferenceModel:
    return PreferenceModel(
        blocks=BLOCKS, booster_params=PARAMS, n_folds=3, max_chars=MAX_CHARS, seed=0
    )


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return make_demo_battles(n_rows=300, seed=21)


@pytest.fixture(scope="module")
def huge() -> str:
    return _huge_answer()


@pytest.fixture(scope="module")
def model(train) -> PreferenceModel:
    return _model().fit(train)


def _measure(call):
    """Result, seconds and peak traced MB of ``call()``."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = call()
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return result, seconds, peak


def test_a_5mb_answer_is_predicted_in_bounded_time_and_memory(model, huge):
    battles = pd.DataFrame([_battle(huge)])

    proba, seconds, peak_mb = _measure(lambda: model.predict_proba(battles))

    assert proba.shape == (1, 3) and np.isfinite(proba).all()
    assert seconds < SECONDS_BOUND, f"{seconds:.1f} s"
    assert peak_mb < PEAK_MB_BOUND, f"{peak_mb:.0f} MB"


def test_predict_sees_a_huge_answer_exactly_as_its_cut_end(model, huge):
    full = pd.DataFrame([_battle(huge)])
    cut = pd.DataFrame([_battle(huge[-MAX_CHARS:])])

    np.testing.assert_array_equal(model.predict_proba(full), model.predict_proba(cut))


@pytest.mark.slow
def test_fit_sees_a_huge_answer_exactly_as_its_cut_end(train, huge):
    def with_row(answer: str) -> pd.DataFrame:
        row = pd.DataFrame([_with_label(_battle(answer))])
        return pd.concat([train, row], ignore_index=True)

    fitted, seconds, peak_mb = _measure(lambda: _model().fit(with_row(huge)))
    reference = _model().fit(with_row(huge[-MAX_CHARS:]))

    np.testing.assert_array_equal(fitted.oof_proba_, reference.oof_proba_)
    assert seconds < 4 * SECONDS_BOUND, f"{seconds:.1f} s"
    assert peak_mb < 2 * PEAK_MB_BOUND, f"{peak_mb:.0f} MB"


PROFILE = """
seed: 0
data:
  max_chars: {max_chars}
features:
  store: {root}/store
  blocks:
    lengths: {{}}
    flags: {{}}
training:
  n_folds: 3
  boosters: [lightgbm]
  booster_params:
    lightgbm: {{num_boost_round: 20, num_threads: 1}}
tuning:
  n_trials: 0
  storage: sqlite:///{root}/optuna.db
"""


@pytest.mark.slow
def test_pipelines_and_model_cut_with_the_same_config_value(
    train, huge, tmp_path, capsys
):
    """build_features' cache serves the model's fit: both cut the same way."""
    config_path = tmp_path / "profile.yaml"
    config_path.write_text(PROFILE.format(max_chars=MAX_CHARS, root=tmp_path))
    data = tmp_path / "train.csv"
    row = pd.DataFrame([_with_label(_battle(huge, "12345"))])
    pd.concat([train, row], ignore_index=True).to_csv(data, index=False)
    argv = ["--config", str(config_path), "--data", str(data), "--quiet"]

    assert build_features.main(argv) == 0
    battles = read_battles(data)
    assert repair_report(battles).counts["long_field"] == 1  # read in full
    config = load_config(config_path)
    model = model_from_config(config)
    model.fit(battles, store=FeatureStore(config.features.store))

    assert model.max_chars == config.data.max_chars == MAX_CHARS
    assert [s["cache"] for s in model.pipeline_.stats_] == ["hit", "hit"]
    saved = model.save(tmp_path / "model")
    assert PreferenceModel.load(saved).max_chars == MAX_CHARS

    test_csv = tmp_path / "test.csv"
    pd.DataFrame([_battle(huge, "1")]).to_csv(test_csv, index=False)
    out = tmp_path / "submission.csv"
    capsys.readouterr()
    started = time.perf_counter()
    code = predict.main(
        ["--model", str(saved), "--data", str(test_csv), "--out", str(out), "--quiet"]
    )
    assert code == 0, capsys.readouterr().err
    assert time.perf_counter() - started < SECONDS_BOUND
    written = pd.read_csv(out)
    np.testing.assert_allclose(written[list(CLASSES)].sum(axis=1), 1.0, atol=1e-9)


def test_truncation_bound_comes_from_the_config(tmp_path):
    config_path = tmp_path / "profile.yaml"
    config_path.write_text(PROFILE.format(max_chars=1234, root=tmp_path))

    model = model_from_config(load_config(config_path))

    assert model.max_chars == 1234
    assert Path(load_config(None).source).name == "default.yaml"
    assert load_config(None).data.max_chars is not None  # bounded by default
