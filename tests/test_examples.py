"""The example notebook runs from top to bottom (executed with nbclient, so it cannot rot)."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = pathlib.Path(__file__).parent.parent / "examples" / "fit_effective_rates.ipynb"


@pytest.mark.slow  # a Jupyter kernel is a process of its own (JAX import and every compilation again)
def test_fit_notebook_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell (the notebook asserts its fit)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "eta_enc" in text and "explains the data: True" in text
