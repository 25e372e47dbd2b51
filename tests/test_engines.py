"""Both site engines build a docs folder like the build writes, with the project's mkdocs.yml."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from catdog_report import engines, site
from catdog_report.errors import BuildError
from conftest import ROOT

PAGE = """# {title}

!!! info "Built from synthetic data, profile quick"
    Data: **synthetic drawings**. Profile `quick`: 1 epoch.

Download: [executed notebook (.ipynb)](notebooks/{name}.ipynb){{ download }} · \
[page source (jupytext Markdown)](sources/{name}.md.txt){{ download }}

## Results

| Model | Accuracy |
|:------|---------:|
| one   | 0.71     |

```python
import keras
```

<figure markdown="span">
  ![A blue disc on white]({name}_1.png)
  <figcaption>Accuracy of {title}</figcaption>
</figure>

??? note "Reproducibility stamp"
    - **Commit:** `abc123`
"""


def make_docs(docs: Path, names: list[str]) -> None:
    """A docs folder shaped like the build's: pages, a figure each, downloads, extra.css."""
    (docs / "assets").mkdir(parents=True)
    (docs / "assets" / "extra.css").write_text(
        (ROOT / "content" / "assets" / "extra.css").read_text())
    for sub in ("notebooks", "sources"):
        (docs / sub).mkdir()
    for name in names:
        title = name.replace("-", " ").capitalize()
        (docs / f"{name}.md").write_text(PAGE.format(name=name, title=title))
        Image.new("RGB", (24, 16), (40, 60, 230)).save(docs / f"{name}_1.png")
        (docs / "notebooks" / f"{name}.ipynb").write_text('{"cells": [], "nbformat": 4}')
        (docs / "sources" / f"{name}.md.txt").write_text(f"# {title}\n")


class _Page(HTMLParser):
    """What one built page loads from elsewhere, and its download links."""

    def __init__(self) -> None:
        super().__init__()
        self.resources: list[str] = []
        self.downloads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note every URL the browser would fetch, and every <a download>."""
        values = dict(attrs)
        for name, value in attrs:
            if value and (name in ("src", "srcset", "data") or (tag == "link" and name == "href")
                          or name == "style"):
                self.resources.append(value)
        if tag == "a" and "download" in values:
            self.downloads.append(values.get("href") or "")


@pytest.fixture(scope="module", params=engines.ENGINES)
def built(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[str]]:
    """The site each engine builds from the project's mkdocs.yml and a fake docs folder."""
    engine = request.param
    if engine == "zensical":
        pytest.importorskip("zensical", reason="zensical is not installed (pip install zensical)")
    names = site.nav_pages(ROOT)  # the pages mkdocs.yml's nav lists, in order
    work = tmp_path_factory.mktemp(f"site-{engine}")
    make_docs(work / "docs", names)
    out = work / "out"
    out.mkdir()
    engines.render_site(engine, ROOT / "mkdocs.yml", work / "docs", out)
    return engine, out, names


def _page(out: Path, name: str) -> Path:
    """The HTML file of a page, with directory URLs."""
    return out / "index.html" if name == "index" else out / name / "index.html"


def test_every_nav_page_is_built_with_its_assets(built: tuple[str, Path, list[str]]) -> None:
    engine, out, names = built
    missing = [n for n in names if not _page(out, n).is_file()]
    assert not missing, f"{engine} did not build {missing}"
    assert (out / "assets" / "extra.css").is_file()
    assert (out / "notebooks" / f"{names[1]}.ipynb").is_file()
    assert (out / f"{names[1]}_1.png").is_file()
    assert (out / "search" / "search_index.json").is_file() or (out / "search.json").is_file()


def test_pages_carry_the_markdown_features(built: tuple[str, Path, list[str]]) -> None:
    engine, out, names = built
    html = _page(out, names[1]).read_text()
    assert '<div class="admonition info">' in html
    assert '<p class="admonition-title">Built from synthetic data, profile quick</p>' in html
    assert re.search(r'<details class="note">\s*<summary>Reproducibility stamp</summary>', html)
    assert re.search(r"<table>\s*<thead>", html) and 'style="text-align: right;"' in html
    assert re.search(r'<figure>\s*<img alt="A blue disc on white" src="[^"]+_1\.png"', html)
    assert f"<figcaption>Accuracy of {names[1].replace('-', ' ').capitalize()}</figcaption>" \
        in html
    assert '<div class="highlight">' in html and '<span class="kn">import</span>' in html
    assert "content.code.copy" in html  # the copy button is added by the theme's script
    assert 'data-md-component="palette"' in html and 'data-md-color-scheme="slate"' in html
    assert 'href="../assets/extra.css"' in html
    parser = _Page()
    parser.feed(html)
    assert sorted(parser.downloads) == [f"../notebooks/{names[1]}.ipynb",
                                        f"../sources/{names[1]}.md.txt"], engine


def test_no_page_or_stylesheet_loads_anything_from_the_internet(
        built: tuple[str, Path, list[str]]) -> None:
    engine, out, _ = built
    external = []
    for page in sorted(out.rglob("*.html")):
        parser = _Page()
        parser.feed(page.read_text())
        external += [f"{page.relative_to(out)}: {url}" for url in parser.resources
                     if re.search(r"(?:^|url\(\s*['\"]?)(?:https?:)?//", url)]
    for sheet in sorted(out.rglob("*.css")):
        external += [f"{sheet.relative_to(out)}: {m}" for m in re.findall(
            r"(?:url\(\s*['\"]?|@import\s+['\"]?)(?:https?:)?//[^)'\";]+", sheet.read_text())]
    assert not external, f"{engine} references external resources: {external[:5]}"


@pytest.mark.parametrize("engine", engines.ENGINES)
def test_a_broken_config_is_a_build_error(engine: str, tmp_path: Path) -> None:
    if engine == "zensical":
        pytest.importorskip("zensical", reason="zensical is not installed (pip install zensical)")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Hi\n")
    (tmp_path / "out").mkdir()
    config = tmp_path / "mkdocs.yml"
    config.write_text("docs_dir: docs\n")  # no site_name
    with pytest.raises(BuildError, match="site_name"):
        engines.render_site(engine, config, tmp_path / "docs", tmp_path / "out")
    config.write_text("site_name: [unclosed\n")
    with pytest.raises(BuildError, match="parsing the configuration file"):
        engines.render_site(engine, config, tmp_path / "docs", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "mkdocs.yml", "out"]


def test_unknown_or_missing_engine_says_what_to_do(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "out").mkdir()
    config = tmp_path / "mkdocs.yml"
    config.write_text("site_name: x\n")
    with pytest.raises(BuildError, match="unknown site engine 'hugo'; use one of: mkdocs, zen"):
        engines.render_site("hugo", config, tmp_path / "docs", tmp_path / "out")
    real = engines.importlib.util.find_spec
    monkeypatch.setattr(engines.importlib.util, "find_spec",
                        lambda name, *a: None if name == "zensical" else real(name, *a))
    with pytest.raises(BuildError, match=r"pip install zensical, or use --engine mkdocs"):
        engines.render_site("zensical", config, tmp_path / "docs", tmp_path / "out")
    with pytest.raises(BuildError, match="does not exist"):
        engines.render_site("mkdocs", tmp_path / "nope.yml", tmp_path / "docs", tmp_path / "out")
