"""Concurrency: several writers on one feature store never corrupt it.

Each store entry is written to its own temporary directory and renamed into
place; a rename onto an entry that exists fails, so the first complete write
wins and the others keep it. No lock is needed, and readers never see a
partial entry. The tests race two ``build_features`` processes (once forced to
rename the same entry at the same moment, once unsynchronised) and a crowd of
threads writing and reading one key.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from features.blocks.base import FeatureMatrix
from features.store import FeatureStore
from pipelines import build_features
from pipelines.make_demo_data import make_demo_battles

ROOT = Path(__file__).resolve().parents[2]
PROFILE = """
seed: 2
features:
  store: {store}
  blocks:
    lengths: {{}}
    flags: {{}}
    style: {{}}
training:
  n_folds: 3
tuning:
  n_trials: 0
  storage: sqlite:///{root}/optuna.db
"""
BARRIER_SCRIPT = """
import os, sys, time
from pathlib import Path
import features.store as store

real = store.write_manifest
sync = Path({sync!r})
waited = False

def at_barrier(directory, *args, **kwargs):
    # Both processes finish their copy of the first entry, then rename it
    # at the same moment.
    global waited
    real(directory, *args, **kwargs)
    if not waited:
        waited = True
        (sync / f"ready-{{os.getpid()}}").touch()
        deadline = time.monotonic() + 120
        while len(list(sync.glob("ready-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.002)

store.write_manifest = at_barrier
from pipelines.build_features import main
sys.exit(main({argv!r}))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("concurrency") / "train.csv"
    make_demo_battles(n_rows=300, seed=6).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict[str, bytes]:
    """Store files of one build alone."""
    root = tmp_path_factory.mktemp("reference")
    assert build_features.main(_argv(_profile(root), data, "--quiet")) == 0
    return _store_files(root / "store")


def _profile(root: Path) -> Path:
    config = root / "profile.yaml"
    config.write_text(PROFILE.format(store=root / "store", root=root))
    return config


def _argv(config: Path, data: Path, *extra: str) -> list[str]:
    return ["--config", str(config), "--data", str(data), *extra]


def _store_files(root: Path) -> dict[str, bytes]:
    store = FeatureStore(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a corrupt entry would warn
        for key in store.keys():
            assert store.load(key) is not None, key
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for key in store.keys()
        for p in (root / key).rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }


def _hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def _run_together(commands: list[list[str]], logs: list[Path]) -> list[int]:
    handles = [log.open("w") for log in logs]
    processes = []
    try:
        for command, handle in zip(commands, handles, strict=True):
            processes.append(
                subprocess.Popen(
                    command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
                )
            )
        return [process.wait(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:  # a failed test leaves nothing running
                process.kill()
                process.wait()
        for handle in handles:
            handle.close()


@pytest.mark.slow
def test_two_builds_renaming_the_same_entry_at_once_both_succeed(
    data, reference, tmp_path
):
    config = _profile(tmp_path)
    sync = tmp_path / "sync"
    sync.mkdir()
    script = BARRIER_SCRIPT.format(sync=str(sync), argv=_argv(config, data))
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    codes = _run_together([[sys.executable, "-c", script]] * 2, logs)

    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], outputs
    assert len(list(sync.glob("ready-*"))) == 2  # both reached the rename
    # One of them lost the race on the first entry and kept the winner's.
    assert any("was written concurrently; kept it" in out for out in outputs)
    assert _store_files(tmp_path / "store") == reference
    assert _hidden(tmp_path / "store") == []


@pytest.mark.slow
def test_two_unsynchronised_builds_on_one_store_leave_it_whole(
    data, reference, tmp_path
):
    config = _profile(tmp_path)
    command = [sys.executable, "-m", "pipelines.build_features"]
    command += _argv(config, data, "--quiet")
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    codes = _run_together([command, command], logs)

    assert codes == [0, 0], [log.read_text() for log in logs]
    assert _store_files(tmp_path / "store") == reference
    assert _hidden(tmp_path / "store") == []


def test_threads_writing_and_reading_one_key_never_see_a_partial_entry(tmp_path):
    store = FeatureStore(tmp_path / "store")
    values = np.arange(20_000, dtype=np.float32).reshape(-1, 4)
    matrix = FeatureMatrix(values, ("a_x", "b_x", "d_x", "s_x"))
    errors: list[BaseException] = []
    seen: list[np.ndarray] = []
    writing = threading.Event()

    def write() -> None:
        writing.wait()
        try:
            store.save("lengths-abc", matrix, {"n": 1}, {"w": np.ones(3)}, {"m": 1})
        except BaseException as err:  # collected for the assert below
            errors.append(err)

    def read() -> None:
        writing.wait()
        try:
            for _ in range(200):
                entry = store.load("lengths-abc")
                if entry is not None:
                    seen.append(entry.matrix.values)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write) for _ in range(8)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reader meeting a corrupt entry warns
        for thread in threads:
            thread.start()
        writing.set()
        for thread in threads:
            thread.join(timeout=120)

    assert errors == []
    assert store.keys() == ["lengths-abc"]
    assert _hidden(tmp_path / "store") == []
    for values_seen in [*seen, store.load("lengths-abc").matrix.values]:
        np.testing.assert_array_equal(values_seen, values)
