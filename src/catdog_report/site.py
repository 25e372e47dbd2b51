"""The MkDocs side: nav order, the generated docs folder, an atomic site swap, link checks."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from .cache import digest, file_digest, write_atomic, write_error
from .errors import BuildError

log = logging.getLogger(__name__)
DIGEST_FILE = ".catdog-docs-digest"
ELSEWHERE = "or build a copy of the project (--project) on a disk with room"


class _Loader(yaml.SafeLoader):
    """SafeLoader that tolerates MkDocs's !!python/name and !ENV tags."""


_Loader.add_multi_constructor("", lambda loader, suffix, node: None)


def read_config(project: Path) -> dict[str, Any]:
    """mkdocs.yml as data."""
    path = project / "mkdocs.yml"
    try:
        return yaml.load(path.read_text(), Loader=_Loader) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BuildError(f"cannot read {path}: {exc}") from exc


def nav_titles(project: Path) -> list[tuple[str, str]]:
    """(title, page name) for every page in mkdocs.yml's nav, in order."""
    def walk(items: Any) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for item in items or []:
            title, value = next(iter(item.items())) if isinstance(item, dict) else ("", item)
            if isinstance(value, list):
                out += walk(value)
            else:
                out.append((str(title) or Path(str(value)).stem, Path(str(value)).stem))
        return out

    return walk(read_config(project).get("nav"))


def nav_pages(project: Path) -> list[str]:
    """The page names (content/NAME.md) in navigation order."""
    names = [name for _, name in nav_titles(project)]
    missing = [n for n in names if not (project / "content" / f"{n}.md").is_file()]
    if missing:
        raise BuildError(f"mkdocs.yml's nav names pages with no content/NAME.md: {missing}; "
                         "add the page or remove it from nav")
    return names


def sync_docs(docs: Path, files: dict[str, bytes]) -> int:
    """Make docs hold exactly files (relative path → bytes); returns how many were written."""
    written = sum(write_atomic(docs / rel, data) for rel, data in files.items())
    for path in sorted(docs.rglob("*"), reverse=True):
        rel = path.relative_to(docs).as_posix()
        if path.is_file() and rel not in files and rel != DIGEST_FILE:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return written


def docs_digest(docs: Path, project: Path, engine: str = "mkdocs") -> str:
    """A hash of the generated docs, the MkDocs config and the engine that renders them."""
    files = {p.relative_to(docs).as_posix(): file_digest(p) for p in sorted(docs.rglob("*"))
             if p.is_file() and p.name != DIGEST_FILE}
    return digest({"docs": files, "config": (project / "mkdocs.yml").read_text(),
                   "engine": engine})


def publish(project: Path, site: Path, docs: Path, engine: str = "mkdocs") -> bool:
    """Render the site with the engine (MkDocs or Zensical) into a temp folder and swap it
    in; False if up to date."""
    from .engines import render_site

    wanted = docs_digest(docs, project, engine)
    marker = site / DIGEST_FILE
    if marker.is_file() and marker.read_text() == wanted:
        log.debug("site/ is up to date; %s not run", engine)
        return False
    try:
        tmp = Path(tempfile.mkdtemp(dir=site.parent, prefix="site.tmp-"))
    except OSError as exc:
        raise write_error(exc, "the site", site.parent, BuildError, ELSEWHERE) from exc
    try:
        render_site(engine, project / "mkdocs.yml", docs, tmp)
        (tmp / DIGEST_FILE).write_text(wanted)
        swap(tmp, site)
    except OSError as exc:  # a full disk, above all: the old site stays
        raise write_error(exc, "the site", site.parent, BuildError, ELSEWHERE) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux's renameat2(RENAME_EXCHANGE); False if unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) == 0


def swap(new: Path, site: Path) -> None:
    """Replace site with new in one atomic step where the OS allows: never a mix of both."""
    if site.exists() and _exchange(new, site):
        shutil.rmtree(new, ignore_errors=True)  # new now holds the old site
        return
    old = site.parent / f"site.old-{os.getpid()}"
    if site.exists():
        os.rename(site, old)
    os.rename(new, site)
    shutil.rmtree(old, ignore_errors=True)


def recover(site: Path) -> None:
    """Put back a site moved aside by a killed swap, and drop stale temp folders."""
    parent = site.parent
    olds = sorted(parent.glob("site.old-*"), key=lambda p: p.stat().st_mtime)
    if not site.exists() and olds:
        log.warning("restoring %s from %s left by an interrupted build", site, olds[-1].name)
        os.rename(olds.pop(), site)
    for stale in olds + list(parent.glob("site.tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)


LINK_ATTRS = {("img", "src"), ("a", "href"), ("link", "href"), ("script", "src")}
# Bytes a reader downloads for one page (HTML, images, CSS, JS), the same for every page:
# the theme is about 0.3 MB and pages.PAGE_OUTPUT_LIMIT caps what a page's cells add.
PAGE_BUDGET = 1_500_000


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.resources: list[str] = []  # what the browser fetches to show the page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if value and (tag, name) in LINK_ATTRS:
                self.links.append(value)
                if tag != "a" and not (tag == "link" and values.get("rel") not in (
                        "stylesheet", "icon")):
                    self.resources.append(value)


def _local(page: Path, site: Path, link: str) -> Path | None:
    """The file a relative or site-absolute link points at, or None for external links."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    base = site if parts.path.startswith("/") else page.parent
    target = (base / unquote(parts.path).lstrip("/")).resolve()
    return target / "index.html" if target.is_dir() else target


def page_weights(site: Path) -> dict[str, int]:
    """Bytes per page: its HTML plus every image, stylesheet and script it loads."""
    weights = {}
    for page in sorted(site.rglob("index.html")):
        parser = _Links()
        parser.feed(page.read_text(errors="replace"))
        files = {page} | {t for link in parser.resources
                          if (t := _local(page, site, link)) and t.is_file()}
        name = page.parent.relative_to(site).as_posix()
        weights["index" if name == "." else name] = sum(f.stat().st_size for f in files)
    return weights


def over_budget(weights: dict[str, int], budget: int = PAGE_BUDGET) -> list[str]:
    """Pages heavier than the page budget (one budget for every page)."""
    return [f"{name}: {size:,} bytes > {budget:,}" for name, size in weights.items()
            if size > budget]


def broken_links(site: Path) -> list[str]:
    """Every local img/a/link/script target in site/ that does not exist."""
    problems = []
    for page in sorted(site.rglob("*.html")):
        parser = _Links()
        parser.feed(page.read_text(errors="replace"))
        for link in parser.links:
            target = _local(page, site, link)
            if target is not None and not target.exists():
                problems.append(f"{page.relative_to(site)}: {link}")
    return problems
