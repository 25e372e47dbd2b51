"""Shared fixtures: tiny generated image folders, settings pointing at tmp folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog_report import environment
from catdog_report.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def make_images(root: Path, per_class: dict[str, int] | None = None, size: int = 48,
                seed: int = 0, classes: tuple[str, str] = ("cats", "dogs")) -> Path:
    """A cats_and_dogs_filtered-shaped folder: the first class are blue discs, the second
    red squares (cats and dogs unless other class names are given)."""
    per_class = per_class or {"train": 12, "validation": 10}
    rng = np.random.default_rng(seed)
    number = 0
    for split, n in per_class.items():
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(n):
                img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 80, 3)))
                from PIL import ImageDraw

                draw = ImageDraw.Draw(img)
                a, b = sorted(rng.integers(4, size - 4, 2))
                if cls == classes[0]:
                    draw.ellipse([a, a, b + 4, b + 4], fill=(40, 60, 230))
                else:
                    draw.rectangle([a, a, b + 4, b + 4], fill=(230, 50, 40))
                img.save(folder / f"{cls[:-1]}.{number}.jpg", quality=90)
                number += 1
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A tiny two-class data set."""
    return make_images(tmp_path / "cats_and_dogs_filtered")


@pytest.fixture
def settings(tmp_path: Path, tiny_data: Path) -> Settings:
    """Quick-profile settings on the tiny data set with a private cache."""
    return Settings(profile="quick", project_dir=tmp_path, study_file=ROOT / "study.yml",
                    data_dir=tiny_data, cache_dir=tmp_path / "cache", image_size=128,
                    batch_size=8)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's content and mkdocs.yml in a tmp folder."""
    dest = tmp_path / "project"
    dest.mkdir()
    shutil.copytree(ROOT / "content", dest / "content",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", "study.yml"):
        shutil.copy(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="session")
def mobilenet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNetV2 no-top weights file: the real layout, random values (tests are offline)."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_no_top.weights.h5"
    keras.applications.MobileNetV2(input_shape=(100, 100, 3), include_top=False,
                                   weights=None).save_weights(path)
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's CATDOG_* variables or Keras cache."""
    for var in environment.VARIABLES.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
