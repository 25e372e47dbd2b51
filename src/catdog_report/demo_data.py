"""The offline demo data set on disk: synthetic.py's drawings written as a
``cats_and_dogs_filtered``-shaped folder, atomically, and reused while unchanged.

The layout mirrors the Keras data set, so code written for the real data works unchanged::

    <root>/train/cats/cat.0.jpg ... cat.{n-1}.jpg
    <root>/validation/dogs/dog.{n}.jpg ... dog.{n+m-1}.jpg
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .synthetic import CLASS_DIRS, CLASSES, FORMAT_VERSION, draw_animal

logger = logging.getLogger(__name__)

MARKER_NAME = "synthetic.json"
"""Name of the marker file written (last) into a complete data set."""

SPLITS: tuple[str, str] = ("train", "validation")
"""Split folder names, in split-id order."""

_JPEG_QUALITY = 90


def generate_for(settings: Any) -> Path:
    """The demo data set a synthetic profile of the study uses, in the cache (made once)."""
    classes = tuple(CLASS_DIRS[kind] for kind in CLASSES)
    study = settings.study
    if set(study.data.classes) != set(classes):
        raise DataError(f"profile {settings.profile!r} in {study.path} is synthetic, but the "
                        f"offline generator draws only {list(classes)} and the study declares "
                        f"{list(study.data.classes)}; use a profile with real data")
    spec = settings.profile_spec
    return generate(settings.cache_root / "synthetic" / f"seed{settings.seed}-v{FORMAT_VERSION}",
                    train_per_class=spec.train_per_class or 300,
                    validation_per_class=spec.validation_per_class or 100,
                    size=settings.image_size, seed=settings.seed)


def expected_files(train_per_class: int, validation_per_class: int) -> list[Path]:
    """List the relative paths of every image in a set with these counts.

    Args:
        train_per_class: Images per class in ``train``.
        validation_per_class: Images per class in ``validation``.

    Returns:
        Relative paths such as ``train/cats/cat.0.jpg``, in generation order.
    """
    out: list[Path] = []
    for split, start, count in _split_ranges(train_per_class, validation_per_class):
        for kind in CLASSES:
            for idx in range(start, start + count):
                out.append(Path(split) / CLASS_DIRS[kind] / f"{kind}.{idx}.jpg")
    return out


def _split_ranges(train: int, validation: int) -> Sequence[tuple[str, int, int]]:
    """(split, first file number, count) for each split; numbers continue across splits."""
    return ((SPLITS[0], 0, train), (SPLITS[1], train, validation))


def _params(
    train_per_class: int, validation_per_class: int, size: int, seed: int
) -> dict[str, Any]:
    """The marker content describing one set."""
    return {
        "format_version": FORMAT_VERSION,
        "train_per_class": train_per_class,
        "validation_per_class": validation_per_class,
        "size": size,
        "seed": seed,
    }


def _read_marker(root: Path) -> dict[str, Any] | None:
    """Marker content of root, or None when absent or unreadable."""
    try:
        data = json.loads((root / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_complete(root: Path, params: dict[str, Any]) -> bool:
    """True when root holds a set whose marker matches params and whose files all exist."""
    if _read_marker(root) != params:
        return False
    return all(
        (root / rel).is_file()
        for rel in expected_files(params["train_per_class"], params["validation_per_class"])
    )


def _write_set(tmp: Path, params: dict[str, Any]) -> None:
    """Draw and save every image into tmp, then the marker."""
    seed, size = params["seed"], params["size"]
    for split_id, (split, start, count) in enumerate(
        _split_ranges(params["train_per_class"], params["validation_per_class"])
    ):
        for class_id, kind in enumerate(CLASSES):
            folder = tmp / split / CLASS_DIRS[kind]
            folder.mkdir(parents=True, exist_ok=True)
            for idx in range(start, start + count):
                rng = np.random.default_rng([seed, split_id, class_id, idx])
                img = draw_animal(rng, kind, size)
                img.save(folder / f"{kind}.{idx}.jpg", "JPEG", quality=_JPEG_QUALITY)
            logger.debug("wrote %d %s images to %s", count, kind, folder)
    (tmp / MARKER_NAME).write_text(
        json.dumps(params, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def generate(
    root: Path,
    *,
    train_per_class: int = 300,
    validation_per_class: int = 100,
    size: int = 160,
    seed: int = 0,
) -> Path:
    """Write the synthetic cats-and-dogs data set under ``root`` and return ``root``.

    The set is built in a temporary sibling folder of ``root`` and moved into
    place with a rename only when complete, so ``root`` never holds a partial
    set; if drawing fails the temporary folder is removed and the error is
    re-raised.  A marker file ``synthetic.json`` (format version and
    parameters) is written into the set last.

    If ``root`` already holds a complete set with the same parameters this
    returns at once without touching any file.  If ``root`` holds a synthetic
    set made with other parameters (or an older format), it is replaced.  An
    empty ``root`` folder is replaced too; any other existing ``root`` is left
    alone and ``FileExistsError`` is raised.

    Args:
        root: Destination folder; its parent is created if needed.
        train_per_class: Images per class in ``train`` (``cat.0`` .. ``cat.{n-1}``).
        validation_per_class: Images per class in ``validation``, numbered on
            from the train images as in the real data set.
        size: Width and height of each square JPEG image, in pixels (>= 16).
        seed: Non-negative seed; the same seed and parameters give
            byte-identical files.

    Returns:
        ``root``.

    Raises:
        DataError: If a parameter is out of range, or ``root`` exists and is
            neither empty nor a synthetic set made by this module.
    """
    root = Path(root)
    for name, value, low in (
        ("train_per_class", train_per_class, 0),
        ("validation_per_class", validation_per_class, 0),
        ("size", size, 16),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
    params = _params(train_per_class, validation_per_class, size, seed)
    if _is_complete(root, params):
        logger.info("synthetic data set already present at %s", root)
        return root
    _check_replaceable(root)

    root.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkdtemp: its 0700 mode would end up on root; mkdir honours the umask
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    started = time.perf_counter()
    try:
        _write_set(tmp, params)
        _move_into_place(tmp, root, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = 2 * (train_per_class + validation_per_class)
    logger.info(
        "generated %d synthetic images (%dx%d, seed %d) at %s in %.1f s",
        total,
        size,
        size,
        seed,
        root,
        time.perf_counter() - started,
    )
    return root


def _check_replaceable(root: Path) -> None:
    """Raise DataError unless root is absent, empty, or an earlier synthetic set."""
    if not root.exists() and not root.is_symlink():
        return
    if (
        root.is_dir()
        and not root.is_symlink()
        and (_read_marker(root) is not None or not any(root.iterdir()))
    ):
        return
    raise DataError(f"{root} exists and is not a synthetic data set made by catdog-report; "
                    "refusing to replace it: give an empty or new folder")


def _move_into_place(tmp: Path, root: Path, params: dict[str, Any]) -> None:
    """Rename tmp to root, swapping out an earlier set; tolerate a concurrent identical build."""
    old: Path | None = None
    if root.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        os.replace(root, old / "set")
    try:
        os.replace(tmp, root)
    except OSError:
        if old is not None:  # put the earlier set back before giving up
            os.replace(old / "set", root)
            shutil.rmtree(old, ignore_errors=True)
            old = None
        if _is_complete(root, params):  # another process finished the same set first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
