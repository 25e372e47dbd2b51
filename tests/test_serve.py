"""`catdog-report serve`: the author's loop (watch, rebuild what changed, live reload).

The unit tests are quick; the two end-to-end ones start `catdog-report serve` as a
subprocess on a tiny quick project (index, data and model one: one run of one epoch) and
drive it with Playwright against Debian's Chromium, or stop it with SIGINT mid-page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import markdown
import nbformat
import pytest

import catdog_report
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, watch
from catdog_report import pages, serve
from catdog_report.errors import PageError
from catdog_report.plan import page_needs
from conftest import ROOT
from test_livereload import port_is_free

TINY_NAV = ("nav:\n  - Introduction: index.md\n  - Obtaining the data: data.md\n"
            "  - Model one: model-one.md\n")
TIMEOUT_S = 90.0  # the first build of the tiny project trains model one (1 epoch)
ARTIFACTS = ROOT / "test-artifacts"


# ------------------------------------------------------------------------------ quick tests


def test_failure_admonition_names_the_cell_and_the_exception(tmp_path: Path) -> None:
    content = tmp_path / "content"
    content.mkdir()
    path = content / "model-one.md"
    path.write_text("# Model one\n\nProse.\n\n```python\nx = 1\n```\n")
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("1 / 0")
    code.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError",
                                           evalue="division by zero",
                                           traceback=["ZeroDivisionError: division by zero"])]
    nb.cells = [nbformat.v4.new_markdown_cell("# Model one\n\nProse about model_one."), code]
    error = PageError(f"page model-one.md failed in cell 2: ZeroDivisionError: division by "
                      f"zero\n    ----> 1 1 / 0 in {tmp_path}\nFix the cell", nb)
    page = pages.failure_page(path, error)
    assert page.markdown.startswith("# Model one\n\n!!! failure \"This page failed to execute\"")
    assert "Prose about model_one." in page.markdown and str(tmp_path) not in page.markdown
    html = markdown.markdown(page.markdown, extensions=["admonition", "pymdownx.superfences"])
    assert '<div class="admonition failure">' in html
    assert ("<p>page model-one.md failed in cell 2: ZeroDivisionError: division by zero</p>"
            in html)
    assert "----&gt; 1 1 / 0 in &lt;project&gt;" in html  # the traceback's tail, scrubbed
    assert not page.cached and json.loads(page.notebook)["cells"][1]["outputs"]

    unread = pages.failure_page(path, PageError("numbers typed into prose instead of computed"))
    assert "numbers typed into prose" in unread.markdown and "x = 1" in unread.markdown


def test_a_cell_that_does_not_parse_is_left_to_the_kernel_when_not_strict() -> None:
    cells = ['run = st.fit("model_one")', "def broken(:\n"]
    with pytest.raises(PageError, match="code cell 2 is not valid Python"):
        page_needs(cells, "page p.md")
    assert page_needs(cells, "page p.md", strict=False).fits == ("model_one",)


def test_snapshot_sees_sources_not_caches_or_editor_files(tmp_path: Path) -> None:
    content = tmp_path / "content"
    (content / "__pycache__").mkdir(parents=True)
    (tmp_path / "study.yml").write_text("a")
    page = content / "index.md"
    page.write_text("# Index\n")
    before = serve.snapshot(tmp_path)
    assert sorted(before) == ["content/index.md", "study.yml"]
    for noise in ("__pycache__/models.cpython-311.pyc", ".index.md.swp", "index.md~"):
        (content / noise).write_text("x")
    (tmp_path / "site").mkdir()
    assert serve.snapshot(tmp_path) == before
    page.write_text("# Index, edited\n")
    (tmp_path / "mkdocs.yml").write_text("nav: []\n")
    assert serve.changed(before, serve.snapshot(tmp_path)) == ["content/index.md", "mkdocs.yml"]


def test_a_burst_of_saves_is_one_change(tmp_path: Path) -> None:
    (tmp_path / "content").mkdir()
    page = tmp_path / "content" / "index.md"
    page.write_text("0")
    seen = serve.snapshot(tmp_path)

    def saves() -> None:
        for i in range(1, 4):
            time.sleep(0.1)
            page.write_text(str(i) * i)

    writer = threading.Thread(target=saves)
    writer.start()
    now, names = serve.wait_for_change(tmp_path, seen)
    writer.join()
    assert names == ["content/index.md"] and page.read_text() == "333"
    assert now == serve.snapshot(tmp_path)


def test_the_cli_refuses_a_bad_or_busy_port_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from catdog_report import cli

    assert cli.main(["serve", "--project", str(ROOT), "--port", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "catdog-report: error: --port 0: expected a port between 1 and 65535")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["serve", "--project", str(ROOT), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"catdog-report: error: cannot serve on 127.0.0.1:{port}: ")
    assert err.endswith("pass --port N") and len(err.splitlines()) == 1


# ---------------------------------------------------------------------- a served subprocess


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A `catdog-report serve` subprocess and its log (stdout and stderr)."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def text(self, start: int = 0) -> str:
        return self.log.read_text(errors="replace")[start:]

    def wait_for(self, pattern: str, start: int = 0, timeout: float = TIMEOUT_S) -> str:
        """Wait until the log (from offset start) matches pattern; return that part."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text(start)
            if re.search(pattern, text):
                return text
            assert self.process.poll() is None, f"serve exited:\n{text[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in {timeout:.0f} s:\n{self.text(start)[-3000:]}")

    def stop(self) -> int:
        """Ctrl-C, as in a terminal; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


@pytest.fixture
def tiny_project(project: Path) -> Path:
    """The project with three pages: index, data and model one (one run to train)."""
    config = project / "mkdocs.yml"
    config.write_text(re.sub(r"^nav:\n(?:  - .*\n)+", TINY_NAV, config.read_text(), flags=re.M))
    return project


@pytest.fixture
def start_serve(tiny_data: Path, mobilenet_weights: Path,
                tmp_path: Path) -> Iterator[Any]:
    """Start `catdog-report serve` on a project at a free port; always stopped after."""
    started: list[Served] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATDOG_")}
    src = str(Path(catdog_report.__file__).resolve().parents[1])  # this checkout's package
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])

    def start(project: Path) -> Served:
        port = _free_port()
        log = tmp_path / f"serve-{port}.log"
        argv = [sys.executable, "-m", "catdog_report.cli", "serve", "--project", str(project),
                "--profile", "quick", "--data-dir", str(tiny_data), "--weights",
                str(mobilenet_weights), "--cache-dir", str(tmp_path / "cache"),
                "--image-size", "100", "--batch-size", "8", "--port", str(port), "--epochs",
                *(f"model_{n}=1" for n in ("one", "two", "three", "four"))]
        with log.open("wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env,
                                       cwd=project)
        served = Served(process, log, port)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait(timeout=30)


def _kernels_of(pid: int) -> list[Any]:
    """The ipykernel processes started by pid."""
    import psutil

    return [p for p in psutil.Process(pid).children(recursive=True)
            if "ipykernel" in " ".join(p.cmdline())]


@pytest.mark.slow
def test_ctrl_c_mid_page_stops_the_kernel_and_frees_the_port(tiny_project: Path,
                                                             start_serve: Any) -> None:
    import psutil

    page = tiny_project / "content" / "index.md"
    page.write_text(re.sub(r"(```python[^\n]*\n)", r"\g<1>import time\ntime.sleep(120)\n",
                           page.read_text(), count=1))
    served = start_serve(tiny_project)
    served.wait_for(r"serving .* on http://127\.0\.0\.1:\d+/")
    served.wait_for(r"may need training")  # the pages start next (one line each, when done)
    deadline = time.monotonic() + 30
    while not (kernels := _kernels_of(served.process.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kernels, "no page kernel is running"
    assert not port_is_free(served.port)
    t0 = time.monotonic()
    assert served.stop() == 0, served.text()[-3000:]
    assert time.monotonic() - t0 < 30
    assert "stopped serving" in served.text()
    assert port_is_free(served.port)
    _, alive = psutil.wait_procs(kernels, timeout=10)
    assert not alive, f"kernels left running: {[p.pid for p in alive]}"


# ------------------------------------------------------------------------------ the browser


def _article_text(page: Any) -> str:
    """The page's article text, or '' while the page is reloading."""
    try:
        return str(page.evaluate("() => document.querySelector('article')?.innerText ?? ''"))
    except Exception:  # the execution context was destroyed by a reload
        return ""


