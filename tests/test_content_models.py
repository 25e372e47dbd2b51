"""The study's four models (content/models.py) are the walkthrough's, layer by layer."""

import numpy as np
import pytest

from catdog_report import models
from catdog_report.config import Settings

# The walkthrough's layer stacks (../shared/seed/), in order, and their parameter counts under
# Keras 3: (total, trainable, frozen). Non-trainable beyond "frozen" are BatchNorm's moving
# statistics (2 per channel).
BLOCK = ["Conv2D", "MaxPooling2D", "BatchNormalization", "Activation"]
HEAD = ["Flatten", "Dense", "Dropout", "Dense"]
AUGMENT = ["RandomFlip", "RandomRotation"]
LAYERS = {
    "model_one": BLOCK + ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D"] + HEAD,
    "model_two": AUGMENT + BLOCK * 3 + HEAD,
    "model_three": ["Rescaling"] + AUGMENT + BLOCK * 3 + HEAD,
    "model_four": ["Rescaling", "RandomFlip", "Functional", "RandomRotation"] + BLOCK * 2 + HEAD,
}
COUNTS = {
    "model_one": (2_711_042, 2_710_978, 0),
    "model_two": (2_711_554, 2_711_234, 0),
    "model_three": (2_711_554, 2_711_234, 0),
    "model_four": (2_647_682, 389_506, 2_257_984),
}


def _types(model: object) -> list[str]:
    return [type(layer).__name__ for layer in model.layers  # type: ignore[attr-defined]
            if type(layer).__name__ != "InputLayer"]


def _counts(model: object) -> tuple[int, int, int]:
    from catdog_report.training import parameter_counts

    p = parameter_counts(model)
    return p["total"], p["trainable"], p["frozen"]


def _build(name: str) -> object:
    return models.build(name, Settings(), weights=None)


def test_model_one_is_the_walkthroughs() -> None:
    model = _build("model_one")
    assert _types(model) == LAYERS["model_one"]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 64]
    assert [c.activation.__name__ for c in convs] == ["linear", "relu", "relu"]
    assert _counts(model) == COUNTS["model_one"]


def test_model_two_is_the_walkthroughs() -> None:
    model = _build("model_two")
    assert _types(model) == LAYERS["model_two"]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [(c.filters, c.activation.__name__, c.padding) for c in convs] == [
        (32, "linear", "valid"), (64, "linear", "valid"), (64, "linear", "valid")]
    flip, rotate = model.layers[:2]
    assert (flip.mode, flip.seed, rotate.factor, rotate.seed) == (
        "horizontal_and_vertical", 0, (-0.2, 0.2), 0)
    assert _counts(model) == COUNTS["model_two"]


def test_model_three_is_the_walkthroughs() -> None:
    model = _build("model_three")
    assert _types(model) == LAYERS["model_three"]
    assert _types(model)[1:] == _types(_build("model_two"))  # preprocess first, then model two
    assert _counts(model) == COUNTS["model_three"]


def test_model_four_is_the_walkthroughs() -> None:
    model = _build("model_four")
    assert _types(model) == LAYERS["model_four"]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [(c.filters, c.padding) for c in convs] == [(32, "same"), (64, "same")]
    dense = [layer.units for layer in model.layers if type(layer).__name__ == "Dense"]
    assert dense == [32, 2]
    assert _counts(model) == COUNTS["model_four"]


@pytest.mark.parametrize("name", list(COUNTS))
def test_every_model_has_two_logits(name: str) -> None:
    assert _build(name).output_shape == (None, 2)


def test_model_three_scaling_equals_preprocess_input() -> None:
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (2, 160, 160, 3)).astype("float32")
    rescale = _build("model_three").layers[0]
    assert isinstance(rescale, keras.layers.Rescaling)
    expected = keras.applications.mobilenet_v2.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(rescale(x)), expected, atol=1e-6)


def test_model_four_base_is_frozen_and_called_in_inference_mode() -> None:
    model = _build("model_four")
    base = next(layer for layer in model.layers if layer.name.startswith("mobilenetv2"))
    assert not base.trainable and base.count_params() == 2_257_984
    config = model.get_config()
    node = next(layer for layer in config["layers"] if layer["name"] == base.name)
    assert node["inbound_nodes"][0]["kwargs"].get("training") is False
