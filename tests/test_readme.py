"""README stays short and true: the two commands first, the CLI reference complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines import (
    build_features,
    evaluate,
    make_demo_data,
    predict,
    serve,
    train_gbdt,
    tune_worker,
)

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
CLI_REFERENCE = (REPO / "docs" / "cli.md").read_text()
PARSERS = {
    "build_features": build_features._parser,
    "train_gbdt": train_gbdt._parser,
    "tune_worker": tune_worker._parser,
    "predict": predict._parser,
    "evaluate": evaluate._parser,
    "make_demo_data": make_demo_data._build_parser,
    "serve": serve._parser,
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
    heading = f"\n## `python -m pipelines.{name}`\n"
    assert heading in CLI_REFERENCE, f"docs/cli.md has no section for {name}"
    section = CLI_REFERENCE.split(heading, 1)[1].split("\n## ", 1)[0]
    for action in PARSERS[name]()._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert f"`{option}`" in section, f"{name}: {option} not in docs/cli.md"


def test_readme_is_short_and_its_lines_fit_a_screen():
    lines = README.splitlines()
    assert len(lines) <= 250
    assert [n for n, line in enumerate(lines, 1) if len(line) > 200] == []


def test_accuracy_section_starts_with_the_place_of_the_target_table():
    accuracy = README.split("\n## Accuracy\n", 1)[1].split("\n## ", 1)[0]
    assert accuracy.lstrip().startswith("<!-- target table -->")
    assert "python -m benchmarks.bench_transfer" in accuracy


def test_readme_shows_own_data_in_four_commands_and_the_python_api():
    own = README.split("\n## Your own data\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", own, re.S).group(1)
    commands = [line.split()[2] for line in block.strip().splitlines()]
    assert commands == [
        "pipelines.build_features",
        "pipelines.train_gbdt",
        "pipelines.predict",
        "pipelines.evaluate",
    ]
    api = README.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    assert len(re.search(r"```python\n(.*?)```", api, re.S).group(1).splitlines()) <= 12
