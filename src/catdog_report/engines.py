"""The site engines: MkDocs with Material for MkDocs (the default) or Zensical, same mkdocs.yml."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import BuildError

log = logging.getLogger(__name__)

ENGINES = ("mkdocs", "zensical")
TAIL_LINES = 12  # lines of Zensical's output quoted in a BuildError

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ISSUE = re.compile(r"^Warning: (.+)$")
_WHERE = re.compile(r"\[\s*(\S+?:\d+(?::\d+)?)\s*\]")
_EXCEPTION = re.compile(r"^[\w.]*(?:Error|Exception): \S")


def render_site(engine: str, config: Path, docs: Path, out: Path) -> None:
    """Build the site from a MkDocs config with the chosen engine.

    Both engines read the same config; its ``docs_dir`` and ``site_dir`` are replaced by
    ``docs`` and ``out``. ``mkdocs`` runs MkDocs in this process exactly as
    ``site.publish`` does. ``zensical`` runs ``python -m zensical build`` in a temporary
    folder next to ``out``: Zensical takes no overrides and only accepts a docs_dir
    relative to and a site_dir inside the config's folder, so that folder holds a
    hard-linked copy of ``docs`` and a small mkdocs.yml that INHERITs ``config`` (paths
    inside ``config`` that are relative to its folder, such as ``theme.custom_dir`` or
    ``hooks``, would resolve against the temporary folder). Zensical's link warnings are
    logged as warnings.

    Args:
        engine: One of ``ENGINES``.
        config: The project's mkdocs.yml.
        docs: The folder of Markdown pages and their assets.
        out: An existing, empty folder that receives the built site.

    Raises:
        BuildError: The engine is unknown or not installed, or the build failed; the first
            line of the message says what failed and how to go on.
    """
    if engine not in ENGINES:
        raise BuildError(f"unknown site engine {engine!r}; use one of: {', '.join(ENGINES)}")
    if not config.is_file():
        raise BuildError(f"site config {config} does not exist; restore mkdocs.yml")
    if not docs.is_dir():
        raise BuildError(f"docs folder {docs} does not exist; run the build to generate it")
    log.debug("building the site with %s into %s", engine, out)
    if engine == "mkdocs":
        _build_mkdocs(config, docs, out)
    else:
        _build_zensical(config, docs, out)


class _Errors(logging.Handler):
    """Collects the ERROR records MkDocs logs: its exceptions alone say only 'Aborted'."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's message on one line."""
        self.messages.append(" ".join(record.getMessage().split()))


def _build_mkdocs(config: Path, docs: Path, out: Path) -> None:
    """Build with MkDocs: load_config with site_dir/docs_dir overrides, then build."""
    try:
        from mkdocs.commands.build import build
        from mkdocs.config import load_config
        from mkdocs.exceptions import MkDocsException
    except ImportError as exc:
        raise BuildError(f"MkDocs is not installed ({exc}): "
                         "pip install mkdocs mkdocs-material") from exc
    errors = _Errors()
    mkdocs_log = logging.getLogger("mkdocs")
    mkdocs_log.addHandler(errors)
    try:
        cfg = load_config(str(config), site_dir=str(out), docs_dir=str(docs))
        build(cfg)
    except MkDocsException as exc:
        said = " ".join(str(exc).split())
        detail = "; ".join([*errors.messages, said] if said not in errors.messages
                           else errors.messages)
        raise BuildError(f"MkDocs could not build the site from {config}: {detail}") from exc
    finally:
        mkdocs_log.removeHandler(errors)


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link a file where the file system allows it, else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _log_issues(output: str) -> None:
    """Log each 'Warning: ...' of Zensical's output with its file:line, the rest at debug."""
    lines = output.splitlines()
    for number, line in enumerate(lines):
        issue = _ISSUE.match(line.strip())
        if issue:
            nearby = " ".join(lines[number + 1:number + 3])
            where = _WHERE.search(nearby)
            log.warning("zensical: %s%s", issue[1], f" at {where[1]}" if where else "")
    if output.strip():
        log.debug("zensical output:\n%s", output.rstrip())


def _summary(returncode: int, output: str) -> str:
    """The one line of Zensical's output that best says why the build failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Error: "):
            return line.removeprefix("Error: ")
    for line in reversed(lines):
        if _EXCEPTION.match(line):
            return line
    for number, line in enumerate(lines):
        if "panicked at" in line:
            return " ".join(lines[number:number + 2])
    if returncode == 0:
        return "it exited 0 but wrote no pages"
    return lines[-1] if lines else "no output"


def _build_zensical(config: Path, docs: Path, out: Path) -> None:
    """Build with `python -m zensical build` from an INHERITing config in a temp folder."""
    if importlib.util.find_spec("zensical") is None:
        raise BuildError("Zensical is not installed: pip install zensical, "
                         "or use --engine mkdocs")
    work = Path(tempfile.mkdtemp(prefix=f"{out.name}.zensical-", dir=out.parent))
    try:
        shutil.copytree(docs, work / "docs", copy_function=_link_or_copy)
        child = work / "mkdocs.yml"
        child.write_text(f"INHERIT: {json.dumps(str(config.resolve()))}\n"
                         "docs_dir: docs\nsite_dir: site\n", encoding="utf-8")
        command = [sys.executable, "-m", "zensical", "build", "--config-file", str(child)]
        try:
            proc = subprocess.run(command, cwd=work, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, errors="replace",
                                  check=False)
        except OSError as exc:
            raise BuildError(f"cannot run Zensical ({exc}); pip install zensical, "
                             "or use --engine mkdocs") from exc
        output = _ANSI.sub("", proc.stdout)
        _log_issues(output)
        site = work / "site"
        wrote_pages = site.is_dir() and any(
            page.name != "404.html" for page in site.rglob("*.html"))
        has_pages = any(docs.rglob("*.md"))
        if proc.returncode or "panicked at" in output or (has_pages and not wrote_pages):
            lines = [line.rstrip() for line in output.splitlines() if line.strip()]
            tail = "\n".join("    " + line for line in lines[-TAIL_LINES:])
            raise BuildError(
                f"Zensical could not build the site from {config} (exit {proc.returncode}): "
                f"{_summary(proc.returncode, output)}; fix that or use --engine mkdocs. "
                f"Last lines of its output:\n{tail}")
        for entry in site.iterdir() if site.is_dir() else ():
            os.replace(entry, out / entry.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
