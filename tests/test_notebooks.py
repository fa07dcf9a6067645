"""The analysis notebooks run top to bottom on the embedded default, and are stored without outputs."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "analysis_notebooks").glob("*.ipynb"))


def test_the_three_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["01_linear_paths.ipynb", "02_curves_and_planes.ipynb", "03_ilora.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)
    # no per-cell time limit: a loaded machine runs a cell slowly, never wrongly (CI's own limit bounds the whole run)
    NotebookClient(book, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # every figure cell rendered a plotly figure
    figures = [o for o in outputs if o.output_type in ("execute_result", "display_data") and "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == sum("modeconn.figure(" in c.source for c in book.cells if c.cell_type == "code")
