"""The on-disk cache of exported ONNX encoders: built once, checked, atomic."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.blocks._onnx_cache import CACHE_ENV, cache_root, cached_onnx


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


class _Builder:
    """Writes a stand-in model file and counts the builds."""

    def __init__(self, content: bytes = b"graph") -> None:
        self.content = content
        self.calls = 0

    def __call__(self, folder: Path) -> str:
        self.calls += 1
        (folder / "model.onnx").write_bytes(self.content)
        return "model.onnx"


def test_an_entry_is_built_once_and_read_back(cache, tmp_path):
    build = _Builder()
    first = cached_onnx(["model-a", "int8"], build, tmp_path)
    second = cached_onnx(["model-a", "int8"], build, tmp_path)
    assert build.calls == 1
    assert first == second and first.read_bytes() == b"graph"
    assert cache in first.parents


def test_another_key_builds_another_entry(cache, tmp_path):
    build = _Builder()
    a = cached_onnx(["model-a", "int8"], build, tmp_path)
    b = cached_onnx(["model-a", "fp32"], build, tmp_path)
    assert build.calls == 2 and a != b


def test_a_damaged_entry_is_rebuilt(cache, tmp_path):
    build = _Builder()
    path = cached_onnx(["model-a"], build, tmp_path)
    path.write_bytes(b"tampered")
    again = cached_onnx(["model-a"], build, tmp_path)
    assert build.calls == 2 and again.read_bytes() == b"graph"


def test_a_failed_build_leaves_nothing_behind(cache, tmp_path):
    def broken(folder: Path) -> str:
        (folder / "model.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_onnx(["model-a"], broken, tmp_path)
    assert list((cache / "onnx").iterdir()) == []
    build = _Builder()
    assert cached_onnx(["model-a"], build, tmp_path).read_bytes() == b"graph"


def test_off_builds_in_the_callers_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_root() is None
    build = _Builder()
    assert cached_onnx(["model-a"], build, tmp_path) == tmp_path / "model.onnx"


def test_an_unwritable_cache_falls_back_to_the_callers_folder(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert cached_onnx(["model-a"], _Builder(), scratch) == scratch / "model.onnx"


def test_the_default_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "arena-preference"
