"""The study's demo drawings (content/demo_drawings.py, study.yml's data.generator): pure,
seeded, and with a class signal a CNN must learn."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from catdog_report import demo_data, study
from conftest import ROOT


def _drawings() -> ModuleType:
    """content/demo_drawings.py, imported by path."""
    spec = importlib.util.spec_from_file_location("demo_drawings", ROOT / "content" /
                                                  "demo_drawings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_draw_is_pure_and_checks_the_class() -> None:
    draw = _drawings().draw
    a = draw(np.random.default_rng([1, 2, 3]), "dogs", 48)
    b = draw(np.random.default_rng([1, 2, 3]), "dogs", 48)
    assert a.mode == "RGB" and a.size == (48, 48)
    assert a.tobytes() == b.tobytes()
    assert draw(np.random.default_rng([1, 2, 3]), "cats", 48).tobytes() != a.tobytes()
    with pytest.raises(ValueError, match=r"class_name must be one of \['cats', 'dogs'\]"):
        draw(np.random.default_rng(0), "horses", 48)


def test_the_study_declares_it_for_its_classes() -> None:
    own = study.load(ROOT / "study.yml")
    assert own.data.generator == "content/demo_drawings.py:draw"
    assert study.check_generator(own) == ROOT / "content" / "demo_drawings.py"
    assert set(_drawings().KINDS) == set(own.data.classes)
    fn = own.generator()
    image = fn(np.random.default_rng([4, 5]), "cats", 32)
    assert image.tobytes() == _drawings().draw(np.random.default_rng([4, 5]), "cats", 32).tobytes()


# --------------------------------------------------------------------------- class signal


def _load(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """32x32 grayscale arrays, mean RGB colours and labels (0 cat, 1 dog) of one split."""
    gray, colour, labels = [], [], []
    for label, folder in enumerate(("cats", "dogs")):
        for path in sorted((root / split / folder).glob("*.jpg")):
            with Image.open(path) as img:
                rgb = img.convert("RGB")
            colour.append(np.asarray(rgb, np.float64).reshape(-1, 3).mean(0))
            small = rgb.convert("L").resize((32, 32), Image.Resampling.BILINEAR)
            gray.append(np.asarray(small, np.float64) / 255.0)
            labels.append(label)
    return np.stack(gray), np.stack(colour), np.asarray(labels)


def _patches(x: np.ndarray, k: int = 5) -> np.ndarray:
    """Contrast-normalised k x k patches at every position: (N, h, w, k*k)."""
    p = sliding_window_view(x, (k, k), axis=(1, 2))
    p = p.reshape(*p.shape[:3], k * k)
    return (p - p.mean(-1, keepdims=True)) / (p.std(-1, keepdims=True) + 0.05)


def _patch_features(
    train: np.ndarray, test: np.ndarray, n_words: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Single-layer k-means feature learner (Coates & Ng): whitened patch words, pooled."""
    rng = np.random.default_rng(0)
    z = _patches(train).reshape(-1, 25)
    z = z[rng.choice(len(z), 20000, replace=False)]
    mean = z.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(z - mean, rowvar=False))
    zca = evecs @ np.diag(1.0 / np.sqrt(evals + 0.1)) @ evecs.T
    z = (z - mean) @ zca
    words = z[rng.choice(len(z), n_words, replace=False)]
    for _ in range(15):
        nearest = ((z[:, None, :] - words[None]) ** 2).sum(-1).argmin(1)
        for j in range(n_words):
            if (nearest == j).any():
                words[j] = z[nearest == j].mean(0)

    def encode(x: np.ndarray) -> np.ndarray:
        p = _patches(x)
        flat = (p.reshape(-1, 25) - mean) @ zca
        dist = np.sqrt(
            np.maximum((flat**2).sum(1)[:, None] - 2 * flat @ words.T + (words**2).sum(1), 0)
        )
        act = np.maximum(dist.mean(1, keepdims=True) - dist, 0).reshape(*p.shape[:3], n_words)
        return np.concatenate([act.mean((1, 2)), act.max((1, 2))], -1)

    return encode(train), encode(test)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale features by the training mean and standard deviation."""
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return (train - mu) / sd, (test - mu) / sd


def _logistic_accuracy(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> float:
    """Fit L2 logistic regression by gradient descent; return test accuracy."""
    xtr, xte = _standardise(xtr, xte)
    w, b = np.zeros(xtr.shape[1]), 0.0
    for _ in range(500):
        grad = 1.0 / (1.0 + np.exp(-(xtr @ w + b))) - ytr
        w -= 0.5 * (xtr.T @ grad / len(ytr) + 1e-2 * w)
        b -= 0.5 * grad.mean()
    return float((((xte @ w + b) > 0) == yte).mean())


def _centroid_accuracy(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> float:
    """Nearest-class-centroid accuracy on standardised features."""
    xtr, xte = _standardise(xtr, xte)
    centroids = np.stack([xtr[ytr == k].mean(0) for k in (0, 1)])
    pred = ((xte[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float((pred == yte).mean())


@pytest.fixture(scope="module")
def signal_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, ...]]:
    root = demo_data.generate(
        tmp_path_factory.mktemp("signal") / "ds",
        demo_data.drawer(study.load(ROOT / "study.yml")),
        train_per_class=60,
        validation_per_class=60,
        size=64,
    )
    return {split: _load(root, split) for split in ("train", "validation")}


def test_classes_are_learnable_from_shape(signal_set: dict[str, tuple[np.ndarray, ...]]) -> None:
    gtr, _, ytr = signal_set["train"]
    gte, _, yte = signal_set["validation"]
    ftr, fte = _patch_features(gtr, gte)
    accuracy = _logistic_accuracy(ftr, ytr, fte, yte)
    assert accuracy > 0.6, (
        f"validation accuracy from 32x32 grayscale patch features: {accuracy:.3f}"
    )


def test_mean_colour_does_not_give_the_class_away(
    signal_set: dict[str, tuple[np.ndarray, ...]],
) -> None:
    _, ctr, ytr = signal_set["train"]
    _, cte, yte = signal_set["validation"]
    assert _centroid_accuracy(ctr, ytr, cte, yte) < 0.75
    assert _logistic_accuracy(ctr, ytr, cte, yte) < 0.75
