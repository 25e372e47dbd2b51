"""Build a study's model with its declared builder (study.yml), and show a builder's code."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import TrainingError, WeightsError
from .study import builder_kwargs, builder_source

log = logging.getLogger(__name__)


def build(name: str, settings: Settings, weights: str | Path | None = None,
          parent: Any = None) -> Any:
    """The compiled model `name`: its builder called with the keyword arguments it names
    among image_size, weights (the resolved base, for a model that declares one) and parent
    (the trained parent model, for one that starts_from another)."""
    study = settings.study
    spec = study.model(name)
    fn = study.builder(name)
    available: dict[str, Any] = {"image_size": settings.image_size,
                                 "weights": str(weights) if spec.weights and weights else None,
                                 "parent": parent}
    try:
        model = fn(**builder_kwargs(fn, available))
    except (ValueError, OSError) as exc:
        if spec.weights and available["weights"]:
            raise WeightsError(f"the {spec.weights} weights {available['weights']} could not be "
                               f"loaded by {spec.builder} ({type(exc).__name__}: {exc}); pass "
                               "--weights or CATDOG_WEIGHTS with the no-top file for this "
                               "image size") from exc
        raise TrainingError(f"the builder {spec.builder} of {name} failed: "
                            f"{type(exc).__name__}: {exc}") from exc
    if getattr(model, "optimizer", None) is None or not hasattr(model, "fit"):
        raise TrainingError(f"the builder {spec.builder} of {name} must return a compiled "
                            f"Keras model (call model.compile(...) before returning it)")
    return model


def source(settings: Settings, *functions: str) -> str:
    """The source of functions in the study's own code, read without importing it."""
    return "\n\n\n".join(builder_source(settings.study, f).rstrip() for f in functions)


FLOAT32_LAYERS = ("RandomRotation", "RandomFlip", "RandomZoom", "RandomTranslation")


def float32_augmentation(model: Any) -> Any:
    """Under a bfloat16 policy, the same model with its image augmentation layers in float32
    (TensorFlow has no bfloat16 gradient through their image transforms: a rotation
    between trainable layers fails to train), its weights and compile settings kept."""
    import keras

    if not any(type(layer).__name__ in FLOAT32_LAYERS for layer in model.layers):
        return model

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if type(layer).__name__ in FLOAT32_LAYERS:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    copy.compile_from_config(model.get_compile_config())
    return copy
