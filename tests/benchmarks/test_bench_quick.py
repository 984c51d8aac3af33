"""Smoke test of the benchmark harness: it runs and writes every section.

Speeds are not checked (they depend on the machine); the structure of
BENCHMARKS.md is.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks._report import Section, Table, Target
from benchmarks.run import SECTIONS, _existing_sections, main, render, render_section

EXPECTED_TABLES = (
    "### Out-of-fold scores, prompt-grouped 5-fold (real corpus)",
    "### Out-of-fold log loss per source family",
    "### Leave-one-source-out",
    "### train_gbdt --trials 1 on the corpus",
    "### Batch throughput of predict_proba",
    "### Single-row latency of predict_proba",
    "### Where predict_proba spends its time",
    "### Scale sets",
    "### Wall time and peak RSS by size",
    "### Fitted growth exponents",
    "### train_gbdt --trials 1 on the 600-row scale set",
    "### Build speed per block",
    "### Whole build (python -m pipelines.build_features, fresh store)",
    "### Embeddings on a GPU",
)


@pytest.mark.slow
@pytest.mark.realdata
def test_quick_harness_writes_every_section_and_plot(
    corpus_path, tmp_path, capsys, monkeypatch
):
    # Speeds are not checked here; on a busy test machine OpenMP threads that
    # spin while they wait make every booster in the children several times
    # slower, so let them sleep instead.
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    out = tmp_path / "BENCHMARKS.md"
    results = tmp_path / "results"
    status = main(
        [
            "--quick",
            "--corpus",
            str(corpus_path),
            "--n-rows",
            "300",
            "--scale-rows",
            "300,600",
            "--latency-calls",
            "5",
            "--gbdt-trials",
            "1",
            "--target-trials",
            "1",
            "--no-profile",
            "--out",
            str(out),
            "--results-dir",
            str(results),
            "--store",
            str(tmp_path / "store"),
            "--work-dir",
            str(tmp_path / "work"),
        ]
    )
    assert status == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("# Benchmarks")
    assert "## Targets" in text
    for key in SECTIONS:
        assert f"<!-- section:{key} -->" in text and f"<!-- /section:{key} -->" in text
    for heading in EXPECTED_TABLES:
        assert heading in text, heading
    assert "not measured: no GPU lent" in text or "GPU: none" not in text
    assert "--quick" in text and "cores" in text
    assert "failed (exit" not in text and "timed out" not in text
    # Every markdown table row has as many cells as its header.
    for block in re.findall(r"(?:^\|.*\|\n)+", text, flags=re.MULTILINE):
        widths = {line.count(" | ") for line in block.splitlines() if "---" not in line}
        assert len(widths) == 1, block
    for name in ("speed.png", "scale.png"):
        plot = results / name
        assert plot.exists() and 1_000 < plot.stat().st_size < 200_000
        assert f"]({Path('results') / name})" in text


def _section(key: str, value: str) -> Section:
    table = Table(title=f"{key} table", columns=["x"], rows=[{"x": value}])
    target = Target(name=f"{key} target", goal="> 0", measured=value, met=True)
    return Section(key=key, title=f"{key} title", tables=[table], targets=[target])


_MACHINE = {
    "cores": 2,
    "cpu_count": 2,
    "cpu_model": "test cpu",
    "memory_gb": 1.0,
    "gpu": "none",
    "python": "3",
    "platform": "linux",
    "date": "today",
}


def test_rerunning_one_section_keeps_the_others(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    blocks = {
        key: render_section(_section(key, "old"), "_run: old_", out) for key in SECTIONS
    }
    first = render(blocks, _MACHINE, "python -m benchmarks.run")
    kept = _existing_sections(first)
    assert set(kept) == set(SECTIONS)
    kept["speed"] = render_section(_section("speed", "new"), "_run: new_", out)
    second = render(kept, _MACHINE, "python -m benchmarks.run --only speed")
    assert second.count("\n| new |\n") == 1 and second.count("\n| old |\n") == (
        len(SECTIONS) - 1
    )
    # The targets table at the top lists every section's targets.
    for key in SECTIONS:
        assert f"| {key} | {key} target |" in second


def test_rerun_keeps_the_hand_written_section_verbatim(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    notes = (
        "<!-- section:choices -->\n## Profile settings\n\n| a | b |\n"
        "<!-- /section:choices -->"
    )
    blocks = {"speed": render_section(_section("speed", "old"), "_run: old_", out)}
    first = render({**blocks, "choices": notes}, _MACHINE, "python -m benchmarks.run")
    kept = _existing_sections(first)
    kept["speed"] = render_section(_section("speed", "new"), "_run: new_", out)
    second = render(kept, _MACHINE, "python -m benchmarks.run --only speed")
    assert notes in second and second.index("speed title") < second.index(notes)
    assert "[choices](#profile-settings)" in second


def test_no_scale_train_builds_only_but_keeps_the_target_run():
    from benchmarks.run import options_from_args, section_parser

    parser = section_parser("test")
    options = options_from_args(parser.parse_args(["--no-scale-train"]))
    assert options.scale_train is False and options.target_trials == 200
    assert options_from_args(parser.parse_args([])).scale_train is True


def test_scale_points_train_fast_unless_asked_for_the_config_params():
    from benchmarks.run import options_from_args, section_parser

    parser = section_parser("test")
    default = options_from_args(parser.parse_args([]))
    assert default.scale_fast_train is True
    assert (
        options_from_args(parser.parse_args(["--scale-config-train"])).scale_fast_train
        is False
    )
    # The corpus run has its own tuning budget, apart from the 57k target run's.
    budgets = options_from_args(
        parser.parse_args(["--gbdt-budget-min", "2", "--tuning-budget-min", "50"])
    )
    assert (budgets.gbdt_tuning_budget, budgets.tuning_budget) == (120.0, 3000.0)
    assert (
        options_from_args(
            parser.parse_args(["--gbdt-budget-min", "0"])
        ).gbdt_tuning_budget
        is None
    )


def test_fast_training_overrides_load_into_a_fast_config():
    from benchmarks._context import fast_training_overrides
    from pipelines.config import load_config

    config_path = Path(__file__).resolve().parents[2] / "configs" / "lite.yaml"
    config = load_config(config_path)
    fast = load_config(
        config_path, fast_training_overrides(config, ("lightgbm",), 3)
    ).training
    assert fast.boosters == ["lightgbm"] and fast.n_folds == 3
    params = fast.booster_params["lightgbm"]
    assert params["learning_rate"] >= 0.1 and params["num_boost_round"] <= 400
    assert params["early_stopping_rounds"] <= 30
    # Everything else is the profile's own.
    assert (
        params["num_leaves"] == config.training.booster_params["lightgbm"]["num_leaves"]
    )
