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
