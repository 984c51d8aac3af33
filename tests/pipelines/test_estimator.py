"""The profile -> estimator mapping: every parameter from its key, nothing shared."""

from __future__ import annotations

from pathlib import Path

from sklearn.base import clone

from pipelines.config import load_config
from pipelines.estimator import model_from_config

LITE = Path(__file__).resolve().parents[2] / "configs" / "lite.yaml"


def test_model_takes_every_parameter_from_the_profile():
    config = load_config(
        LITE, ["training.stack_method=blend", "seed=9", "data.max_chars=1000"]
    )
    model = model_from_config(config)

    params = model.get_params()
    assert params["blocks"] == config.features.blocks
    assert params["n_jobs"] == config.features.n_jobs
    assert params["boosters"] == tuple(config.training.boosters)
    assert params["booster_params"] == config.training.booster_params
    assert params["n_folds"] == config.training.n_folds
    assert (params["stack_method"], params["seed"], params["max_chars"]) == (
        "blend",
        9,
        1000,
    )
    for name in ("calibrate", "per_class_bias", "swap_augment", "swap_average"):
        assert params[name] == getattr(config.training, name)
    assert params["degenerate_rules"] == config.training.degenerate_rules
    assert clone(model).get_params() == params


def test_overrides_replace_profile_values_and_nothing_is_shared():
    config = load_config(LITE)
    model = model_from_config(config, n_folds=3, verbose=True)

    assert (model.n_folds, model.verbose) == (3, True)
    model.booster_params["lightgbm"]["max_bin"] = 7
    model.blocks["tfidf"]["svd_components"] = 2
    assert config.training.booster_params["lightgbm"]["max_bin"] == 63
    assert config.features.blocks["tfidf"]["svd_components"] == 64
