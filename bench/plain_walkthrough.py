"""The walkthrough as a plain script in Keras 3: the baseline catdog-report is timed against.

No cache, no pages, no site: `image_dataset_from_directory` on a folder laid out as
`<root>/{train,validation,test}/<class>/<image>` (bench.py fills it with symlinks to exactly
the quick profile's split files), then for each of the four models `fit` with validation
data and `evaluate` on the test split. The models are the walkthrough's own code
(../shared/seed/seed_reference.py, itself the blog's code ported to Keras 3 only where Keras 3
requires it: nested Models take `outputs=x`): this script imports nothing from
catdog_report, so a deviation in the package cannot hide on both sides of the race.

With `--figures DIR` it also draws the walkthrough's own figures, saved as PNG where the
notebook shows them: the 2x3 grid of training photos, six random flips and six random
rotations of one photo, and each model's accuracy and loss history.

    python bench/plain_walkthrough.py --data ROOT --weights W.h5 \
        --epochs '{"model_one": 2, ...}' --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

T_START = time.perf_counter()
MODEL_NAMES = ("model_one", "model_two", "model_three", "model_four")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="folder with train/validation/test")
    p.add_argument("--weights", default=None, help="MobileNetV2 no-top .h5 for model four")
    p.add_argument("--epochs", required=True, help="JSON object: model name -> epochs")
    p.add_argument("--classes", default="cats,dogs", help="class folder names, in label order")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="where to write the JSON timings")
    p.add_argument("--figures", type=Path, help="draw the walkthrough's figures into this folder")
    args = p.parse_args()
    epochs = json.loads(args.epochs)
    classes = args.classes.split(",")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    t_imported = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)

    def load(split: str, shuffle: bool) -> tf.data.Dataset:
        ds = keras.utils.image_dataset_from_directory(
            args.data / split, image_size=size, batch_size=args.batch_size, shuffle=shuffle,
            seed=args.seed, class_names=classes, verbose=False)
        return ds.prefetch(buffer_size=tf.data.AUTOTUNE)

    train_ds = load("train", True)
    val_ds = load("validation", True)
    test_ds = load("test", False)
    t_figures = 0.0
    if args.figures:
        t0 = time.perf_counter()
        data_figures(train_ds, classes, args.figures)
        t_figures += time.perf_counter() - t0
    runs = []
    for name in MODEL_NAMES:
        t0 = time.perf_counter()
        model = walkthrough_model(name, args.image_size, args.weights)
        t1 = time.perf_counter()
        hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs[name], verbose=0)
        t2 = time.perf_counter()
        loss, acc = model.evaluate(test_ds, verbose=0)
        t3 = time.perf_counter()
        if args.figures:
            history_figure(hist.history, name, args.figures / f"{name}-history.png")
            t_figures += time.perf_counter() - t3
        runs.append({"model": name, "epochs": epochs[name], "build_seconds": round(t1 - t0, 3),
                     "train_seconds": round(t2 - t1, 3), "evaluate_seconds": round(t3 - t2, 3),
                     "val_accuracy": [float(v) for v in hist.history["val_accuracy"]],
                     "test_accuracy": float(acc), "test_loss": float(loss)})
        print(f"plain: {name}: {epochs[name]} epoch(s) in {t2 - t1:.1f} s, "
              f"test accuracy {acc:.3f}", flush=True)
    args.out.write_text(json.dumps({
        "import_seconds": round(t_imported - T_START, 3),
        "total_seconds": round(time.perf_counter() - T_START, 3),
        "figures_seconds": round(t_figures, 3),
        "runs": runs,
    }, indent=1))


def walkthrough_model(name: str, image_size: int, weights: str | None) -> Any:
    """The walkthrough's model, compiled as it compiles them (its code, as a function)."""
    import tensorflow as tf
    from tensorflow.keras import layers, models

    tf.random.set_seed(0)
    img_shape = (image_size, image_size, 3)

    def conv_block(filters: int, padding: str = "valid") -> list[Any]:
        return [layers.Conv2D(filters, (3, 3), padding=padding), layers.MaxPooling2D((2, 2)),
                layers.BatchNormalization(), layers.Activation("relu")]

    def augment() -> list[Any]:
        return [layers.RandomFlip(mode="horizontal_and_vertical", seed=0),
                layers.RandomRotation(factor=0.2, seed=0)]

    def head128() -> list[Any]:
        return [layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(.5),
                layers.Dense(2)]

    def preprocessor() -> Any:
        i = tf.keras.Input(shape=img_shape)
        x = tf.keras.applications.mobilenet_v2.preprocess_input(i)
        return tf.keras.Model(inputs=[i], outputs=x)

    if name == "model_one":
        model = models.Sequential([
            layers.Conv2D(32, (3, 3)), layers.MaxPooling2D((2, 2)), layers.BatchNormalization(),
            layers.Activation("relu"), layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)), layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2))] + head128())
    elif name == "model_two":
        model = models.Sequential(augment() + conv_block(32) + conv_block(64) + conv_block(64)
                                  + head128())
    elif name == "model_three":
        model = models.Sequential([preprocessor()] + augment() + conv_block(32) + conv_block(64)
                                  + conv_block(64) + head128())
    else:
        base_model = tf.keras.applications.MobileNetV2(input_shape=img_shape, include_top=False,
                                                       weights=weights or "imagenet")
        base_model.trainable = False
        i = tf.keras.Input(shape=img_shape)
        base_model_layer = tf.keras.Model(inputs=[i], outputs=base_model(i, training=False))
        model = models.Sequential(
            [preprocessor(), layers.RandomFlip(mode="horizontal_and_vertical", seed=0),
             base_model_layer, layers.RandomRotation(factor=0.2, seed=0)]
            + conv_block(32, "same") + conv_block(64, "same")
            + [layers.Flatten(), layers.Dense(32, activation="relu"), layers.Dropout(.5),
               layers.Dense(2)])
    model.compile(optimizer="adam",
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def data_figures(train_ds: Any, classes: list[str], out: Path) -> None:
    """The walkthrough's photo grid (dogs on top, cats below) and augmentation examples."""
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    images, labels = next(iter(train_ds.unbatch().batch(64)))
    images, labels = images.numpy(), labels.numpy()
    picks = [i for c in (1, 0) for i in np.flatnonzero(labels == c)[:3]]
    fig = plt.figure(figsize=(9, 6))
    for n, i in enumerate(picks):
        ax = plt.subplot(2, 3, n + 1)
        ax.imshow(images[i].astype("uint8"))
        ax.set_title(classes[labels[i]])
        ax.axis("off")
    fig.savefig(out / "grid.png")
    plt.close(fig)
    photo = images[:1]
    for title, layer in (("flips", keras.layers.RandomFlip("horizontal_and_vertical", seed=0)),
                         ("rotations", keras.layers.RandomRotation(0.2, seed=0))):
        fig = plt.figure(figsize=(9, 6))
        for n in range(6):
            ax = plt.subplot(2, 3, n + 1)
            ax.imshow(np.asarray(layer(photo, training=True))[0].astype("uint8"))
            ax.axis("off")
        fig.savefig(out / f"{title}.png")
        plt.close(fig)


def history_figure(history: dict[str, list[float]], name: str, path: Path) -> None:
    """The walkthrough's accuracy and loss plot of one model."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8, 8))
    for n, metric in enumerate(("accuracy", "loss")):
        ax = plt.subplot(2, 1, n + 1)
        ax.plot(history[metric], label=f"Training {metric}")
        ax.plot(history[f"val_{metric}"], label=f"Validation {metric}")
        ax.legend()
        ax.set_title(f"{name}: training and validation {metric}")
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
