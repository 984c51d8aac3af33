"""Interrupted work: SIGKILL ``build_features`` and ``train_gbdt``, rerun, compare.

Kills land at fixed points inside the writers (a ``python -c`` wrapper makes
one store or model-directory function SIGKILL its own process), at seeded
random moments, and once enough Optuna trials have finished. After every kill:

- the feature store holds only complete entries that pass their manifest;
- a model directory is either absent, the previous model, or complete;
- finished Optuna trials are kept, and a rerun completes to the target;
- the rerun leaves no temporary directories and its result equals an
  uninterrupted run's with the same seed: identical store files, identical
  best parameters, identical booster files and predictions.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest

from features.store import FeatureStore
from models import PreferenceModel
from pipelines import build_features, train_gbdt
from pipelines.make_demo_data import make_demo_battles

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROFILE = """
seed: 3
data:
  max_chars: 20000
features:
  store: {root}/store
  blocks:
{blocks}
training:
  n_folds: 3
  boosters: [lightgbm]
  booster_params:
    lightgbm:
      num_boost_round: 30
      learning_rate: 0.1
      num_leaves: 15
      num_threads: 1
tuning:
  n_trials: 0
  storage: sqlite:///{root}/optuna.db
  study_prefix: interrupts
  n_folds: 2
  search_spaces:
    lightgbm:
      learning_rate: {{low: 0.05, high: 0.3, log: true}}
      num_leaves: {{low: 4, high: 31, log: true, type: int}}
"""
FAST_BLOCKS = ("lengths", "flags")
SLOWER_BLOCKS = ("lengths", "flags", "style", "similarity")

KILL_SCRIPT = """
import os, signal, sys
import {module} as target

real = target.{function}
calls = 0

def dying(*args, **kwargs):
    global calls
    calls += 1
    if {when!r} == "before" and calls == {nth}:
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(*args, **kwargs)
    if {when!r} == "after" and calls == {nth}:
        os.kill(os.getpid(), signal.SIGKILL)
    return result

target.{function} = dying
from pipelines.{pipeline} import main
sys.exit(main({argv!r}))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("interrupts") / "train.csv"
    make_demo_battles(n_rows=400, seed=8).to_csv(path, index=False)
    return path


