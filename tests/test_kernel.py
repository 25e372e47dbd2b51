"""kernel: the batch of pages owns Ctrl-C while it runs."""

import asyncio
import os
import signal

import pytest

from catdog_report import kernel


@pytest.fixture(autouse=True)
def _fresh_flags() -> None:
    kernel.INTERRUPTED.clear()
    yield
    kernel.INTERRUPTED.clear()


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

    with pytest.raises(KeyboardInterrupt):
        kernel.run_batch(main)
    assert reached == ["the line after the signal"]
    assert kernel.INTERRUPTED.is_set()


def test_the_loop_gives_other_signals_and_its_own_methods_back() -> None:
    seen = []

    async def main() -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, seen.append, "usr1")
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.sleep(0.1)
        assert loop.remove_signal_handler(signal.SIGUSR1)
        return loop

    loop = kernel.run_batch(main)
    assert seen == ["usr1"]
    assert "add_signal_handler" not in vars(loop)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C as before
    assert not kernel.INTERRUPTED.is_set()
