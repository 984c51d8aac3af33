"""The transfer section: its options, and a --quick run on small battle files.

Numbers are not checked (a quick run checks the harness, not the model); the
table's structure, its command line and the held-out splits are.
"""

from __future__ import annotations

import argparse
import re

import pytest

from benchmarks import bench_transfer
from benchmarks._context import BenchContext, BenchOptions
from benchmarks.run import _RUN_ORDER, SECTIONS, options_from_args, section_parser
from features.errors import InvalidParameterError


def _options(*argv: str) -> BenchOptions:
    return options_from_args(section_parser("test").parse_args(list(argv)))


def test_transfer_section_is_registered_after_accuracy():
    assert SECTIONS["transfer"] == "benchmarks.bench_transfer"
    assert _RUN_ORDER.index("transfer") == _RUN_ORDER.index("accuracy") + 1


def test_parse_variants_keeps_commas_inside_values():
    variants = bench_transfer.parse_variants(
        "both=training.boosters=[lightgbm,xgboost],training.n_folds=3; plain="
    )
    assert variants == (
        ("both", ("training.boosters=[lightgbm,xgboost]", "training.n_folds=3")),
        ("plain", ()),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training.n_folds=3", "must look like name=section.key=value"),
        ("=training.n_folds=3", "must look like name=section.key=value"),
        ("a=n_folds=3", "'n_folds=3' is not a section.key=value override"),
        ("a=training.n_folds=3;a=seed.x=1", "'a' is used twice"),
        ("as configured=training.n_folds=3", "reserved for the profile"),
    ],
)
def test_parse_variants_rejects_malformed_text(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        bench_transfer.parse_variants(text)


def test_transfer_options_reach_bench_options(tmp_path):
    options = _options(
        "--transfer-profiles",
        "lite",
        "--transfer-holdout",
        "autoj,tulu1",
        "--transfer-folds",
        "4",
        "--transfer-external",
        str(tmp_path / "a.csv"),
        "--transfer-config-boosters",
        "--transfer-variants",
        "x=training.n_folds=3",
    )
    assert options.transfer_profiles == ("lite",)
    assert options.transfer_holdout == ("autoj", "tulu1")
    assert options.transfer_folds == 4 and options.transfer_fast is False
    assert options.transfer_external == (tmp_path / "a.csv",)
    assert options.transfer_variants == (("x", ("training.n_folds=3",)),)
    assert _options("--quick").transfer_folds == 2
    assert _options("--quick").transfer_within_seeds == 1
    assert _options("--transfer-within-seeds", "0").transfer_within_seeds == 0
    assert _options("--no-transfer-external").transfer_external == ()
    default = _options()
    assert default.transfer_within_seeds == 3
    assert default.transfer_folds == 3 and default.transfer_external[0].name == (
        "arena.csv"
    )


def test_transfer_options_refuse_too_few_folds_and_unknown_profiles():
    with pytest.raises(SystemExit, match="--transfer-folds must be >= 2"):
        _options("--transfer-folds", "1")
    with pytest.raises(SystemExit, match="--transfer-within-seeds must be >= 0"):
        _options("--transfer-within-seeds", "-1")
    with pytest.raises(SystemExit, match=r"unknown --transfer-profiles \['nope'\]"):
        _options("--transfer-profiles", "nope")


def test_transfer_section_skips_cleanly_without_a_corpus(tmp_path):
    options = BenchOptions.for_quick(corpus=tmp_path / "missing.csv")
    section = bench_transfer.run(BenchContext(options))
    assert section.tables == [] and "Skipped: corpus" in section.notes[0]


def test_transfer_section_rejects_an_unknown_holdout_family(demo_files, tmp_path):
    options = BenchOptions.for_quick(
        corpus=demo_files[0],
        n_rows=None,
        transfer_holdout=("nope",),
        transfer_external=(),
        store=tmp_path / "store",
        work_dir=tmp_path / "work",
    )
    message = r"unknown source families \['nope'\]"
    with pytest.raises(InvalidParameterError, match=message):
        bench_transfer.run(BenchContext(options))


@pytest.mark.slow
def test_quick_transfer_section_holds_out_every_family_and_the_external_set(
    demo_files, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    corpus, external = demo_files
    status = bench_transfer.main(
        [
            "--quick",
            "--corpus",
            str(corpus),
            "--transfer-external",
            str(external),
            "--store",
            str(tmp_path / "store"),
            "--work-dir",
            str(tmp_path / "work"),
        ]
    )
    assert status == 0
    text = capsys.readouterr().out
    assert text.startswith("## Transfer to sources never seen in fit")
    assert "### Transfer: lite profile, each source held out" in text
    command = re.search(r"Command: `([^`]*)`", text)[1]
    assert command.startswith("python -m benchmarks.bench_transfer --quick")
    assert "--transfer-external" in command and "--profiles lite" in command
    rows = [line for line in text.splitlines() if line.startswith("| fam-")]
    assert [row.split(" | ")[0] for row in rows] == ["| fam-a", "| fam-b", "| fam-c"]
    assert "| arena.csv (external) |" in text
    assert "--transfer-within-seeds 1" in command
    inside = text.split("### Inside arena.csv: the lite profile fitted on the set's")[1]
    inside_rows = [line for line in inside.splitlines() if line.startswith("| ")][1:]
    assert inside_rows[0].startswith("| the corpus, never this set (transfer table)")
    assert inside_rows[1].startswith("| 1 of 2 folds of this set, fold seed 0")
    for block in re.findall(r"(?:^\|.*\|\n)+", text, flags=re.MULTILINE):
        widths = {line.count(" | ") for line in block.splitlines() if "---" not in line}
        assert len(widths) == 1, block
