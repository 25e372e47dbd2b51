"""kernel: the batch of pages owns Ctrl-C while it runs, and a signal makes it raise
Interrupted (a KeyboardInterrupt, never swallowed by `except Exception`)."""

import asyncio
import os
import re
import signal

import pytest

from catdog_report import kernel
from catdog_report.errors import CatdogError, Interrupted, PageError


def test_ctrl_c_after_a_page_ended_cancels_the_batch_between_lines() -> None:
    reached = []

    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, lambda: None)  # nbclient, as a page starts
        loop.remove_signal_handler(signal.SIGINT)  # ... and as it ends
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("the line after the signal")  # a raw KeyboardInterrupt never gets here
        await asyncio.sleep(30)
        return "finished"

    with pytest.raises(Interrupted) as stopped:
        kernel.run_batch(main)
    assert reached == ["the line after the signal"]
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert not isinstance(stopped.value, Exception)  # no page's `except Exception` takes it


def test_the_loop_gives_other_signals_and_its_own_methods_back() -> None:
    seen = []

    async def main() -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, seen.append, "usr1")
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.sleep(0.1)
        assert loop.remove_signal_handler(signal.SIGUSR1)
        return loop

    loop = kernel.run_batch(main)  # no signal of the build's: no Interrupted
    assert seen == ["usr1"]
    assert "add_signal_handler" not in vars(loop)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C as before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_page_the_signal_made_fail_is_reported_as_the_interruption(
        sig: signal.Signals) -> None:
    async def main() -> None:
        os.kill(os.getpid(), sig)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # as a page whose kernel was killed fails
            raise PageError("the Jupyter kernel running p.md died") from None

    with pytest.raises(Interrupted):
        kernel.run_batch(main)


def test_a_signal_as_the_batch_ends_still_stops_the_build() -> None:
    async def main() -> str:
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGINT)
        await asyncio.sleep(0)  # the signal is handled; this task is not awaiting any more
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            pass  # swallowed: main() returns as if nothing happened
        return "finished"

    with pytest.raises(Interrupted):
        kernel.run_batch(main)


def test_a_failure_without_a_signal_is_the_failure_and_the_next_batch_is_fresh() -> None:
    async def failing() -> None:
        raise CatdogError("the disk is full")

    async def interrupted() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(30)

    with pytest.raises(Interrupted):
        kernel.run_batch(interrupted)
    with pytest.raises(CatdogError, match="the disk is full"):  # not a left-over interrupt
        kernel.run_batch(failing)

    async def fine() -> int:
        return 7

    assert kernel.run_batch(fine) == 7


@pytest.mark.slow
def test_a_page_kernel_runs_nicer_than_the_build(tmp_path: object) -> None:
    from pathlib import Path

    from catdog_report import pages

    path = Path(str(tmp_path)) / "p.md"
    path.write_text("# Nice\n\n```python\nimport os\nprint('niceness', os.getpriority("
                    "os.PRIO_PROCESS, 0))\nif os.path.exists('/proc/self/autogroup'):\n"
                    "    print('group', open('/proc/self/autogroup').read())\n```\n")
    page = pages.run_page(path, dict(os.environ))
    want = min(19, os.getpriority(os.PRIO_PROCESS, 0) + kernel.PAGE_NICENESS)
    assert f"niceness {want}" in page.markdown  # it yields the CPU to the training beside it
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if autogroup.exists() and autogroup.read_text().strip() == "1":
        # its own session's CPU group yields too: with autogroup, that is what counts
        group = re.search(r"group (/autogroup-\d+) nice (-?\d+)", page.markdown)
        assert group, page.markdown
        # the build's own group: Linux prints nothing for the default group (a build whose
        # session never called setsid, as under some CI runners)
        own = Path("/proc/self/autogroup").read_text().split() or ["/"]
        assert group[1] != own[0]
        assert int(group[2]) == want


@pytest.mark.slow
def test_a_kernel_started_ahead_runs_its_page_as_a_fresh_one(tmp_path: object) -> None:
    from pathlib import Path

    import nbformat

    from catdog_report import pages

    folder = Path(str(tmp_path))
    path = folder / "p.md"
    path.write_text("# Ahead\n\n```python\nimport sys\nprint('warm', 'catdog_report.notebook' "
                    "in sys.modules, 'catdog_report' in dir())\n```\n")
    env = dict(os.environ)

    async def main() -> tuple[object, list[int], int]:
        pool = kernel.KernelPool(env, str(folder), 2)
        pool.want(3)  # three pages to come: two kernels ahead (its size), not three
        assert len(pool.ready) == 2
        started = await pool.take(env, str(folder))
        assert started is not None and len(pool.ready) == 2  # one more started for the third
        assert await pool.take({"OTHER": "1"}, str(folder)) is None  # another environment
        page = await pages.run_page_async(path, env, folder / "logs", 60, started)
        left = [await task for task in pool.ready]
        pids = [s.km.provisioner.process.pid for s in left]
        await pool.close()
        return page, pids, started.km.has_kernel

    page, pids, alive = kernel.run_batch(main)
    # the page ran in a warmed kernel: its modules imported, its namespace and count clean
    assert "warm True False" in page.markdown
    cell = nbformat.reads(page.notebook, 4).cells[1]
    assert cell.execution_count == 1 and not alive
    for pid in pids:  # the kernels no page took are stopped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (folder / "logs" / "p.log").is_file()  # its stderr went to its page's log
