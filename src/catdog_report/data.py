"""Find, check and split a study's images; decode them once; build tf.data pipelines."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import environment
from .cache import digest, sweep_temp_files, write_atomic
from .config import Settings
from .errors import DataError
from .escape import terminal
from .study import DataSpec

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "validation")
CHECK_IN_THREADS = 64  # files to check from which two threads check them
TEST_FRACTION = 5  # one fifth of the validation images is the test split
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
SCAN_FORMAT = 2  # 2: problems in words, broken links listed


@dataclass(frozen=True)
class Split:
    """One split: image paths relative to the data root, and integer labels."""

    name: str
    files: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class Dataset:
    """The three disjoint splits of one data folder, with the manifest that names them."""

    root: Path
    class_names: tuple[str, ...]
    train: Split
    validation: Split
    test: Split
    manifest: str
    source: str
    skipped: tuple[tuple[str, str], ...] = field(default=())

    @property
    def splits(self) -> dict[str, Split]:
        """The splits by name, in train/validation/test order."""
        return {s.name: s for s in (self.train, self.validation, self.test)}


def keras_cache_candidates(folder: str) -> list[Path]:
    """Where keras.utils.get_file may have left an extracted copy of the data set."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
    return [home / folder, home / f"{folder}.zip" / folder, home / f"{folder}_extracted" / folder]


def locate(data_dir: Path | None, spec: DataSpec, *, download: bool = True) -> tuple[Path, str]:
    """Find the data: --data-dir, CATDOG_DATA_DIR, Keras's cache, then the study's URL."""
    tried: list[str] = []
    for given, how in ((data_dir, "--data-dir"),
                       (environment.read().data_dir, environment.variable("data_dir"))):
        if given is not None:
            root = Path(given).expanduser().absolute()  # page kernels run in content/
            nested = root / spec.name
            if not root.is_dir() and not root.exists():
                raise DataError(f"the data folder {root} given by {how} does not exist; "
                                f"point {how} at a folder holding train/ and validation/")
            if not (root / "train").exists() and (nested / "train").is_dir():
                root = nested
            return root, f"local folder ({how})"
    for candidate in keras_cache_candidates(spec.name):
        tried.append(str(candidate))
        if (candidate / "train").is_dir():
            return candidate, "Keras cache"
    if download and spec.url:
        try:
            import keras

            path = Path(keras.utils.get_file(origin=spec.url, extract=True))
            root = path / spec.name if (path / spec.name).is_dir() else path
            return root, f"downloaded from {spec.url}"
        except Exception as exc:  # network errors come in many types
            tried.append(f"{spec.url} ({type(exc).__name__}: {exc})")
    raise DataError(
        f"could not find the {spec.name} data set; tried: " + "; ".join(tried)
        + (". Download and unzip it from the URL above, then" if spec.url else ". ")
        + " pass --data-dir PATH or set CATDOG_DATA_DIR=PATH (the folder holding train/ and "
        "validation/)"
    )


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_classes(root: Path, spec: DataSpec) -> tuple[str, ...]:
    """Check the folder layout against the study's classes; return them in label order."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; the data set must be a folder with "
                        "train/ and validation/ inside")
    names: dict[str, tuple[str, ...]] = {}
    for split in SPLIT_FOLDERS:
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{folder} is missing: the data folder needs train/ and "
                            "validation/, each with one sub-folder per class ("
                            + ", ".join(f"{c}/" for c in spec.classes) + ")")
        names[split] = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    if names["train"] != names["validation"]:
        raise DataError(f"class folders differ: {root / 'train'} has {list(names['train'])} "
                        f"but {root / 'validation'} has {list(names['validation'])}; "
                        "give both the same class sub-folders")
    found, wanted = set(names["train"]), set(spec.classes)
    if found != wanted:
        extra = sorted(found - wanted)
        missing = sorted(wanted - found)
        folders = [str(root / split / c) for split in SPLIT_FOLDERS for c in extra]
        what = "; ".join(part for part in (
            f"extra class folder(s) {', '.join(folders)}" if extra else "",
            f"no folder for the class(es) {', '.join(missing)}" if missing else "") if part)
        raise DataError(f"the data set in {root} does not fit the study: {what}. The study "
                        f"declares the classes {list(spec.classes)} (data.classes in "
                        "study.yml): remove or rename the folders, or declare the classes")
    for split in SPLIT_FOLDERS:
        for cls in spec.classes:
            folder = root / split / cls
            if not any(p.is_file() for p in folder.iterdir()):
                raise DataError(f"the class folder {folder} is empty; put its images there "
                                "or remove the class from both splits")
    return spec.classes


def check_image(path: Path) -> str | None:
    """None when Pillow decodes the whole image, else why it can't be used, in words."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return _name_problem(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({os_reason(exc)})"
    return _image_problem(data)


