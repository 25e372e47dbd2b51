import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog_report import data
from catdog_report.config import Settings
from catdog_report.errors import DataError
from conftest import ROOT, make_images

SPEC = Settings(project_dir=ROOT).study.data  # the project's data set: cats and dogs


def test_lookup_order_argument_then_env_then_keras_cache(
        tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_images(tmp_path / "other")
    cached = make_images(tmp_path / "keras-home" / "datasets" / "cats_and_dogs_filtered")
    monkeypatch.setenv("CATDOG_DATA_DIR", str(other))
    assert data.locate(tiny_data, SPEC, download=False) == (tiny_data, "local folder (--data-dir)")
    assert data.locate(None, SPEC, download=False) == (other, "local folder (CATDOG_DATA_DIR)")
    monkeypatch.delenv("CATDOG_DATA_DIR")
    assert data.locate(None, SPEC, download=False) == (cached, "Keras cache")


def test_parent_folder_of_the_data_set_is_accepted(tiny_data: Path) -> None:
    assert data.locate(tiny_data.parent, SPEC, download=False)[0] == tiny_data


def test_download_is_last_and_failure_names_what_was_tried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    calls = []

    def offline(**kwargs: object) -> str:
        calls.append(kwargs)
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError) as err:
        data.locate(None, SPEC)
    assert calls and calls[0]["origin"] == SPEC.url
    message = str(err.value)
    assert "keras-home" in message and str(SPEC.url) in message and "CATDOG_DATA_DIR" in message


def test_download_result_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import keras

    extracted = tmp_path / "dl" / "cats_and_dogs_filtered.zip"
    make_images(extracted / "cats_and_dogs_filtered")
    monkeypatch.setattr(keras.utils, "get_file", lambda **kw: str(extracted))
    root, source = data.locate(None, SPEC)
    assert root == extracted / "cats_and_dogs_filtered" and source.startswith("downloaded")


def test_missing_data_dir_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*--data-dir"):
        data.locate(tmp_path / "nope", SPEC)


def test_splits_are_disjoint_deterministic_and_sized(settings: Settings) -> None:
    ds = data.scan(settings, settings.data_dir)
    files = [set(s.files) for s in ds.splits.values()]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert len(ds.train) == 24 and len(ds.test) == 4 and len(ds.validation) == 16
    assert all(f.startswith("validation/") for f in ds.test.files)
    assert data.scan(settings, settings.data_dir) == ds
    other = data.scan(dataclasses.replace(settings, seed=7), settings.data_dir)
    assert other.test.files != ds.test.files and other.manifest != ds.manifest


def test_full_validation_fifth_is_test(tmp_path: Path) -> None:
    root = make_images(tmp_path / "d", {"train": 5, "validation": 25})
    s = Settings(profile="full", data_dir=root, cache_dir=tmp_path / "c")
    ds = data.scan(s, root)
    assert len(ds.test) == 10 and len(ds.validation) == 40
    assert sorted(ds.test.labels) == [0] * 5 + [1] * 5


def test_manifest_changes_when_an_image_changes(settings: Settings) -> None:
    before = data.scan(settings, settings.data_dir).manifest
    victim = sorted((settings.data_dir / "train" / "cats").iterdir())[0]
    Image.new("RGB", (48, 48), (1, 2, 3)).save(victim)
    assert data.scan(settings, settings.data_dir).manifest != before


@pytest.mark.parametrize("breakage, message", [
    ("no_train", "train is missing"),
    ("one_class", r"does not fit the study: no folder for the class\(es\) dogs"),
    ("third_class", r"does not fit the study: extra class folder\(s\) .*train/birds, "
                    r".*validation/birds\. The study declares the classes \['cats', 'dogs'\]"),
    ("empty_class", "is empty"),
    ("renamed_class", "class folders differ"),
    ("not_a_folder", "is not a folder"),
])
def test_bad_layouts_fail_clearly(tiny_data: Path, tmp_path: Path, breakage: str,
                                  message: str) -> None:
    import shutil

    root = tiny_data
    if breakage == "no_train":
        shutil.rmtree(root / "train")
    elif breakage == "one_class":
        for split in ("train", "validation"):
            shutil.rmtree(root / split / "dogs")
    elif breakage == "third_class":
        make_images(tmp_path / "birds")
        for split in ("train", "validation"):
            (tmp_path / "birds" / split / "cats").rename(root / split / "birds")
    elif breakage == "empty_class":
        for p in (root / "train" / "dogs").iterdir():
            p.unlink()
    elif breakage == "renamed_class":
        (root / "validation" / "dogs").rename(root / "validation" / "puppies")
    else:
        root = tmp_path / "file.txt"
        root.write_text("not a folder")
    with pytest.raises(DataError, match=message):
        data.list_classes(root, SPEC)


