"""train_gbdt --target: the target's report beside the out-of-fold score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import train_gbdt
from pipelines.make_demo_data import make_demo_battles

PROFILE = """
seed: 3
features:
  store: {root}/store
  blocks:
    lengths: {{}}
    flags: {{}}
training:
  n_folds: 3
  boosters: [lightgbm]
  booster_params:
    lightgbm: {{num_boost_round: 30, early_stopping_rounds: 5, num_threads: 1}}
  group_by: auto
  source_weights: balanced
  tie_head: auto
  compare_swap_augment: false
  out: {root}/model
"""


@pytest.fixture
def profile(tmp_path) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE.format(root=tmp_path))
    return path


@pytest.fixture(scope="module")
def battles_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("battles") / "train.csv"
    make_demo_battles(n_rows=400, seed=2).to_csv(path, index=False)
    return path


def _train(profile: Path, data: Path, out: Path, *options: str) -> int:
    argv = ["--config", str(profile), "--data", str(data), "--quiet"]
    return train_gbdt.main([*argv, "--trials", "0", "--out", str(out), *options])


def test_target_report_holds_the_out_of_fold_and_the_held_out_estimate(
    profile, battles_file, tmp_path, capsys
):
    out = tmp_path / "model"
    options = ("--target", "synthetic-code", "--target-estimate-folds", "3")
    assert _train(profile, battles_file, out, *options) == 0
    printed = capsys.readouterr().out
    assert "target synthetic-code (" in printed and ", held out " in printed
    report = json.loads((out / "report" / "report.json").read_text())
    target = report["target"]
    assert target["family"] == "synthetic-code" and target["n_rows"] > 0
    assert target["held_out"]["n_folds"] == 3
    for scores in (target["out_of_fold"], target["held_out"]):
        assert 0 < scores["log_loss"] < 2 and 0 <= scores["decisive_accuracy"] <= 1
    text = (out / "report" / "report.md").read_text()
    assert "## Target `synthetic-code`" in text and "held out (3 folds" in text
    held_out = f"held out {target['held_out']['log_loss']:.4f}"
    assert held_out in printed  # the console line quotes the report's number


def test_unknown_target_on_the_command_line_names_the_families(
    profile, battles_file, tmp_path, capsys
):
    status = _train(profile, battles_file, tmp_path / "m", "--target", "kaggle")
    assert status == 2
    assert "synthetic-chat" in capsys.readouterr().err
