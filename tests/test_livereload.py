"""livereload: site/ over HTTP, never a file outside it, every HTML page reloading itself
when the site changes (a long poll), malformed requests answered 4xx in one log line."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from catdog_report import livereload
from catdog_report.errors import ConfigError
from catdog_report.livereload import RELOAD_PATH, SCRIPT, LiveSite


def port_is_free(port: int) -> bool:
    """Whether a server could bind 127.0.0.1:port now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def _raw(port: int, request: bytes) -> str:
    """Send one raw HTTP request; the whole answer (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


def _status(port: int, request: bytes) -> str:
    """The status line of the answer to one raw request."""
    return _raw(port, request).partition("\r\n")[0]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    return root


@pytest.fixture
def server(site: Path) -> Iterator[LiveSite]:
    """A LiveSite on a free port, serving site/; always stopped after."""
    live = LiveSite(site, "127.0.0.1", 0)
    thread = live.start()
    yield live
    if not live.closing:  # the test did not stop it itself
        live.stop()
    thread.join(timeout=5)


def _epoch(html: str) -> int:
    found = re.search(r"const epoch = (\d+);", html)
    assert found, html
    return int(found[1])


# ------------------------------------------------------------------ pages and the script


def test_live_site_injects_the_script_and_answers_a_poll_on_reload(
        tmp_path: Path, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "site"
    root.mkdir()
    server = LiveSite(root, "127.0.0.1", 0)
    thread = server.start()
    try:
        status, text = _get(server.url)
        assert status == 200 and "reloads by itself" in text  # nothing built yet
        (root / "page").mkdir()
        (root / "index.html").write_text("<html><body><p>hi</p></body></html>")
        (root / "page" / "index.html").write_text("<html><body>page</body></html>")
        (root / "style.css").write_text("p {}")
        _, text = _get(server.url + "page/")
        epoch = _epoch(text)
        assert text.index("const epoch") < text.index("</body>")
        assert _get(server.url + "style.css") == (200, "p {}")
        answer: list[str] = []
        poll = threading.Thread(target=lambda: answer.append(
            _get(f"{server.url.rstrip('/')}{RELOAD_PATH}{epoch}")[1]))
        poll.start()
        time.sleep(0.3)
        assert poll.is_alive()  # a long poll waits for a newer site
        server.reload()
        poll.join(timeout=5)
        assert answer and int(answer[0]) > epoch
        with pytest.raises(ConfigError, match=r"cannot serve on 127\.0\.0\.1:\d+: .*--port"):
            LiveSite(root, "127.0.0.1", server.server_address[1])
        try:  # a browser that left mid-answer (a reload, a closed tab) is no error
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            server.handle_error(None, ("127.0.0.1", 1))
        assert capfd.readouterr().err == "" and not caplog.records
    finally:
        server.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert port_is_free(server.server_address[1])  # the port is free again


def test_the_script_goes_before_the_body_end_or_at_the_end(site: Path,
                                                           server: LiveSite) -> None:
    (site / "index.html").write_text("<html><body><p>home</p></body>\n</html>\n")
    (site / "bare.html").write_text("<p>no body tag</p>")
    _, home = _get(server.url)
    script = SCRIPT % (server.epoch, RELOAD_PATH)
    assert home == f"<html><body><p>home</p>{script}</body>\n</html>\n"
    _, bare = _get(server.url + "bare.html")
    assert bare == f"<p>no body tag</p>{script}"
    assert f'fetch("{RELOAD_PATH}" + epoch' in script and "location.reload()" in script
    answer = _raw(server.server_address[1], b"GET /bare.html HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition("\r\n\r\n")
    assert "Content-Type: text/html; charset=utf-8" in head
    assert f"Content-Length: {len(body.encode('latin-1'))}" in head  # the script counted


def test_every_answer_is_fresh_and_head_sends_no_body(site: Path, server: LiveSite) -> None:
    (site / "index.html").write_text("<html><body>home</body></html>")
    (site / "style.css").write_text("p { color: red }")
    port = server.server_address[1]
    for request in (b"GET / HTTP/1.0\r\n\r\n", b"GET /style.css HTTP/1.0\r\n\r\n",
                    b"GET /missing.css HTTP/1.0\r\n\r\n", b"HEAD /style.css HTTP/1.0\r\n\r\n"):
        head = _raw(port, request).partition("\r\n\r\n")[0]
        assert "Cache-Control: no-store" in head, request
    head, _, body = _raw(port, b"HEAD /style.css HTTP/1.0\r\n\r\n").partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 200") and "Content-Length: 16" in head and body == ""
    assert _status(port, b"GET /missing.css HTTP/1.0\r\n\r\n").endswith("404 File not found")


def test_a_folder_without_its_slash_is_redirected(site: Path, server: LiveSite) -> None:
    (site / "index.html").write_text("<html><body>home</body></html>")
    (site / "page").mkdir()
    (site / "page" / "index.html").write_text("<html><body>page</body></html>")
    answer = _raw(server.server_address[1], b"GET /page HTTP/1.0\r\n\r\n")
    assert answer.startswith("HTTP/1.0 301") and "Location: /page/\r\n" in answer
    _, page = _get(server.url + "page/")
    assert page.startswith("<html><body>page") and "const epoch" in page


def test_until_a_site_is_built_every_path_shows_the_building_page(
        site: Path, server: LiveSite) -> None:
    (site / "style.css").write_text("p {}")  # a file, but no index.html yet
    for path in ("", "style.css", "model-one/"):
        status, text = _get(server.url + path)
        assert status == 200 and text.startswith(livereload.BUILDING), path
        assert _epoch(text) == server.epoch  # and it reloads once the site is there


def test_a_site_swapped_in_is_served_at_once(site: Path, server: LiveSite,
                                             tmp_path: Path) -> None:
    (site / "index.html").write_text("<html><body>old</body></html>")
    assert "old" in _get(server.url)[1]
    new = tmp_path / "site.new"
    new.mkdir()
    (new / "index.html").write_text("<html><body>new</body></html>")
    site.rename(tmp_path / "site.old")
    new.rename(site)  # as site.publish swaps it in
    assert "new" in _get(server.url)[1]


# ------------------------------------------------------------------------- containment


def _bare_handler(root: Path) -> livereload._Handler:
    """A handler with no connection: enough to call translate_path."""
    handler = livereload._Handler.__new__(livereload._Handler)
    handler.server = type("Server", (), {"root": root})()  # type: ignore[assignment]
    handler.directory = str(root)
    return handler


def test_translate_path_keeps_every_real_path_inside_the_site(tmp_path: Path) -> None:
    root = tmp_path / "site"
    (root / "inside").mkdir(parents=True)
    (root / "inside" / "page.txt").write_text("published")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "alias.txt").symlink_to("inside/page.txt")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "leakdir").symlink_to(tmp_path)
    handler = _bare_handler(root)
    assert handler.translate_path("/") == str(root) + os.sep
    assert handler.translate_path("/inside/page.txt") == str(root / "inside" / "page.txt")
    assert handler.translate_path("/alias.txt") == str(root / "alias.txt")  # stays inside
    assert handler.translate_path("/../secret.txt") == str(root / "secret.txt")  # dropped ..
    for path in ("/leak.txt", "/leakdir/secret.txt", "/leakdir/", "/leakdir"):
        with pytest.raises(livereload._Outside):
            handler.translate_path(path)


def test_a_served_folder_that_is_itself_a_link_is_served(tmp_path: Path) -> None:
    real = tmp_path / "real-site"
    real.mkdir()
    (real / "a.txt").write_text("a")
    (tmp_path / "site").symlink_to(real)
    handler = _bare_handler(tmp_path / "site")
    assert handler.translate_path("/a.txt") == str(tmp_path / "site" / "a.txt")


def test_serve_never_leaves_the_site_and_refuses_malformed_requests_in_one_line(
        tmp_path: Path, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "site"
    (root / "inside").mkdir(parents=True)
    (root / "index.html").write_text("<html><body>home</body></html>")
    (root / "inside" / "page.txt").write_text("published")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the site")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key.txt").write_text("outside the site")
    (root / "leak.txt").symlink_to(secret)  # a link in site/ to a file outside it
    (root / "leakdir").symlink_to(tmp_path / "private")  # and to a folder outside it
    (root / "inside" / "up.html").symlink_to("../../secret.txt")
    (root / "alias.txt").symlink_to("inside/page.txt")  # a link that stays inside is served
    server = LiveSite(root, "127.0.0.1", 0)
    thread = server.start()
    port = server.server_address[1]
    caplog.set_level(logging.DEBUG, logger="catdog_report.livereload")
    try:
        assert _get(server.url + "alias.txt") == (200, "published")
        for path in ("leak.txt", "leakdir/key.txt", "leakdir/", "inside/up.html",
                     "%2e%2e/secret.txt", "inside/..%2f..%2fsecret.txt"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _get(server.url + path)
            assert refused.value.code == 404, path
            assert b"outside the site" not in refused.value.read()
        assert _status(port, b"HEAD /leak.txt HTTP/1.0\r\n\r\n").endswith("404 File not found")
        for absurd in (b"\xb2", b"9" * 5000, b"-1", b"1e9", b"%00", b"x" * 100):
            request = b"GET " + RELOAD_PATH.encode() + absurd + b" HTTP/1.0\r\n\r\n"
            assert _status(port, request).split(" ")[1] == "400", absurd
        assert _status(port, b"GET /inside/%00page.txt HTTP/1.0\r\n\r\n").split(" ")[1] == "400"
    finally:
        server.stop()
        thread.join(timeout=5)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Traceback" not in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 5 and all(w.startswith("refused /") for w in warnings), warnings
    assert warnings[0] == f"refused /leak.txt: outside {root}"


def test_a_hostile_path_is_logged_escaped_and_cut() -> None:
    assert livereload._printable("/a\x1b[31mred\nforged") == "/a\\x1b[31mred\\nforged"
    long = "/" + "x" * 300
    assert livereload._printable(long) == long[:200] + "…"
    assert livereload._printable("/fine") == "/fine"


# ---------------------------------------------------------------------- the reload poll


def test_reload_always_moves_the_epoch_forward(site: Path) -> None:
    server = LiveSite(site, "127.0.0.1", 0)
    try:
        first = server.epoch
        assert abs(first - time.time() * 1000) < 60_000  # milliseconds since the epoch
        epochs = [first]
        for _ in range(5):  # within one millisecond too
            server.reload()
            epochs.append(server.epoch)
        assert epochs == sorted(set(epochs))
        later = LiveSite(site, "127.0.0.1", 0)  # a restarted server: newer than pages served
        try:
            assert later.epoch >= first
        finally:
            later.server_close()
    finally:
        server.server_close()


def test_a_poll_answers_at_once_when_newer_after_its_time_or_when_closing(
        site: Path) -> None:
    server = LiveSite(site, "127.0.0.1", 0)
    try:
        now = server.epoch
        t0 = time.perf_counter()
        assert server.newer_than(now - 1) == now  # the page is older: reload at once
        assert server.newer_than(now, timeout=0.2) == now  # nothing changed: same epoch
        assert 0.15 < time.perf_counter() - t0 < 5
        answers: list[int] = []
        waiting = threading.Thread(target=lambda: answers.append(server.newer_than(now)))
        waiting.start()
        time.sleep(0.2)
        assert waiting.is_alive()
        with server.changed:  # what stop() does before shutting down
            server.closing = True
            server.changed.notify_all()
        waiting.join(timeout=5)
        assert answers == [now]  # the waiting poll got its answer: not a newer site
    finally:
        server.server_close()


def test_stop_answers_the_waiting_polls_and_frees_the_port(site: Path, server: LiveSite) -> None:
    (site / "index.html").write_text("<html><body>home</body></html>")
    epoch = _epoch(_get(server.url)[1])
    answers: list[str] = []
    poll = threading.Thread(target=lambda: answers.append(
        _get(f"{server.url.rstrip('/')}{RELOAD_PATH}{epoch}")[1]))
    poll.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    server.stop()
    poll.join(timeout=5)
    assert answers == [str(epoch)] and time.perf_counter() - t0 < 5  # not the 30 s poll
    assert port_is_free(server.server_address[1])


def test_errors_answering_are_one_warning_and_requests_go_to_the_debug_log(
        site: Path, server: LiveSite, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG, logger="catdog_report.livereload")
    (site / "index.html").write_text("<html><body>home</body></html>")
    _get(server.url)
    requests = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert any('"GET / HTTP/1.1" 200' in r.getMessage() for r in requests)
    caplog.clear()
    try:
        raise ValueError("boom")
    except ValueError:
        server.handle_error(None, ("10.0.0.7", 1))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "error answering 10.0.0.7: ValueError: boom")]
    assert caplog.records[0].exc_info  # with its traceback at debug level (-v)
    assert capfd.readouterr().err == ""  # nothing on the terminal itself
