"""Model directories and store entries: verified before use, never unpickled.

Loading checks every file against the sha256 manifest and the format version
first, and refuses a modified, missing or extra file naming it. Files are
read only through parsers that cannot run code (JSON, ``np.load`` with
``allow_pickle=False``, LightGBM text, XGBoost JSON), so a pickle planted where
a state file should be, even with a manifest rewritten to match it, is refused
and never unpickled.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from features.blocks.base import FeatureMatrix
from features.store import FeatureStore, write_manifest
from models import ModelIntegrityError, PreferenceModel
from models.artifact import FORMAT_VERSION
from pipelines import predict
from pipelines.make_demo_data import make_demo_battles

PARAMS = {
    "lightgbm": {"num_boost_round": 20, "num_threads": 1},
    "xgboost": {"num_boost_round": 20, "max_depth": 3, "nthread": 1},
}
STATE_FILES = [
    "model.json",
    "boosters/lightgbm-fold0.lgb.txt",
    "boosters/xgboost-fold2.xgb.json",
    "blocks/lengths/state.json",
    "blocks/lengths/block.json",
    "blocks/flags/state_arrays.npz",
    "folds.npy",
    "oof_proba.npy",
]


class _Bomb:
    """Unpickling it creates the directory ``path``: proof that it ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.fixture(scope="module")
def battles():
    return make_demo_battles(n_rows=200, seed=4)


@pytest.fixture(scope="module")
def pristine(battles, tmp_path_factory) -> Path:
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        boosters=("lightgbm", "xgboost"),
        booster_params=PARAMS,
        n_folds=3,
        seed=0,
    ).fit(battles)
    return model.save(tmp_path_factory.mktemp("artifact") / "model")


@pytest.fixture
def model_dir(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "model"))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Every way numpy or anything else could unpickle now fails the test."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("something tried to unpickle a model file")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    return calls


def _plant(path: Path, marker: Path) -> None:
    """Replace ``path`` by a pickle bomb in the form its suffix suggests."""
    bomb = np.array([_Bomb(marker)], dtype=object)
    if path.suffix == ".npy":
        with path.open("wb") as handle:
            np.save(handle, bomb, allow_pickle=True)
    elif path.suffix == ".npz":
        with path.open("wb") as handle:
            np.savez(handle, vectors=bomb)
    else:
        path.write_bytes(pickle.dumps(_Bomb(marker)))


def _rewrite_manifest(directory: Path) -> None:
    """What an attacker with write access does: make the manifest match."""
    write_manifest(directory, {"format_version": FORMAT_VERSION})


# ---------------------------------------------------------------- manifest
def test_pristine_directory_loads_and_predicts_like_the_model(model_dir, battles):
    loaded = PreferenceModel.load(model_dir)
    again = PreferenceModel.load(model_dir)

    np.testing.assert_array_equal(
        loaded.predict_proba(battles.head(20)), again.predict_proba(battles.head(20))
    )


@pytest.mark.parametrize("name", STATE_FILES)
def test_modified_file_is_refused_naming_it(model_dir, name):
    path = model_dir / name
    path.write_bytes(path.read_bytes() + b" ")

    with pytest.raises(
        ModelIntegrityError, match=rf"file '{name}' does not match its sha256"
    ):
        PreferenceModel.load(model_dir)


@pytest.mark.parametrize("name", STATE_FILES)
def test_missing_file_is_refused_naming_it(model_dir, name):
    (model_dir / name).unlink()

    with pytest.raises(ModelIntegrityError, match=rf"file '{name}' is missing"):
        PreferenceModel.load(model_dir)


@pytest.mark.parametrize(
    "name", ["model.pkl", "blocks/lengths/extra.npy", ".hidden", "boosters/x.txt"]
)
def test_extra_file_is_refused_naming_it(model_dir, name):
    (model_dir / name).write_bytes(b"extra")

    with pytest.raises(
        ModelIntegrityError, match=rf"file '{name}' is not in the manifest \(extra\)"
    ):
        PreferenceModel.load(model_dir)


def test_missing_or_unreadable_manifest_is_refused(model_dir):
    manifest = model_dir / "manifest.json"
    manifest.write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="manifest.json is unreadable"):
        PreferenceModel.load(model_dir)

    manifest.unlink()
    with pytest.raises(ModelIntegrityError, match="manifest.json is missing"):
        PreferenceModel.load(model_dir)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 99, "1", None, True])
