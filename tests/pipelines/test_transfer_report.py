"""The transfer table of the training report."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pytest

from features import FeatureStore, as_battles, battle_fingerprint, block_key, make_block
from features.errors import ConfigError
from features.pipeline import RunMode
from pipelines.config import load_config
from pipelines.make_demo_data import make_demo_battles
from pipelines.transfer_report import (
    add_transfer_report_arguments,
    seed_stateless_blocks,
    transfer_markdown,
    transfer_report,
)

PROFILE = """
seed: 1
features:
  blocks:
    lengths: {}
    flags: {}
training:
  n_folds: 3
  boosters: [lightgbm]
  booster_params:
    lightgbm: {num_boost_round: 20, learning_rate: 0.3, num_leaves: 7,
               min_data_in_leaf: 5, num_threads: 1}
"""


@pytest.fixture(scope="module")
def demo():
    """Demo battles with their three synthetic source families."""
    return as_battles(make_demo_battles(n_rows=180, seed=2))


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE)
    return load_config(path)


def test_transfer_report_flag_defaults_to_auto():
    parser = argparse.ArgumentParser()
    add_transfer_report_arguments(parser)
    assert parser.parse_args([]).transfer_report is None
    assert parser.parse_args(["--no-transfer-report"]).transfer_report is False
    args = parser.parse_args(["--transfer-report", "--transfer-folds", "2"])
    assert (args.transfer_report, args.transfer_folds) == (True, 2)


def test_transfer_report_is_skipped_when_switched_off(demo, config):
    assert transfer_report(demo, config, {}, enabled=False) is None


def test_transfer_report_is_skipped_without_two_families(demo, config, caplog):
    assert transfer_report(demo.drop(columns="source"), config, {}) is None
    with caplog.at_level(logging.WARNING, logger="pipelines.transfer_report"):
        one = demo.assign(source="only:one")
        assert transfer_report(one, config, {}, enabled=True) is None
    assert "no 'source' column with 2 or more families" in caplog.text


def test_transfer_report_refuses_fewer_than_two_folds(demo, config):
    with pytest.raises(ConfigError, match="--transfer-folds must be >= 2"):
        transfer_report(demo, config, {}, n_folds=1)


@pytest.mark.slow
def test_transfer_report_holds_out_each_family_with_the_given_params(
    demo, config, tmp_path
):
    params = dict(config.training.booster_params)
    records = transfer_report(
        demo, config, params, n_folds=2, store=FeatureStore(tmp_path / "store")
    )
    assert [r["source"] for r in records] == sorted(set(demo["source"]))
    for record in records:
        assert record["n"] + record["n_train"] == len(demo)
        assert isinstance(record["decisive_auc"], float)
        assert record["ok"] in (True, False, None)
    text = transfer_markdown(records)
    assert text.startswith("## Transfer: each source family held out of fit")
    assert text.count("\n| synthetic-") == 3


def test_transfer_markdown_shows_missing_numbers_as_dashes():
    text = transfer_markdown(
        [{"source": "a|b", "n": 5, "log_loss_own_prior": None, "ok": None}]
    )
    assert "| a\\|b | 5 | - | - |" in text


def test_seed_stateless_blocks_fills_the_cache_of_every_subset(demo, tmp_path):
    store = FeatureStore(tmp_path / "store")
    blocks = {"lengths": {}}
    subsets = [(np.arange(0, 60), "fit"), (np.arange(60, 90), "transform")]
    seeded = seed_stateless_blocks(store, blocks, demo, subsets, None)
    assert seeded == ["lengths"]
    block = make_block("lengths", {})
    for rows, mode in subsets:
        key = block_key(
            block,
            battle_fingerprint(as_battles(demo.iloc[rows])),
            RunMode(mode).cache_tag(block),
        )
        assert store.load(key) is not None


def test_seeding_leaves_per_text_cached_blocks_alone_and_loads_no_encoder(
    demo, tmp_path, monkeypatch
):
    """Embeddings serve subsets from their per-text cache: no probe, no load."""

    def no_encoder(spec):
        raise AssertionError("the encoder was loaded")

    monkeypatch.setattr("features.blocks.embeddings.shared_encoder", no_encoder)
    store = FeatureStore(tmp_path / "store")
    blocks = {"lengths": {}, "embeddings": {}}
    subsets = [(np.arange(0, 60), "fit"), (np.arange(60, 90), "transform")]
    assert seed_stateless_blocks(store, blocks, demo, subsets, None) == ["lengths"]


@pytest.mark.slow
@pytest.mark.parametrize("flag", [[], ["--no-transfer-report"]])
def test_train_gbdt_report_has_the_transfer_table_unless_switched_off(
    tmp_path, flag, capsys
):
    import json

    from pipelines import train_gbdt

    data, config = tmp_path / "train.csv", tmp_path / "profile.yaml"
    make_demo_battles(n_rows=180, seed=2).to_csv(data, index=False)
    config.write_text(PROFILE)
    out = tmp_path / "model"
    argv = ["--config", str(config), "--data", str(data), "--trials", "0"]
    argv += ["--store", str(tmp_path / "store"), "--out", str(out), "--quiet"]
    argv += ["--set", f"tuning.storage=sqlite:///{tmp_path / 'optuna.db'}"]
    assert train_gbdt.main([*argv, "--transfer-folds", "2", *flag]) == 0
    capsys.readouterr()
    report = json.loads((out / "report" / "report.json").read_text())
    markdown = (out / "report" / "report.md").read_text()
    if flag:
        assert report["transfer"] is None and "## Transfer" not in markdown
    else:
        assert len(report["transfer"]) == 3
        assert "## Transfer: each source family held out of fit" in markdown
