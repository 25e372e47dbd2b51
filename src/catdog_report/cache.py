"""A content-addressed store: hashed keys, atomic entries, checksums, and a lock per key."""

from __future__ import annotations

import contextlib
import errno
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

from .errors import CacheError, CatdogError

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


CACHE_FIX = "or use --cache-dir (CATDOG_CACHE_DIR) to put the caches on a disk with room"


def _os_error(exc: BaseException | None) -> OSError | None:
    """The OSError behind an exception (itself, its cause or its context), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _mount_point(folder: Path) -> Path:
    """The mount point of the file system that holds folder (or would hold it)."""
    path = Path(os.path.abspath(folder))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def is_write_failure(exc: BaseException) -> bool:
    """Whether exc comes from a full, read-only or failing disk (not from a bug or a signal)."""
    err = _os_error(exc)
    if err is None:
        return False
    return (err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)
            or "No space left on device" in str(err))


def write_error(exc: BaseException, what: str, folder: Path,
                error: type[CatdogError] = CacheError, elsewhere: str = CACHE_FIX) -> CatdogError:
    """One line for a failed write: what, the folder, the cause in words, and the fix
    (elsewhere: how to write on another disk instead, ending 'with room')."""
    err = _os_error(exc) or exc
    code = getattr(err, "errno", None)
    mount = _mount_point(folder)
    on = ("its file system" if mount == Path(os.path.abspath(folder))
          else f"the file system at {mount}")
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(err):
        why = f"{folder} is full (no space left on {on})"
        fix = f"free space there, {elsewhere}"
    elif code == errno.EROFS:
        why = f"{folder} is on a read-only file system ({mount})"
        fix = f"remount it read-write, {elsewhere.replace('with room', 'that is writable')}"
    elif code in (errno.EACCES, errno.EPERM):
        why = f"{folder} is not writable (permission denied)"
        fix = f"make it writable, {elsewhere.replace('with room', 'that is writable')}"
    else:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
        why = f"writing in {folder} failed: {reason}{f' ({name})' if name else ''}"
        fix = f"check that disk, {elsewhere}"
    return error(f"cannot write {what}: {why}; nothing partial was kept. "
                 f"{fix[0].upper()}{fix[1:]}")


def _locked_temp(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """A new temp file, flock-ed for as long as it stays open: a sweeper removes only the
    temp files whose lock it can take, i.e. whose writer has died."""
    while True:
        fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(name).st_ino == os.fstat(fd).st_ino:
                return fd, name
        except FileNotFoundError:
            pass
        os.close(fd)  # a sweeper took the name between mkstemp and flock: draw another


def remove_if_abandoned(path: Path, folder: Path | None = None) -> bool:
    """Remove the temp file path (and its temp folder) if no live writer holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its writer is alive
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return False  # renamed into place or replaced meanwhile
        except FileNotFoundError:
            return False
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        path.unlink(missing_ok=True)
        log.debug("removed %s, left by a build that was killed", folder or path)
        return True
    finally:
        os.close(fd)


def sweep_temp_files(folder: Path, name: str = "*") -> int:
    """Remove write_atomic's temp files (.NAME.*.tmp) in folder whose writer has died."""
    try:
        candidates = list(folder.glob(f".{name}.*.tmp"))
    except OSError:
        return 0
    return sum(remove_if_abandoned(p) for p in candidates)


@contextlib.contextmanager
def temp_folder(prefix: str) -> Iterator[Path]:
    """A folder in the system's temp directory, held by a locked file while in use; folders
    of the same prefix that a killed process left behind are removed first."""
    root = Path(tempfile.gettempdir())
    for old in root.glob(f"{glob_escape(prefix)}*"):
        for lock in old.glob(".held.*.tmp"):  # a folder without one is not ours to judge
            remove_if_abandoned(lock, old)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    fd, _ = _locked_temp(folder, ".held.", ".tmp")
    try:
        yield folder
    finally:
        os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)


