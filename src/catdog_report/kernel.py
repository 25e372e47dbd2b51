"""One page in one fresh Jupyter kernel: start, relay progress, execute, always stop."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .cache import temp_folder
from .errors import Interrupted, PageError

log = logging.getLogger(__name__)

KERNEL = "python3"
_ACTIVE: set[Any] = set()  # kernel managers with a running kernel
_INTERRUPTED = threading.Event()  # a signal stopped the batch (kernel.py's own: see run_batch)
STOPPED = threading.Event()  # the build failed and stops the pages still running
T = TypeVar("T")
AUTOGROUP_TRIES = 20  # 2 s: the kernels a build starts at once set theirs one by one
# Page kernels run this much nicer than the build (_yield_to_training), capped at 19, the
# nicest: they draw mostly in the moments the training leaves the cores idle. Against 10,
# 6 alternating cold quick builds on 2 cores were each faster (0.89-1.00x, median 0.955x);
# the pages beside a fit took longer, the fits less, and the pages after the last fit, which
# nothing else wants the cores for, ran as fast.
PAGE_NICENESS = 19


_ROOT: list[Any] = []  # the task a signal cancels: the whole batch of pages


def _client_class() -> Any:
    """nbclient's client, remembering the cell it is executing."""
    from nbclient import NotebookClient

    class Client(NotebookClient):  # type: ignore[misc]
        current = 0  # the index of the cell executing (or last executed)

        async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any,
                                     **kwargs: Any) -> Any:
            self.current = cell_index
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)

    return Client


@contextlib.contextmanager
def _signals_stay_with_the_build(loop: Any) -> Iterator[None]:
    """While pages run, SIGINT and SIGTERM cancel the whole batch. nbclient adds its own
    handlers for each page and removes them when the page ends, which would leave the next
    Ctrl-C to raise KeyboardInterrupt in whatever line runs then (a page's cache write, say):
    its calls for these two signals are ignored until the batch ends."""
    import signal

    owned = (signal.SIGINT, signal.SIGTERM)
    for sig in owned:
        loop.add_signal_handler(sig, _on_signal)
    add, remove = loop.add_signal_handler, loop.remove_signal_handler
    loop.add_signal_handler = lambda sig, *args: None if sig in owned else add(sig, *args)
    loop.remove_signal_handler = lambda sig: False if sig in owned else remove(sig)
    try:
        yield
    finally:
        del loop.add_signal_handler, loop.remove_signal_handler  # the loop's own again


def _on_signal() -> None:
    """Stop the kernels and cancel the execution (writes are atomic: nothing half-done)."""
    kill_kernels()
    for task in _ROOT:
        task.cancel()


def kill_kernels() -> None:
    """Stop every running page kernel at once (the build was interrupted)."""
    _INTERRUPTED.set()
    for km in list(_ACTIVE):
        process = getattr(getattr(km, "provisioner", None), "process", None)
        if process is not None:
            log.warning("stopping the kernel (pid %s)", process.pid)
            process.kill()


def execute(nb: Any, path: Path, env: dict[str, str], timeout: int | None = None,
            log_file: Path | None = None) -> Any:
    """Run every cell in a fresh kernel; a failing cell becomes a PageError naming it.
    timeout: the seconds each cell may run (None: no limit, as for a page run by hand)."""
    async def one() -> Any:
        return await execute_async(nb, path, env, timeout, log_file)

    return run_batch(one)


