import base64
from pathlib import Path

import nbformat
import pytest

from catdog_report import pages
from catdog_report.errors import PageError

ROOT = Path(__file__).resolve().parents[1]
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000000000200015e2a6f0b0000000049454e44ae426082")).decode()


def notebook(*cells: object) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def test_markdown_with_image_files_alt_text_and_captions() -> None:
    code = nbformat.v4.new_code_cell("show(fig)")
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="hello\n"),
        nbformat.v4.new_output("stream", name="stderr", text="noise\n"),
        nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "x"},
                               metadata={"image/png": {"alt": "a plot", "caption": "Cap"}}),
        nbformat.v4.new_output("display_data", data={"text/markdown": "**bold**"}),
    ]
    hidden = nbformat.v4.new_code_cell("secret()", metadata={"tags": ["remove-input"]})
    folded = nbformat.v4.new_code_cell("plumbing()", metadata={"tags": ["hide-input"]})
    gone = nbformat.v4.new_code_cell("gone()", metadata={"tags": ["remove-cell"]})
    nb = notebook(nbformat.v4.new_markdown_cell("# Title\n\nText"), code, hidden, gone, folded)
    text, images = pages.to_markdown(nb, "page")
    assert list(images) == ["page_1.png"] and images["page_1.png"].startswith(b"\x89PNG")
    assert "![a plot](page_1.png)" in text and "<figcaption>Cap</figcaption>" in text
    assert "[![a plot](page_1.png)](page_1.png){ .catdog-zoom" in text  # opens full size
    assert "```python\nshow(fig)\n```" in text and "hello" in text and "noise" not in text
    assert "**bold**" in text and "secret()" not in text and "gone()" not in text
    assert '??? example "Show code"\n\n    ```python\n    plumbing()\n    ```' in text
    assert "base64" not in text and PNG[:20] not in text


def test_hard_coded_numbers_in_prose_are_caught() -> None:
    nb = notebook(nbformat.v4.new_markdown_cell("Accuracy settles between 62% and 65 %."),
                  nbformat.v4.new_markdown_cell("The loss is 0.42, `RandomRotation(0.2)` is ok"),
                  nbformat.v4.new_markdown_cell("2000 images at 160x160 in model 4 are fine"))
    problems = pages.lint(nb, Path("model-one.md"))
    assert len(problems) == 3
    assert "model-one.md, cell 1" in problems[0] and "'62%'" in problems[0]
    assert "'0.42'" in problems[2]


CONTENT_PAGES = sorted((ROOT / "content").glob("*.md"))


def test_the_lint_below_sees_every_page_of_the_nav() -> None:
    from catdog_report import site

    nav = site.nav_pages(ROOT)
    assert len(nav) >= 8  # a glob that found nothing would make the next test pass vacuously
    assert {p.stem for p in CONTENT_PAGES} >= set(nav)


@pytest.mark.parametrize("page", CONTENT_PAGES, ids=lambda p: p.name)
def test_content_pages_compute_their_numbers(page: Path) -> None:
    assert pages.lint(pages.read(page), page) == []


def test_a_page_that_types_a_result_fails_the_build(tmp_path: Path) -> None:
    path = tmp_path / "bad.md"
    path.write_text("# Bad\n\nThe model reaches 99% on test data.\n")
    with pytest.raises(PageError, match="bad.md, cell 1.*'99%'"):
        pages.run_page(path, {})


@pytest.mark.slow
def test_one_page_executes_in_a_kernel(tmp_path: Path) -> None:
    path = tmp_path / "p.md"
    path.write_text("# Kernel page\n\n```python\nimport os, sys\nprint(6 * 7)\n"
                    "print(os.environ['MARK'])\n```\n")
    import os

    page = pages.run_page(path, dict(os.environ) | {"MARK": "from-the-build"})
    assert page.title == "Kernel page"
    assert "42" in page.markdown and "from-the-build" in page.markdown
    assert nbformat.reads(page.notebook, 4).cells[1].outputs


@pytest.mark.slow
def test_failing_cell_names_page_cell_and_traceback(tmp_path: Path) -> None:
    import os

    path = tmp_path / "broken.md"
    path.write_text("# Broken\n\n```python\nx = 1\n```\n\n"
                    "```python\nraise ValueError('boom')\n```\n")
    with pytest.raises(PageError) as err:
        pages.run_page(path, dict(os.environ))
    message = str(err.value)
    assert "broken.md" in message and "cell 3" in message and "ValueError: boom" in message