def _write_file(path: Path, text: str) -> None:
    """Write a file in a folder that is itself temporary (no temp file needed)."""
    with open(path, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: Path, data: bytes | str) -> bool:
    """Write via a temp file and os.replace; skip when unchanged. Returns True if written.

    Any failure (a full disk, a read-only one) leaves no temp file and raises a CacheError
    naming the folder; temp files of killed writers of the same file are removed first.
    """
    payload = data.encode() if isinstance(data, str) else data
    try:
        sweep_temp_files(path.parent, glob_escape(path.name))
        if path.is_file() and path.stat().st_size == len(payload) and path.read_bytes() == payload:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _locked_temp(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_error(exc, str(path), path.parent) from exc
    try:
        with os.fdopen(fd, "wb") as fh:  # closing it releases the lock: after the rename
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
            os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(exc, str(path), path.parent) from exc
        raise
    return True


def glob_escape(name: str) -> str:
    """name with glob's special characters made literal."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def checksum_problem(folder: Path) -> str | None:
    """What is wrong with a folder's files against its checksums file, or None."""
    try:
        recorded = json.loads((folder / CHECKSUMS).read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable {CHECKSUMS}: {exc}"
    actual = checksums(folder)
    if set(actual) != set(recorded):
        return f"its files differ from {CHECKSUMS}: {sorted(set(actual) ^ set(recorded))}"
    bad = [name for name, sha in sorted(recorded.items()) if actual[name] != sha]
    return f"{', '.join(bad)} does not match its checksum" if bad else None


def checksums(folder: Path) -> dict[str, str]:
    """Every file's SHA-256 below folder (by relative path) but the checksums file's own."""
    return {
        str(p.relative_to(folder)): file_digest(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != CHECKSUMS
    }


def _stat_stamp(folder: Path) -> dict[str, list[int]]:
    """Every file of an entry with its size, modification time and inode."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(folder))] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return out


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
        """None when every file matches its recorded checksum, else what is wrong. An entry
        whose files (names, sizes, modification times, inodes) are as they were when it was
        last verified is not hashed again: a warm rebuild checks its runs in milliseconds."""
        seen = self.root / "verified" / f"{folder.name}.json"
        stamp = _stat_stamp(folder)
        try:
            if json.loads(seen.read_text()) == stamp:
                return None
        except (OSError, ValueError):
            pass
        problem = checksum_problem(folder)
        if problem:
            return problem
        with contextlib.suppress(CacheError):  # only a shortcut: a read-only cache still works
            write_atomic(seen, json.dumps(stamp))
        return None

    def put(self, key: str, fill: Callable[[Path], None]) -> Path:
        """Create the entry: fill() writes into a temp folder, which is renamed into place.

        The temp folder tmp/NAME has a lock file tmp/NAME.lock held while it is written, so
        a sweep removes it as soon as its writer is dead. A full or failing disk leaves
        nothing behind and raises a CacheError naming this store's folder.
        """
        what = f"the {self.name} cache entry {key[:12]}"
        tmp_root = self.root / "tmp"
        try:
            self.entries.mkdir(parents=True, exist_ok=True)
            tmp_root.mkdir(parents=True, exist_ok=True)
            fd, lock_name = _locked_temp(tmp_root, prefix=f"{key[:12]}-", suffix=".lock")
        except OSError as exc:
            raise write_error(exc, what, self.root) from exc
        tmp = Path(lock_name[: -len(".lock")])
        try:
            tmp.mkdir()
            fill(tmp)
            _write_file(tmp / CHECKSUMS, json.dumps(checksums(tmp), indent=1, sort_keys=True))
            final = self.path(key)
            if final.exists():
                self._discard(final)
            os.rename(tmp, final)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, Exception) and (isinstance(exc, OSError)
                                               or is_write_failure(exc)):
                raise write_error(exc, what, self.root) from exc
            raise
        finally:
            Path(lock_name).unlink(missing_ok=True)
            os.close(fd)
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
        try:
            locks.mkdir(parents=True, exist_ok=True)
            fh = open(locks / f"{key}.lock", "a")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise write_error(exc, f"the lock file {locks / key}.lock", locks) from exc
        with fh:
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
        """Remove what interrupted writers left in tmp/: at once where the writer is dead
        (its lock file is free), after an hour for folders of older versions."""
        tmp_root = self.root / "tmp"
        if self.root.is_dir():  # write_atomic's temp files, e.g. in runs/memo/
            for folder in [self.root, *self.root.iterdir()]:
                if folder.is_dir() and folder.name not in ("entries", "tmp", "locks"):
                    sweep_temp_files(folder)
        if not tmp_root.is_dir():
            return
        for child in sorted(tmp_root.iterdir()):
            try:
                if child.suffix == ".lock":
                    remove_if_abandoned(child, child.with_suffix(""))
                elif child.name.startswith("discarded-"):  # garbage once renamed there
                    shutil.rmtree(child, ignore_errors=True)
                elif (child.is_dir() and not child.with_name(child.name + ".lock").exists()
                      and time.time() - child.stat().st_mtime > 3600):
                    shutil.rmtree(child, ignore_errors=True)
            except OSError:
                continue  # removed meanwhile by another build's sweep
