"""Profiles load into typed objects; unknown keys and bad values are clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.config import Config, ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("profile", ["default.yaml", "lite.yaml", "embeddings.yaml"])
def test_shipped_profiles_load_and_validate(profile):
    config = load_config(CONFIGS / profile)
    assert isinstance(config, Config)
    assert config.source.endswith(profile)
    assert {"lengths", "flags", "style", "tfidf", "word2vec"} <= set(
        config.features.blocks
    )


def test_only_the_embeddings_profile_has_the_transformer_block():
    lite = load_config(CONFIGS / "lite.yaml")
    default = load_config(CONFIGS / "default.yaml")
    embeddings = load_config(CONFIGS / "embeddings.yaml")
    assert "embeddings" not in lite.features.blocks
    assert "embeddings" not in default.features.blocks
    # default and lite read the same features; embeddings is default plus MiniLM
    assert default.features.blocks == lite.features.blocks
    assert {
        **default.features.blocks,
        "embeddings": embeddings.features.blocks["embeddings"],
    } == embeddings.features.blocks
    assert embeddings.training == default.training


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
        ConfigError,
        match=rf"{re.escape(str(path))}: training.boosters: .*non-empty list of "
        r"names from \['lightgbm', 'xgboost'\]. Got \['catboost'\]",
    ):
        load_config(path)


LITE = CONFIGS / "lite.yaml"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "training.stack_method=blnd",
            "training.stack_method: The 'stack_method' parameter of PreferenceModel "
            "must be one of 'auto', 'blend', 'logreg'. Got 'blnd'.",
        ),
        ("training.degenerate_rules=maybe", "training.degenerate_rules: The "),
        ("training.n_folds=1", "training.n_folds: The 'n_folds' parameter"),
        ("features.n_jobs=0", "features.n_jobs: The 'n_jobs' parameter"),
        ("data.max_chars=0", "data.max_chars: The 'max_chars' parameter"),
        ("seed=-1", "seed: The 'seed' parameter"),
        ("features.blocks.tfidf.output=sprase", "features.blocks.tfidf: The 'output'"),
        (
            "training.booster_params.catboost={depth: 6}",
            "training.booster_params: unknown booster(s) ['catboost']; valid boosters "
            "are ['lightgbm', 'xgboost'].",
        ),
        (
            "training.booster_params.lightgbm.num_boost_round=0",
            "training.booster_params.lightgbm: num_boost_round must be an int >= 1. "
            "Got 0.",
        ),
        (
            "training.booster_params.xgboost.max_bin={a: 1}",
            "training.booster_params.xgboost: booster param 'max_bin' must be null",
        ),
        (
            "tuning.search_spaces.catboost={depth: {low: 2, high: 8}}",
            "tuning.search_spaces: unknown booster(s) ['catboost']",
        ),
        (
            "tuning.search_spaces.lightgbm.num_leaves={low: 63, high: 7, type: int}",
            "tuning.search_spaces.lightgbm: 'num_leaves': low must be < high. Got "
            "low=63, high=7.",
        ),
        (
            "tuning.search_spaces.xgboost.reg_lambda={low: 0, high: 30, log: true}",
            "tuning.search_spaces.xgboost: 'reg_lambda': a log range needs low > 0",
        ),
        (
            "tuning.search_spaces.xgboost.max_depth={low: 2, high: 7, type: long}",
            "tuning.search_spaces.xgboost: 'max_depth': type must be one of",
        ),
        (
            "tuning.search_spaces.xgboost.max_depth={low: 2, high: 7, step: 1}",
            "tuning.search_spaces.xgboost: 'max_depth': a range takes 'low' and "
            "'high' (and optional 'log', 'type'); unknown keys ['step']",
        ),
        (
            "tuning.booster_share.catboost=0.5",
            "tuning.booster_share: unknown booster(s) ['catboost']",
        ),
        (
            "tuning.booster_share.xgboost=-1",
            "tuning.booster_share: booster_share['xgboost'] must be a finite number",
        ),
        ("tuning.n_folds=1", "tuning.n_folds: n_folds must be an int >= 2"),
        ("tuning.max_rows=50", "tuning.max_rows: max_rows must be None (every row)"),
        ("tuning.n_trials=-1", "tuning.n_trials must be >= 0"),
        ("tuning.timeout=0", "tuning.timeout must be null (no limit) or > 0"),
        ("tuning.storage=optuna.db", "tuning.storage: storage 'optuna.db' is not a"),
        ("tuning.study_prefix=''", "tuning.study_prefix must be a non-empty string"),
    ],
)
def test_bad_value_fails_at_load_naming_the_file_and_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(LITE, [override])
    assert str(error.value).startswith(f"{LITE}: ")
    assert message in str(error.value)


def test_tuning_folds_may_be_null_and_shares_may_omit_a_booster():
    config = load_config(
        LITE, ["tuning.n_folds=null", "tuning.max_rows=null", "tuning.booster_share={}"]
    )
    assert config.tuning.n_folds is None
    assert config.tuning.booster_share == {}


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


def test_a_null_block_override_drops_the_block():
    config = load_config(
        CONFIGS / "lite.yaml",
        ["features.blocks.tfidf=null", "features.blocks.word2vec=null"],
    )
    assert list(config.features.blocks) == ["lengths", "style", "flags", "similarity"]
    assert "tfidf" in load_config(CONFIGS / "lite.yaml").features.blocks


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
