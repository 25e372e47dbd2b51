"""Content pages: jupytext Markdown → a fresh Jupyter kernel → Markdown with image files."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import Store, digest, write_atomic
from .errors import PageError

log = logging.getLogger(__name__)

KERNEL = "python3"
_ACTIVE: set[Any] = set()  # kernel managers with a running kernel
INTERRUPTED = threading.Event()


def _client_class() -> Any:
    """nbclient's client, with SIGINT/SIGTERM stopping the kernel and unwinding the build."""
    import asyncio
    import contextlib
    import signal

    from nbclient import NotebookClient

    class Client(NotebookClient):  # type: ignore[misc]
        @contextlib.asynccontextmanager
        async def async_setup_kernel(self, **kwargs: Any) -> Any:
            async with super().async_setup_kernel(**kwargs):
                loop, task = asyncio.get_running_loop(), asyncio.current_task()
                for sig in (signal.SIGINT, signal.SIGTERM):  # replaces nbclient's handlers
                    loop.add_signal_handler(sig, _on_signal, task)
                yield

    return Client


def _on_signal(task: Any) -> None:
    """Stop the kernels and cancel the execution (writes are atomic: nothing half-done)."""
    kill_kernels()
    if task is not None:
        task.cancel()


def kill_kernels() -> None:
    """Stop every running page kernel at once (the build was interrupted)."""
    INTERRUPTED.set()
    for km in list(_ACTIVE):
        process = getattr(getattr(km, "provisioner", None), "process", None)
        if process is not None:
            log.warning("stopping the kernel (pid %s)", process.pid)
            process.kill()
EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg", "image/svg+xml": "svg"}
# Prose may not state results: a percentage or a decimal fraction in a Markdown cell is
# a number that did not come from a run.
HARDCODED = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?%|(?<![\w.])0\.\d+")


@dataclass
class Page:
    """One executed (or cached) page: Markdown, its images, the notebook, the runs it used."""

    name: str
    title: str
    markdown: str
    images: dict[str, bytes]
    notebook: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    executed_at: str = ""
    cached: bool = False


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


def page_key(path: Path, inputs: dict[str, Any]) -> str:
    """The page cache key: the page text, the kernel, and what the page reads."""
    return digest({"page": path.read_text(), "kernel": KERNEL} | inputs)


def execute(nb: Any, path: Path, env: dict[str, str], timeout: int = 7200,
            log_file: Path | None = None) -> Any:
    """Run every cell in a fresh kernel; a failing cell becomes a PageError naming it."""
    import asyncio

    from nbclient.exceptions import CellExecutionError, DeadKernelError

    logging.getLogger("traitlets").setLevel(logging.ERROR)
    try:
        asyncio.run(_execute(nb, path, env, timeout, log_file))
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    except CellExecutionError as exc:
        index = next((i for i, c in enumerate(nb.cells, 1) if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))), "?")
        lines = _strip_ansi(str(exc.traceback or exc)).strip().splitlines()
        tail = "\n".join("    " + line for line in lines[-8:])
        raise PageError(f"page {path.name} failed in cell {index}: {exc.ename}: {exc.evalue}"
                        f"\n{tail}\nFix the cell, or open the page in Jupyter to debug it"
                        ) from None
    except DeadKernelError:
        why = ("the build was interrupted" if INTERRUPTED.is_set()
               else "out of memory? check the page's log in build/logs/")
        raise PageError(f"the Jupyter kernel running {path.name} died ({why})") from None
    return nb


async def _execute(nb: Any, path: Path, env: dict[str, str], timeout: int,
                   log_file: Path | None) -> None:
    """Start a kernel over IPC, relay its stderr, execute, and always shut it down."""
    from jupyter_client.manager import AsyncKernelManager

    with tempfile.TemporaryDirectory(prefix="catdog-kernel-") as sockets:
        km = AsyncKernelManager(kernel_name=KERNEL, transport="ipc",
                                ip=str(Path(sockets) / "k"))
        client = _client_class()(nb, km=km, timeout=timeout, allow_errors=False,
                                 resources={"metadata": {"path": str(path.parent)}})
        read_fd, write_fd = os.pipe()
        try:
            try:
                await km.start_kernel(env=env, cwd=str(path.parent), stderr=write_fd)
            finally:
                os.close(write_fd)
            _ACTIVE.add(km)
            threading.Thread(target=_relay, args=(read_fd, log_file), daemon=True).start()
            await client.async_execute()
        finally:
            _ACTIVE.discard(km)
            if km.has_kernel:
                await km.shutdown_kernel(now=True)


