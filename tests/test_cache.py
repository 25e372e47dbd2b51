import json
import threading
import time
from pathlib import Path

import pytest

from catdog_report.cache import Store, digest, write_atomic


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
