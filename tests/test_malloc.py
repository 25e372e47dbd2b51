"""glibc's malloc set up for training: large buffers stay in the heap for reuse."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from catdog_report import malloc

# Allocate and free a 64 MB buffer, then count the chunks glibc has mapped on their own
# (mallinfo2's hblks, over those mapped before) while a second one is held: 0 once tuned,
# 1 with glibc's defaults.
PROBE = """
import ctypes, sys
from catdog_report import malloc
if sys.argv[1] == "tune":
    print(malloc.tune())
else:
    print("untouched")

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
size = 64 << 20
before = libc.mallinfo2().hblks
libc.free(libc.malloc(size))
held = libc.malloc(size)
print(libc.mallinfo2().hblks - before)
libc.free(held)
"""


def _probe(mode: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in malloc.OWN and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], env=clean | env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


glibc = pytest.mark.skipif(not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"),
                           reason="glibc's malloc only")


@glibc
def test_tuned_malloc_keeps_large_buffers_in_the_heap() -> None:
    said, mapped = _probe("tune")
    assert said == f"glibc's, {malloc.TUNED_TEXT}"
    assert mapped == "0"  # the 64 MB buffers came from the heap, and the freed one was reused


@glibc
def test_glibc_defaults_map_large_buffers_on_their_own() -> None:
    """The control: without tune() the same buffer is mapped on its own."""
    said, mapped = _probe("leave")
    assert said == "untouched"
    assert mapped == "1"


@glibc
@pytest.mark.parametrize(("env", "says"), [
    ({"MALLOC_ARENA_MAX": "0"}, "glibc's, as MALLOC_ARENA_MAX sets it"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000"}, "glibc's, as GLIBC_TUNABLES sets it"),
])
def test_the_environments_own_malloc_settings_win(env: dict[str, str], says: str) -> None:
    said, mapped = _probe("tune", **env)
    assert said == says
    assert mapped == "1"  # left as glibc's defaults would have it


def test_without_glibc_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_glibc(name: str) -> str:
        raise ValueError(name)

    monkeypatch.setattr(malloc.os, "confstr", no_glibc)
    assert malloc._tune() == "the system's (not glibc)"


def test_tune_is_done_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(malloc, "_done", [])
    monkeypatch.setattr(malloc, "_tune", lambda: calls.append(1) or "some malloc")
    assert malloc.tune() == malloc.tune() == "some malloc"
    assert calls == [1]
