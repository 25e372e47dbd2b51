"""One page in one fresh Jupyter kernel: start, relay progress, execute, always stop."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
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
PAGE_NICENESS = 10  # page kernels run this much nicer than the build (_yield_to_training)


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
                        log_file: Path | None = None) -> Any:
    """Execute one page in its own kernel inside a running event loop (see run_batch);
    timeout: the seconds each cell may run (None: no limit). A cell that runs out of it
    stops the kernel and becomes a PageError naming the page and the cell."""
    import asyncio

    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    current: list[int] = [0]
    try:
        await _execute(nb, path, env, timeout, log_file, current)
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
                   log_file: Path | None, current: list[int]) -> None:
    """Start a kernel over IPC, relay its stderr, execute, and always shut it down
    (current[0]: the index of the cell executing, for the caller's error)."""
    from jupyter_client.manager import AsyncKernelManager

    with temp_folder("catdog-kernel-") as sockets:  # a killed build's folder goes next time
        km = AsyncKernelManager(kernel_name=KERNEL, transport="ipc",
                                ip=str(Path(sockets) / "k"))
        client = _client_class()(nb, km=km, timeout=timeout, allow_errors=False,
                                 resources={"metadata": {"path": str(path.parent)}},
                                 log=_QUIET)  # its errors become one PageError here
        read_fd, write_fd = os.pipe()
        try:
            try:
                await km.start_kernel(env=env, cwd=str(path.parent), stderr=write_fd)
            finally:
                os.close(write_fd)
            _ACTIVE.add(km)
            _yield_to_training(km)
            threading.Thread(target=_relay, args=(read_fd, log_file), daemon=True).start()
            try:
                await client.async_execute()
            finally:
                current[0] = client.current
        finally:
            _ACTIVE.discard(km)
            if km.has_kernel:
                await km.shutdown_kernel(now=True)


_QUIET = logging.getLogger(__name__ + ".nbclient")
_QUIET.setLevel(logging.CRITICAL)  # nbclient's own error lines repeat what PageError says
PROGRESS_PREFIX = "    "  # what notebook.py's kernel-side log lines start with


def _yield_to_training(km: Any) -> None:
    """Run the kernel at PAGE_NICENESS: a page drawing figures beside a fit on a 2-core
    machine slowed the fit, which the last pages wait for; a page still gets every core
    nothing else wants."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    with contextlib.suppress(OSError, AttributeError):  # gone already, or not allowed
        niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + PAGE_NICENESS)
        os.setpriority(os.PRIO_PROCESS, process.pid, niceness)  # type: ignore[union-attr]


def _relay(fd: int, log_file: Path | None) -> None:
    """Forward the kernel's progress lines to the build log; keep all of stderr in a file."""
    sink = open(log_file, "w") if log_file else None  # noqa: SIM115
    with os.fdopen(fd, errors="replace") as stream:
        for line in stream:
            if sink:
                sink.write(line)
            if line.startswith(PROGRESS_PREFIX):  # "    LEVEL message" (notebook.py)
                name, _, message = line[len(PROGRESS_PREFIX):].rstrip().partition(" ")
                level = logging.getLevelName(name)
                if isinstance(level, int) and level >= logging.WARNING:
                    log.log(level, "%s%s", PROGRESS_PREFIX, message)
                else:  # what the build itself already said (a run loaded, images decoded)
                    log.debug("kernel: %s", line.strip())
            elif line.strip():  # TensorFlow's start-up notices and the like: -v shows them
                log.debug("kernel: %s", line.rstrip())
    if sink:
        sink.close()


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
