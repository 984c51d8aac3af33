"""Benchmark reports name paths the way a reader of the repository types them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from benchmarks._report import REPO_ROOT, machine_info, portable_paths, relative
from benchmarks.run import render

CORPUS = REPO_ROOT.parent / "shared" / "data" / "corpus" / "train.csv"
SYSTEM_TMP = TMP = Path(tempfile.gettempdir()).resolve()


@pytest.fixture(autouse=True)
def temporary_folder_of_its_own(tmp_path, monkeypatch):
    """The temporary folder, deeper than the folder that holds the repository.

    A clone made with ``git clone . "$(mktemp -d)"`` lies directly in the
    system's temporary folder; there every scratch path is also "beside the
    repository" and reads ``../``. The rule under test is for a temporary
    folder apart from the repository, so each test gets one.
    """
    global TMP
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    TMP = tmp_path.resolve()


def test_paths_inside_and_beside_the_repository_are_relative_to_its_root():
    assert relative(REPO_ROOT / "configs" / "lite.yaml") == "configs/lite.yaml"
    assert relative(CORPUS) == "../shared/data/corpus/train.csv"


def test_temporary_and_home_paths_name_no_machine_folder():
    assert relative(TMP / "lite_model") == "$TMPDIR/lite_model"
    assert relative(Path.home() / "data" / "x.csv") == "~/data/x.csv"


def test_other_absolute_paths_are_kept_as_given():
    assert relative("/srv/battles/test.csv") == "/srv/battles/test.csv"


def test_portable_paths_rewrites_every_machine_folder_in_a_text():
    text = (
        f"--data {CORPUS} --store {TMP}/exp/store --config "
        f"{REPO_ROOT}/configs/lite.yaml (`{REPO_ROOT}`)"
    )
    assert portable_paths(text) == (
        "--data ../shared/data/corpus/train.csv --store $TMPDIR/exp/store "
        "--config configs/lite.yaml (`.`)"
    )


def test_portable_paths_leaves_relative_paths_that_contain_a_folder_name():
    name = SYSTEM_TMP.name
    text = f"artifacts/{name}/x and {SYSTEM_TMP}files"
    assert portable_paths(text) == text


def test_the_rendered_report_names_no_machine_folder():
    command = f"python -m benchmarks.run --store {TMP}/store --corpus {CORPUS}"
    block = (
        "<!-- section:speed -->\n## Speed\n\n"
        f"Data: `{CORPUS}`.\n<!-- /section:speed -->"
    )
    text = render({"speed": block}, machine_info(), command)
    assert str(REPO_ROOT.parent) + "/" not in text
    assert str(TMP) + "/" not in text
    assert "--store $TMPDIR/store --corpus ../shared/data/corpus/train.csv" in text
    assert "Data: `../shared/data/corpus/train.csv`" in text


def test_the_transfer_command_can_be_typed_as_written():
    from benchmarks._context import BenchOptions
    from benchmarks.bench_transfer import _command

    options = BenchOptions.for_quick(corpus=TMP / "corpus" / "train.csv")
    options.transfer_external = (CORPUS.with_name("arena.csv"),)
    command = _command(options, "lite")
    assert "--corpus $TMPDIR/corpus/train.csv " in command  # unquoted: it expands
    assert "--transfer-external ../shared/data/corpus/arena.csv" in command
