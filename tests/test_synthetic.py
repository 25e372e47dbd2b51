"""Tests for the synthetic cats-and-dogs data set generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from catdog_report import synthetic
from catdog_report.synthetic import FORMAT_VERSION, draw_animal, generate


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
    assert sorted(str(p) for p in synthetic.expected_files(4, 3)) == sorted(expected)
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


def test_draw_animal_is_pure_and_checks_kind() -> None:
    a = draw_animal(np.random.default_rng([1, 2, 3]), "dog", 48)
    b = draw_animal(np.random.default_rng([1, 2, 3]), "dog", 48)
    assert a.mode == "RGB" and a.size == (48, 48)
    assert a.tobytes() == b.tobytes()
    with pytest.raises(ValueError):
        draw_animal(np.random.default_rng(0), "horse", 48)


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
    assert set(_files(root)) == {str(p) for p in synthetic.expected_files(2, 1)} | {
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
    with pytest.raises(FileExistsError):
        generate(root, train_per_class=1, validation_per_class=1, size=32)
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


@pytest.mark.parametrize(
    "bad", [{"size": 8}, {"seed": -1}, {"train_per_class": -1}, {"size": 64.0}]
)
def test_rejects_bad_parameters(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path / "ds", **bad)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_interrupted_generation_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = synthetic.draw_animal

    def flaky(rng: np.random.Generator, kind: str, size: int) -> Image.Image:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise KeyboardInterrupt("simulated interruption")
        return real(rng, kind, size)

    monkeypatch.setattr(synthetic, "draw_animal", flaky)
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

    monkeypatch.setattr(synthetic, "draw_animal", broken)
    with pytest.raises(RuntimeError):
        generate(root, train_per_class=2, validation_per_class=1, size=48, seed=3)
    assert _files(root) == before
    assert list(tmp_path.iterdir()) == [root]


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
    root = generate(
        tmp_path_factory.mktemp("signal") / "ds",
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
