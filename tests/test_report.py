"""labkit.report: the course report is built from the executed notebooks' own outputs."""
import nbformat

from labkit.report import REPORT_NAME, build_report, final_table


def executed(path, table_html, error=False):
    nb = nbformat.v4.new_notebook()
    ok = nbformat.v4.new_code_cell("results", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/html": table_html, "text/plain": "t"}, execution_count=1)])
    nb.cells = [nbformat.v4.new_markdown_cell("# A notebook"), ok]
    if error:
        nb.cells.append(nbformat.v4.new_code_cell("1/0", outputs=[nbformat.v4.new_output(
            "error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])]))
    nbformat.write(nb, path)
    return path


def test_report_holds_each_final_table_hardware_and_status(tmp_path):
    a = executed(tmp_path / "01_a.ipynb", "<table><tr><td>goodput 1234</td></tr></table>")
    b = executed(tmp_path / "02_b.ipynb", "<p>no table</p>", error=True)
    index = build_report([(a, 12.0), (b, 3.0)], tmp_path / "report", "fast")
    text = index.read_text()
    assert index.name == REPORT_NAME and (tmp_path / "report" / "01_a.html").exists()
    assert "goodput 1234" in text and "cpu cores" in text and "fast mode" in text
    assert "<td>01_a</td>" not in text and "01_a.html" in text      # linked, not just named
    assert "<td>failed</td>" in text and "<td>ok</td>" in text
    assert final_table(nbformat.read(b, 4)) is None
