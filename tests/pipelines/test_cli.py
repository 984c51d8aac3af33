"""The command-line entry points, end to end on a small synthetic set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.battles import CLASSES
from pipelines import build_features, evaluate, predict, train_gbdt
from pipelines.make_demo_data import make_demo_battles

ROOT = Path(__file__).resolve().parents[2]
PROFILE = """
seed: 1
features:
  store: {store}
  blocks:
    lengths: {{}}
    flags: {{}}
training:
  n_folds: 3
  boosters: [lightgbm, xgboost]
  booster_params:
    lightgbm: {{num_boost_round: 50, learning_rate: 0.1, num_leaves: 15,
                num_threads: 1}}
    xgboost: {{num_boost_round: 50, learning_rate: 0.1, max_depth: 3, nthread: 1}}
tuning:
  n_trials: 0
  storage: sqlite:///{db}
  n_folds: 2
  search_spaces:
    lightgbm:
      learning_rate: {{low: 0.05, high: 0.2, log: true}}
    xgboost:
      max_depth: {{low: 2, high: 4, type: int}}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "train.csv"
    make_demo_battles(n_rows=400, seed=5).to_csv(data, index=False)
    config = root / "profile.yaml"
    config.write_text(PROFILE.format(store=root / "store", db=root / "optuna.db"))
    return {"root": root, "data": data, "config": config}


