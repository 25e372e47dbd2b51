"""The walkthrough as a plain script in Keras 3: the baseline catdog-report is timed against.

No cache, no pages, no site: `image_dataset_from_directory` on a folder laid out as
`<root>/{train,validation,test}/<class>/<image>` (bench.py fills it with symlinks to exactly
the quick profile's split files), then for each of the four models `fit` with validation
data and `evaluate` on the test split. The models come from `catdog_report.models.build`, so
the architectures, optimizer and loss are identical to the ones catdog-report trains.

    python bench/plain_walkthrough.py --data ROOT --weights W.h5 \
        --epochs '{"model_one": 2, ...}' --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

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
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", type=Path, required=True, help="where to write the JSON timings")
    args = p.parse_args()
    epochs = json.loads(args.epochs)
    classes = args.classes.split(",")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from catdog_report import models

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
    runs = []
    for name in MODEL_NAMES:
        t0 = time.perf_counter()
        model = models.build(name, args.image_size,
                             args.weights if name == "model_four" else None)
        t1 = time.perf_counter()
        hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs[name], verbose=0)
        t2 = time.perf_counter()
        loss, acc = model.evaluate(test_ds, verbose=0)
        t3 = time.perf_counter()
        runs.append({"model": name, "epochs": epochs[name], "build_seconds": round(t1 - t0, 3),
                     "train_seconds": round(t2 - t1, 3), "evaluate_seconds": round(t3 - t2, 3),
                     "val_accuracy": [float(v) for v in hist.history["val_accuracy"]],
                     "test_accuracy": float(acc), "test_loss": float(loss)})
        print(f"plain: {name}: {epochs[name]} epoch(s) in {t2 - t1:.1f} s, "
              f"test accuracy {acc:.3f}", flush=True)
    args.out.write_text(json.dumps({
        "import_seconds": round(t_imported - T_START, 3),
        "total_seconds": round(time.perf_counter() - T_START, 3),
        "runs": runs,
    }, indent=1))


if __name__ == "__main__":
    main()
