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


# What a page keeps of its cells' outputs (text as published, HTML-escaped; images as their
# files): a figure is tens of kB and a table a few, so a cell within these shows whole; a
# cell that prints megabytes is cut, saying so, and with the theme (about 0.3 MB) every page
# stays within check-site's page budget (site.PAGE_BUDGET, 1.5 MB).
CELL_OUTPUT_LIMIT = 200_000
PAGE_OUTPUT_LIMIT = 1_000_000
CUT_NOTE = "catdog-output-cut"  # the metadata tag of the note a cut adds to a cell


def cap_outputs(nb: Any, full: str | None = None) -> list[str]:
    """Cut each code cell's outputs to CELL_OUTPUT_LIMIT bytes and the page's to
    PAGE_OUTPUT_LIMIT, in place: a text output keeps its first lines, an image or other
    output that no longer fits is left out, and a cut cell gets a note saying what was cut
    and where the full output is (full: that place, e.g. a notebook path; None if not kept).
    Returns one line per cut cell, for the log."""
    import nbformat

    cuts: list[str] = []
    page_left = PAGE_OUTPUT_LIMIT
    for number, cell in enumerate(nb.cells, 1):
        if cell.cell_type != "code" or not cell.get("outputs"):
            continue
        if any(CUT_NOTE in o.get("metadata", {}) for o in cell.outputs):  # capped already
            page_left -= sum(_output_size(o) for o in cell.outputs)
            continue
        left = max(0, min(CELL_OUTPUT_LIMIT, page_left))
        kept: list[Any] = []
        total = dropped = 0
        for out in _merge_streams(cell.outputs):
            size = _output_size(out)
            total += size
            if size <= left:
                kept.append(out)
                left -= size
                continue
            if out.get("output_type") in ("stream", "error") and left > 0:
                kept.append(_cut_text(out, left))
                left = 0
            dropped += 1
        kept = [nbformat.from_dict(o) for o in kept]  # merged streams are plain dicts
        shown = sum(_output_size(o) for o in kept)
        page_left -= shown
        if not dropped:
            cell.outputs = kept
            continue
        where = (f"The full output is in `{full}`, written by the build that executed this "
                 "page." if full else "The full output was not kept.")
        note = (f'!!! warning "Output cut"\n    This cell\'s output is {_size(total)}; the page '
                f"shows the first {_size(shown)} (each cell keeps at most "
                f"{_size(CELL_OUTPUT_LIMIT)}, each page {_size(PAGE_OUTPUT_LIMIT)}). {where}")
        kept.append(nbformat.v4.new_output("display_data", data={"text/markdown": note},
                                           metadata={CUT_NOTE: total}))
        cell.outputs = kept
        cuts.append(f"cell {number}: output of {_size(total)} cut")
    return cuts


def _output_size(out: Any) -> int:
    """The bytes an output adds to a page: its text, or its image file."""
    kind = out.get("output_type")
    if kind == "stream":
        return _published(out.get("text", ""))
    if kind == "error":
        return _published("\n".join(out.get("traceback", [])))
    bundle = out.get("data", {})
    for mime in EXTENSIONS:
        if mime in bundle:
            raw = bundle[mime]
            return len(raw.encode()) * (1 if mime == "image/svg+xml" else 3) // (
                1 if mime == "image/svg+xml" else 4)
    for mime in ("text/markdown", "text/plain"):
        if mime in bundle:
            return _published(str(bundle[mime]))
    return 0


def _published(text: str) -> int:
    """The bytes a text output takes in the page's HTML (escaped)."""
    return len(escape.html_text(text).encode())


def _cut_text(out: Any, limit: int) -> Any:
    """A text output cut to its first lines within limit bytes."""
    key = "text" if out.get("output_type") == "stream" else "traceback"
    text = out.get("text", "") if key == "text" else "\n".join(out.get("traceback", []))
    head = text.encode()[:limit].decode(errors="ignore")
    while head and _published(head) > limit:  # escaping makes some text longer
        head = head[:len(head) * 3 // 4]
    head = head[:head.rfind("\n") + 1] or head
    return dict(out, **{key: head if key == "text" else head.rstrip("\n").split("\n")})


def _size(n: int) -> str:
    """Bytes in words: '41.9 MB', '200 kB', '512 bytes'."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    return f"{n / 1000:.0f} kB" if n >= 1000 else f"{n} bytes"


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
    cap_outputs(nb)
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


def keep_output(nb: Any, path: Path, project: Path, log_dir: Path | None) -> None:
    """Cap the executed page's outputs (cap_outputs); when a cell was cut, the whole executed
    notebook goes to log_dir/<page>.full.ipynb first, and the cut names that file."""
    import copy

    import nbformat

    from .cache import write_atomic

    full = log_dir / f"{path.stem}.full.ipynb" if log_dir else None
    whole = copy.deepcopy(nb) if full else None
    shown = full.relative_to(project).as_posix() if full and full.is_relative_to(project) else full
    cuts = cap_outputs(nb, str(shown) if shown else None)
    if full is not None and whole is not None:
        if cuts:
            write_atomic(full, nbformat.writes(scrub(whole, project)))
            more = f" and {len(cuts) - 3} more" if len(cuts) > 3 else ""
            log.warning("%s: %s%s; the full output is in %s", path.name, "; ".join(cuts[:3]),
                        more, shown)
        else:
            full.unlink(missing_ok=True)


async def run_page_async(path: Path, env: dict[str, str], log_dir: Path | None = None,
                         timeout: int | None = None, started: Any = None) -> Page:
    """Execute one page in a fresh kernel inside a running batch (kernel.run_batch); each
    cell may run timeout seconds (None: no limit); started: a fresh kernel started ahead
    for it (kernel.KernelPool), else one is started now."""
    import nbformat

    source = source_digest(path)
    nb = read(path)
    check_prose(nb, path)
    t0 = time.perf_counter()
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)
    await kernel.execute_async(nb, path, env, timeout,
                               log_file=log_dir / f"{path.stem}.log" if log_dir else None,
                               started=started)
    seconds = time.perf_counter() - t0
    project = path.resolve().parent.parent
    keep_output(nb, path, project, log_dir)
    markdown, images = to_markdown(nb, path.stem)
    text = nbformat.writes(scrub(nb, project))
    markdown = scrub_text(markdown, project)
    return Page(path.stem, title(nb, path.stem), markdown, images, text, [], round(seconds, 1),
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), source=source)