def _name_problem(path: Path) -> str:
    return (f"not an image file name ({path.suffix or 'no extension'}; "
            f"images end in {', '.join(sorted(IMAGE_SUFFIXES))})")


def _image_problem(data: bytes) -> str | None:
    """None when Pillow decodes these bytes, else why not."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        return "empty file (0 bytes)"
    try:
        with Image.open(io.BytesIO(data)) as img:
            # a JPEG is checked at an eighth of its size: every byte of it is still decoded,
            # but the inverse DCT is cheaper (twice as fast; truncated or broken data fails
            # the same way); other formats ignore the draft
            img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except UnidentifiedImageError:
        return "cannot be decoded: not a recognised image format"
    except Exception as exc:  # Pillow raises many types for bad files
        return f"cannot be decoded: {pillow_message(exc)}"
    return None


def pillow_message(exc: BaseException) -> str:
    """Pillow's message in words: object reprs such as <_io.BytesIO object at 0x…> removed."""
    text = re.sub(r"\s*'?<[^<>]*\bat 0x[0-9a-fA-F]+>'?", "", str(exc))
    text = re.sub(r"\s+", " ", text).strip(" :;,")
    return text or f"the image data is broken ({type(exc).__name__})"


def os_reason(exc: OSError) -> str:
    """An OSError's cause in lower-case words, without the path."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket",
         stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def entry_problem(path: Path) -> str | None:
    """Why an entry in a class folder is no file to read, or None for a regular file (or a
    symbolic link to one) and for a folder (searched in turn)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot be examined ({os_reason(exc)})"
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return f"a symbolic link to {target}, which does not exist"
        except OSError as exc:
            return f"a symbolic link to {target}, which cannot be followed ({os_reason(exc)})"
        if stat.S_ISDIR(st.st_mode):
            return f"a symbolic link to the folder {target}; links to folders are not followed"
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    return f"{KINDS.get(stat.S_IFMT(st.st_mode), 'a special file')}, not a regular file"


def walk(root: Path) -> Iterator[tuple[str, Path, str | None, os.stat_result | None]]:
    """Every file under train/ and validation/: (path relative to root, path, why it is
    unusable or None when it is a regular file inside a class folder, and its stat when
    the walk has it)."""
    for split in SPLIT_FOLDERS:
        for entry in sorted((root / split).iterdir()):
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir():  # a class folder (a link to a folder counts, as in list_classes)
                yield from _walk_class(entry, rel)
            else:
                outside = f"not inside a class folder; only the class folders of {split}/ are read"
                yield rel, entry, entry_problem(entry) or outside, None


def _walk_class(folder: Path, rel: str
                ) -> Iterator[tuple[str, Path, str | None, os.stat_result | None]]:
    """The files of a class folder and of the folders inside it (used, as Keras does); a
    regular file costs one lstat (os.scandir knows its type), anything else is examined."""
    try:
        with os.scandir(folder) as listing:
            children = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        yield rel + "/", folder, f"a folder that cannot be read ({os_reason(exc)})", None
        return
    for child in children:
        path, child_rel = folder / child.name, f"{rel}/{child.name}"
        try:
            if child.is_file(follow_symlinks=False):
                yield child_rel, path, None, child.stat(follow_symlinks=False)
                continue
        except OSError:
            pass  # gone or unreadable meanwhile: entry_problem says which
        problem = entry_problem(path)
        if problem is None and path.is_dir():
            yield from _walk_class(path, child_rel)
        else:
            yield child_rel, path, problem, None


