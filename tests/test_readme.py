"""README stays true: the two commands come first and the CLI reference is complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines import (
    build_features,
    evaluate,
    make_demo_data,
    predict,
    train_gbdt,
    tune_worker,
)

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PARSERS = {
    "build_features": build_features._parser,
    "train_gbdt": train_gbdt._parser,
    "tune_worker": tune_worker._parser,
    "predict": predict._parser,
    "evaluate": evaluate._parser,
    "make_demo_data": make_demo_data._build_parser,
}


def test_first_code_block_holds_exactly_the_two_fresh_machine_commands():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_ci_installs_chromium_then_calls_make_test_with_a_throwaway_postgres():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    lines = [
        line
        for line in ci.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    chromium = [
        "if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; "
        "then",
        "    apt-get update",
        "    apt-get install -y chromium chromium-driver",
        "fi",
    ]
    postgres = ["source .ci/postgres.sh", "postgres_start", "trap postgres_stop EXIT"]
    assert lines == [*chromium, *postgres, "make test"]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_cli_reference_lists_every_option_of_every_command(name):
    section = README.split(f"### `python -m pipelines.{name}`", 1)[1].split("###", 1)[0]
    for action in PARSERS[name]()._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert f"`{option}`" in section, f"{name}: {option} missing from README"
