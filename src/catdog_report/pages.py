"""Content pages: jupytext Markdown → a fresh Jupyter kernel → Markdown with image files."""

from __future__ import annotations

import base64
import json
import logging
import re
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import escape, kernel
from .cache import Store
from .errors import PageError
from .kernel import strip_ansi

log = logging.getLogger(__name__)

EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg", "image/svg+xml": "svg"}
# Prose may not state results: a percentage or a decimal fraction in a Markdown cell is
# a number that did not come from a run.
HARDCODED = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?%|(?<![\w.])0\.\d+")


@dataclass
class Page:
    """One executed (or cached) page: Markdown, its images, the notebook, and the runs it
    showed as the build that executed it had them (its stamp)."""

    name: str
    title: str
    markdown: str
    images: dict[str, bytes]
    notebook: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    executed_at: str = ""
    cached: bool = False
    source: str = ""  # the digest of the page text it was made from


def read(path: Path) -> Any:
    """Read a jupytext Markdown page as a notebook."""
    import jupytext

    try:
        return jupytext.read(path, fmt="md")
    except Exception as exc:  # jupytext raises several parser errors
        raise PageError(f"{path} is not a readable jupytext Markdown page: {exc}") from exc


def title(nb: Any, fallback: str) -> str:
    """The page's first Markdown heading."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return fallback


def lint(nb: Any, path: Path) -> list[str]:
    """Numbers hard-coded in prose: each names the page, the cell and the text."""
    problems = []
    for i, cell in enumerate(nb.cells, 1):
        if cell.cell_type != "markdown":
            continue
        prose = re.sub(r"`[^`]*`", "", cell.source)
        for m in HARDCODED.finditer(prose):
            problems.append(f"{path.name}, cell {i}: the number {m.group(0)!r} is typed in prose; "
                            "compute it in a code cell and render it with notebook.say()")
    return problems


def signature(nb: Any) -> str:
    """A digest of what executing the page depends on in its own text: the kernel, every
    code cell's source and tags, and where the prose cells are (not what they say)."""
    from .cache import digest

    return digest({"kernelspec": dict(nb.metadata.get("kernelspec", {})),
                   "cells": [[c.cell_type, c.source if c.cell_type == "code" else "",
                              sorted(_tags(c))] for c in nb.cells]})


def with_prose(page: Page, path: Path, source: str) -> Page:
    """A cached page with the prose of the page's current text (source: its digest): the
    code and its outputs are the same (the page cache key says so), only the Markdown
    cells are new."""
    import nbformat

    nb = nbformat.reads(page.notebook, as_version=4)
    current = read(path)
    check_prose(current, path)
    if [c.cell_type for c in current.cells] != [c.cell_type for c in nb.cells]:
        raise PageError(f"{path.name}: the cached page does not match the page's cells; "
                        "delete the page cache (catdog-report clean) and build again")
    for old, new in zip(nb.cells, current.cells, strict=True):
        if new.cell_type == "markdown":
            old.source = new.source
    project = path.resolve().parent.parent
    markdown, images = to_markdown(nb, path.stem)
    return Page(page.name, title(nb, path.stem), scrub_text(markdown, project), images,
                nbformat.writes(nb), page.runs, page.seconds, page.executed_at, cached=True,
                source=source)


def source_digest(path: Path) -> str:
    """A digest of a page's text."""
    from .cache import file_digest

    return file_digest(path)


def check_prose(nb: Any, path: Path) -> None:
    """Fail when the page's prose states numbers instead of computing them."""
    problems = lint(nb, path)
    if problems:
        raise PageError("numbers typed into prose instead of computed:\n  " +
                        "\n  ".join(problems))


