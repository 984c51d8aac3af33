"""The notebooks: stored without outputs, and run top to bottom on a fresh kernel.

Execution uses nbclient with the ``python3`` kernel of the interpreter running
the tests (the virtual environment's ipykernel), in ``notebooks/`` as the
working directory, as ``jupyter lab notebooks/`` would. The notebooks use the
real corpus when ``../shared/data/corpus/train.csv`` exists and the synthetic
demo set otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = {"01_explore_battles.ipynb", "02_model_report.ipynb"}
CELL_TIMEOUT_S = 600
# Settings read by the notebooks; cleared so the tests run the defaults.
NOTEBOOK_ENV = ("ARENA_DATA", "ARENA_MODEL_DIR", "ARENA_ROWS", "ARENA_TRIALS")


def _files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}


def test_the_notebooks_are_there() -> None:
    assert EXPECTED <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], (
            f"{path.name}: cell {index} has outputs; clear them before committing "
            "(see docs_notebooks.md)"
        )
        assert cell.execution_count is None, (
            f"{path.name}: cell {index} has an execution count; clear outputs"
        )
        assert "execution" not in cell.metadata, (
            f"{path.name}: cell {index} holds execution timings; clear them"
        )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runs_top_to_bottom(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for name in NOTEBOOK_ENV:
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.read(path, as_version=4)
    # One extra cell reports the kernel's interpreter.
    nb.cells.append(
        nbformat.v4.new_code_cell("import sys\nprint(sys.executable, end='')")
    )
    before = _files(NOTEBOOKS_DIR)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    elapsed = time.perf_counter() - started
    print(f"{path.name}: {elapsed:.0f} s")

    kernel_python = nb.cells[-1].outputs[0]["text"]
    assert Path(kernel_python).resolve() == Path(sys.executable).resolve()
    errors = [
        (index, output.get("ename"))
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == "error"
    ]
    assert not errors
    images = sum(
        "image/png" in output.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert images >= 3, f"{path.name} drew {images} figures"
    assert _files(NOTEBOOKS_DIR) == before, "the notebook wrote files next to itself"