def _workspace(root: Path, blocks=FAST_BLOCKS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    listed = "\n".join(f"    {name}: {{}}" for name in blocks)
    config = root / "profile.yaml"
    config.write_text(PROFILE.format(root=root, blocks=listed))
    return config


def _argv(config: Path, data: Path, *extra: str) -> list[str]:
    return ["--config", str(config), "--data", str(data), "--quiet", *extra]


def _run_killed_at(
    pipeline: str,
    argv: list[str],
    log: Path,
    *,
    module: str,
    function: str,
    when: str,
    nth: int = 1,
) -> int:
    """Run ``pipelines.<pipeline>`` with ``module.function`` SIGKILLing it."""
    script = KILL_SCRIPT.format(
        module=module,
        function=function,
        when=when,
        nth=nth,
        pipeline=pipeline,
        argv=argv,
    )
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    return done.returncode


def _start(pipeline: str, argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", f"pipelines.{pipeline}", *argv],
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def _kill(process: subprocess.Popen) -> int:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    return process.wait(timeout=60)


def _wait_until(condition, process: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll ``condition`` until true; False when the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return bool(condition())
        time.sleep(0.01)
    _kill(process)  # leave nothing running behind a failed test
    raise AssertionError(f"no progress within {timeout} s")


# ---------------------------------------------------------------- checks
def _listing(directory: Path) -> set[str]:
    return set(os.listdir(directory)) if directory.exists() else set()


def _temporaries(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def _assert_store_holds_only_complete_entries(root: Path) -> list[str]:
    store = FeatureStore(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a corrupt entry would warn and be removed
        for key in store.keys():
            assert store.load(key) is not None, key
    return store.keys()


def _store_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for key in FeatureStore(root).keys()
        for p in (root / key).rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }


def _assert_model_absent_or_whole(directory: Path) -> None:
    if directory.exists():
        PreferenceModel.load(directory)  # verifies every file first


def _booster_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((directory / "boosters").iterdir())}


# ---------------------------------------------------------------- build_features
def test_build_features_killed_inside_the_store_writer_never_leaves_a_partial_entry(
    data, tmp_path
):
    reference = _workspace(tmp_path / "reference")
    assert build_features.main(_argv(reference, data)) == 0
    config = _workspace(tmp_path / "killed")
    store = tmp_path / "killed" / "store"
    kill_points = [
        # (function in features.store, before/after the call, which call)
        ("write_state", "before", 1),  # values written, state and manifest not
        ("write_manifest", "after", 1),  # complete but not yet renamed
        ("write_manifest", "before", 2),  # one entry renamed, the next half-written
    ]

    for function, when, nth in kill_points:
        code = _run_killed_at(
            "build_features",
            _argv(config, data),
            tmp_path / f"{function}-{nth}.log",
            module="features.store",
            function=function,
            when=when,
            nth=nth,
        )
        assert code == -signal.SIGKILL
        assert any(name.startswith(".tmp-") for name in _temporaries(store))
        _assert_store_holds_only_complete_entries(store)
    assert len(FeatureStore(store).keys()) == 1  # the entry renamed before the kill

    assert build_features.main(_argv(config, data)) == 0

    assert _temporaries(store) == []
    assert _store_files(store) == _store_files(tmp_path / "reference" / "store")


def test_build_features_killed_at_random_moments_then_rerun_equals_one_run(
    data, tmp_path
):
    rng = random.Random(20240611)
    reference = _workspace(tmp_path / "reference", SLOWER_BLOCKS)
    started = time.perf_counter()
    assert build_features.main(_argv(reference, data)) == 0
    build_seconds = time.perf_counter() - started
    config = _workspace(tmp_path / "killed", SLOWER_BLOCKS)
    store = tmp_path / "killed" / "store"

    codes = []
    for _ in range(3):
        before = _listing(store)
        process = _start("build_features", _argv(config, data), tmp_path / "log")
        # Wait for its first write (a new temporary directory or entry), then
        # let it run a random while longer: up to half a whole build, so the
        # kill lands mid-build however fast this machine is.
        _wait_until(lambda before=before: _listing(store) - before, process)
        time.sleep(rng.uniform(0.0, 0.5) * build_seconds)
        codes.append(_kill(process))
        _assert_store_holds_only_complete_entries(store)
    assert -signal.SIGKILL in codes  # at least one kill landed mid-build

    assert build_features.main(_argv(config, data)) == 0

    assert _temporaries(store) == []
    assert _store_files(store) == _store_files(tmp_path / "reference" / "store")


# ---------------------------------------------------------------- train_gbdt
def test_train_killed_while_writing_the_model_never_leaves_it_half_written(
    data, tmp_path
):
    reference = _workspace(tmp_path / "reference")
    reference_model = tmp_path / "reference" / "model"
    assert (
        train_gbdt.main(
            _argv(reference, data, "--trials", "0", "--out", str(reference_model))
        )
        == 0
    )
    config = _workspace(tmp_path / "killed")
    out = tmp_path / "killed" / "model"
    argv = _argv(config, data, "--trials", "0", "--out", str(out))

    # First save: killed with every file written but before the manifest.
    code = _run_killed_at(
        "train_gbdt",
        argv,
        tmp_path / "first.log",
        module="models.artifact",
        function="write_manifest",
        when="before",
    )
    assert code == -signal.SIGKILL
    assert not out.exists()
    assert any(name.startswith(".tmp-model-") for name in _temporaries(out.parent))

    assert train_gbdt.main(argv) == 0
    assert not [n for n in _temporaries(out.parent) if n.startswith(".tmp-")]
    first = PreferenceModel.load(out)
    assert _booster_files(out) == _booster_files(reference_model)

    # Replacing a model: killed mid-write, the previous model stays whole.
    code = _run_killed_at(
        "train_gbdt",
        argv,
        tmp_path / "second.log",
        module="models.artifact",
        function="write_manifest",
        when="after",
    )
    assert code == -signal.SIGKILL
    assert any(n.startswith(".tmp-.new-model-") for n in _temporaries(out.parent))
    battles = make_demo_battles(n_rows=50, seed=99)
    np.testing.assert_array_equal(
        PreferenceModel.load(out).predict_proba(battles), first.predict_proba(battles)
    )

    # Killed between the two renames of a replacement: no model at --out for
    # a moment, but both the old and the new one complete; the error says so.
    code = _run_killed_at(
        "train_gbdt",
        argv,
        tmp_path / "third.log",
        module="pathlib",
        function="Path.rename",
        when="after",
    )
    assert code == -signal.SIGKILL
    assert not out.exists()
    PreferenceModel.load(out.with_name(".old-model"))
    PreferenceModel.load(out.with_name(".new-model"))
    with pytest.raises(FileNotFoundError, match=r"the new model is complete at"):
        PreferenceModel.load(out)

    assert train_gbdt.main(argv) == 0
    assert _temporaries(out.parent) == []
    assert _booster_files(out) == _booster_files(reference_model)


def _finished_trials(config_root: Path) -> list[tuple]:
    storage = f"sqlite:///{config_root / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return [
        (t.number, t.state.name, t.params, t.value)
        for t in study.get_trials(deepcopy=False)
    ]


def _n_complete(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
            ).fetchone()
    except sqlite3.Error:  # the schema is still being created
        return 0
    return int(row[0])


def test_train_killed_mid_tuning_keeps_finished_trials_and_reruns_to_the_same_model(
    data, tmp_path
):
    n_trials = 4
    reference = _workspace(tmp_path / "reference")
    reference_model = tmp_path / "reference" / "model"
    assert (
        train_gbdt.main(
            _argv(
                reference,
                data,
                "--trials",
                str(n_trials),
                "--out",
                str(reference_model),
            )
        )
        == 0
    )
    config = _workspace(tmp_path / "killed")
    out = tmp_path / "killed" / "model"
    argv = _argv(config, data, "--trials", str(n_trials), "--out", str(out))

    process = _start("train_gbdt", argv, tmp_path / "train.log")
    reached = _wait_until(
        lambda: _n_complete(tmp_path / "killed" / "optuna.db") >= 2, process
    )
    code = _kill(process)
    assert reached and code == -signal.SIGKILL, (tmp_path / "train.log").read_text()
    kept = [t for t in _finished_trials(tmp_path / "killed") if t[1] == "COMPLETE"]
    assert len(kept) >= 2
    _assert_model_absent_or_whole(out)

    assert train_gbdt.main(argv) == 0

    trials = _finished_trials(tmp_path / "killed")
    complete = [t for t in trials if t[1] == "COMPLETE"]
    assert complete[: len(kept)] == kept  # finished trials are kept as they were
    assert len(complete) == n_trials
    assert {t[1] for t in trials} <= {"COMPLETE", "FAIL"}  # the killed one failed
    expected = [
        (t[2], t[3])
        for t in _finished_trials(tmp_path / "reference")
        if t[1] == "COMPLETE"
    ]
    assert [(t[2], t[3]) for t in complete] == expected
    assert _booster_files(out) == _booster_files(reference_model)
    battles = make_demo_battles(n_rows=50, seed=99)
    np.testing.assert_array_equal(
        PreferenceModel.load(out).predict_proba(battles),
        PreferenceModel.load(reference_model).predict_proba(battles),
    )
