"""The target section: its options, and a --quick run on synthetic sources.

Numbers are not checked (a quick run checks the harness, not the model); the
tables, the baselines beside the configurations and the projection are.
"""

from __future__ import annotations

import pytest

from benchmarks import bench_target
from benchmarks._context import BenchContext, BenchOptions
from benchmarks.run import SECTIONS, options_from_args, section_parser


def _options(*argv: str) -> BenchOptions:
    return options_from_args(section_parser("test").parse_args(list(argv)))


def test_target_section_is_registered_and_reads_its_options():
    assert SECTIONS["target"] == "benchmarks.bench_target"
    options = _options(
        "--target-family",
        "arena-2023",
        "--target-folds",
        "4",
        "--target-curve",
        "0",
        "--target-configs",
        "target: + tie head (w=1); target: + tie head, w=0.3",
    )
    assert options.target_family == "arena-2023" and options.target_folds == 4
    assert options.target_curve == ()
    assert options.target_configs == (
        "target: + tie head (w=1)",
        "target: + tie head, w=0.3",
    )
    assert _options().target_curve == (110, 220, 440, 879)


def test_unknown_target_configuration_names_the_known_ones(tmp_path):
    options = BenchOptions.for_quick(
        store=tmp_path / "store",
        work_dir=tmp_path / "work",
        target_configs=("nope",),
        target_quick_rows=200,
    )
    with pytest.raises(ValueError, match=r"unknown target configuration.*'nope'"):
        bench_target.run(BenchContext(options))


def test_target_section_skips_cleanly_without_corpus_files(tmp_path):
    options = BenchOptions(corpus=tmp_path / "missing" / "train.csv")
    section = bench_target.run(BenchContext(options))
    assert section.tables == [] and "Skipped: no CSV files" in section.notes[0]


@pytest.mark.slow
def test_quick_target_section_writes_the_table_and_the_learning_curve(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    options = BenchOptions.for_quick(
        store=tmp_path / "store", work_dir=tmp_path / "work"
    )
    section = bench_target.run(BenchContext(options))
    table, curve = section.tables
    names = [row["configuration"] for row in table.rows]
    assert names[0] == bench_target.TARGET_ONLY
    assert "length-only logistic regression (target)" in names
    assert "target's class prior" in names
    assert all(0 < row["log_loss"] < 2 for row in table.rows)
    assert {row["target rows"] for row in curve.rows} == {30, 60, 100}
    assert {row["other sources"] for row in curve.rows} == {"yes", "no"}
    assert any("Projection, not a measurement" in note for note in curve.notes)
    assert "--quick" in table.command
    assert len(section.targets) == 3
