"""Building a study's model through its declared builder, and showing the study's code."""

from pathlib import Path

import pytest

from catdog_report import models
from catdog_report.config import Settings
from catdog_report.errors import TrainingError, WeightsError
from test_study import write_study


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"could not be loaded by content/models.py:model_four"):
        models.build("model_four", Settings(image_size=160), tmp_path / "missing.h5")


def test_weights_for_another_architecture(tmp_path: Path) -> None:
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(WeightsError, match=r"mobilenet_v2 weights .* could not be loaded"):
        models.build("model_four", Settings(), path)


def test_a_builder_gets_only_what_it_names(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path, study_file=write_study(tmp_path), image_size=40)
    model = models.build("small", settings)
    assert model.input_shape == (None, 40, 40, 3) and model.output_shape == (None, 2)
    assert models.build("tuned", settings, parent=model) is model  # parent= is passed


def test_a_builder_that_returns_no_compiled_model(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path, study_file=write_study(tmp_path), image_size=40)
    (tmp_path / "builders.py").write_text(
        (tmp_path / "builders.py").read_text().replace(
            '    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",\n'
            '                  metrics=["accuracy"])\n', ""))
    with pytest.raises(TrainingError, match=r"must return a compiled Keras model"):
        models.build("small", settings)


def test_source_is_read_from_the_study_code() -> None:
    text = models.source(Settings(), "conv_block", "model_one")
    assert text.startswith("def conv_block(filters, padding=\"valid\"):")
    assert "layers.Conv2D(32, (3, 3))," in text and "def model_one(image_size):" in text
    with pytest.raises(Exception, match=r"no function 'os'"):
        models.source(Settings(), "os")


def test_bf16_keeps_augmentation_in_float32_so_model_four_trains() -> None:
    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.build("model_four", Settings(image_size=128), None)
        kept = models.float32_augmentation(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(0).uniform(0, 255, (4, 128, 128, 3)).astype("float32")
    y = np.array([0, 1, 0, 1])
    with pytest.raises(TypeError, match="bfloat16"):  # TensorFlow: no bf16 rotation gradient
        model.train_on_batch(x, y)
    assert np.isfinite(kept.train_on_batch(x, y)[0])
    assert {type(layer).__name__: layer.dtype_policy.name for layer in kept.layers
            if type(layer).__name__.startswith("Random")} == {"RandomFlip": "float32",
                                                              "RandomRotation": "float32"}
    assert kept.get_layer(index=6).dtype_policy.name == "mixed_bfloat16"  # the rest stays
    assert kept.count_params() == model.count_params() and not kept.layers[3].trainable
