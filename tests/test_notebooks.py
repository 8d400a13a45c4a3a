"""Every course notebook is well formed and committed without outputs; `make test` executes each once with nbval."""
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


def test_execute_injects_fast_parameters(tmp_path):
    # `labkit course` runs notebooks with papermill (make test runs them with nbval): the injected FAST and the
    # kernel's LABKIT_FAST must agree, or a "fast" run would use full sizes.
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    params = nbformat.v4.new_code_cell('import os\nFAST = os.environ.get("LABKIT_FAST") == "1"')
    params.metadata["tags"] = ["parameters"]
    check = nbformat.v4.new_code_cell('assert FAST == (os.environ["LABKIT_FAST"] == "1")\nprint("FAST", FAST)')
    nb.cells = [params, check]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    for fast in (True, False):
        out, seconds = notebooks.execute(path, fast=fast, out_dir=tmp_path / "executed")
        printed = "".join(o.get("text", "") for o in nbformat.read(out, as_version=4).cells[-1].outputs)
        assert f"FAST {fast}" in printed
