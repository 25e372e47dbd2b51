"""The author's loop: build, serve site/ with live reload, and rebuild on every save.

A rebuild is an ordinary build (run and page caches) with ``publish_failures``: a page that
fails is published with its error instead of stopping the build. Builds run one at a time
in the main thread (the page kernels' signal handling needs it); the web server runs in a
thread and keeps serving the last published site while a build runs.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

from .config import Settings
from .errors import CatdogError
from .livereload import LiveSite

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PORT = 8000
WATCHED_FILES = ("study.yml", "mkdocs.yml")  # besides everything under content/
POLL_SECONDS = 0.1  # how often the sources are looked at
QUIET_SECONDS = 0.3  # a burst of saves (an editor's temp file, then the rename) is one change
IGNORED_PARTS = ("__pycache__", ".ipynb_checkpoints")
IGNORED_SUFFIXES = ("~", ".swp", ".swx", ".pyc", ".tmp")

Snapshot = dict[str, tuple[int, int, int]]


def snapshot(project: Path) -> Snapshot:
    """(mtime, size, inode) of every watched file: content/ (without caches and editor
    temp files), study.yml and mkdocs.yml."""
    files = [project / name for name in WATCHED_FILES]
    content = project / "content"
    if content.is_dir():
        files += [p for p in content.rglob("*") if not _ignored(p.relative_to(content))]
    out: Snapshot = {}
    for path in files:
        try:
            st = path.stat()
        except OSError:  # deleted meanwhile, or not there
            continue
        if path.is_file():
            out[path.relative_to(project).as_posix()] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return out


def _ignored(rel: Path) -> bool:
    """Caches, hidden files and editor temp files are not sources."""
    return (any(part in IGNORED_PARTS or part.startswith(".") for part in rel.parts)
            or rel.name.endswith(IGNORED_SUFFIXES))


def changed(old: Snapshot, new: Snapshot) -> list[str]:
    """The files added, removed or modified between two snapshots."""
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


def wait_for_change(project: Path, seen: Snapshot) -> tuple[Snapshot, list[str]]:
    """Block until the sources differ from seen and have been quiet for QUIET_SECONDS."""
    while (now := snapshot(project)) == seen:
        time.sleep(POLL_SECONDS)
    while True:
        time.sleep(QUIET_SECONDS)
        later = snapshot(project)
        if later == now:
            return now, changed(seen, now)
        now = later


def serve(settings: Settings, host: str = HOST, port: int = PORT) -> None:
    """Build, serve site/ on host:port with live reload, and rebuild on every change to
    content/, study.yml or mkdocs.yml until interrupted.

    Each rebuild executes only the pages whose inputs changed and trains only the runs the
    run cache lacks. A failing page is published with a "failure" admonition naming its
    cell and exception (and not cached), so fixing it recovers; a failing build (a broken
    study.yml, a model that cannot train) is logged and the last good site stays served.

    Args:
        settings: The build's settings (``publish_failures`` is turned on).
        host: The address to listen on (default 127.0.0.1: this machine only).
        port: The port (default 8000).

    Raises:
        ConfigError: The port cannot be bound.
        Interrupted: Ctrl-C or SIGTERM during a build; the server, the build and its page
            kernels are stopped and the port is free.
        KeyboardInterrupt: Ctrl-C or SIGTERM between builds; the server is stopped and the
            port is free.
    """
    settings = settings.replace(publish_failures=True)
    project = settings.project_dir
    server = LiveSite(settings.site_dir, host, port)
    thread = server.start()
    log.info("serving %s on %s; watching content/, study.yml and mkdocs.yml "
             "(Ctrl-C stops)", settings.site_dir, server.url)
    try:
        seen = snapshot(project)
        rebuild(settings, server)
        while True:
            seen, names = wait_for_change(project, seen)
            log.info("changed: %s; rebuilding", ", ".join(names))
            rebuild(settings, server)
    finally:
        server.stop()
        thread.join(timeout=5)


def rebuild(settings: Settings, server: LiveSite) -> None:
    """One build; the open pages reload when it published. Its errors are logged and the
    last good site stays served; Interrupted (no CatdogError) propagates."""
    from .build import build

    t0 = time.perf_counter()
    try:
        result = build(settings.replace())  # checked again: study.yml may have changed
    except CatdogError as exc:
        log.error("build failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        log.error("the last good site stays served; fix it and save to rebuild")
        return
    finally:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # asyncio resets it
    executed = [p.name for p in result.pages if not p.cached]
    trained = [m for m, r in result.runs.items() if r.get("trained")]
    for failure in result.failures:
        log.warning("published with its error: %s", failure.partition("\n")[0])
    log.info("built in %.1f s (executed: %s; trained: %s)%s", time.perf_counter() - t0,
             ", ".join(executed) or "none", ", ".join(trained) or "none",
             "; reloading the browser" if result.published else "; site unchanged")
    if result.published:
        server.reload()