def run_batch(main: Callable[[], Awaitable[T]]) -> T:
    """Run main() (which executes pages) in an event loop. A SIGINT or SIGTERM meanwhile
    stops the page kernels and cancels main(); the batch then raises Interrupted, whatever
    main() raised (a page whose kernel it killed fails) or returned."""
    import asyncio

    async def root() -> T:
        _ROOT.append(asyncio.current_task())
        try:
            with _signals_stay_with_the_build(asyncio.get_running_loop()):
                return await main()
        except BaseException:
            STOPPED.set()  # asyncio.run now cancels the pages still running
            raise
        finally:
            _ROOT.clear()

    logging.getLogger("traitlets").setLevel(logging.ERROR)
    STOPPED.clear()
    _INTERRUPTED.clear()
    try:
        result = asyncio.run(root())
    except BaseException as exc:
        if _INTERRUPTED.is_set() or isinstance(exc, asyncio.CancelledError):
            raise Interrupted("a signal stopped the batch of pages") from None
        raise
    if _INTERRUPTED.is_set():  # the signal came as main() ended: the build stops all the same
        raise Interrupted("a signal stopped the batch of pages")
    return result


async def execute_async(nb: Any, path: Path, env: dict[str, str], timeout: int | None = None,
                        log_file: Path | None = None, started: Started | None = None) -> Any:
    """Execute one page in its own kernel inside a running event loop (see run_batch);
    timeout: the seconds each cell may run (None: no limit); started: a fresh kernel
    started ahead for it (KernelPool), else one is started now. A cell that runs out of
    its time stops the kernel and becomes a PageError naming the page and the cell."""
    import asyncio

    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    current: list[int] = [0]
    try:
        await _execute(nb, path, env, timeout, log_file, current, started)
    except CellTimeoutError:
        index = current[0]
        first = nb.cells[index].source.strip().splitlines()[:1] if nb.cells else []
        code = f" ({first[0][:60]}{'…' if len(first[0]) > 60 else ''})" if first else ""
        raise PageError(f"page {path.name}: cell {index + 1}{code} ran out of its time limit "
                        f"of {timeout} s; the kernel was stopped. Make the cell faster, or "
                        "raise the limit (--cell-timeout SECONDS, or pages: cell_timeout: in "
                        "study.yml)", nb) from None
    except CellExecutionError as exc:
        index = next((i for i, c in enumerate(nb.cells, 1) if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))), "?")
        lines = strip_ansi(str(exc.traceback or exc)).strip().splitlines()
        tail = "\n".join("    " + line for line in lines[-8:])
        raise PageError(f"page {path.name} failed in cell {index}: {exc.ename}: {exc.evalue}"
                        f"\n{tail}\nFix the cell, or open the page in Jupyter to debug it",
                        nb) from None
    except DeadKernelError:
        if STOPPED.is_set() and not _INTERRUPTED.is_set():
            _stopped_by_build(path)  # nbclient reports its cancellation as a dead kernel
            raise asyncio.CancelledError from None
        why = ("the build was interrupted" if _INTERRUPTED.is_set()
               else "out of memory? check the page's log in build/logs/")
        raise PageError(f"the Jupyter kernel running {path.name} died ({why})") from None
    except asyncio.CancelledError:
        if STOPPED.is_set() and not _INTERRUPTED.is_set():
            _stopped_by_build(path)
        raise
    return nb


def _stopped_by_build(path: Path) -> None:
    """Say that the build, failing elsewhere, stopped this page's kernel (no crash)."""
    log.warning("%s: stopped by the build, which stops the pages still running at its "
                "first failure (this page did not fail)", path.name)


async def _execute(nb: Any, path: Path, env: dict[str, str], timeout: int | None,
                   log_file: Path | None, current: list[int],
                   started: Started | None = None) -> None:
    """Start a kernel over IPC (or take the one started ahead for this page), relay its
    stderr, execute, and always shut it down (current[0]: the index of the cell executing,
    for the caller's error)."""
    started = started or await start(env, str(path.parent))
    try:
        started.relay.attach(log_file)
        client = _client_class()(nb, km=started.km, timeout=timeout, allow_errors=False,
                                 resources={"metadata": {"path": str(path.parent)}},
                                 log=_QUIET)  # its errors become one PageError here
        try:
            await client.async_execute()
        finally:
            current[0] = client.current
    finally:
        await stop(started)


