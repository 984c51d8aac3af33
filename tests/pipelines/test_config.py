"""Profiles load into typed objects; unknown keys and bad values are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import Config, ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("profile", ["default.yaml", "lite.yaml"])
def test_shipped_profiles_load_and_validate(profile):
    config = load_config(CONFIGS / profile)
    assert isinstance(config, Config)
    assert config.source.endswith(profile)
    assert {"lengths", "flags", "style", "tfidf", "word2vec"} <= set(
        config.features.blocks
    )


def test_lite_profile_has_no_transformer_block_and_default_has_one():
    assert "embeddings" not in load_config(CONFIGS / "lite.yaml").features.blocks
    assert "embeddings" in load_config(CONFIGS / "default.yaml").features.blocks


def _write(tmp_path, text):
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def test_unknown_top_level_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, "seed: 1\nsed: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown key 'sed'"):
        load_config(path)


def test_unknown_nested_key_names_the_dotted_key(tmp_path):
    path = _write(tmp_path, "training:\n  n_fold: 3\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'training.n_fold'. Valid keys in 'training'"
    ):
        load_config(path)


def test_unknown_block_lists_valid_blocks(tmp_path):
    path = _write(tmp_path, "features:\n  blocks:\n    lenghts: {}\n")
    with pytest.raises(
        ConfigError, match=r"unknown feature block 'lenghts'; valid blocks are"
    ):
        load_config(path)


def test_unknown_block_param_names_param_and_block(tmp_path):
    path = _write(tmp_path, "features:\n  blocks:\n    lengths: {colour: red}\n")
    with pytest.raises(
        ConfigError, match=r"feature block 'lengths' has no parameter\(s\) \['colour'\]"
    ):
        load_config(path)


def test_wrong_type_is_an_error(tmp_path):
    path = _write(tmp_path, "training:\n  n_folds: five\n")
    with pytest.raises(ConfigError, match=r"'training.n_folds' must be of type"):
        load_config(path)


def test_unknown_booster_lists_valid_ones(tmp_path):
    path = _write(tmp_path, "training:\n  boosters: [catboost]\n")
    with pytest.raises(
        ConfigError, match=r"unknown booster 'catboost'.*valid boosters are"
    ):
        load_config(path)


def test_overrides_change_values_and_are_validated(tmp_path):
    config = load_config(
        CONFIGS / "lite.yaml",
        ["training.n_folds=3", "seed=7", "features.blocks.tfidf.output=sides"],
    )
    assert config.training.n_folds == 3
    assert config.seed == 7
    assert config.features.blocks["tfidf"]["output"] == "sides"
    with pytest.raises(ConfigError, match=r"unknown key 'training.nfolds'"):
        load_config(CONFIGS / "lite.yaml", ["training.nfolds=3"])
    with pytest.raises(ConfigError, match=r"must look like section.key=value"):
        load_config(CONFIGS / "lite.yaml", ["training.n_folds"])


def test_loading_never_mutates_between_calls():
    first = load_config(CONFIGS / "lite.yaml", ["training.n_folds=3"])
    second = load_config(CONFIGS / "lite.yaml")
    assert first.training.n_folds == 3
    assert second.training.n_folds == 5


def test_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "a: [1,\n"))