PROGRESS_PREFIX = "    "  # what notebook.py's kernel-side log lines start with


def _relay(fd: int, log_file: Path | None) -> None:
    """Forward the kernel's progress lines to the build log; keep all of stderr in a file."""
    sink = open(log_file, "w") if log_file else None  # noqa: SIM115
    with os.fdopen(fd, errors="replace") as stream:
        for line in stream:
            if sink:
                sink.write(line)
            if line.startswith(PROGRESS_PREFIX):
                log.info("%s", line.rstrip())
    if sink:
        sink.close()


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


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
            parts.append(f"```python\n{cell.source.strip()}\n```")
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
        text = _strip_ansi(out.get("text", "")).rstrip()
        return [f"```text\n{text}\n```"] if text and out.get("name") == "stdout" else []
    if kind == "error":
        return [f"```text\n{_strip_ansi(chr(10).join(out.get('traceback', [])))}\n```"]
    bundle = out.get("data", {})
    for mime, ext in EXTENSIONS.items():
        if mime in bundle:
            meta = out.get("metadata", {}).get(mime, {})
            name = f"{stem}_{len(images) + 1}.{ext}"
            raw = bundle[mime]
            images[name] = raw.encode() if mime == "image/svg+xml" else base64.b64decode(raw)
            alt = str(meta.get("alt") or "figure").replace("]", ")").replace("[", "(")
            img = f"![{alt}]({name})"
            caption = meta.get("caption")
            return [f"<figure markdown=\"span\">\n  {img}\n  <figcaption>{caption}</figcaption>"
                    "\n</figure>" if caption else img]
    if "text/markdown" in bundle:
        return [bundle["text/markdown"]]
    if "text/plain" in bundle:
        return [f"```text\n{_strip_ansi(bundle['text/plain'])}\n```"]
    return []


def scrub(nb: Any) -> Any:
    """Drop machine-specific metadata from an executed notebook."""
    nb.metadata.pop("jupytext", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
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
    if host and host != "localhost":
        text = re.sub(rf"(?<![\w-]){re.escape(host)}(?![\w-])", "<host>", text)
    return text


def page_store(cache_root: Path) -> Store:
    """The page cache."""
    return Store(cache_root / "pages", "page")


def load_cached(store: Store, key: str, name: str) -> Page | None:
    """A page from the page cache, or None."""
    folder = store.get(key)
    if folder is None:
        return None
    meta = json.loads((folder / "page.json").read_text())
    images = {p.name: p.read_bytes() for p in (folder / "images").iterdir()}
    return Page(name, meta["title"], (folder / "page.md").read_text(), images,
                (folder / "page.ipynb").read_text(), meta["runs"], meta["seconds"],
                meta["executed_at"], cached=True)


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
            "executed_at": page.executed_at}, indent=1))

    store.put(key, fill)


def run_page(path: Path, env: dict[str, str], log_dir: Path | None = None) -> Page:
    """Execute one page in a fresh kernel and convert it."""
    import nbformat

    nb = read(path)
    problems = lint(nb, path)
    if problems:
        raise PageError("numbers typed into prose instead of computed:\n  " +
                        "\n  ".join(problems))
    with tempfile.TemporaryDirectory(prefix="catdog-runlog-") as tmp:
        runlog = Path(tmp) / "runs.jsonl"
        runlog.touch()
        t0 = time.perf_counter()
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        execute(nb, path, env | {"CATDOG_RUNLOG": str(runlog)},
                log_file=log_dir / f"{path.stem}.log" if log_dir else None)
        seconds = time.perf_counter() - t0
        runs = [json.loads(line) for line in runlog.read_text().splitlines() if line]
    markdown, images = to_markdown(nb, path.stem)
    project = path.resolve().parent.parent
    text = scrub_text(nbformat.writes(scrub(nb)), project)
    markdown = scrub_text(markdown, project)
    return Page(path.stem, title(nb, path.stem), markdown, images, text, runs,
                round(seconds, 1), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def write_page(page: Page, docs: Path) -> None:
    """Write a page's Markdown and images into the docs folder (unchanged files are kept)."""
    write_atomic(docs / f"{page.name}.md", page.markdown)
    for name, data in page.images.items():
        write_atomic(docs / name, data)
    write_atomic(docs / "notebooks" / f"{page.name}.ipynb", page.notebook)
