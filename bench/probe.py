"""Machine peak (fp32 matmul in TensorFlow) and analytic FLOPs per image of the four models.

Run by bench.py in its own process, so the benchmark's parent process never imports
TensorFlow; prints one JSON object on its last stdout line.

FLOP convention (multiply-add = 2 FLOPs, biases, activations, BatchNorm, pooling and the
random augmentation layers ignored):

* Conv2D: 2 * Hout * Wout * kh * kw * (Cin / groups) * Cout
* DepthwiseConv2D: 2 * Hout * Wout * kh * kw * C * depth_multiplier
* Dense: 2 * in * out (times the positions of a >2-D input)

A layer counts as frozen when it, or a model that holds it, is not trainable (model four's
MobileNetV2 base). One training step costs 3x forward for trainable layers (forward, the
gradient with respect to the inputs and with respect to the weights) and 1x forward for
frozen ones; a validation or test image costs 1x forward for every layer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from typing import Any


def _study_models() -> tuple[str, ...]:
    """The study's models, from study.yml through the package."""
    from pathlib import Path

    from catdog_report.config import Settings

    return tuple(Settings(project_dir=Path(__file__).resolve().parent.parent).study.models)


MODEL_NAMES = _study_models()


def _settings(image_size: int) -> Any:
    from pathlib import Path

    from catdog_report.config import Settings

    return Settings(project_dir=Path(__file__).resolve().parent.parent, image_size=image_size)


def layer_flops(layer: Any) -> int:
    """Forward FLOPs per image of one leaf layer (0 for layers this convention ignores)."""
    kind = type(layer).__name__
    if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
        return 0
    out_shape = tuple(layer.output.shape)[1:]  # without the batch axis
    kernel = math.prod(int(d) for d in layer.kernel.shape)
    positions = math.prod(int(d) for d in out_shape[:-1])  # Hout*Wout; 1 for flat Dense
    # Conv2D kernel: kh, kw, Cin/groups, Cout; DepthwiseConv2D: kh, kw, C, depth_multiplier;
    # Dense: in, out. In all three, FLOPs = 2 * output positions * kernel size.
    return 2 * positions * kernel


def model_flops(model: Any) -> dict[str, Any]:
    """Forward FLOPs per image split into trainable and frozen layers, walking nested models."""
    totals = {"trainable": 0, "frozen": 0}
    layers: list[dict[str, Any]] = []

    def walk(container: Any, frozen: bool, prefix: str) -> None:
        for layer in container.layers:
            is_frozen = frozen or not layer.trainable
            inner = getattr(layer, "layers", None)
            if inner:  # a nested model (MobileNetV2 in model four)
                walk(layer, is_frozen, f"{prefix}{layer.name}/")
                continue
            flops = layer_flops(layer)
            if flops:
                totals["frozen" if is_frozen else "trainable"] += flops
                layers.append({"layer": prefix + layer.name, "type": type(layer).__name__,
                               "flops": flops, "frozen": is_frozen})

    walk(model, not model.trainable, "")
    fwd = totals["trainable"] + totals["frozen"]
    return {
        "forward": fwd,
        "forward_trainable": totals["trainable"],
        "forward_frozen": totals["frozen"],
        "train_step": 3 * totals["trainable"] + totals["frozen"],
        "layers": layers,
    }


def matmul_size(limit: int = 4096, target: float = 0.05) -> int:
    """The matmul size this machine times well: doubled from 256 until one product takes
    `target` seconds (or `limit` is reached), so a slow machine is not kept for minutes."""
    import tensorflow as tf

    n = 256
    while n < limit:
        a = tf.random.normal((n, n), dtype=tf.float32, seed=1)
        float(tf.linalg.matmul(a, a)[0, 0])  # warm-up of this size
        t0 = time.perf_counter()
        float(tf.linalg.matmul(a, a)[0, 0])
        if time.perf_counter() - t0 >= target:
            break
        n *= 2
    return n