@dataclass
class Started:
    """A page kernel, started: its manager, its stderr relay, what to close after it."""

    km: Any
    relay: _Relay
    stack: contextlib.ExitStack
    env: dict[str, str]
    cwd: str


async def start(env: dict[str, str], cwd: str) -> Started:
    """Start a fresh kernel over IPC in cwd with env, nicer than the build, its stderr
    relayed (to the log file of the page it runs, once known: Relay.attach)."""
    from jupyter_client.manager import AsyncKernelManager

    stack = contextlib.ExitStack()
    sockets = stack.enter_context(temp_folder("catdog-kernel-"))  # a killed build's goes next
    km = AsyncKernelManager(kernel_name=KERNEL, transport="ipc", ip=str(Path(sockets) / "k"))
    read_fd, write_fd = os.pipe()
    try:
        try:
            await km.start_kernel(env=env, cwd=cwd, stderr=write_fd)
        finally:
            os.close(write_fd)
    except BaseException:
        os.close(read_fd)
        stack.close()
        raise
    _ACTIVE.add(km)
    await _yield_to_training(km)
    relay = _Relay(read_fd)
    threading.Thread(target=relay.run, daemon=True).start()
    return Started(km, relay, stack, env, cwd)


async def stop(started: Started) -> None:
    """Shut a kernel down (at once) and remove its socket folder."""
    _ACTIVE.discard(started.km)
    try:
        if started.km.has_kernel:
            await started.km.shutdown_kernel(now=True)
    finally:
        started.stack.close()


WARM_UP = '__import__("catdog_report.notebook"); __import__("matplotlib.pyplot")'
WARM_UP_LIMIT = 60  # seconds a kernel started ahead may take to start and import


async def _warm_up(km: Any) -> None:
    """Import what every page imports, silently (no output, no execution count, nothing
    bound in the page's namespace); a kernel that fails here is left for its page to
    report, as a kernel started for it would."""
    import asyncio

    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=WARM_UP_LIMIT)
        msg_id = kc.execute(WARM_UP, silent=True, store_history=False)
        async with asyncio.timeout(WARM_UP_LIMIT):
            while (await kc.get_shell_msg(timeout=WARM_UP_LIMIT))["parent_header"].get(
                    "msg_id") != msg_id:
                pass
    except Exception as exc:  # noqa: BLE001 - its page reports what goes wrong
        log.debug("a kernel started ahead did not warm up: %s", exc)
    finally:
        kc.stop_channels()


class KernelPool:
    """Page kernels started ahead of the pages that will run in them (while the runs those
    pages wait for train), each warmed up with WARM_UP, at most `size` at a time and never
    more than the pages still to execute (`want`); a page takes one when its environment
    and folder are the pool's, else it starts its own. close() stops those left."""

    def __init__(self, env: dict[str, str], cwd: str, size: int) -> None:
        self.env, self.cwd, self.size = env, cwd, size
        self.wanted = 0
        self.ready: list[Any] = []  # tasks giving a Started
        self.warming: set[Any] = set()  # those of them warming their kernel up

    def want(self, pages: int) -> None:
        """How many pages are still to execute: keep that many kernels (up to size) ahead."""
        import asyncio

        self.wanted = max(pages, 0)
        while len(self.ready) < min(self.size, self.wanted):
            self.ready.append(asyncio.ensure_future(self._started()))

    async def _started(self) -> Started:
        import asyncio

        started = await start(self.env, self.cwd)
        task = asyncio.current_task()
        self.warming.add(task)
        try:
            if _INTERRUPTED.is_set():  # the build was interrupted while the kernel started
                raise asyncio.CancelledError
            await _warm_up(started.km)
        except asyncio.CancelledError:  # or close() of an interrupted build: stop it now
            await stop(started)
            raise
        finally:
            self.warming.discard(task)
        return started

    async def take(self, env: dict[str, str], cwd: str) -> Started | None:
        """A kernel started ahead for a page with this environment and folder, or None."""
        if env != self.env or cwd != self.cwd or not self.ready:
            return None
        task = self.ready.pop(0)
        self.want(self.wanted - 1)
        try:
            return await task  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001 - the page starts its own, and says why
            log.debug("a kernel started ahead failed to start: %s", exc)
            return None

    async def close(self) -> None:
        """Stop the kernels no page took."""
        import asyncio

        tasks, self.ready = self.ready, []
        for task in tasks:
            if _INTERRUPTED.is_set() and task in self.warming:
                task.cancel()  # its kernel was killed: its warm-up would wait for nothing
            try:
                started = await asyncio.wait_for(asyncio.shield(task), WARM_UP_LIMIT)
            except BaseException:  # noqa: BLE001 - failed or cancelled: nothing to stop
                task.cancel()
                continue
            await stop(started)


