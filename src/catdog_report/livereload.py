"""The serve loop's web server: site/ over HTTP, every HTML page reloading itself when the
site changes (a long poll, as MkDocs's livereload does, without its wait on a running build:
the build swaps site/ atomically, so the last good site stays served while it runs)."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .escape import terminal

log = logging.getLogger(__name__)

RELOAD_PATH = "/.catdog-reload/"  # GET RELOAD_PATH + epoch answers once the site is newer
POLL_SECONDS = 30.0  # a long poll answers after this long even when nothing changed
SCRIPT = """<script>(() => {
  const epoch = %d;
  const poll = () => fetch("%s" + epoch, {cache: "no-store"})
    .then((r) => r.text())
    .then((t) => (Number(t) > epoch ? location.reload() : poll()))
    .catch(() => setTimeout(poll, 1000));
  addEventListener("load", poll);
})();</script>"""
BUILDING = ("<!doctype html><meta charset=\"utf-8\"><title>Building the site</title>"
            "<p>catdog-report is building the site; this page reloads by itself when it is "
            "ready. Progress is in the terminal.</p>")


class LiveSite(ThreadingHTTPServer):
    """Serves a folder by path (so a swapped-in folder is served at once) and tells every
    open page to reload when reload() is called."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, host: str, port: int) -> None:
        """Bind host:port at once; a port in use is a ConfigError naming --port."""
        self.root = root
        self.epoch = _now()
        self.closing = False
        self.changed = threading.Condition()
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror}; stop what "
                              "uses it or pass --port N") from None

    @property
    def url(self) -> str:
        """The site's address."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> threading.Thread:
        """Serve in a background thread."""
        thread = threading.Thread(target=self.serve_forever, args=(0.1,), name="live-site",
                                  daemon=True)
        thread.start()
        return thread

    def reload(self) -> None:
        """Every open page reloads (its long poll answers with a newer epoch)."""
        with self.changed:
            self.epoch = max(_now(), self.epoch + 1)
            self.changed.notify_all()

    def newer_than(self, epoch: int, timeout: float = POLL_SECONDS) -> int:
        """The current epoch, once it is newer than epoch, the server closes, or time is up."""
        with self.changed:
            self.changed.wait_for(lambda: self.epoch > epoch or self.closing, timeout)
            return self.epoch

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that left mid-answer (a reload, a closed tab) is no error; anything
        else is one log line (the traceback with -v)."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError):
            log.warning("error answering %s: %s: %s", client_address[0], type(exc).__name__,
                        exc, exc_info=log.isEnabledFor(logging.DEBUG))

    def stop(self) -> None:
        """Stop serving, answer the waiting polls and free the port."""
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        self.shutdown()
        self.server_close()


class _Outside(Exception):
    """A request for a path whose real location is not inside the served folder."""


class _Handler(SimpleHTTPRequestHandler):
    """Files from the server's root, never one whose real path (links followed) is outside
    it; HTML gets the reload script; nothing is cached; a malformed request gets a 4xx."""

    server: LiveSite

    def __init__(self, request: Any, client_address: Any, server: LiveSite) -> None:
        super().__init__(request, client_address, server, directory=str(server.root))

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """A reload poll, an HTML page with the script, or a plain file."""
        self._guarded(self._get)

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        """A plain file's headers."""
        self._guarded(super().do_HEAD)

    def _guarded(self, answer: Any) -> None:
        """Answer, or refuse: 404 outside the site, 400 for a path no file can have."""
        try:
            answer()
        except _Outside:
            log.warning("refused %s: outside %s", _printable(self.path), self.server.root)
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
        except (ValueError, UnicodeError):  # a NUL byte, an unencodable name
            log.debug("bad request %s", _printable(self.path))
            self.send_error(HTTPStatus.BAD_REQUEST, "malformed path")

    def translate_path(self, path: str) -> str:
        """The file for a URL path; _Outside when its real path leaves the served folder."""
        target = super().translate_path(path)
        root = os.path.realpath(self.server.root)
        real = os.path.realpath(target)
        if real != root and not real.startswith(root + os.sep):
            raise _Outside(path)
        return target

    def _get(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith(RELOAD_PATH):
            return self._poll(path[len(RELOAD_PATH):])
        epoch = self.server.epoch  # read before the file: a page never misses a reload
        page = self._html_file(path)
        if page is not None:
            return self._send_html(page.read_bytes(), epoch)
        if not (self.server.root / "index.html").is_file():
            return self._send_html(BUILDING.encode(), epoch)  # nothing built yet
        return super().do_GET()

    def _html_file(self, path: str) -> Path | None:
        target = Path(self.translate_path(path))
        if target.is_dir() and path.endswith("/"):
            target = target / "index.html"
        return target if target.suffix == ".html" and target.is_file() else None

    def _send_html(self, html: bytes, epoch: int) -> None:
        end = html.rfind(b"</body>")
        end = len(html) if end < 0 else end
        script = (SCRIPT % (epoch, RELOAD_PATH)).encode()
        body = html[:end] + script + html[end:]
        self._send(body, "text/html; charset=utf-8")

    def _poll(self, epoch: str) -> None:
        if not re.fullmatch(r"[0-9]{1,20}", epoch):  # ASCII digits, at most 20 of them
            self.send_error(HTTPStatus.BAD_REQUEST, "expected /.catdog-reload/EPOCH")
            return
        self._send(str(self.server.newer_than(int(epoch))).encode(), "text/plain")

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def end_headers(self) -> None:
        """Every answer is fresh: a reloaded page never shows an old figure."""
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the debug log, not the terminal."""
        log.debug("%s " + format, self.address_string(), *args)


def _printable(text: str, limit: int = 200) -> str:
    """A request path for one log line: control characters escaped, long ones cut."""
    return terminal(text if len(text) <= limit else text[:limit] + "…")


def _now() -> int:
    """Milliseconds since the epoch: a restarted server is newer than any page it served."""
    return time.time_ns() // 1_000_000
