import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from catdog_report import cache
from catdog_report.cache import Store, digest, write_atomic
from catdog_report.errors import CacheError
from mounts import tmpfs


def test_digest_is_canonical() -> None:
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_write_atomic_skips_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "x" / "f.txt"
    assert write_atomic(path, "hello")
    mtime = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert not write_atomic(path, "hello")
    assert path.stat().st_mtime_ns == mtime
    assert write_atomic(path, "changed") and path.read_text() == "changed"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]


HOLD = ("import sys, time\nfrom catdog_report.cache import temp_folder\n"
        "with temp_folder('catdog-kernel-') as f:\n    print(f, flush=True)\n    time.sleep(60)")


def test_temp_folder_sweeps_what_a_killed_process_left(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env = dict(os.environ, TMPDIR=str(tmp_path))
    holders = [subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE,
                                text=True, env=env) for _ in range(2)]
    killed, alive = (Path(h.stdout.readline().strip()) for h in holders)  # type: ignore[union-attr]
    holders[0].send_signal(signal.SIGKILL)  # as a killed build: no cleanup runs
    holders[0].wait()
    foreign = tmp_path / "catdog-kernel-older"  # no held file: not ours to judge
    foreign.mkdir()
    try:
        assert killed.is_dir() and alive.is_dir()
        with cache.temp_folder("catdog-kernel-") as mine:
            assert mine.is_dir()
            assert not killed.exists()  # its writer is dead: swept
            assert alive.is_dir() and foreign.is_dir()  # a live holder's folder stays
        assert not mine.exists()
    finally:
        holders[1].kill()
        holders[1].wait()


def test_put_then_get(tmp_path: Path) -> None:
    store = Store(tmp_path, "test")
    assert store.get("k") is None
    folder = store.put("k", lambda d: (d / "a.txt").write_text("A"))
    assert store.get("k") == folder and (folder / "a.txt").read_text() == "A"
    assert json.loads((folder / "checksums.json").read_text()).keys() == {"a.txt"}


def test_interrupted_put_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path, "test")

    def fill(d: Path) -> None:
        (d / "half.bin").write_bytes(b"x" * 10)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put("k", fill)
    assert store.get("k") is None
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "alter", "delete", "add"])
def test_corrupted_entry_is_detected_and_discarded(tmp_path: Path, damage: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = Store(tmp_path, "test")
    folder = store.put("k", lambda d: (d / "w.bin").write_bytes(b"weights" * 100))
    assert store.get("k") == folder  # verified once: its files' stat is remembered
    target = folder / "w.bin"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:10])
    elif damage == "alter":
        target.write_bytes(b"X" + target.read_bytes()[1:])
    elif damage == "delete":
        target.unlink()
    else:
        (folder / "extra.py").write_text("import os")
    assert store.get("k") is None
    assert "corrupted" in caplog.text
    assert not folder.exists()


