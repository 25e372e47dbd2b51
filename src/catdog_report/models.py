"""The walkthrough's four layer stacks, layer by layer, ported to Keras 3.

The only change Keras 3 requires: preprocess_input inside a nested Model becomes the
equivalent Rescaling(1/127.5, offset=-1) layer, and model four calls its frozen base
directly in inference mode instead of through a wrapper Model.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from .errors import WeightsError

log = logging.getLogger(__name__)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"


def compile_model(model: Any) -> Any:
    """Adam and sparse categorical cross-entropy on logits, as the walkthrough compiles."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def conv_block(filters: int, padding: str = "valid") -> list[Any]:
    """The walkthrough's block: Conv2D 3x3, MaxPooling2D 2, BatchNormalization, ReLU."""
    from keras import layers

    return [layers.Conv2D(filters, (3, 3), padding=padding), layers.MaxPooling2D((2, 2)),
            layers.BatchNormalization(), layers.Activation("relu")]


def augmentation() -> list[Any]:
    """Random flips both ways and rotations up to 0.2 of a turn, seeded as the walkthrough."""
    from keras import layers

    return [layers.RandomFlip(mode="horizontal_and_vertical", seed=0),
            layers.RandomRotation(factor=0.2, seed=0)]


def preprocess_input() -> Any:
    """mobilenet_v2.preprocess_input (x / 127.5 - 1) as a layer that Keras 3 can save."""
    from keras import layers

    return layers.Rescaling(1.0 / 127.5, offset=-1.0)


def head(units: int) -> list[Any]:
    """Flatten, Dense(units, relu), Dropout 0.5, and the two output logits."""
    from keras import layers

    return [layers.Flatten(), layers.Dense(units, activation="relu"), layers.Dropout(0.5),
            layers.Dense(2)]


def model_one(image_size: int = 160) -> Any:
    """Conv2D 32 → pool → BatchNorm → ReLU, then two Conv2D 64 (relu) with pooling."""
    import keras
    from keras import layers

    return compile_model(keras.Sequential([
        keras.Input(shape=(image_size, image_size, 3)),
        layers.Conv2D(32, (3, 3)),
        layers.MaxPooling2D((2, 2)),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        *head(128),
    ], name="model_one"))


def model_two(image_size: int = 160) -> Any:
    """Random flips and rotations, then three blocks of 32, 64 and 64 filters."""
    import keras

    return compile_model(keras.Sequential([
        keras.Input(shape=(image_size, image_size, 3)),
        *augmentation(),
        *conv_block(32), *conv_block(64), *conv_block(64),
        *head(128),
    ], name="model_two"))


def model_three(image_size: int = 160) -> Any:
    """MobileNetV2's preprocess_input first, then model two's flips, rotations and blocks."""
    import keras

    return compile_model(keras.Sequential([
        keras.Input(shape=(image_size, image_size, 3)),
        preprocess_input(),
        *augmentation(),
        *conv_block(32), *conv_block(64), *conv_block(64),
        *head(128),
    ], name="model_three"))


def check_weights_file(path: Path) -> Path:
    """Fail clearly when a weights file is missing or not HDF5."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"the MobileNetV2 weights file {path} does not exist; pass "
                           f"--weights PATH or set CATDOG_WEIGHTS to a local {WEIGHTS_FILE}")
    with open(path, "rb") as fh:
        if fh.read(8) != HDF5_MAGIC:
            raise WeightsError(f"{path} is not an HDF5 weights file; pass the Keras "
                               f"{WEIGHTS_FILE} (it starts with the HDF5 signature)")
    return path


def mobilenet_base(image_size: int, weights: str | Path | None) -> Any:
    """MobileNetV2 without its top, frozen, from a local file, Keras's imagenet, or random."""
    import keras

    if weights not in (None, "imagenet"):
        weights = str(check_weights_file(Path(str(weights))))
    try:
        base = keras.applications.MobileNetV2(
            input_shape=(image_size, image_size, 3), include_top=False, weights=weights
        )
    except ValueError as exc:
        raise WeightsError(f"the weights {weights} do not fit MobileNetV2 "
                           f"({image_size}x{image_size}, alpha 1.0, no top): {exc}. "
                           f"Use {WEIGHTS_FILE}") from exc
    except OSError as exc:  # h5py's errors and failed downloads
        raise WeightsError(f"could not load the MobileNetV2 weights {weights}: {exc}. "
                           "Pass --weights PATH or set CATDOG_WEIGHTS to a local "
                           f"{WEIGHTS_FILE}") from exc
    base.trainable = False
    return base


def model_four(image_size: int = 160, weights: str | Path | None = "imagenet") -> Any:
    """preprocess_input, RandomFlip, the frozen ImageNet MobileNetV2 (inference mode),
    RandomRotation, same-padded blocks of 32 and 64 filters, Dense 32, Dropout, Dense 2."""
    import keras
    from keras import layers

    base = mobilenet_base(image_size, weights)
    inputs = keras.Input(shape=(image_size, image_size, 3))
    x = preprocess_input()(inputs)
    x = layers.RandomFlip(mode="horizontal_and_vertical", seed=0)(x)
    x = base(x, training=False)
    x = layers.RandomRotation(factor=0.2, seed=0)(x)
    for layer in [*conv_block(32, "same"), *conv_block(64, "same"), *head(32)]:
        x = layer(x)
    return compile_model(keras.Model(inputs, x, name="model_four"))


def resolve_weights(settings: Any) -> tuple[str | None, str]:
    """Which base weights model four uses, and how to describe them: file, Keras, or none."""
    import os

    for given, how in ((settings.weights, "--weights"),
                       (os.environ.get("CATDOG_WEIGHTS"), "CATDOG_WEIGHTS")):
        if given:
            path = check_weights_file(Path(given)).resolve()  # kernels run in content/
            return str(path), f"ImageNet weights from the local file {path.name} ({how})"
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    if (home / "models" / WEIGHTS_FILE).is_file():
        return "imagenet", "ImageNet weights from Keras's cache"
    if settings.profile_spec.synthetic:
        return None, "no ImageNet weights (offline demo): model four's base is untrained"
    return "imagenet", "ImageNet weights downloaded by Keras"


BUILDERS = {
    "model_one": model_one,
    "model_two": model_two,
    "model_three": model_three,
    "model_four": model_four,
}


def build(name: str, image_size: int = 160, weights: str | Path | None = "imagenet") -> Any:
    """A compiled model by name."""
    if name == "model_four":
        return model_four(image_size, weights)
    return BUILDERS[name](image_size)


def source(name: str) -> str:
    """The Python source of a model builder or of a layer helper it uses, for a page."""
    function = globals().get(name)
    if name.startswith("_") or not inspect.isfunction(function):
        raise KeyError(f"no model builder or helper named {name!r} in {__name__}")
    return inspect.getsource(function)