def code_cells(nb: Any) -> list[str]:
    """The source of every code cell, in order."""
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def _tags(cell: Any) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def to_markdown(nb: Any, stem: str) -> tuple[str, dict[str, bytes]]:
    """Markdown for MkDocs; every image output becomes a file named stem_N.ext."""
    parts: list[str] = []
    images: dict[str, bytes] = {}
    for cell in nb.cells:
        tags = _tags(cell)
        if "remove-cell" in tags:
            continue
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            continue
        if cell.cell_type != "code":
            continue
        if "remove-input" not in tags and cell.source.strip():
            code = escape.code_block(cell.source.strip(), "python")
            if "hide-input" in tags:  # plumbing: there, but folded away
                code = '??? example "Show code"\n\n' + textwrap.indent(code, "    ")
            parts.append(code)
        if "remove-output" not in tags:
            for out in _merge_streams(cell.get("outputs", [])):
                parts.extend(_output(out, stem, images))
    return "\n\n".join(p for p in parts if p.strip()) + "\n", images


def _merge_streams(outputs: list[Any]) -> list[Any]:
    """Join consecutive stdout chunks into one output, as a reader sees them."""
    merged: list[Any] = []
    for out in outputs:
        if (merged and out.get("output_type") == "stream" and out.get("name") == "stdout"
                and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == "stdout"):
            merged[-1] = dict(merged[-1], text=merged[-1]["text"] + out["text"])
        else:
            merged.append(out)
    return merged


def _output(out: Any, stem: str, images: dict[str, bytes]) -> list[str]:
    kind = out.get("output_type")
    if kind == "stream":
        text = strip_ansi(out.get("text", "")).rstrip()
        return [escape.code_block(text)] if text and out.get("name") == "stdout" else []
    if kind == "error":
        return [escape.code_block(strip_ansi("\n".join(out.get("traceback", []))))]
    bundle = out.get("data", {})
    for mime, ext in EXTENSIONS.items():
        if mime in bundle:
            meta = out.get("metadata", {}).get(mime, {})
            name = f"{stem}_{len(images) + 1}.{ext}"
            raw = bundle[mime]
            images[name] = raw.encode() if mime == "image/svg+xml" else base64.b64decode(raw)
            alt = escape.alt_text(str(meta.get("alt") or "figure"))
            # a plain link opens the figure full size, offline, in either site engine
            img = f"[![{alt}]({name})]({name}){{ .catdog-zoom title=\"Open full size\" }}"
            caption = escape.html_text(str(meta.get("caption") or "")).strip()
            return [f"<figure markdown=\"span\">\n  {img}\n  <figcaption>{caption}</figcaption>"
                    "\n</figure>" if caption else img]
    if "text/markdown" in bundle:
        return [bundle["text/markdown"]]
    if "text/plain" in bundle:
        return [escape.code_block(strip_ansi(bundle["text/plain"]))]
    return []


