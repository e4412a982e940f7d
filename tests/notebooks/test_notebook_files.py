"""The committed notebooks follow the skeleton and carry no outputs (fast: nothing executed)."""

from __future__ import annotations

import ast

import nbformat
import pytest

from tests.layout import NOTEBOOKS

NAMES = ["01_explore_data", "02_train_evaluate", "03_sweep_alpha_factors", "04_promote_export"]


@pytest.fixture(params=NAMES)
def notebook(request):
    return nbformat.read(NOTEBOOKS / f"{request.param}.ipynb", as_version=4)


def test_outputs_are_stripped(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in notebook.metadata


def test_skeleton(notebook):
    cells = notebook.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    # the parameters cell holds only UPPER_CASE = literal assignments, OUTPUT_DIR among them
    names = []
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1
        name = node.targets[0].id
        assert name.isupper(), name
        ast.literal_eval(node.value)
        names.append(name)
    assert "OUTPUT_DIR" in names
    assert "experiments.write_results(" in cells[-1].source
    assert notebook.metadata["kernelspec"]["name"] == "python3"
