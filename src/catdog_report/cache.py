"""A content-addressed store: hashed keys, atomic entries, checksums, and a lock per key."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import CacheError

log = logging.getLogger(__name__)
CHECKSUMS = "checksums.json"


def digest(value: Any) -> str:
    """SHA-256 of a JSON-able value in canonical form."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes | str) -> bool:
    """Write via a temp file and os.replace; skip when unchanged. Returns True if written."""
    payload = data.encode() if isinstance(data, str) else data
    if path.is_file() and path.stat().st_size == len(payload) and path.read_bytes() == payload:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): file_digest(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != CHECKSUMS
    }


class Store:
    """A folder of entries named by key; each entry is complete or absent."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = Path(root)
        self.name = name
        self.entries = self.root / "entries"

    def path(self, key: str) -> Path:
        """Where the entry for key lives (whether or not it exists)."""
        return self.entries / key

    def get(self, key: str) -> Path | None:
        """The verified entry folder, or None; a corrupted entry is set aside with a warning."""
        folder = self.path(key)
        if not folder.is_dir():
            return None
        problem = self.verify(folder)
        if problem is None:
            return folder
        log.warning("%s cache entry %s is corrupted (%s); rebuilding it", self.name, key[:12],
                    problem)
        self._discard(folder)
        return None

    def verify(self, folder: Path) -> str | None:
        """None when every file matches its recorded checksum, else what is wrong."""
        try:
            recorded = json.loads((folder / CHECKSUMS).read_text())
        except (OSError, ValueError) as exc:
            return f"unreadable {CHECKSUMS}: {exc}"
        actual = _checksums(folder)
        if set(actual) != set(recorded):
            return f"files differ from the record: {sorted(set(actual) ^ set(recorded))}"
        bad = [name for name, sha in recorded.items() if actual[name] != sha]
        return f"checksum mismatch in {', '.join(bad)}" if bad else None

    def put(self, key: str, fill: Callable[[Path], None]) -> Path:
        """Create the entry: fill() writes into a temp folder, which is renamed into place."""
        self.entries.mkdir(parents=True, exist_ok=True)
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=tmp_root, prefix=f"{key[:12]}-"))
        try:
            fill(tmp)
            write_atomic(tmp / CHECKSUMS, json.dumps(_checksums(tmp), indent=1, sort_keys=True))
            final = self.path(key)
            if final.exists():
                self._discard(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _discard(self, folder: Path) -> None:
        trash = self.root / "tmp" / f"discarded-{folder.name}-{time.time_ns()}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 24 * 3600) -> Iterator[None]:
        """Hold an exclusive lock on key; a second holder waits, saying so."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{key}.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("another build holds the %s cache lock for %s; waiting for it",
                            self.name, key[:12])
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise CacheError(
                                f"gave up waiting for the lock {locks / key}.lock after "
                                f"{timeout:.0f} s; is another catdog-report build stuck?"
                            ) from None
                        time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def sweep(self) -> None:
        """Remove temp folders left by interrupted writers that hold no lock."""
        tmp_root = self.root / "tmp"
        if tmp_root.is_dir():
            for child in tmp_root.iterdir():
                if time.time() - child.stat().st_mtime > 3600:
                    shutil.rmtree(child, ignore_errors=True)
