"""analysis/ notebooks: committed without outputs, parameterised by GANAUG_RESULTS, run top to bottom, and every
figure fits a notebook's width."""

import base64
import io
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from experiment_fixture import evaluated_experiment
from spaces import write_tiny_space

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "analysis").glob("*.ipynb"))
PARAMETER_LINE = 'RESULTS = os.environ.get("GANAUG_RESULTS", "~/ganaug_results/quickstart")'
# Pixels, at the inline backend's dpi: a figure wider than a notebook page is a strip nobody can read (a row of 13
# parameter panels was 4,049 px wide).
MAX_WIDTH = 2000

# A search where ASHA stops every GAN trial: one trial at a time, so the no-GAN baseline (baselines_first: the
# first trial) sets the one rung, epoch 1 of 2, and a classifier fed a one-epoch generator's images stays below it
# there (reduction_factor 4: a trial goes on only in the top quarter of those that reached the rung before it).
# Seeded: the sampler draws every synthetic_ratio value within the four trials.
PRUNED_GAN_SPACE = {"experiment": {"num_samples": 4, "max_concurrent": 1, "max_failures": 0},
                    "scheduler": {"max_epochs": 2, "grace_period": 1, "reduction_factor": 4},
                    "fixed": {"classifier_lr": 3.0e-3},
                    "search": {"synthetic_ratio": {"choice": [0.0, 1.0, 4.0]},
                               "labeling": {"choice": ["lsro", "all_in_one"]}}}
SEARCHED_RATIOS = ["0", "1", "4"]  # as the notebook labels them
# Appended to pick_best_policy: the entries of the GAN-question figure's synthetic_ratio panel (`ratio_ax`), one
# per value, each tick label "<value>\n<n> trials (...)" or "<value>\nnot drawn".
RATIO_ENTRIES = 'import json\nprint("ratio entries:", json.dumps([t.get_text() for t in ratio_ax.get_yticklabels()]))'


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory):
    return evaluated_experiment(tmp_path_factory)


@pytest.fixture(scope="session")
def pruned_gan(tmp_path_factory):
    """The experiment folder of PRUNED_GAN_SPACE's search (digits, about 10 s of training)."""
    from ganaug.search.tune import main

    base = tmp_path_factory.mktemp("pruned_gan")
    space = write_tiny_space(base, "pruned_gan", **PRUNED_GAN_SPACE)
    assert main([str(space), "--num-cpus", "2"]) == 0
    return base / "results" / "pruned_gan"


def run_notebook(path: Path, experiment: Path, tmp_path: Path, monkeypatch, extra_cells: tuple[str, ...] = ()):
    """Execute the notebook on `experiment` with `extra_cells` appended; returns (its printed text, the
    (width, height) of every PNG it shows)."""
    from nbclient import NotebookClient
    from PIL import Image

    # The kernel inherits this environment: which experiment to read, and ganaug on its path.
    monkeypatch.setenv("GANAUG_RESULTS", str(experiment))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in extra_cells]
    NotebookClient(notebook, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on the first failing cell

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    sizes = [Image.open(io.BytesIO(base64.b64decode(output["data"]["image/png"]))).size
             for output in outputs if "image/png" in output.get("data", {})]
    return text, sizes


def ratio_entries(text: str) -> list[str]:
    return json.loads(re.search(r"^ratio entries: (.*)$", text, re.MULTILINE).group(1))


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
    policy = path.stem == "pick_best_policy"
    text, sizes = run_notebook(path, evaluated, tmp_path, monkeypatch, (RATIO_ENTRIES,) if policy else ())

    assert str(evaluated) in text or "runs:" in text
    assert sizes and max(width for width, _ in sizes) <= MAX_WIDTH, f"figure sizes (px): {sizes}"
    if policy:
        assert "best trial" in text
        # The GAN question, the generator beside real images, importances, objective per parameter, curves.
        assert len(sizes) >= 4, sizes
        # The tiny experiment fixes synthetic_ratio at 0.5: one entry, and the verdict says there is no no-GAN trial.
        assert [entry.split("\n")[0] for entry in ratio_entries(text)] == ["0.5"]
        assert "the search has no no-GAN trial to compare with" in text
        assert "synthetic_diversity" in text and "frechet_distance" in text  # the generator's caption
    if path.stem == "compare_baselines":
        assert "best_gan - no_aug:" in text
        assert len(sizes) >= 4, sizes  # paired differences, means, per-class deltas, per-class accuracy by class size


@pytest.mark.slow
def test_policy_notebook_when_asha_stops_every_gan_trial(pruned_gan, tmp_path, monkeypatch):
    from ganaug.results import load_experiment

    trials = load_experiment(pruned_gan).trials
    gan = trials["synthetic_ratio"] > 0
    assert gan.any() and (trials.loc[gan, "status"] == "pruned").all(), "premise: ASHA stopped every GAN trial"
    assert (trials.loc[~gan, "status"] == "complete").any(), "premise: a no-GAN trial ran every epoch"

    text, sizes = run_notebook(ROOT / "analysis" / "pick_best_policy.ipynb", pruned_gan, tmp_path, monkeypatch,
                               (RATIO_ENTRIES,))
    assert sizes and max(width for width, _ in sizes) <= MAX_WIDTH, f"figure sizes (px): {sizes}"
    # One entry per searched synthetic_ratio value, each with its trials, compared at the rung (epoch 1) although
    # no GAN trial ran all epochs.
    entries = ratio_entries(text)
    assert [entry.split("\n")[0] for entry in entries] == SEARCHED_RATIOS
    assert not any("not drawn" in entry for entry in entries), entries
    for ratio in SEARCHED_RATIOS:
        line = rf"^synthetic_ratio {ratio}: \d+ trials? .*best val_acc at epoch 1: 0\.\d+"
        assert re.search(line, text, re.MULTILINE), f"no line for synthetic_ratio {ratio}"
    assert "ASHA stopped every one by epoch 1" in text
    assert "behind the best no-GAN trial" in text
