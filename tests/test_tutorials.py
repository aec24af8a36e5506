"""The tutorials (``docs/tutorials/*.ipynb``) run top to bottom under the smoke budget, and the
copies the docs site renders carry the outputs of a real run."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pyro_vae import smoke

TUTORIALS = sorted((Path(__file__).parents[1] / "docs" / "tutorials").glob("*.ipynb"))


def test_there_are_three_tutorials():
    assert [p.stem for p in TUTORIALS] == ["compare-methods", "first-vae", "own-images"]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_the_stored_tutorial_shows_the_outputs_of_a_real_run(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert cells and all(c.execution_count for c in cells), "run it before committing"
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    outputs = [o for c in cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert smoke.ENV not in text  # not a smoke run's numbers
    assert "Warning" not in text
    assert any("image/png" in o.get("data", {}) for o in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_the_tutorial_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv(smoke.ENV, "1")  # the kernel inherits it: tiny budgets
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if one fails
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    stderr = "".join(o.text for o in outputs if o.get("name") == "stderr")
    assert "Warning" not in stderr, stderr
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    assert list((tmp_path / "runs").iterdir())  # it wrote under its own folder
