"""Helpers for the browser tests: a local static server and a recorder of page problems."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOST = "127.0.0.1"
IGNORED_SCHEMES = ("data", "blob", "about")  # never leave the browser


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder without logging every request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 at a free port; yield the base URL (ending in /)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer((LOCAL_HOST, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://{LOCAL_HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def is_local(url: str) -> bool:
    """True for URLs served by the local server or that never leave the browser."""
    parts = urlsplit(url)
    if parts.scheme in IGNORED_SCHEMES:
        return True
    return parts.scheme in ("http", "https") and parts.hostname == LOCAL_HOST


@dataclass
class Problems:
    """Everything that went wrong while a page (and its workers) loaded and ran."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        """The non-empty problem lists, by kind (requests, which are not problems, left out)."""
        kinds = ("console_errors", "page_errors", "failed_requests", "bad_responses",
                 "external_requests")
        return {k: getattr(self, k) for k in kinds if getattr(self, k)}


def watch(context: Any, page: Any) -> Problems:
    """Record console errors, page errors and network problems of `page` in `context`.

    External requests are recorded and then aborted, so a test never waits on the network.
    """
    problems = Problems()

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            loc = msg.location or {}
            problems.console_errors.append(f"{msg.text} ({loc.get('url', '?')})")

    def on_request(request: Any) -> None:
        problems.requests.append(request.url)
        if not is_local(request.url):
            problems.external_requests.append(request.url)

    def on_failed(request: Any) -> None:
        problems.failed_requests.append(f"{request.url}: {request.failure}")

    def on_response(response: Any) -> None:
        if response.status >= 400:
            problems.bad_responses.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda err: problems.page_errors.append(str(err)))
    context.on("request", on_request)
    context.on("requestfailed", on_failed)
    context.on("response", on_response)
    context.route(lambda url: not is_local(url), lambda route: route.abort())
    return problems
