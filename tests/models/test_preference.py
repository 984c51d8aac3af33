"""PreferenceModel: the estimator contract, symmetry, persistence, real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.battles import CLASSES, read_battles, swap
from features.errors import InvalidParameterError
from models import ModelIntegrityError, PreferenceModel, multiclass_log_loss
from pipelines.make_demo_data import make_demo_battles

FAST = {
    "lightgbm": {
        "num_boost_round": 60,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "num_threads": 1,
    },
    "xgboost": {
        "num_boost_round": 60,
        "learning_rate": 0.1,
        "max_depth": 4,
        "nthread": 1,
    },
}


@pytest.fixture(scope="module")
def demo_frame() -> pd.DataFrame:
    """A small synthetic set in the Kaggle layout (JSON strings)."""
    return make_demo_battles(n_rows=600, seed=3)


@pytest.fixture(scope="module")
def fitted(demo_frame) -> PreferenceModel:
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        boosters=("lightgbm", "xgboost"),
        booster_params=FAST,
        n_folds=3,
        seed=0,
    )
    return model.fit(demo_frame)


def _forms(frame: pd.DataFrame):
    canonical = read_battles(frame)
    return {
        "kaggle": frame,
        "canonical": canonical,
        "records": canonical[["id", "prompt", "response_a", "response_b"]].to_dict(
            orient="records"
        ),
    }


# ---------------------------------------------------------- contract
def test_clone_gives_equal_params():
    model = PreferenceModel(boosters=("xgboost",), n_folds=4, blocks={"lengths": {}})
    cloned = clone(model)
    assert cloned.get_params() == model.get_params()


def test_get_and_set_params_round_trip():
    model = PreferenceModel()
    model.set_params(n_folds=7, stack_method="blend")
    assert model.get_params()["n_folds"] == 7
    assert model.get_params()["stack_method"] == "blend"


def test_predict_before_fit_raises_not_fitted(demo_frame):
    with pytest.raises(NotFittedError, match="not fitted; call fit first"):
        PreferenceModel().predict_proba(demo_frame)


def test_fit_returns_self_and_sets_classes(fitted):
    assert list(fitted.classes_) == list(CLASSES)
    assert fitted.n_features_in_ == len(fitted.feature_names_out_)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"stack_method": "vote"},
            r"The 'stack_method' parameter of PreferenceModel must be one of 'auto', "
            r"'blend', 'logreg'\. Got 'vote'\.",
        ),
        (
            {"boosters": ("catboost",)},
            r"The 'boosters' parameter of PreferenceModel must be a non-empty list of "
            r"names from \['lightgbm', 'xgboost'\]\. Got \('catboost',\)\.",
        ),
        ({"boosters": ()}, r"'boosters' parameter .* Got \(\)\."),
        ({"boosters": "lightgbm"}, r"'boosters' parameter .* Got 'lightgbm'\."),
        (
            {"n_folds": 1},
            r"The 'n_folds' parameter of PreferenceModel must be an int in "
            r"\[2, inf\)\. Got 1\.",
        ),
        (
            {"degenerate_rules": "sometimes"},
            r"'degenerate_rules' parameter of PreferenceModel must be a bool or "
            r"'auto'\. Got 'sometimes'\.",
        ),
        ({"n_jobs": 0}, r"'n_jobs' parameter .* an int in \[1, inf\), -1 or None"),
        ({"max_chars": 0}, r"'max_chars' parameter .* or None\. Got 0\."),
        ({"calibrate": "yes"}, r"'calibrate' parameter .* must be a bool\."),
    ],
)
def test_invalid_params_are_clear_errors(demo_frame, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        PreferenceModel(**params).fit(demo_frame)


def test_fit_without_labels_is_a_clear_error(demo_frame):
    unlabelled = demo_frame.drop(columns=list(CLASSES))
    with pytest.raises(ValueError, match="no labels: pass y"):
        PreferenceModel().fit(unlabelled)


@pytest.mark.parametrize("form", ["kaggle", "canonical", "records"])
def test_predict_proba_rows_sum_to_one_for_every_input_form(fitted, demo_frame, form):
    given = _forms(demo_frame.iloc[:40])[form]
    proba = fitted.predict_proba(given)
    assert proba.shape == (40, 3)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


def test_every_input_form_gives_the_same_probabilities(fitted, demo_frame):
    forms = _forms(demo_frame.iloc[:30])
    reference = fitted.predict_proba(forms["kaggle"])
    for given in forms.values():
        np.testing.assert_allclose(fitted.predict_proba(given), reference, atol=1e-12)


# ---------------------------------------------------------- behaviour
def test_predictions_are_exactly_swap_symmetric(fitted, demo_frame):
    battles = read_battles(demo_frame.iloc[:80])
    direct = fitted.predict_proba(battles)
    swapped = fitted.predict_proba(swap(battles))
    np.testing.assert_allclose(swapped, direct[:, [1, 0, 2]], atol=1e-9)


def test_model_beats_the_class_prior_out_of_fold(fitted):
    assert fitted.metrics_["oof_log_loss"] < fitted.metrics_["class_prior"] - 0.03


def test_stacked_oof_is_no_worse_than_the_best_booster(fitted):
    assert (
        fitted.metrics_["stacked"] <= min(fitted.metrics_["boosters"].values()) + 1e-9
    )


def test_class_prior_shifts_predictions_toward_it(fitted, demo_frame):
    base = fitted.predict_proba(demo_frame.iloc[:50])
    shifted = fitted.predict_proba(demo_frame.iloc[:50], class_prior=[0.45, 0.45, 0.10])
    assert shifted[:, 2].mean() < base[:, 2].mean()
    np.testing.assert_allclose(shifted.sum(axis=1), 1.0, atol=1e-9)


def test_fit_prior_estimates_a_lower_tie_rate_on_tie_poor_data(demo_frame):
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}}, booster_params=FAST, n_folds=3
    )
    model.fit(demo_frame)
    decisive = demo_frame[demo_frame["winner_tie"] == 0]
    model.fit_prior(decisive)
    assert model.target_prior_[2] < model.train_prior_[2]
    labels = read_battles(decisive)["label"].to_numpy()
    model_prior = model.target_prior_
    model.target_prior_ = None
    before = multiclass_log_loss(labels, model.predict_proba(decisive))
    model.target_prior_ = model_prior
    after = multiclass_log_loss(labels, model.predict_proba(decisive))
    assert after < before


# ---------------------------------------------------------- persistence
def test_save_load_gives_identical_predictions(fitted, demo_frame, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = PreferenceModel.load(tmp_path / "model")
    np.testing.assert_array_equal(
        loaded.predict_proba(demo_frame.iloc[:50]),
        fitted.predict_proba(demo_frame.iloc[:50]),
    )
    assert loaded.get_params() == {
        **fitted.get_params(),
        "boosters": list(fitted.boosters),
    }


def test_saved_model_holds_no_pickle(fitted, tmp_path):
    directory = fitted.save(tmp_path / "model")
    suffixes = {p.suffix for p in directory.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".npy", ".npz", ".txt", ".csv", ".md", ".png"}


def test_tampered_booster_file_is_refused_naming_the_file(fitted, tmp_path):
    directory = fitted.save(tmp_path / "model")
    booster = next((directory / "boosters").glob("lightgbm-fold0*"))
    booster.write_text(booster.read_text().replace("num_class=3", "num_class=3 "))
    with pytest.raises(
        ModelIntegrityError, match=r"lightgbm-fold0.lgb.txt' does not match its sha256"
    ):
        PreferenceModel.load(directory)


def test_missing_and_extra_files_are_refused(fitted, tmp_path):
    directory = fitted.save(tmp_path / "model")
    (directory / "blocks" / "extra.npy").write_bytes(b"x")
    with pytest.raises(
        ModelIntegrityError, match=r"'blocks/extra.npy' is not in the manifest"
    ):
        PreferenceModel.load(directory)
    (directory / "blocks" / "extra.npy").unlink()
    (directory / "folds.npy").unlink()
    with pytest.raises(ModelIntegrityError, match=r"'folds.npy' is missing"):
        PreferenceModel.load(directory)


def test_newer_format_version_is_refused(fitted, tmp_path):
    from features.store import write_manifest

    directory = fitted.save(tmp_path / "model")
    meta = json.loads((directory / "model.json").read_text())
    meta["format_version"] = 99
    (directory / "model.json").write_text(json.dumps(meta))
    write_manifest(directory)
    with pytest.raises(ModelIntegrityError, match="format version 99"):
        PreferenceModel.load(directory)


def test_loading_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        PreferenceModel.load(tmp_path / "nothing")


def test_saving_over_an_existing_model_replaces_it(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    fitted.save(tmp_path / "model")
    PreferenceModel.load(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# ---------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.realdata
def test_slice_model_beats_the_prior_on_a_prompt_grouped_holdout(corpus_path):
    from models import make_folds, prompt_groups

    battles = read_battles(corpus_path)
    labels = battles["label"].to_numpy()
    holdout = make_folds(labels, prompt_groups(battles), n_folds=5, seed=1) == 0
    train, test = battles[~holdout], battles[holdout]
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        booster_params={
            "lightgbm": {
                "num_boost_round": 300,
                "learning_rate": 0.05,
                "num_threads": 1,
            }
        },
        n_folds=3,
    ).fit(train)
    prior = np.bincount(train["label"], minlength=3) / len(train)
    test_labels = test["label"].to_numpy()
    model_loss = multiclass_log_loss(test_labels, model.predict_proba(test))
    prior_loss = multiclass_log_loss(test_labels, np.tile(prior, (len(test), 1)))
    assert model_loss < prior_loss - 0.01
