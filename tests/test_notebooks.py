"""Every course notebook runs top to bottom in fast mode (papermill) and is committed without outputs."""
import pytest

from labkit import notebooks

NOTEBOOKS = notebooks.course_notebooks()


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    cells = notebooks.unstripped_cells(path)
    assert not cells, f"{path.name}: cells {cells} carry outputs; run `labkit strip notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_has_parameters_cell(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert "FAST" in tagged[0].source and "LABKIT_FAST" in tagged[0].source
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "Interview corner" in "".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_in_fast_mode(path):
    # papermill raises PapermillExecutionError naming the failing cell and its traceback
    out, seconds = notebooks.execute(path, fast=True, out_dir=notebooks.EXECUTED_DIR)
    print(f"{path.name}: {seconds:.1f} s in fast mode (budget 90 s on 2 cores)")
    assert out.exists()
