"""The demo data set on disk: layout, determinism, atomic replacement, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog_report import demo_data
from catdog_report.demo_data import generate
from catdog_report.errors import DataError
from catdog_report.synthetic import FORMAT_VERSION


def _files(root: Path) -> dict[str, bytes]:
    """Map of relative path -> bytes of every file under root."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_file_names_match_real_set(tmp_path: Path) -> None:
    root = tmp_path / "cats_and_dogs_filtered"
    assert generate(root, train_per_class=4, validation_per_class=3, size=64) == root
    expected = {
        f"train/{d}/{k}.{i}.jpg" for k, d in (("cat", "cats"), ("dog", "dogs")) for i in range(4)
    }
    expected |= {
        f"validation/{d}/{k}.{i}.jpg"
        for k, d in (("cat", "cats"), ("dog", "dogs"))
        for i in range(4, 7)
    }
    names = set(_files(root))
    assert names == expected | {"synthetic.json"}
    assert {p.name for p in root.iterdir()} == {"train", "validation", "synthetic.json"}
    marker = json.loads((root / "synthetic.json").read_text(encoding="utf-8"))
    assert marker == {
        "format_version": FORMAT_VERSION,
        "train_per_class": 4,
        "validation_per_class": 3,
        "size": 64,
        "seed": 0,
    }
    assert sorted(str(p) for p in demo_data.expected_files(4, 3)) == sorted(expected)
    assert list(tmp_path.iterdir()) == [root]  # no temp folder left behind
    (tmp_path / "plain").mkdir()  # the set gets the umask's mode, not a private temp mode
    assert root.stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_every_file_is_rgb_jpeg_of_the_right_size(tmp_path: Path) -> None:
    root = generate(tmp_path / "ds", train_per_class=3, validation_per_class=2, size=72)
    images = list(root.rglob("*.jpg"))
    assert len(images) == 10
    for path in images:
        with Image.open(path) as img:
            assert img.format == "JPEG"
            assert img.mode == "RGB"
            assert img.size == (72, 72)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    kwargs = {"train_per_class": 4, "validation_per_class": 2, "size": 64}
    a = _files(generate(tmp_path / "a", seed=7, **kwargs))
    b = _files(generate(tmp_path / "b", seed=7, **kwargs))
    c = _files(generate(tmp_path / "c", seed=8, **kwargs))
    assert a == b
    assert a.keys() == c.keys()
    images = [name for name in a if name.endswith(".jpg")]
    assert all(a[name] != c[name] for name in images)
    assert len({a[name] for name in images}) == len(images)  # no two images alike


def test_each_image_is_independent_of_the_set_size(tmp_path: Path) -> None:
    small = _files(generate(tmp_path / "small", train_per_class=2, validation_per_class=1, size=64))
    big = _files(generate(tmp_path / "big", train_per_class=2, validation_per_class=3, size=64))
    for name in ("train/cats/cat.0.jpg", "train/dogs/dog.1.jpg", "validation/dogs/dog.2.jpg"):
        assert small[name] == big[name]


def test_second_call_with_same_parameters_is_a_no_op(tmp_path: Path) -> None:
    root = generate(tmp_path / "ds", train_per_class=2, validation_per_class=2, size=64)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    root_ino = root.stat().st_ino
    assert generate(root, train_per_class=2, validation_per_class=2, size=64) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert root.stat().st_ino == root_ino


def test_other_parameters_replace_an_earlier_set(tmp_path: Path) -> None:
    root = generate(tmp_path / "ds", train_per_class=3, validation_per_class=1, size=64)
    generate(root, train_per_class=2, validation_per_class=1, size=48, seed=1)
    assert set(_files(root)) == {str(p) for p in demo_data.expected_files(2, 1)} | {
        "synthetic.json"
    }
    with Image.open(root / "train/cats/cat.0.jpg") as img:
        assert img.size == (48, 48)
    assert json.loads((root / "synthetic.json").read_text(encoding="utf-8"))["seed"] == 1
    assert list(tmp_path.iterdir()) == [root]


def test_incomplete_set_is_rebuilt(tmp_path: Path) -> None:
    root = generate(tmp_path / "ds", train_per_class=2, validation_per_class=1, size=64)
    (root / "train/dogs/dog.1.jpg").unlink()
    generate(root, train_per_class=2, validation_per_class=1, size=64)
    assert (root / "train/dogs/dog.1.jpg").is_file()


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    root = tmp_path / "precious"
    root.mkdir()
    (root / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(DataError, match="not a synthetic data set made by catdog-report"):
        generate(root, train_per_class=1, validation_per_class=1, size=32)
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


@pytest.mark.parametrize(
    "bad", [{"size": 8}, {"seed": -1}, {"train_per_class": -1}, {"size": 64.0}]
)
def test_rejects_bad_parameters(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(DataError, match="must be an integer"):
        generate(tmp_path / "ds", **bad)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_interrupted_generation_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = demo_data.draw_animal

    def flaky(rng: np.random.Generator, kind: str, size: int) -> Image.Image:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise KeyboardInterrupt("simulated interruption")
        return real(rng, kind, size)

    monkeypatch.setattr(demo_data, "draw_animal", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "ds", train_per_class=4, validation_per_class=2, size=48)
    assert calls == 6
    assert list(tmp_path.iterdir()) == []


def test_interruption_keeps_an_earlier_set_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = generate(tmp_path / "ds", train_per_class=2, validation_per_class=1, size=48)
    before = _files(root)

    def broken(rng: np.random.Generator, kind: str, size: int) -> Image.Image:
        raise RuntimeError("boom")

    monkeypatch.setattr(demo_data, "draw_animal", broken)
    with pytest.raises(RuntimeError):
        generate(root, train_per_class=2, validation_per_class=1, size=48, seed=3)
    assert _files(root) == before
    assert list(tmp_path.iterdir()) == [root]