@pytest.mark.parametrize(
    ("module", "options"),
    [
        ("build_features", ["--config", "--data", "--set", "--store", "--blocks"]),
        (
            "train_gbdt",
            [
                "--config",
                "--data",
                "--set",
                "--trials",
                "--timeout",
                "--store",
                "--out",
            ],
        ),
        (
            "predict",
            ["--config", "--data", "--model", "--out", "--class-prior", "--fit-prior"],
        ),
        ("evaluate", ["--config", "--data", "--model", "--out"]),
    ],
)
def test_help_documents_every_option(module, options):
    result = subprocess.run(
        [sys.executable, "-m", f"pipelines.{module}", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    for option in options:
        assert option in result.stdout


def _common(workspace) -> list[str]:
    """The options every pipeline takes, on the workspace's profile and data."""
    return [
        "--config",
        str(workspace["config"]),
        "--data",
        str(workspace["data"]),
        "--quiet",
    ]


def test_build_train_predict_evaluate_end_to_end(workspace, capsys, tmp_path):
    # A store of its own: the module's store may already hold this battle set
    # when another test of the module ran first (random order).
    common = _common(workspace)
    store = ["--store", str(tmp_path / "store")]
    assert build_features.main([*common, *store]) == 0
    out = capsys.readouterr()
    assert "built" in out.out and "miss" in out.err

    assert build_features.main([*common, *store]) == 0
    assert "hit" in capsys.readouterr().err

    model_dir = workspace["root"] / "model"
    train = [*common, *store, "--trials", "0", "--out", str(model_dir)]
    assert train_gbdt.main(train) == 0
    message = capsys.readouterr().out
    loss = float(message.split("out-of-fold log loss ")[1].split()[0])
    prior = float(message.split("class prior ")[1].split(",")[0])
    assert loss < prior
    assert (model_dir / "report" / "report.md").exists()
    assert (model_dir / "report" / "calibration.png").exists()

    submission = workspace["root"] / "submission.csv"
    test_frame = pd.read_csv(workspace["data"]).drop(columns=list(CLASSES)).head(50)
    # A float id column (as pandas makes one with a missing value) is written
    # as 85216410.0; the submission keeps the integer, and 0.5 ids stay.
    test_frame["id"] = test_frame["id"].astype(float)
    test_frame.loc[0, "id"] += 0.5
    test_path = workspace["root"] / "test.csv"
    test_frame.to_csv(test_path, index=False)
    assert (
        predict.main(
            [
                "--model",
                str(model_dir),
                "--data",
                str(test_path),
                "--out",
                str(submission),
                "--quiet",
            ]
        )
        == 0
    )
    written = pd.read_csv(submission, dtype={"id": str})
    assert list(written.columns) == ["id", *CLASSES]
    assert len(written) == 50
    expected_ids = [str(int(i)) for i in test_frame["id"]]
    expected_ids[0] = f"{test_frame['id'][0]}"
    assert written["id"].tolist() == expected_ids
    assert expected_ids[0].endswith(".5")
    np.testing.assert_allclose(written[list(CLASSES)].sum(axis=1), 1.0, atol=1e-6)

    eval_dir = workspace["root"] / "eval"
    assert (
        evaluate.main([*common, "--model", str(model_dir), "--out", str(eval_dir)]) == 0
    )
    assert (eval_dir / "report.json").exists()


def test_user_errors_exit_2_with_one_line_and_no_traceback(workspace, tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": [1], "prompt": ['["q"]']}).to_csv(bad, index=False)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.build_features",
            "--config",
            str(workspace["config"]),
            "--data",
            str(bad),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "missing column(s) ['response_a', 'response_b']" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bug", ["ValueError", "KeyError"])
def test_a_bug_shows_its_traceback_and_exits_1(workspace, bug):
    # A bug inside the code, not a user error: its traceback must reach the user.
    child = (
        "import sys\n"
        "import pipelines.build_features as cli\n"
        "def broken(*args, **kwargs):\n"
        f"    raise {bug}('deliberate bug')\n"
        "cli.truncate_battles = broken\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", child, *_common(workspace)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert f"{bug}: " in result.stderr and "deliberate bug" in result.stderr
    assert "error: " not in result.stderr


def test_run_cli_reports_only_user_errors_and_os_errors_in_one_line(capsys):
    from features.errors import DataFileError, InvalidParameterError
    from pipelines._cli import base_parser, run_cli

    def failing(error: BaseException):
        def main(args):
            raise error

        return main

    for error in (
        DataFileError("bad file"),
        InvalidParameterError("bad param"),
        FileNotFoundError("no such file"),
    ):
        assert run_cli(failing(error), base_parser("x"), ["--quiet"]) == 2
        assert capsys.readouterr().err == f"error: {error}\n"
    for bug in (ValueError("bug"), TypeError("bug"), KeyError("bug")):
        with pytest.raises(type(bug), match="bug"):
            run_cli(failing(bug), base_parser("x"), ["--quiet"])


@pytest.mark.parametrize("prior", ["0.5,0.5", "a,b,c", "0.5,0.5,0", "0.5,nan,0.1"])
def test_a_bad_class_prior_is_an_option_error(prior, capsys):
    with pytest.raises(SystemExit) as raised:
        predict.main(["--class-prior", prior])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "argument --class-prior: must be three positive numbers A,B,TIE" in err
    assert repr(prior) in err


def test_packages_export_their_public_names_without_importing_torch():
    child = (
        "import sys\n"
        "import features, pipelines\n"
        "for package in (features, pipelines):\n"
        "    assert len(set(package.__all__)) == len(package.__all__)\n"
        "    missing = [n for n in package.__all__ if not hasattr(package, n)]\n"
        "    assert not missing, (package.__name__, missing)\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


def test_unknown_config_key_exits_2_naming_the_key(workspace):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.train_gbdt",
            "--config",
            str(workspace["config"]),
            "--data",
            str(workspace["data"]),
            "--set",
            "training.nfolds=3",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "unknown key 'training.nfolds'" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_with_a_missing_model_is_a_clear_error(workspace, tmp_path, capsys):
    code = predict.main(
        ["--model", str(tmp_path / "none"), "--data", str(workspace["data"]), "--quiet"]
    )
    assert code == 2
    assert "no model at" in capsys.readouterr().err


def test_unknown_block_in_blocks_option_is_a_clear_error(workspace, capsys):
    code = build_features.main(
        [
            "--config",
            str(workspace["config"]),
            "--data",
            str(workspace["data"]),
            "--blocks",
            "tfidf",
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--blocks ['tfidf'] are not in" in err
    assert "its blocks are ['lengths', 'flags']. Pick from those" in err


def test_tuning_runs_on_the_row_subsample_and_the_final_fit_on_every_row(
    workspace, tmp_path
):
    model_dir = tmp_path / "model"
    argv = [
        *_common(workspace),
        "--trials",
        "2",
        "--set",
        "tuning.max_rows=150",
        "--set",
        f"tuning.storage=sqlite:///{tmp_path / 'optuna.db'}",
        "--out",
        str(model_dir),
    ]
    assert train_gbdt.main(argv) == 0
    report = json.loads((model_dir / "report" / "report.json").read_text())
    assert 100 <= report["tuning"]["rows"] <= 150
    assert report["n_rows"] == 400
    folds = pd.read_csv(model_dir / "report" / "folds.csv")
    assert len(folds) == 400
