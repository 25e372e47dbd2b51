import base64
from pathlib import Path

import markdown
import nbformat
import pytest

from catdog_report import pages, site
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


@pytest.mark.slow
def test_a_cell_past_its_time_limit_stops_the_build_naming_page_and_cell(
        project: Path, tiny_data: Path, tmp_path: Path) -> None:
    """A build's cell that runs too long: one error naming the page and the cell; the kernel
    stopped, nothing published, nothing cached. The same page run by hand has no limit."""
    import os
    import re
    import time

    import psutil

    from catdog_report import build, cli
    from catdog_report.config import Settings

    config = project / "mkdocs.yml"
    config.write_text(re.sub(r"^nav:\n(?:  - .*\n)+", "nav:\n  - Introduction: index.md\n",
                             config.read_text(), flags=re.M))
    index = project / "content" / "index.md"
    index.write_text(index.read_text() + "\n```python\nimport time\ntime.sleep(600)\n```\n")
    study = project / "study.yml"
    study.write_text(study.read_text() + "\npages:\n  cell_timeout: 15\n")  # > the imports
    settings = Settings(profile="quick", project_dir=project, data_dir=tiny_data,
                        cache_dir=tmp_path / "cache", image_size=64, batch_size=8)
    assert settings.cell_limit == 15 and settings.replace(cell_timeout=5).cell_limit == 5
    t0 = time.monotonic()
    with pytest.raises(PageError) as err:
        build.build(settings)
    assert time.monotonic() - t0 < 60
    assert str(err.value) == (
        "page index.md: cell 5 (import time) ran out of its time limit of 15 s; the kernel was "
        "stopped. Make the cell faster, or raise the limit (--cell-timeout SECONDS, or pages: "
        "cell_timeout: in study.yml)")
    assert not settings.site_dir.exists()
    assert not list((settings.cache_root / "pages").glob("entries/*"))
    assert not [p for p in psutil.Process(os.getpid()).children(recursive=True)
                if "ipykernel" in " ".join(p.cmdline())]
    args = cli.parser().parse_args(["build", "--project", str(project), "--cell-timeout", "7"])
    assert cli._settings(args).cell_limit == 7


def test_huge_outputs_are_cut_per_cell_and_per_page_saying_where_the_rest_is(
        tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "content").mkdir(parents=True)
    path = project / "content" / "loud.md"
    big = "".join(f"line {i:07d} " + "x" * 40 + "\n" for i in range(800_000))  # 43.2 MB
    loud = nbformat.v4.new_code_cell("print(big)")
    loud.outputs = [nbformat.v4.new_output("stream", name="stdout", text=big)]
    small = nbformat.v4.new_code_cell("print('ok')")
    small.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ok\n"),
                     nbformat.v4.new_output("stream", name="stdout", text="<&>" * 500_000)]
    figures = []
    for _ in range(30):  # 30 figures of 90 kB each: the page's limit leaves some out
        cell = nbformat.v4.new_code_cell("show(fig)")
        cell.outputs = [nbformat.v4.new_output(
            "display_data", data={"image/png": base64.b64encode(b"\x89PNG" + b"\0" * 90_000)
                                  .decode(), "text/plain": "fig"})]
        figures.append(cell)
    nb = notebook(nbformat.v4.new_markdown_cell("# Loud"), loud, small, *figures)
    pages.keep_output(nb, path, project, project / "build" / "logs")
    text, images = pages.to_markdown(nb, "loud")
    html = markdown.markdown(text, extensions=["admonition", "pymdownx.superfences",
                                                "pymdownx.highlight"])
    kept = len(html.encode()) + sum(len(b) for b in images.values())
    assert kept < pages.PAGE_OUTPUT_LIMIT + 20_000 and len(images) < 30
    theme = 300_000  # Material's CSS and JavaScript, about what every page loads
    assert kept + theme < site.PAGE_BUDGET  # every page fits check-site's one budget
    assert ("!!! warning \"Output cut\"\n    This cell's output is 43.2 MB; the page shows the "
            "first 200 kB (each cell keeps at most 200 kB, each page 1.0 MB). The full output "
            "is in `build/logs/loud.full.ipynb`, written by the build that executed this "
            "page.") in text
    assert "line 0000000" in text and "line 0799999" not in text and "ok" in text
    assert text.count('"Output cut"') == 2 + (30 - len(images))  # every cut cell says so
    full = nbformat.read(project / "build" / "logs" / "loud.full.ipynb", 4)
    assert full.cells[1].outputs[0].text.endswith("line 0799999 " + "x" * 40 + "\n")
    assert [len(c.outputs) for c in full.cells[1:]] == [1, 2] + [1] * 30  # all of it
    again = nbformat.reads(nbformat.writes(nb), 4)  # a cached page capped again: unchanged
    pages.cap_outputs(again, "build/logs/loud.full.ipynb")
    assert pages.to_markdown(again, "loud")[0] == text