def test_newer_or_malformed_format_version_is_refused(model_dir, version):
    meta = json.loads((model_dir / "model.json").read_text())
    meta["format_version"] = version
    (model_dir / "model.json").write_text(json.dumps(meta))
    _rewrite_manifest(model_dir)

    with pytest.raises(
        ModelIntegrityError,
        match=rf"has format version {version!r}, but this code reads versions up to "
        rf"{FORMAT_VERSION}\. Upgrade arena-preference or retrain",
    ):
        PreferenceModel.load(model_dir)


@pytest.mark.parametrize(
    ("content", "error"),
    [("[1, 2]", "TypeError: expected a JSON object"), ("{]", "JSONDecodeError")],
)
def test_model_json_that_is_not_an_object_is_refused(model_dir, content, error):
    (model_dir / "model.json").write_text(content)
    _rewrite_manifest(model_dir)

    with pytest.raises(
        ModelIntegrityError,
        match=rf"'model.json' passed its sha256 check but could not be read "
        rf"\({error}",
    ):
        PreferenceModel.load(model_dir)


def test_predict_cli_refuses_a_newer_model_in_one_line(
    model_dir, battles, tmp_path, capsys
):
    meta = json.loads((model_dir / "model.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (model_dir / "model.json").write_text(json.dumps(meta))
    _rewrite_manifest(model_dir)
    data = tmp_path / "test.csv"
    battles.head(5).to_csv(data, index=False)

    code = predict.main(
        ["--model", str(model_dir), "--data", str(data), "--quiet"]
        + ["--out", str(tmp_path / "out.csv")]
    )

    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[-1].startswith("error: model directory") and "format version" in err[-1]
    assert not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------- pickles
def test_the_planted_bomb_would_go_off_if_unpickled(tmp_path):
    """Control: the bomb is real, so the tests below prove something."""
    marker = tmp_path / "boom"
    _plant(tmp_path / "folds.npy", marker)

    np.load(tmp_path / "folds.npy", allow_pickle=True)

    assert marker.exists()


@pytest.mark.parametrize("name", STATE_FILES)
def test_pickle_bomb_with_a_matching_manifest_is_refused_and_never_unpickled(
    model_dir, name, tmp_path, no_unpickling
):
    marker = tmp_path / "boom"
    _plant(model_dir / name, marker)
    _rewrite_manifest(model_dir)
    shown = name.split("/")[0] if name.startswith("blocks/") else name

    with pytest.raises(ModelIntegrityError, match=rf"'{shown}'.* could not be read"):
        PreferenceModel.load(model_dir)

    assert not marker.exists()
    assert no_unpickling == []


@pytest.mark.parametrize("name", STATE_FILES)
def test_pickle_bomb_without_a_matching_manifest_is_refused_before_reading(
    model_dir, name, tmp_path, no_unpickling
):
    marker = tmp_path / "boom"
    _plant(model_dir / name, marker)

    with pytest.raises(ModelIntegrityError, match=rf"'{name}' does not match"):
        PreferenceModel.load(model_dir)

    assert not marker.exists()
    assert no_unpickling == []


def test_extra_pickle_listed_in_the_manifest_is_never_opened(
    model_dir, battles, tmp_path, no_unpickling
):
    marker = tmp_path / "boom"
    _plant(model_dir / "model.pkl", marker)
    _plant(model_dir / "blocks" / "lengths" / "state.pkl", marker)
    _rewrite_manifest(model_dir)

    model = PreferenceModel.load(model_dir)
    model.predict_proba(battles.head(5))

    assert not marker.exists()
    assert no_unpickling == []


def test_store_entry_holding_a_pickle_is_recomputed_never_unpickled(
    tmp_path, no_unpickling
):
    store = FeatureStore(tmp_path / "store")
    matrix = FeatureMatrix(np.ones((3, 2), dtype=np.float32), ("a_x", "b_x"))
    store.save("lengths-0123", matrix, {"fitted": True}, {"w": np.zeros(2)})
    entry = store.path("lengths-0123")
    marker = tmp_path / "boom"
    _plant(entry / "values.npy", marker)
    write_manifest(entry, {"meta": {}, "format": 1})

    with pytest.warns(UserWarning, match=r"unreadable \(ValueError: Object arrays"):
        assert store.load("lengths-0123") is None

    assert not entry.exists()
    assert not marker.exists()
    assert no_unpickling == []


# ---------------------------------------------------------------- saving
def test_a_failed_save_leaves_the_previous_model_whole(pristine, tmp_path, monkeypatch):
    model = PreferenceModel.load(pristine)
    target = Path(shutil.copytree(pristine, tmp_path / "model"))
    before = {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        model.save(target)
    with pytest.raises(OSError, match="No space left"):
        model.save(tmp_path / "new-model")

    after = {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    PreferenceModel.load(target)
