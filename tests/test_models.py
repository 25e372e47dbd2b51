from pathlib import Path

import numpy as np
import pytest

from catdog_report import models
from catdog_report.errors import WeightsError

# Total and trainable parameters at 160x160, counted by hand from the layer stacks:
# convs 896 + 18,496 + 36,928; dense 20,736*128+128 = 2,654,336 and 258;
# BatchNorm 4*channels (half of it trainable).
COUNTS = {
    "model_one": (2_711_042, 2_710_978),
    "model_two": (2_711_554, 2_711_234),
    "model_three": (2_711_554, 2_711_234),
    "model_four": (3_034_914, 776_674),
}


def _trainable(model: object) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_counts_at_160(name: str) -> None:
    model = models.build(name, 160, weights=None)
    assert (model.count_params(), _trainable(model)) == COUNTS[name]
    assert model.output_shape == (None, 2)


def test_model_three_scaling_equals_preprocess_input() -> None:
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (2, 160, 160, 3)).astype("float32")
    rescale = models.model_three().layers[2]
    assert isinstance(rescale, keras.layers.Rescaling)
    expected = keras.applications.mobilenet_v2.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(rescale(x)), expected, atol=1e-6)


def test_model_four_base_is_frozen_and_called_in_inference_mode() -> None:
    model = models.model_four(160, None)
    base = next(layer for layer in model.layers if layer.name.startswith("mobilenetv2"))
    assert not base.trainable and base.count_params() == 2_257_984


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist.*CATDOG_WEIGHTS"):
        models.model_four(160, tmp_path / "missing.h5")


def test_weights_file_that_is_not_hdf5(tmp_path: Path) -> None:
    bad = tmp_path / "weights.h5"
    bad.write_text("<html>404 not found</html>")
    with pytest.raises(WeightsError, match="not an HDF5"):
        models.model_four(160, bad)


def test_weights_for_another_architecture(tmp_path: Path) -> None:
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(WeightsError, match="do not fit MobileNetV2"):
        models.model_four(160, path)


def test_weights_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from catdog_report.config import Settings

    h5 = tmp_path / "w.h5"
    h5.write_bytes(models.HDF5_MAGIC + b"\0" * 8)
    env = tmp_path / "env.h5"
    env.write_bytes(models.HDF5_MAGIC)
    monkeypatch.setenv("CATDOG_WEIGHTS", str(env))
    assert models.resolve_weights(Settings(weights=h5))[0] == str(h5)
    assert models.resolve_weights(Settings())[0] == str(env)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CATDOG_WEIGHTS", "env.h5")  # relative: made absolute for the kernels
    assert models.resolve_weights(Settings())[0] == str(env)
    monkeypatch.delenv("CATDOG_WEIGHTS")
    assert models.resolve_weights(Settings())[0] == "imagenet"
    assert models.resolve_weights(Settings(profile="demo")) == (
        None, "no ImageNet weights (offline demo): model four's base is untrained")
    cache = tmp_path / "keras-home" / "models" / models.WEIGHTS_FILE
    cache.parent.mkdir(parents=True)
    cache.write_bytes(models.HDF5_MAGIC)
    assert models.resolve_weights(Settings(profile="demo"))[1].endswith("Keras's cache")


def test_source_is_shown() -> None:
    assert "Conv2D(32, 3" in models.source("model_one")
