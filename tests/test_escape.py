"""Strings from the user's files are escaped for the context they land in: hostile file
names, link targets, exception messages and page output in every place a page shows them."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path
from typing import Any

import markdown
import nbformat
import pytest

from catdog_report import data, environment, escape, handoff, notebook, pages, stamp
from catdog_report.config import Settings
from catdog_report.errors import PageError
from conftest import ROOT

# a name that tries every way out: a code span, emphasis, a link, raw HTML, a table cell
HOSTILE = "a`b``c <script>alert(1)</script> *x* [l](javascript:alert(2)) | _y_ &amp; \\"
EXTENSIONS = ["admonition", "attr_list", "md_in_html", "tables", "toc", "pymdownx.details",
              "pymdownx.superfences", "pymdownx.highlight"]  # mkdocs.yml's


def render(text: str) -> str:
    """Markdown to HTML as the site renders it."""
    return markdown.markdown(text, extensions=EXTENSIONS)


def text_of(html: str) -> str:
    """The text a reader sees (tags removed, entities decoded)."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", "", html))


def assert_inert(html: str) -> None:
    """No element, link or emphasis came from the hostile text."""
    assert "<script" not in html and not re.search(r"(href|src)=\"javascript", html)
    assert "<em>" not in html and "<strong>" not in html
    assert not re.search(r"<a (?![^>]*catdog-zoom)", html)  # the figure's own link only


@pytest.mark.parametrize("place", ["markdown_text", "code_span", "alt_text"])
def test_each_escape_shows_the_text_as_itself(place: str) -> None:
    escaped = getattr(escape, place)(HOSTILE)
    html = render(f"- {escaped}: after" if place != "alt_text" else f"![{escaped}](x.png)")
    assert_inert(html)
    if place == "alt_text":
        alt = re.search(r'alt="([^"]*)"', html)[1]  # type: ignore[index]
        assert "<script>" in text_of(alt) and "[" not in text_of(alt)
    else:
        assert HOSTILE.replace("  ", " ") in text_of(html) and ": after" in text_of(html)
    table = render(f"| name | n |\n|---|--:|\n| {escaped} | 1 |")
    assert table.count("<td") == 2  # the pipe did not add a cell


def test_html_contexts_and_the_terminal() -> None:
    assert escape.html_attribute('x" onload="alert(1)') == "x&quot; onload=&quot;alert(1)"
    assert escape.html_text("</figcaption><script>") == "&lt;/figcaption&gt;&lt;script&gt;"
    assert escape.terminal("a\nb\x1b[31mred\r") == "a\\nb\\x1b[31mred\\r"


def test_a_code_block_cannot_be_closed_by_its_text() -> None:
    hostile = "before\n```\n<script>alert(1)</script>\n````\n# heading"
    html = render(escape.code_block(hostile) + "\n\nafter")
    assert_inert(html) and "<h1" not in html
    assert text_of(html).count("<script>alert(1)</script>") == 1 and "<p>after</p>" in html


def test_page_outputs_captions_alt_text_and_errors_are_escaped() -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(name)")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"```\n{HOSTILE}\n```\n"),
        nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "f"},
                               metadata={"image/png": {"alt": HOSTILE, "caption": HOSTILE}}),
        nbformat.v4.new_output("execute_result", data={"text/plain": f"```\n{HOSTILE}"},
                               execution_count=1),
        nbformat.v4.new_output("error", ename="ValueError", evalue=HOSTILE,
                               traceback=[f"ValueError: {HOSTILE}", "```", "<b>bold</b>"]),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Page"), cell]
    text, images = pages.to_markdown(nb, "page")
    html = render(text)
    assert_inert(html) and "<b>" not in html and list(images) == ["page_1.png"]
    assert text_of(html).count("<script>alert(1)</script>") == 4  # shown, never run
    assert '<figcaption>a`b``c &lt;script&gt;' in html  # the caption is text

    error = PageError(f"page p.md failed in cell 2: ValueError: {HOSTILE}\n    ```\n"
                      "    <script>alert(3)</script>\nFix the cell", nb)
    admonition = render(pages.failure_admonition(str(error)))
    assert_inert(admonition) and "alert(3)" in text_of(admonition)
    assert f"ValueError: {HOSTILE}".replace("  ", " ") in text_of(admonition)


def test_the_banner_escapes_the_data_source_and_weights_name() -> None:
    from catdog_report.study import load

    study = load(ROOT / "study.yml")
    head = stamp.banner(study, f"local folder {HOSTILE}", study.profiles["quick"],
                        f"ImageNet weights from the local file {HOSTILE}.h5 (--weights)")
    html = render(head)
    assert_inert(html) and text_of(html).count("<script>alert(1)</script>") == 2


def hostile_data(root: Path) -> dict[str, str]:
    """Files the data page must list: hostile names and a broken link to a hostile target."""
    cats = root / "train" / "cats"
    names = {"notes`<li><script>alert(1)<\\script>`.txt": "not an image file name",
             "x`` *em* [a](javascript:alert(1)).jpg": "empty file"}
    for name in names:
        (cats / name).write_bytes(b"")
    (cats / "link.jpg").symlink_to(f"gone`<img src=x onerror=alert(1)>`_{HOSTILE}.jpg")
    names["link.jpg"] = "a symbolic link to gone`<img src=x onerror=alert(1)>`"
    return names


def test_the_data_page_lists_hostile_names_and_link_targets_as_text(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    names = hostile_data(settings.data_dir)
    (settings.data_dir / "train" / "cats" / "line\x1b[31m.txt").write_bytes(b"")
    monkeypatch.setenv(environment.ENV_SETTINGS, settings.to_json())
    shown: list[str] = []
    monkeypatch.setattr(notebook, "say", shown.append)
    monkeypatch.setattr(notebook, "show", lambda *a, **k: None)
    monkeypatch.setattr(notebook, "_log_to_terminal", lambda: None)  # keep caplog's logger
    monkeypatch.chdir(ROOT / "content")
    caplog.set_level(logging.WARNING, logger="catdog_report.data")
    page = pages.read(ROOT / "content" / "data.md")
    namespace: dict[str, Any] = {}
    for source in pages.code_cells(page):  # the data page's own code, run here
        exec(compile(source, "data.md", "exec"), namespace)  # noqa: S102
    listed = next(s for s in shown if s.startswith("**Skipped files**"))
    html = render(listed).partition("</p>")[2]  # the list after the page's own heading
    assert_inert(html) and "<img" not in html
    items = [text_of(li) for li in re.findall(r"<li>(.*?)</li>", html, re.S)]
    for name, why in names.items():
        assert any(item.startswith(f"train/cats/{name}: {why}") for item in items), (name, items)
    assert not any("\x1b" in r.getMessage() for r in caplog.records)  # the log line is escaped
    assert any("line\\x1b[31m.txt" in r.getMessage() for r in caplog.records)
    ds = data.scan(settings, settings.data_dir)  # and dataset.json carries the names as data
    handoff.write_dataset(settings.build_dir, ds)
    assert handoff.read_dataset(settings.build_dir).skipped == ds.skipped
