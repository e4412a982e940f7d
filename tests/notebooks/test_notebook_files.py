"""The committed notebooks follow the skeleton and carry no outputs (fast: nothing executed)."""

from __future__ import annotations

import ast

import nbformat
import pytest

from alsresearch.source import DataSource
from alsresearch.split import SplitSpec
from tests.layout import NOTEBOOKS

NAMES = [
    "01_explore_data",
    "02_train_evaluate",
    "03_sweep_alpha_factors",
    "04_promote_export",
    "05_daily_retrain",
]
#: the notebooks that hold out a test split
SPLITTING = {"02_train_evaluate", "03_sweep_alpha_factors", "04_promote_export"}


@pytest.fixture(params=NAMES)
def name(request):
    return request.param


@pytest.fixture
def notebook(name):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def parameters_cell(notebook):
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    return tagged[0]


def parameters(notebook) -> dict:
    """The parameters cell's UPPER_CASE = literal assignments (anything else fails)."""
    values = {}
    for node in ast.parse(parameters_cell(notebook).source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1
        name = node.targets[0].id
        assert name.isupper(), name
        values[name] = ast.literal_eval(node.value)
    return values


def test_outputs_are_stripped(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in notebook.metadata


def test_skeleton(notebook):
    cells = notebook.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert "OUTPUT_DIR" in parameters(notebook)
    assert "records.write_results(" in cells[-1].source
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_data_and_split_parameters_default_to_the_library_defaults(name, notebook):
    """The data-source parameters (every notebook) and the split parameters (the notebooks
    that split) are those of DataSource() and SplitSpec(), and the body builds both from them."""
    values = parameters(notebook)
    expected = DataSource().to_notebook_parameters()
    assert {k: values.get(k) for k in expected} == expected
    split = SplitSpec().to_notebook_parameters()
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "DataSource.from_notebook_parameters(globals())" in code
    assert "data = source.load()" in code
    if name in SPLITTING:
        assert {k: values.get(k) for k in split} == split
        assert "SplitSpec.from_notebook_parameters(globals())" in code
        assert "split=split" in code
    else:
        assert not set(split) & set(values)
    # the record names the data source (and the split where there is one)
    assert "source=source" in notebook.cells[-1].source
    assert ("split=split" in notebook.cells[-1].source) == (name in SPLITTING)


def test_papermill_reads_every_parameter(name, notebook):
    """papermill parses the parameters cell line by line; a line it cannot read (e.g. one whose
    comment holds '=') would be left out of what the runner may set."""
    papermill = pytest.importorskip("papermill")
    found = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert set(found) == set(parameters(notebook))
