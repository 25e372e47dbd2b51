"""The offline demo data set on disk: the images the study's own data.generator draws
(declared in study.yml), written as a folder of one sub-folder per class and split,
atomically, and reused while its inputs (the generator's source among them) are unchanged.

The engine knows no class: it calls ``draw(rng, class_name, size)`` for each image of each
class of ``data.classes``, in the layout of a real data set::

    <root>/train/<class>/<class>.0.jpg ... <class>.{n-1}.jpg
    <root>/validation/<class>/<class>.{n}.jpg ... <class>.{n+m-1}.jpg
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cache import digest, file_digest, write_atomic
from .errors import DataError
from .study import Study, check_generator

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""Bumped whenever the engine's layout or seeding changes, so that old sets are rebuilt
(2: the study's generator draws, class folders name the files)."""

MARKER_NAME = "synthetic.json"
"""Name of the marker file written (last) into a complete data set."""

SPLITS: tuple[str, str] = ("train", "validation")
"""Split folder names, in split-id order."""

TRAIN_PER_CLASS, VALIDATION_PER_CLASS = 300, 100  # when a synthetic profile gives no counts
_JPEG_QUALITY = 90


@dataclass(frozen=True)
class Drawer:
    """A study's image generator: its reference in study.yml, the classes it draws, the
    digest of the file it is defined in (what a set's marker records), and the function
    itself (rng, class_name, size) -> image."""

    ref: str
    classes: tuple[str, ...]
    source: str
    draw: Callable[[np.random.Generator, str, int], Any]


def drawer(study: Study) -> Drawer:
    """The study's data.generator, checked from its source, then imported."""
    path = check_generator(study)
    return Drawer(study.generator_ref(), study.data.classes, file_digest(path),
                  study.generator())


def generate_for(settings: Any, root: Path | None = None) -> Path:
    """The demo data set a synthetic profile of the study uses (in the cache unless a root
    is given), made once per generator source, classes, seed, counts and size."""
    found = drawer(settings.study)
    spec = settings.profile_spec
    if root is None:
        key = digest([FORMAT_VERSION, found.ref, found.source, list(found.classes)])[:12]
        root = settings.cache_root / "synthetic" / f"seed{settings.seed}-{key}"
    return generate(root, found, train_per_class=spec.train_per_class or TRAIN_PER_CLASS,
                    validation_per_class=spec.validation_per_class or VALIDATION_PER_CLASS,
                    size=settings.image_size, seed=settings.seed)


def expected_files(classes: Sequence[str], train_per_class: int,
                   validation_per_class: int) -> list[Path]:
    """List the relative paths of every image in a set with these classes and counts.

    Args:
        classes: The class folders, in label order.
        train_per_class: Images per class in ``train``.
        validation_per_class: Images per class in ``validation``.

    Returns:
        Relative paths such as ``train/<class>/<class>.0.jpg``, in generation order.
    """
    out: list[Path] = []
    for split, start, count in _split_ranges(train_per_class, validation_per_class):
        for name in classes:
            for idx in range(start, start + count):
                out.append(Path(split) / name / f"{name}.{idx}.jpg")
    return out


def _split_ranges(train: int, validation: int) -> Sequence[tuple[str, int, int]]:
    """(split, first file number, count) for each split; numbers continue across splits."""
    return ((SPLITS[0], 0, train), (SPLITS[1], train, validation))


def _params(
    found: Drawer, train_per_class: int, validation_per_class: int, size: int, seed: int
) -> dict[str, Any]:
    """The marker content describing one set: a change to any of it (the drawer's source
    included) makes a new set."""
    return {
        "format_version": FORMAT_VERSION,
        "generator": found.ref,
        "generator_source": found.source,
        "classes": list(found.classes),
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
        for rel in expected_files(params["classes"], params["train_per_class"],
                                  params["validation_per_class"])
    )


def _write_set(tmp: Path, found: Drawer, params: dict[str, Any]) -> None:
    """Draw and save every image into tmp, then the marker."""
    seed, size = params["seed"], params["size"]
    for split_id, (split, start, count) in enumerate(
        _split_ranges(params["train_per_class"], params["validation_per_class"])
    ):
        for class_id, name in enumerate(found.classes):
            folder = tmp / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for idx in range(start, start + count):
                rng = np.random.default_rng([seed, split_id, class_id, idx])
                _save(found, found.draw(rng, name, size), size, folder / f"{name}.{idx}.jpg")
            logger.debug("wrote %d %s images to %s", count, name, folder)
    write_atomic(tmp / MARKER_NAME, json.dumps(params, indent=2, sort_keys=True) + "\n")


def _save(found: Drawer, img: Any, size: int, path: Path) -> None:
    """Save one drawn image as JPEG, or fail naming the generator if it drew no image."""
    from PIL import Image

    if not isinstance(img, Image.Image) or img.size != (size, size):
        what = (f"a {img.size[0]}x{img.size[1]} image" if isinstance(img, Image.Image)
                else f"{type(img).__name__}")
        raise DataError(f"data.generator {found.ref} returned {what} for {path.name}; it must "
                        f"return a {size}x{size} PIL image (draw(rng, class_name, size))")
    img.convert("RGB").save(path, "JPEG", quality=_JPEG_QUALITY)


def generate(
    root: Path,
    found: Drawer,
    *,
    train_per_class: int = TRAIN_PER_CLASS,
    validation_per_class: int = VALIDATION_PER_CLASS,
    size: int = 160,
    seed: int = 0,
) -> Path:
    """Write the data set a drawer draws under ``root`` and return ``root``.

    The set is built in a temporary sibling folder of ``root`` and moved into
    place with a rename only when complete, so ``root`` never holds a partial
    set; if drawing fails the temporary folder is removed and the error is
    re-raised.  A marker file ``synthetic.json`` (format version, the
    generator, its source digest, the classes and the parameters) is written
    into the set last.

    If ``root`` already holds a complete set with the same parameters this
    returns at once without touching any file.  If ``root`` holds a synthetic
    set made with other parameters (another generator source, or an older
    format), it is replaced.  An empty ``root`` folder is replaced too; any
    other existing ``root`` is left alone and ``DataError`` is raised.

    Args:
        root: Destination folder; its parent is created if needed.
        found: The study's generator (see ``drawer``).
        train_per_class: Images per class in ``train`` (``<class>.0`` .. ``<class>.{n-1}``).
        validation_per_class: Images per class in ``validation``, numbered on
            from the train images as in the real data set.
        size: Width and height of each square JPEG image, in pixels (>= 16).
        seed: Non-negative seed; the same seed and parameters give
            byte-identical files.

    Returns:
        ``root``.

    Raises:
        DataError: If a parameter is out of range, or ``root`` exists and is
            neither empty nor a synthetic set made by this module, or the
            generator returns something other than an image of the size asked for.
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
    params = _params(found, train_per_class, validation_per_class, size, seed)
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
        _write_set(tmp, found, params)
        _move_into_place(tmp, root, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = len(found.classes) * (train_per_class + validation_per_class)
    logger.info(
        "generated %d synthetic images (%dx%d, seed %d, %s) at %s in %.1f s",
        total,
        size,
        size,
        seed,
        found.ref,
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
