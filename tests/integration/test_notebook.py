"""notebooks/analysis.ipynb runs top to bottom (nbclient, python3 kernel, no network) on a sweep
directory the test writes, and shows its table and figures."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient
from PIL import Image

from steprl.analysis.demo import demo_sweep
from tests.train_config import ROOT

NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"


def images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def test_notebook_runs_on_a_sweep_and_draws_its_figures(tmp_path, monkeypatch):
    sweep = demo_sweep(tmp_path / "sweep", seeds=(0, 1), epochs=4)
    plots = sweep / "0_algo.s0=0.5,algo.s_low=0.1,seed=0" / "plots"
    plots.mkdir()
    Image.new("RGB", (40, 30), "white").save(plots / "task_success.png")  # what SuccessCurves writes
    monkeypatch.setenv("STEPRL_SWEEP_DIR", str(sweep))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", "")) + str(o.get("data", {}).get("text/plain", ""))
        for cell in code
        for o in cell.get("outputs", [])
    )
    assert f"sweep: {sweep}" in text
    assert "9 runs, 4 groups" in text  # 8 jobs with metrics in 4 settings, plus the crashed one
    assert "| algo.s0=0.5 algo.s_low=0.1 | 2 | eval/train_success_rate |" in text
    assert "FAILED 8_algo.s0=0.7" in text
    # success vs epoch, vs env steps, time per step, s0 × s_low heatmap, other metrics, per-task picture
    assert sum(images(cell) for cell in code) == 6


def test_first_code_cell_holds_the_sweep_dir_variable():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "SWEEP_DIR = os.environ.get(\"STEPRL_SWEEP_DIR\"" in first.source
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit the notebook without outputs"