def matmul_peak(n: int, min_seconds: float, min_repeats: int) -> dict[str, Any]:
    """fp32 n x n @ n x n with tf.linalg.matmul: warm up, then a timed loop of min_seconds
    (at least min_repeats products, at most 200)."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32, seed=1)
    b = tf.random.normal((n, n), dtype=tf.float32, seed=2)
    for _ in range(2):  # warm-up: thread pools, oneDNN primitives
        float(tf.linalg.matmul(a, b)[0, 0])
    seconds: list[float] = []
    t_end = time.perf_counter() + min_seconds
    while len(seconds) < min_repeats or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        float(tf.linalg.matmul(a, b)[0, 0])  # eager on CPU: returns when done
        seconds.append(time.perf_counter() - t0)
        if len(seconds) >= 200:
            break
    flop = 2 * n**3
    rates = sorted(flop / s / 1e9 for s in seconds)
    return {"n": n, "repeats": len(seconds), "seconds": [round(s, 4) for s in seconds],
            "gflops_best": round(rates[-1], 2),
            "gflops_median": round(rates[len(rates) // 2], 2)}


STEP_VARIANTS = {  # what the training-step probe compares (one process per thread setting
    # and malloc: "malloc" is glibc's malloc as a training process sets it, catdog_report.malloc)
    "default": {"jit_compile": False, "intra": 0, "inter": 0, "precision": "float32",
                "malloc": False},
    "xla": {"jit_compile": True, "intra": 0, "inter": 0, "precision": "float32", "malloc": False},
    "intra2-inter1": {"jit_compile": False, "intra": 2, "inter": 1, "precision": "float32",
                      "malloc": False},
    "bf16": {"jit_compile": False, "intra": 0, "inter": 0, "precision": "bf16", "malloc": False},
    "malloc": {"jit_compile": False, "intra": 0, "inter": 0, "precision": "float32",
               "malloc": True},
}


def _timed_steps(step: Any, x: Any, y: Any, repeats: int, seconds: float = 1.5) -> float:
    """Best seconds of one call after two warm-up calls (tracing, oneDNN primitives): up to
    `repeats` calls, fewer (at least 3) once `seconds` have gone by on a slow machine."""
    for _ in range(2):
        float(step(x, y))
    best = math.inf
    t_end = time.perf_counter() + seconds
    for i in range(repeats):
        t0 = time.perf_counter()
        float(step(x, y))
        best = min(best, time.perf_counter() - t0)
        if i >= 2 and time.perf_counter() > t_end:
            break
    return best


def train_step_probe(variant: str, image_size: int, batch: int, repeats: int,
                     name: str = "model_one") -> dict[str, Any]:
    """One model's steady-state training step (Keras train_on_batch) under one variant;
    model four's base has random weights here (the same speed as ImageNet's)."""
    import tensorflow as tf

    cfg = STEP_VARIANTS[variant]
    if cfg["intra"] and tf.config.threading.get_intra_op_parallelism_threads() != cfg["intra"]:
        tf.config.threading.set_intra_op_parallelism_threads(cfg["intra"])
    if cfg["inter"] and tf.config.threading.get_inter_op_parallelism_threads() != cfg["inter"]:
        tf.config.threading.set_inter_op_parallelism_threads(cfg["inter"])
    import keras
    import numpy as np

    from catdog_report import models
    from catdog_report.config import PRECISIONS

    keras.utils.set_random_seed(1)
    keras.mixed_precision.set_global_policy(PRECISIONS[cfg["precision"]])
    model = models.build(name, _settings(image_size), None)
    if cfg["precision"] != "float32":  # as training does: augmentation stays in float32
        model = models.float32_augmentation(model)
    model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"],
                  jit_compile=cfg["jit_compile"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, image_size, image_size, 3)).astype("float32")
    y = rng.integers(0, 2, batch).astype("int32")
    seconds = _timed_steps(lambda a, b: model.train_on_batch(a, b)[0], x, y, repeats)
    flop = batch * model_flops(model)["train_step"]
    return {"model": name, "variant": variant, **cfg, "batch": batch,
            "step_seconds": round(seconds, 4),
            "gflops": round(flop / seconds / 1e9, 1)}


def layer_probe(image_size: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    """Where model one's training step goes: each stage alone, forward + backward + Adam."""
    import keras
    import tensorflow as tf
    from keras import layers

    def stage(name: str, shape: tuple[int, ...], stack: list[Any]) -> dict[str, Any]:
        model = keras.Sequential([keras.Input(shape), *stack])
        opt = keras.optimizers.Adam()
        x = tf.random.normal((batch, *shape), seed=1)

        @tf.function
        def step(x: Any, _: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
            opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                    model.trainable_variables, strict=True))
            return loss

        seconds = _timed_steps(step, x, None, repeats)
        flop = batch * model_flops(model)["train_step"]
        return {"stage": name, "step_ms": round(seconds * 1e3, 1), "train_gflop": flop / 1e9,
                "gflops": round(flop / seconds / 1e9, 1) if flop else None}

    s1, s2, s3 = image_size - 2, (image_size - 2) // 2, ((image_size - 2) // 2 - 2) // 2
    return [  # the walkthrough's model one: pooling before BatchNorm and ReLU
        stage("conv 3->32 (no activation)", (image_size, image_size, 3), [layers.Conv2D(32, 3)]),
        stage("max-pool + BatchNorm + ReLU (32 ch)", (s1, s1, 32),
              [layers.MaxPooling2D(), layers.BatchNormalization(), layers.Activation("relu")]),
        stage("conv 32->64 + ReLU", (s2, s2, 32), [layers.Conv2D(64, 3, activation="relu")]),
        stage("conv 64->64 + ReLU", (s3, s3, 64), [layers.Conv2D(64, 3, activation="relu")]),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train-step", help="only the training-step probe: variants (of "
                   f"{', '.join(STEP_VARIANTS)}), comma-separated, sharing one thread setting")
    p.add_argument("--model", choices=MODEL_NAMES, action="append",
                   help="a model --train-step times (repeat it; default: every model)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--matmul-n", type=int, default=0,
                   help="matmul size (default 0: sized to the machine, 256 to 4096)")
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--min-repeats", type=int, default=3)
    p.add_argument("--image-size", type=int, default=160)
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.train_step:
        if any(STEP_VARIANTS[v]["malloc"] for v in args.train_step.split(",")):
            from catdog_report import malloc

            malloc.tune()  # before TensorFlow allocates anything
        out = []
        for variant in args.train_step.split(","):
            for name in args.model or MODEL_NAMES:
                try:
                    out.append(train_step_probe(variant, args.image_size, args.batch_size,
                                                10, name))
                except Exception as exc:  # noqa: BLE001 - e.g. an op without a bf16 kernel
                    out.append({"model": name, "variant": variant,
                                "error": f"{type(exc).__name__}: {exc}"[:300]})
        print(json.dumps(out))
        return
    import keras
    import tensorflow as tf

    from catdog_report import models

    peak = matmul_peak(args.matmul_n or matmul_size(), args.min_seconds, args.min_repeats)
    flops = {}
    for name in MODEL_NAMES:
        model = models.build(name, _settings(args.image_size), None)  # no weights: same FLOPs
        flops[name] = model_flops(model)
        del model
        keras.backend.clear_session()
    print(json.dumps({
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "python": platform.python_version(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "matmul": peak, "image_size": args.image_size, "flops": flops,
        "model_one_stages": layer_probe(args.image_size, args.batch_size, 10),
    }))


if __name__ == "__main__":
    main()
