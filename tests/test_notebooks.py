"""analysis/ notebooks: committed without outputs, parameterised by GANAUG_RESULTS, and run top to bottom."""

import os
from pathlib import Path

import nbformat
import pytest
from experiment_fixture import evaluated_experiment

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "analysis").glob("*.ipynb"))
PARAMETER_LINE = 'RESULTS = os.environ.get("GANAUG_RESULTS", "~/ganaug_results/quickstart")'


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory):
    return evaluated_experiment(tmp_path_factory)


def test_both_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"pick_best_policy.ipynb", "compare_baselines.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_parameterised(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert PARAMETER_LINE in code[0].source, "the first code cell sets RESULTS from GANAUG_RESULTS"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, evaluated, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # The kernel inherits this environment: which experiment to read, and ganaug on its path.
    monkeypatch.setenv("GANAUG_RESULTS", str(evaluated))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on the first failing cell

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    images = sum("image/png" in output.get("data", {}) for output in outputs)
    assert str(evaluated) in text or "runs:" in text
    if path.stem == "pick_best_policy":
        assert "best trial" in text
        assert images >= 4  # curves, objective per parameter, labeling x ratio, sample grid
    if path.stem == "compare_baselines":
        assert "best_gan - no_aug:" in text
        assert images >= 3  # means, paired differences, per-class deltas