def _wait_for_article(page: Any, predicate: Any, timeout: float = 60.0) -> float:
    """Seconds until the open page's article satisfies predicate (after live reloads)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate(_article_text(page)):
            return time.monotonic() - t0
        page.wait_for_timeout(50)
    raise AssertionError(f"the page never changed as expected:\n{_article_text(page)[:2000]}")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                    reason=f"{CHROMIUM} missing: apt-get install chromium")
def test_serve_reloads_edits_shows_a_failing_page_and_recovers(
        tiny_project: Path, start_serve: Any, request: pytest.FixtureRequest,
        capsys: pytest.CaptureFixture[str]) -> None:
    from playwright.sync_api import sync_playwright

    served = start_serve(tiny_project)
    first = served.wait_for(r"built in .*reloading the browser", timeout=180)
    assert "training model_one: 1 epoch on 24 images" in first  # serve shows the training
    assert re.search(r"model_one epoch 1/1: loss [\d.]+, accuracy [\d.]+", first), first
    source = tiny_project / "content" / "model-one.md"
    original = source.read_text()
    timings: dict[str, float] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(service_workers="block")
        page = context.new_page()
        problems = watch(context, page)
        page.goto(served.url + "model-one/")
        assert "It is trained with Adam" in _article_text(page)

        # 1. Edit the prose: the open page shows it by itself, and nothing is retrained.
        mark = len(served.text())
        source.write_text(original.replace("It is trained with Adam",
                                           "It is trained, as the author now says, with Adam"))
        timings["prose edit"] = _wait_for_article(page, lambda t: "as the author now says" in t)
        rebuild = served.text(mark)
        # only prose changed: the cached outputs are re-rendered, no kernel runs, nothing trains
        assert "model-one: cached" in rebuild and "executing" not in rebuild, rebuild
        assert "training" not in rebuild, rebuild

        # 2. Break a cell: the page shows the failure admonition, naming cell and exception.
        source.write_text(source.read_text().replace("show_layers(run)\n",
                                                     "show_layers(run)\n1 / 0\n"))
        failure = page.locator(".admonition.failure")
        timings["broken cell"] = _wait_for_article(page, lambda t: "ZeroDivisionError" in t)
        said = failure.inner_text()
        assert "This page failed to execute" in said
        assert re.search(r"model-one\.md failed in cell \d+: ZeroDivisionError: division by "
                         r"zero", said), said
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve-failing-page.png"), full_page=True)
        other = context.new_page()  # the other pages are still served
        response = other.goto(served.url)
        assert response is not None and response.ok
        assert other.locator(".admonition.failure").count() == 0
        assert "Introduction" in other.title() or other.locator("article h1").count() == 1
        other.close()

        # 3. Fix it: the page comes back, with the edited prose.
        edited = source.read_text().replace("show_layers(run)\n1 / 0\n", "show_layers(run)\n")
        source.write_text(edited)
        timings["fixed cell"] = _wait_for_article(
            page, lambda t: "ZeroDivisionError" not in t and "as the author now says" in t)
        assert failure.count() == 0

        # 4. A cell that does not parse fails the page alone too, naming the SyntaxError.
        source.write_text(edited.replace("show_layers(run)\n", "show_layers(run\n"))
        _wait_for_article(page, lambda t: "SyntaxError" in t)
        assert re.search(r"model-one\.md failed in cell \d+: SyntaxError", failure.inner_text())
        source.write_text(edited)
        _wait_for_article(page, lambda t: "SyntaxError" not in t and "as the author" in t)
        assert not problems.page_errors and not problems.external_requests
        browser.close()
    assert served.stop() == 0
    shutil.copy(served.log, ARTIFACTS / "serve.log")
    assert "training model_one" not in served.text(mark)  # the run was cached throughout
    report = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    (ARTIFACTS / "serve-timings.json").write_text(json.dumps(timings, indent=1))
    for key, value in timings.items():
        request.node.user_properties.append((f"{key} to reload (s)", round(value, 2)))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        with capsys.disabled():
            reporter.write_line(f"\nserve: edit-to-reload {report}")
    assert timings["prose edit"] < 15, report  # the target is 3 s on an idle machine
