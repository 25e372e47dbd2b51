"""glibc's malloc, set up for training in the process that trains (training.import_tensorflow).

TensorFlow allocates and frees each step's activations and gradients, buffers of tens to
hundreds of MB. With glibc's defaults a buffer that large is mapped fresh with mmap and
unmapped when freed, so every step pays for faulting in and zeroing its pages again, and
the heap is trimmed back to the system between steps. One arena that keeps what it frees
(no mmap, no trimming) lets every step reuse the memory of the one before: the same
numbers, bitwise, in less time.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# mallopt() parameters, from glibc's malloc.h
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX, M_ARENA_MAX = -1, -2, -4, -8
TUNED = (
    (M_ARENA_MAX, 1),  # one arena: a buffer freed by one thread serves the next on any other
    (M_MMAP_MAX, 0),  # no buffer mapped on its own: freed ones stay for reuse
    (M_TRIM_THRESHOLD, 2**31 - 1),  # the heap is never trimmed back between steps
    (M_TOP_PAD, 256 << 20),  # and grows 256 MB at a time
)
TUNED_TEXT = "tuned for training (one arena, no mmap, no trimming)"
OWN = ("MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
       "MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_")

_done: list[str] = []


def tune() -> str:
    """Set glibc's malloc up for training, once per process, unless the environment sets it
    up itself: glibc's own MALLOC_* variables or GLIBC_TUNABLES' glibc.malloc entries, or a
    malloc preloaded with LD_PRELOAD (to keep glibc's defaults, set MALLOC_ARENA_MAX=0).
    Elsewhere than glibc nothing changes. Returns what this process's malloc is, in words
    (a run's record keeps it)."""
    if not _done:
        _done.append(_tune())
        log.debug("malloc: %s", _done[0])
    return _done[0]


def _tune() -> str:
    """Apply TUNED, or say why not."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):  # not a glibc system
        libc = ""
    if not libc.startswith("glibc"):
        return "the system's (not glibc)"
    own = [name for name in OWN if name in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        own.append("GLIBC_TUNABLES")
    if own:
        return f"glibc's, as {', '.join(own)} set{'s' * (len(own) == 1)} it"
    preload = os.environ.get("LD_PRELOAD", "")
    if "malloc" in preload:
        return f"preloaded ({preload})"
    mallopt = ctypes.CDLL(None).mallopt
    failed = [param for param, value in TUNED if mallopt(param, value) != 1]
    if failed:
        return f"glibc's ({libc}: mallopt refused parameters {failed})"
    return f"glibc's, {TUNED_TEXT}"
