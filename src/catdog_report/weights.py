"""Pretrained base weights a study's model may declare (`weights: mobilenet_v2`): where the
file comes from (--weights, CATDOG_WEIGHTS, Keras's cache, Keras's download) and its id."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from . import environment
from .cache import file_digest
from .errors import WeightsError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FILES = {"mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"}
"""Each base's Keras weights file name (the one place it is written), by image size."""


def file_name(base: str, image_size: int) -> str:
    """The Keras weights file name of a base at an image size."""
    return FILES[base].format(size=image_size)


def study_base(study: Any) -> str | None:
    """The pretrained base the study's models declare (weights:), or None."""
    bases = sorted({m.weights for m in study.models.values() if m.weights})
    return bases[0] if bases else None


def expected_file(settings: Any) -> str:
    """The weights file name a build expects: its study's base at its image size."""
    return file_name(study_base(settings.study) or next(iter(FILES)), settings.image_size)


def check_weights_file(path: Path, base: str, image_size: int) -> Path:
    """Fail clearly when a weights file is missing or not HDF5."""
    path = Path(path).expanduser()
    name = file_name(base, image_size)
    if not path.is_file():
        raise WeightsError(f"the {base} weights file {path} does not exist; pass "
                           f"--weights PATH or set CATDOG_WEIGHTS to a local {name}")
    with open(path, "rb") as fh:
        if fh.read(8) != HDF5_MAGIC:
            raise WeightsError(f"{path} is not an HDF5 weights file; pass the Keras "
                               f"{name} (it starts with the HDF5 signature)")
    return path


def resolve(settings: Any) -> tuple[str | None, str]:
    """The base weights the study's models that declare one use, and their description:
    a local file, Keras's imagenet (cache or download), or none for an offline demo."""
    base = study_base(settings.study)
    if base is None:
        return None, ""
    for given, how in ((settings.weights, "--weights"),
                       (environment.read().weights, environment.variable("weights"))):
        if given:
            path = check_weights_file(Path(given), base, settings.image_size).resolve()
            return str(path), f"ImageNet weights from the local file {path.name} ({how})"
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    if (home / "models" / file_name(base, settings.image_size)).is_file():
        return "imagenet", "ImageNet weights from Keras's cache"
    if settings.profile_spec.synthetic:
        return None, "no ImageNet weights (offline demo): the base is untrained"
    return "imagenet", "ImageNet weights downloaded by Keras"


def weights_id(weights: str | Path | None) -> str:
    """What the base weights were: a file's checksum, 'imagenet' or 'random'."""
    if weights is None:
        return "random"
    if str(weights) == "imagenet":
        return "imagenet"
    path = Path(weights)
    stat = path.stat()
    return _file_id(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _file_id(path: str, size: int, mtime_ns: int) -> str:
    """A weights file's checksum, hashed once per process while its size and time stay
    (run keys, memo keys and page inputs each ask for it, per seed and model)."""
    return "sha256:" + file_digest(Path(path))
