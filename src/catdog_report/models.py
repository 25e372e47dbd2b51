"""The walkthrough's four layer stacks, ported to Keras 3 (functional API, no nested Sequential)."""

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


def model_one(image_size: int = 160) -> Any:
    """Three convolutions with max-pooling, BatchNorm after the first, Dense 128, Dropout."""
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input(shape=(image_size, image_size, 3)),
        layers.Conv2D(32, 3, activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(2),
    ], name="model_one")
    return compile_model(model)


def model_two(image_size: int = 160, preprocess: bool = False) -> Any:
    """Model one with flips and rotations in front and BatchNorm+ReLU after every conv."""
    import keras
    from keras import layers

    stack: list[Any] = [
        keras.Input(shape=(image_size, image_size, 3)),
        layers.RandomFlip("horizontal_and_vertical"),
        layers.RandomRotation(0.2),
    ]
    if preprocess:  # mobilenet_v2.preprocess_input: x / 127.5 - 1
        stack.append(layers.Rescaling(1.0 / 127.5, offset=-1.0))
    for filters in (32, 64, 64):
        stack += [
            layers.Conv2D(filters, 3),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(),
        ]
    stack += [
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(2),
    ]
    return compile_model(keras.Sequential(stack, name="model_three" if preprocess
                                          else "model_two"))


def model_three(image_size: int = 160) -> Any:
    """Model two behind MobileNetV2's preprocess_input scaling (to [-1, 1])."""
    return model_two(image_size, preprocess=True)


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
    """Frozen ImageNet MobileNetV2 behind preprocessing and flips, then a small conv head."""
    import keras
    from keras import layers

    base = mobilenet_base(image_size, weights)
    inputs = keras.Input(shape=(image_size, image_size, 3))
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)  # preprocess_input
    x = layers.RandomFlip("horizontal_and_vertical")(x)
    x = base(x, training=False)
    x = layers.RandomRotation(0.2)(x)
    for filters in (64, 64):
        x = layers.Conv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(2)(x)
    return compile_model(keras.Model(inputs, outputs, name="model_four"))


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
    """The Python source of a model's builder, for the page to show."""
    return inspect.getsource(BUILDERS[name])