def test_an_unchanged_entry_is_not_hashed_again(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from catdog_report import cache

    store = Store(tmp_path, "test")
    folder = store.put("k", lambda d: (d / "w.bin").write_bytes(b"weights" * 100))
    assert store.get("k") == folder
    monkeypatch.setattr(cache, "file_digest", lambda p: pytest.fail("hashed again"))
    assert store.get("k") == folder  # same names, sizes, times and inodes: no hashing


def test_second_holder_waits_for_the_lock(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    store = Store(tmp_path, "test")
    order: list[str] = []

    def second() -> None:
        with store.lock("k"):
            order.append("second")

    with store.lock("k"):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]
    assert "waiting" in caplog.text


# Faults: a full or failing disk, and writers killed mid-write.

FIX = ("nothing partial was kept. Free space there, or use --cache-dir (CATDOG_CACHE_DIR) to "
       "put the caches on a disk with room")


def _full(*args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _everything(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_write_atomic_on_a_full_disk_keeps_nothing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "decoded" / "x.npz"
    monkeypatch.setattr(cache.os, "fsync", _full)
    with pytest.raises(CacheError) as err:
        write_atomic(target, b"x" * 1000)
    mount = cache._mount_point(tmp_path)
    assert str(err.value) == (f"cannot write {target}: {tmp_path}/decoded is full (no space "
                              f"left on the file system at {mount}); {FIX}")
    assert isinstance(err.value.__cause__, OSError)
    assert _everything(tmp_path) == ["decoded"]  # no temp file


def test_write_atomic_any_write_error_is_one_clear_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.json"
    write_atomic(target, "old")

    def broken(*args: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(cache.os, "fsync", broken)
    with pytest.raises(CacheError) as err:
        write_atomic(target, "new")
    assert str(err.value) == (
        f"cannot write {target}: writing in {tmp_path} failed: Input/output error (EIO); "
        "nothing partial was kept. Check that disk, or use --cache-dir (CATDOG_CACHE_DIR) to "
        "put the caches on a disk with room")
    assert _everything(tmp_path) == ["x.json"] and target.read_text() == "old"


@pytest.mark.parametrize("where", ["fill", "checksums"])
def test_put_on_a_full_disk_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          where: str) -> None:
    store = Store(tmp_path / "runs", "run")

    def fill(d: Path) -> None:
        (d / "model.keras").write_bytes(b"w" * 1000)
        if where == "fill":
            _full()

    if where == "checksums":
        monkeypatch.setattr(cache.os, "fsync", _full)
    with pytest.raises(CacheError) as err:
        store.put("a" * 64, fill)
    mount = cache._mount_point(tmp_path)
    assert str(err.value) == (f"cannot write the run cache entry aaaaaaaaaaaa: {tmp_path}/runs "
                              f"is full (no space left on the file system at {mount}); {FIX}")
    assert _everything(tmp_path / "runs") == ["entries", "tmp"]  # no temp folder, no lock


def test_put_keeps_other_errors_as_they_are(tmp_path: Path) -> None:
    store = Store(tmp_path, "run")

    def fill(d: Path) -> None:
        raise ValueError("a bug in training")

    with pytest.raises(ValueError, match="a bug in training"):
        store.put("k", fill)
    assert _everything(tmp_path / "tmp") == []


def test_a_real_full_disk(tmp_path: Path) -> None:
    """A 1 MiB tmpfs: a 2 MB entry and a 2 MB file fail cleanly and give all space back."""
    with tmpfs(tmp_path / "small", "1m") as mount:
        free = os.statvfs(mount).f_bfree
        store = Store(mount / "cache" / "runs", "run")
        with pytest.raises(CacheError) as err:
            store.put("b" * 64, lambda d: (d / "model.keras").write_bytes(b"w" * 2_000_000))
        assert str(err.value) == (f"cannot write the run cache entry bbbbbbbbbbbb: {mount}/cache/"
                                  f"runs is full (no space left on the file system at {mount}); "
                                  f"{FIX}")
        target = mount / "cache" / "decoded" / "x.npz"
        with pytest.raises(CacheError) as err:
            write_atomic(target, b"x" * 2_000_000)
        assert str(err.value) == (f"cannot write {target}: {mount}/cache/decoded is full (no "
                                  f"space left on the file system at {mount}); {FIX}")
        assert _everything(mount) == ["cache", "cache/decoded", "cache/runs",
                                      "cache/runs/entries", "cache/runs/tmp"]
        assert os.statvfs(mount).f_bfree == free  # every byte written was given back
        assert store.get("b" * 64) is None


WRITER = """
import os, sys, time
from pathlib import Path
from catdog_report import cache
kind, target = sys.argv[1], Path(sys.argv[2])
def stall(fd):
    print("WRITING", flush=True)
    time.sleep(600)
if kind == "put":
    def fill(d):
        (d / "half.bin").write_bytes(b"x" * 100)
        stall(None)
    cache.Store(target, "run").put("c" * 64, fill)
else:
    cache.os.fsync = stall
    cache.write_atomic(target, "new text")
"""


def _killed_writer(kind: str, target: Path) -> None:
    """Start a writer in another process and SIGKILL it in the middle of its write."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(target)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "WRITING"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def test_sweep_removes_what_a_killed_put_left_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path, "run")
    _killed_writer("put", tmp_path)
    left = _everything(tmp_path / "tmp")
    name = left[0]
    assert set(left) == {name, f"{name}/half.bin", f"{name}.lock"}  # folder, its file, lock
    release = threading.Event()
    live = threading.Thread(target=store.put, args=("d" * 64, lambda d: release.wait(30)))
    live.start()
    time.sleep(0.5)
    store.sweep()  # the killed writer's folder goes; the live one stays
    remaining = _everything(tmp_path / "tmp")
    assert len(remaining) == 2 and all(r.startswith("dddddddddddd-") for r in remaining)
    release.set()
    live.join(30)
    assert store.get("d" * 64) is not None and _everything(tmp_path / "tmp") == []


def test_sweep_waits_an_hour_for_folders_without_a_lock(tmp_path: Path) -> None:
    store = Store(tmp_path, "run")
    old, new = tmp_path / "tmp" / "old-style", tmp_path / "tmp" / "new-style"
    for folder in (old, new):
        folder.mkdir(parents=True)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    store.sweep()
    assert _everything(tmp_path / "tmp") == ["new-style"]


def test_write_atomic_removes_temp_files_of_killed_writers(tmp_path: Path) -> None:
    target = tmp_path / "memo" / "x.json"
    write_atomic(target, "old text")
    _killed_writer("write", target)
    assert len(_everything(target.parent)) == 2  # x.json and a dead writer's temp file
    write_atomic(target, "old text")  # unchanged, yet the dead writer's temp file goes
    assert _everything(target.parent) == ["x.json"]
    _killed_writer("write", target)
    Store(tmp_path, "run").sweep()  # a build's sweep finds it too
    assert _everything(target.parent) == ["x.json"]


def test_write_atomic_leaves_a_live_writers_temp_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.json"
    release, writing = threading.Event(), threading.Event()
    real = os.fsync

    def slow(fd: int) -> None:
        if threading.current_thread().name == "slow-writer":
            writing.set()
            release.wait(30)
        real(fd)

    monkeypatch.setattr(cache.os, "fsync", slow)
    live = threading.Thread(target=write_atomic, args=(target, "first"), name="slow-writer")
    live.start()
    assert writing.wait(30)
    write_atomic(target, "second")
    assert len(_everything(tmp_path)) == 2  # the live writer's temp file stays
    release.set()
    live.join(30)
    assert _everything(tmp_path) == ["x.json"] and target.read_text() == "first"
