"""One HTML report of a course run: every executed notebook as HTML, and an index with each notebook's final
table (its results table, where it has one), its run time, the date and this machine's hardware.

    labkit course --full --report        (what `make course` runs)

The index is built only from the executed notebooks' own outputs: a number in it was measured in that run.
"""
from __future__ import annotations

import datetime
import html
from pathlib import Path
from typing import Sequence

import nbformat

REPORT_NAME = "course_report.html"


def final_table(nb) -> str | None:
    """The last HTML table a code cell printed (pandas' DataFrame display), or None."""
    for cell in reversed(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in reversed(cell.get("outputs", [])):
            table = output.get("data", {}).get("text/html", "")
            if "<table" in table:
                return table
    return None


def failed_cells(nb) -> int:
    """Code cells whose output holds an error (papermill stops at the first one)."""
    return sum(any(o.get("output_type") == "error" for o in c.get("outputs", []))
               for c in nb.cells if c.cell_type == "code")


def notebook_html(path: Path, out: Path) -> Path:
    """The executed notebook as one self-contained HTML file (plots embedded)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nbformat.read(path, as_version=4))
    out.write_text(body)
    return out


def build_report(runs: Sequence[tuple[Path, float]], out_dir: Path, mode: str) -> Path:
    """runs: (executed notebook, seconds) in course order. Writes one HTML per notebook and the index; returns it."""
    from labkit.accelerate import environment_report

    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment_report()
    rows, sections = [], []
    for path, seconds in runs:
        nb = nbformat.read(path, as_version=4)
        page = notebook_html(path, out_dir / f"{path.stem}.html")
        status = "failed" if failed_cells(nb) else "ok"
        rows.append(f"<tr><td><a href='{page.name}'>{html.escape(path.stem)}</a></td><td>{seconds:.0f}</td>"
                    f"<td>{status}</td></tr>")
        table = final_table(nb)
        if table is not None:
            sections.append(f"<h3><a href='{page.name}'>{html.escape(path.stem)}</a></h3>\n{table}")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    hardware = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in env.items())
    index = out_dir / REPORT_NAME
    index.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>Fast under load: course report</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px}}</style></head><body>
<h1>Fast under load: course report</h1>
<p>{html.escape(mode)} mode, run {when}. Every number below was measured in this run, on this machine.</p>
<h2>Machine</h2><table>{hardware}</table>
<h2>Notebooks</h2><table><tr><th>notebook</th><th>seconds</th><th>status</th></tr>{''.join(rows)}</table>
<h2>Each notebook's final table</h2>
{''.join(sections) or '<p>No notebook printed a table.</p>'}
</body></html>""")
    return index