_QUIET = logging.getLogger(__name__ + ".nbclient")
_QUIET.setLevel(logging.CRITICAL)  # nbclient's own error lines repeat what PageError says
PROGRESS_PREFIX = "    "  # what notebook.py's kernel-side log lines start with


async def _yield_to_training(km: Any) -> None:
    """Run the kernel at PAGE_NICENESS: a page drawing figures beside a fit on a 2-core
    machine slowed the fit, which the last pages wait for; a page still gets every core
    nothing else wants. Where Linux groups the CPU time by session (autogroup), a kernel,
    which jupyter_client starts in a session of its own, shares the CPU with the build as
    an equal whatever its niceness: its session's group gets the niceness too."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    pid = getattr(process, "pid", None)
    if pid is None:
        return
    with contextlib.suppress(OSError):  # gone already, or not allowed
        niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + PAGE_NICENESS)
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
        await _nice_session(pid, niceness)


async def _nice_session(pid: int, niceness: int) -> None:
    """Set the niceness of the autogroup of pid's session, where there is one (Linux
    lets a process without CAP_SYS_ADMIN do that once in 100 ms: EAGAIN, then again)."""
    import asyncio
    import errno

    group = Path(f"/proc/{pid}/autogroup")
    for _ in range(AUTOGROUP_TRIES):
        try:
            group.write_text(f"{niceness}\n")
            return
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                return  # no autogroup here (ENOENT), not allowed, or the kernel is gone
        await asyncio.sleep(0.11)


class _Relay:
    """Forward a kernel's progress lines to the build log; keep all of its stderr in the
    log file of the page it runs (what came before the page took it, too)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.sink: Any = None
        self.early: list[str] = []

    def attach(self, log_file: Path | None) -> None:
        """Write this kernel's stderr to log_file from now on, and what it wrote so far."""
        if log_file is None:
            return
        with self.lock:
            self.sink = open(log_file, "w")  # noqa: SIM115 - closed when the kernel ends
            self.sink.writelines(self.early)
            self.early = []

    def run(self) -> None:
        with os.fdopen(self.fd, errors="replace") as stream:
            for line in stream:
                with self.lock:
                    if self.sink:
                        self.sink.write(line)
                    else:
                        self.early.append(line)
                _forward(line)
        with self.lock:
            if self.sink:
                self.sink.close()


def _forward(line: str) -> None:
    """One line of a kernel's stderr to the build log (warnings and worse shown)."""
    if line.startswith(PROGRESS_PREFIX):  # "    LEVEL message" (notebook.py)
        name, _, message = line[len(PROGRESS_PREFIX):].rstrip().partition(" ")
        level = logging.getLevelName(name)
        if isinstance(level, int) and level >= logging.WARNING:
            log.log(level, "%s%s", PROGRESS_PREFIX, message)
        else:  # what the build itself already said (a run loaded, images decoded)
            log.debug("kernel: %s", line.strip())
    elif line.strip():  # TensorFlow's start-up notices and the like: -v shows them
        log.debug("kernel: %s", line.rstrip())


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
