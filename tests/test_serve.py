"""`catdog-report serve`: the author's loop (watch, rebuild what changed, live reload)."""

from __future__ import annotations

import json
from pathlib import Path

import markdown
import nbformat
import pytest

from catdog_report import pages
from catdog_report.errors import PageError
from catdog_report.plan import page_needs


def test_failure_admonition_names_the_cell_and_the_exception(tmp_path: Path) -> None:
    content = tmp_path / "content"
    content.mkdir()
    path = content / "model-one.md"
    path.write_text("# Model one\n\nProse.\n\n```python\nx = 1\n```\n")
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("1 / 0")
    code.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError",
                                           evalue="division by zero",
                                           traceback=["ZeroDivisionError: division by zero"])]
    nb.cells = [nbformat.v4.new_markdown_cell("# Model one\n\nProse about model_one."), code]
    error = PageError(f"page model-one.md failed in cell 2: ZeroDivisionError: division by "
                      f"zero\n    ----> 1 1 / 0 in {tmp_path}\nFix the cell", nb)
    page = pages.failure_page(path, error)
    assert page.markdown.startswith("# Model one\n\n!!! failure \"This page failed to execute\"")
    assert "Prose about model_one." in page.markdown and str(tmp_path) not in page.markdown
    html = markdown.markdown(page.markdown, extensions=["admonition", "pymdownx.superfences"])
    assert '<div class="admonition failure">' in html
    assert ("<p>page model-one.md failed in cell 2: ZeroDivisionError: division by zero</p>"
            in html)
    assert "----&gt; 1 1 / 0 in &lt;project&gt;" in html  # the traceback's tail, scrubbed
    assert not page.cached and json.loads(page.notebook)["cells"][1]["outputs"]

    unread = pages.failure_page(path, PageError("numbers typed into prose instead of computed"))
    assert "numbers typed into prose" in unread.markdown and "x = 1" in unread.markdown


def test_a_cell_that_does_not_parse_is_left_to_the_kernel_when_not_strict() -> None:
    cells = ['run = st.fit("model_one")', "def broken(:\n"]
    with pytest.raises(PageError, match="code cell 2 is not valid Python"):
        page_needs(cells, "page p.md")
    assert page_needs(cells, "page p.md", strict=False).fits == ("model_one",)