def test_bad_files_are_skipped_and_reported(settings: Settings) -> None:
    cats = settings.data_dir / "train" / "cats"
    (cats / "notes.txt").write_text("hello")
    (cats / "empty.jpg").write_bytes(b"")
    good = sorted(cats.glob("*.jpg"))[0].read_bytes()
    (cats / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (cats / "garbage.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    Image.new("L", (30, 20), 128).save(cats / "grey cat ü.png")
    Image.new("RGBA", (30, 20), (1, 2, 3, 4)).save(cats / "alpha.png")
    ds = data.scan(settings, settings.data_dir)
    skipped = dict(ds.skipped)
    assert set(skipped) == {"train/cats/notes.txt", "train/cats/empty.jpg",
                            "train/cats/truncated.jpg", "train/cats/garbage.jpg"}
    assert "0 bytes" in skipped["train/cats/empty.jpg"]
    assert "train/cats/grey cat ü.png" in ds.train.files
    arrays = data.arrays(ds, settings)
    x, y = arrays["train"]
    assert x.shape == (len(ds.train), 128, 128, 3) and x.dtype == np.uint8
    assert list(y) == list(ds.train.labels)


def test_decoded_images_are_cached(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = data.scan(settings, settings.data_dir)
    first = data.arrays(ds, settings)
    monkeypatch.setattr(data, "decode", lambda *a: pytest.fail("decoded twice"))
    again = data.arrays(ds, settings)
    assert np.array_equal(first["test"][0], again["test"][0])


@pytest.mark.parametrize("threads", [False, True], ids=["one-by-one", "in-threads"])
def test_every_unused_file_is_listed_once_with_its_reason_in_words(
        settings: Settings, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, threads: bool) -> None:
    import logging
    import os
    import re
    from pathlib import Path as P

    root = settings.data_dir
    cats = root / "train" / "cats"
    good = sorted(cats.glob("*.jpg"))[0]
    (cats / "broken.jpg").symlink_to(root / "gone.jpg")
    (cats / "loop.jpg").symlink_to("loop.jpg")
    (cats / "to-dogs").symlink_to(root / "train" / "dogs")
    (cats / "linked.jpg").symlink_to(good)  # a link to an image is used
    (cats / "empty.jpg").write_bytes(b"")
    (cats / "notes.txt").write_text("hello")
    (cats / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (cats / "garbage.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (cats / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    (cats / "secret.jpg").write_bytes(good.read_bytes())
    os.mkfifo(cats / "pipe.jpg")
    (cats / "more").mkdir()
    (cats / "more" / "inner.jpg").write_bytes(good.read_bytes())  # nested: used, as by Keras
    (root / "validation" / "stray.jpg").write_bytes(good.read_bytes())
    real = P.read_bytes

    def denied(self: P) -> bytes:  # root reads through permission bits: inject the denial
        if self.name == "secret.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(P, "read_bytes", denied)
    if threads:  # as for a real data set: its files checked in two threads
        monkeypatch.setattr(data, "CHECK_IN_THREADS", 1)
    caplog.set_level(logging.WARNING, logger="catdog_report.data")
    ds = data.scan(settings, root)
    expected = (
        ("train/cats/.DS_Store", "not an image file name (no extension; images end in .bmp, "
                                 ".gif, .jpeg, .jpg, .png, .webp)"),
        ("train/cats/broken.jpg", f"a symbolic link to {root}/gone.jpg, which does not exist"),
        ("train/cats/empty.jpg", "empty file (0 bytes)"),
        ("train/cats/garbage.jpg", "cannot be decoded: not a recognised image format"),
        ("train/cats/loop.jpg", "a symbolic link to loop.jpg, which cannot be followed (too "
                                "many levels of symbolic links)"),
        ("train/cats/notes.txt", "not an image file name (.txt; images end in .bmp, .gif, "
                                 ".jpeg, .jpg, .png, .webp)"),
        ("train/cats/pipe.jpg", "a named pipe, not a regular file"),
        ("train/cats/secret.jpg", "cannot be read (permission denied)"),
        ("train/cats/to-dogs", f"a symbolic link to the folder {root}/train/dogs; links to "
                               "folders are not followed"),
        ("train/cats/truncated.jpg", "cannot be decoded: Truncated File Read"),
        ("validation/stray.jpg", "not inside a class folder; only the class folders of "
                                 "validation/ are read"),
    )
    assert ds.skipped == expected
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping ")]
    assert logged == [f"skipping {rel}: {why}" for rel, why in expected]  # same words, once
    assert {"train/cats/linked.jpg", "train/cats/more/inner.jpg"} <= set(ds.train.files)
    assert not any(re.search(r"<[^<>]* at 0x", why) for _, why in ds.skipped)
    monkeypatch.setattr(P, "read_bytes", real)  # permission given: read again, then used
    again = data.scan(settings, root)
    assert "train/cats/secret.jpg" in again.train.files and len(again.skipped) == 10


def test_pillow_messages_lose_object_reprs() -> None:
    exc = OSError("cannot identify image file <_io.BytesIO object at 0x7f3a2b1c>")
    assert data.pillow_message(exc) == "cannot identify image file"
    assert data.pillow_message(SyntaxError("")) == "the image data is broken (SyntaxError)"
    assert data.check_image(Path("x.tiff")).startswith("not an image file name (.tiff;")


@pytest.mark.skipif(__import__("os").geteuid() == 0,
                    reason="root reads through permission bits; the test above injects it")
def test_an_unreadable_file_is_listed(settings: Settings) -> None:
    secret = settings.data_dir / "train" / "dogs" / "secret.jpg"
    secret.write_bytes(b"\xff\xd8")
    secret.chmod(0)
    assert dict(data.scan(settings, settings.data_dir).skipped)["train/dogs/secret.jpg"] == (
        "cannot be read (permission denied)")


def _decoded_on_a_full_disk(settings: Settings, ds: data.Dataset) -> str:
    from catdog_report.errors import CacheError

    with pytest.raises(CacheError) as err:
        data.arrays(ds, settings)
    decoded = settings.cache_root / "decoded"
    assert list(decoded.iterdir()) == []  # no temp file, no partial .npz
    return str(err.value)


def test_decoded_cache_on_a_full_disk_injected(settings: Settings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from catdog_report import cache

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    ds = data.scan(settings, settings.data_dir)
    monkeypatch.setattr(cache.os, "fsync", full)
    message = _decoded_on_a_full_disk(settings, ds)
    decoded = settings.cache_root / "decoded"
    assert message.startswith(f"cannot write {decoded}/")
    assert f": {decoded} is full (no space left on the file system at " in message
    assert message.endswith("Free space there, or use --cache-dir (CATDOG_CACHE_DIR) to put "
                            "the caches on a disk with room")


def test_decoded_cache_on_a_real_full_disk(settings: Settings, tmp_path: Path) -> None:
    from mounts import tmpfs

    with tmpfs(tmp_path / "small", "256k") as mount:
        small = dataclasses.replace(settings, cache_dir=mount / "cache")
        message = _decoded_on_a_full_disk(small, data.scan(small, settings.data_dir))
        assert f"{mount}/cache/decoded is full (no space left on the file system at {mount})" \
            in message


def test_scan_removes_temp_files_of_killed_builds(settings: Settings) -> None:
    decoded = settings.cache_root / "decoded"
    decoded.mkdir(parents=True)
    dead = decoded / ".abc-100.npz.x1y2z3.tmp"  # no live writer holds its lock
    dead.write_bytes(b"half an array")
    data.scan(settings, settings.data_dir)
    assert list(decoded.iterdir()) == []


def test_a_scan_imports_no_numpy(tiny_data: Path, tmp_path: Path) -> None:
    """A warm rebuild scans the data and plans; numpy's import is a tenth of its time."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; from pathlib import Path; "
            "from catdog_report import build, cli, data; "
            "from catdog_report.config import Settings; "
            f"s = Settings(project_dir=Path({str(ROOT)!r}), cache_dir=Path({str(tmp_path)!r})); "
            f"ds = data.scan(s, Path({str(tiny_data)!r})); "
            "print(json.dumps([len(ds.train), 'numpy' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    n_train, numpy_imported = json.loads(out.stdout)
    assert n_train > 0 and not numpy_imported