def scrub(nb: Any, project: Path) -> Any:
    """Drop machine-specific metadata and local details from an executed notebook's text."""
    nb.metadata.pop("jupytext", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = scrub_text(out["text"], project)
            if "traceback" in out:
                out["traceback"] = [scrub_text(t, project) for t in out["traceback"]]
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    out["data"][mime] = scrub_text(value, project)
    return nb


def scrub_text(text: str, project: Path) -> str:
    """Replace local paths, the host name and the user's home in published text."""
    import socket
    import sys

    places = {str(project): "<project>", sys.prefix: "<python>", sys.base_prefix: "<python>",
              str(Path.home()): "~", tempfile.gettempdir(): "<tmp>"}
    for old, new in sorted(places.items(), key=lambda kv: -len(kv[0])):
        if len(old) > 1:
            text = text.replace(old, new)
    host = socket.gethostname()
    if len(host) >= 3 and host != "localhost":
        text = re.sub(rf"(?<![\w./+-]){re.escape(host)}(?![\w./+-])", "<host>", text)
    return text


def page_store(cache_root: Path) -> Store:
    """The page cache."""
    return Store(cache_root / "pages", "page")


def load_cached(store: Store, key: str, name: str, path: Path | None = None) -> Page | None:
    """A page from the page cache, or None; with its prose made current when the page's
    text changed only in its Markdown cells (path: the page)."""
    folder = store.get(key)
    if folder is None:
        return None
    meta = json.loads((folder / "page.json").read_text())
    images = {p.name: p.read_bytes() for p in (folder / "images").iterdir()}
    page = Page(name, meta["title"], (folder / "page.md").read_text(), images,
                (folder / "page.ipynb").read_text(), meta.get("runs", []), meta["seconds"],
                meta["executed_at"], cached=True, source=meta.get("source", ""))
    if path is not None and page.source != (source := source_digest(path)):
        page = with_prose(page, path, source)
        save(store, key, page)  # the next build finds the new prose as it is
    return page


def save(store: Store, key: str, page: Page) -> None:
    """Store an executed page atomically."""
    def fill(tmp: Path) -> None:
        (tmp / "images").mkdir()
        for name, data in page.images.items():
            (tmp / "images" / name).write_bytes(data)
        (tmp / "page.md").write_text(page.markdown)
        (tmp / "page.ipynb").write_text(page.notebook)
        (tmp / "page.json").write_text(json.dumps({
            "title": page.title, "runs": page.runs, "seconds": page.seconds,
            "source": page.source,
            "executed_at": page.executed_at}, indent=1))

    store.put(key, fill)


FAILURE_TITLE = "This page failed to execute"


def failure_admonition(message: str) -> str:
    """A PageError message as a Material 'failure' admonition: its first line (the page,
    the cell and the exception) as text, the rest (the traceback's tail) as a code block."""
    first, _, rest = message.partition("\n")
    lines = [f'!!! failure "{FAILURE_TITLE}"', "", f"    {escape.markdown_text(first)}", ""]
    if rest.strip():
        lines += [textwrap.indent(escape.code_block(rest.rstrip()), "    "), ""]
    return "\n".join(lines) + "\n"


def failure_page(path: Path, error: PageError) -> Page:
    """A page that failed (the serve loop publishes it, never caches it): the error as an
    admonition under the title, then the page as far as it ran, or its unexecuted source."""
    import nbformat

    project = path.resolve().parent.parent
    nb = error.notebook
    if nb is None:
        try:
            nb = read(path)
        except PageError:
            nb = nbformat.v4.new_notebook()
    markdown, images = to_markdown(nb, path.stem)
    head = f"# {title(nb, path.stem)}"
    if markdown.startswith("# "):
        head, _, markdown = markdown.partition("\n")
    body = scrub_text(f"{failure_admonition(str(error))}\n{markdown.strip()}\n", project)
    return Page(path.stem, title(nb, path.stem), f"{head}\n\n{body}", images,
                nbformat.writes(scrub(nb, project)), seconds=0.0,
                executed_at=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def run_page(path: Path, env: dict[str, str], log_dir: Path | None = None,
             timeout: int | None = None) -> Page:
    """Execute one page in a fresh kernel and convert it (timeout: seconds per cell; None,
    the default, sets no limit)."""
    return kernel.run_batch(lambda: run_page_async(path, env, log_dir, timeout))


async def run_page_async(path: Path, env: dict[str, str], log_dir: Path | None = None,
                         timeout: int | None = None) -> Page:
    """Execute one page in a fresh kernel inside a running batch (kernel.run_batch); each
    cell may run timeout seconds (None: no limit)."""
    import nbformat

    source = source_digest(path)
    nb = read(path)
    check_prose(nb, path)
    t0 = time.perf_counter()
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)
    await kernel.execute_async(nb, path, env, timeout,
                               log_file=log_dir / f"{path.stem}.log" if log_dir else None)
    seconds = time.perf_counter() - t0
    markdown, images = to_markdown(nb, path.stem)
    project = path.resolve().parent.parent
    text = nbformat.writes(scrub(nb, project))
    markdown = scrub_text(markdown, project)
    return Page(path.stem, title(nb, path.stem), markdown, images, text, [], round(seconds, 1),
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), source=source)