def _check_file(path: Path) -> dict[str, Any]:
    """Read a file once: its checksum and, if it is no usable image, why."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return {"sha256": None, "problem": _name_problem(path)}
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"sha256": None, "problem": f"cannot be read ({os_reason(exc)})", "retry": True}
    return {"sha256": hashlib.sha256(data).hexdigest(), "problem": _image_problem(data)}


def _check_files(paths: list[Path]) -> list[dict[str, Any]]:
    """_check_file of each path, two at a time when there are many: Pillow's decoder and
    hashlib release the GIL, and nothing else runs while a build scans its data."""
    if len(paths) < CHECK_IN_THREADS:
        return [_check_file(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(2, os.cpu_count() or 1)) as pool:
        return list(pool.map(_check_file, paths))


def _scan_folder(root: Path, cache_root: Path) -> dict[str, dict[str, Any]]:
    """Check every file once; remember results by (size, mtime) in a scan cache.

    Every entry that is not a usable image gets a problem in words: broken links, special
    files, unreadable files or folders, other names, empty or undecodable images.
    """
    record_path = cache_root / "scan" / f"{digest(str(root.resolve()))}.json"
    for folder in ("scan", "decoded"):  # temp files of killed builds
        sweep_temp_files(cache_root / folder)
    try:
        known = json.loads(record_path.read_text())
        known = known["files"] if known.get("format") == SCAN_FORMAT else {}
    except (OSError, ValueError, KeyError):
        known = {}
    result: dict[str, dict[str, Any]] = {}
    record: dict[str, dict[str, Any]] = {}
    to_check: dict[str, Path] = {}
    for rel, path, problem, st in walk(root):
        if problem is not None:
            result[rel] = {"stamp": None, "sha256": None, "problem": problem}
            continue
        st = st or path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = known.get(rel)
        if entry is None or entry["stamp"] != stamp:
            to_check[rel] = path
            entry = {"stamp": stamp}
        result[rel] = entry
    for rel, checked in zip(to_check, _check_files(list(to_check.values())), strict=True):
        result[rel] = result[rel] | checked
    for rel, entry in result.items():
        if entry["stamp"] is not None and not entry.pop("retry", False):
            record[rel] = entry  # an unreadable file is read again next time
    if record != known:
        write_atomic(record_path, json.dumps({"format": SCAN_FORMAT, "files": record}))
    return result


def _pick(files: list[str], limit: int | None, rng: random.Random) -> list[str]:
    files = sorted(files, key=_natural)
    rng.shuffle(files)
    return files if limit is None else files[:limit]


def scan(settings: Settings, root: Path | None = None, source: str = "") -> Dataset:
    """Check the data folder and split it by file list; no image is decoded twice."""
    spec = settings.study.data
    if root is None:
        root, source = locate(settings.data_dir, spec)
    classes = list_classes(root, spec)
    checked = _scan_folder(root, settings.cache_root)
    skipped = tuple((rel, e["problem"]) for rel, e in checked.items() if e["problem"])
    for rel, problem in skipped:
        log.warning("skipping %s: %s", terminal(rel), terminal(problem))
    profile = settings.profile_spec
    rng = random.Random(settings.seed)
    parts: dict[str, tuple[list[str], list[int]]] = {s: ([], []) for s in
                                                      ("train", "validation", "test")}
    for label, cls in enumerate(classes):
        def usable(split: str, cls: str = cls) -> list[str]:
            prefix = f"{split}/{cls}/"
            return [r for r, e in checked.items() if r.startswith(prefix) and not e["problem"]]

        train = _pick(usable("train"), profile.train_per_class, rng)
        pool = _pick(usable("validation"), profile.validation_per_class, rng)
        if not train or len(pool) < 2:
            raise DataError(f"too few usable images for class {cls!r} in {root}: "
                            f"{len(train)} in train/, {len(pool)} in validation/ "
                            "(need at least 1 and 2)")
        n_test = max(1, round(len(pool) / TEST_FRACTION))
        for split, files in (("train", train), ("test", pool[:n_test]),
                             ("validation", pool[n_test:])):
            parts[split][0].extend(files)
            parts[split][1].extend([label] * len(files))
    splits = {name: Split(name, tuple(f), tuple(y)) for name, (f, y) in parts.items()}
    manifest = digest({name: [[f, checked[f]["sha256"]] for f in s.files]
                       for name, s in splits.items()} | {"classes": list(classes)})
    return Dataset(root, classes, splits["train"], splits["validation"], splits["test"],
                   manifest, source, skipped)


def decode(path: Path, size: int) -> np.ndarray:
    """One image as uint8 RGB, resized (bilinear) to size x size, as Keras loads it."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def arrays(dataset: Dataset, settings: Settings) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decoded splits as (images uint8 NHWC, labels int32), cached by manifest and size."""
    import numpy as np
    size = settings.image_size
    path = settings.cache_root / "decoded" / f"{dataset.manifest[:32]}-{size}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {s: (npz[f"{s}_x"], npz[f"{s}_y"]) for s in dataset.splits}
        except (OSError, ValueError, KeyError) as exc:
            log.warning("decoded-image cache %s is unreadable (%s); decoding again", path, exc)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, split in dataset.splits.items():
        x = np.stack([decode(dataset.root / f, size) for f in split.files])
        out[name] = (x, np.asarray(split.labels, dtype=np.int32))
    buffer = io.BytesIO()
    arrays_by_name = {f"{s}_{k}": v for s, xy in out.items() for k, v in zip("xy", xy, strict=True)}
    np.savez(buffer, **arrays_by_name)
    write_atomic(path, buffer.getvalue())
    log.info("decoded %d images once into %s", sum(len(x) for x, _ in out.values()), path.name)
    return out


def pipelines(data: dict[str, tuple[np.ndarray, np.ndarray]], batch_size: int,
              seed: int) -> dict[str, Any]:
    """tf.data pipelines: float32 batches, shuffled training, two batches prefetched.

    The images are decoded already, so there is nothing for tf.data's autotuner to tune;
    it is off because, with it on, the end of every fit() of a reshuffling dataset waited
    about 2 s for it (measured on model two; the batches and their order are the same).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    out = {}
    for name, (x, y) in data.items():
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if name == "train":
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b))
        out[name] = ds.prefetch(2).with_options(options)
    return out
