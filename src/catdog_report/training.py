"""Training through the run cache: a hit loads the record, a miss trains, evaluates and stores."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .cache import Store, digest, file_digest, write_atomic
from .config import ENV_RUNS, Settings
from .data import Dataset
from .errors import CacheError

log = logging.getLogger(__name__)

TRAINING_FORMAT = 2  # bump when what fit() records or how it trains changes
ENV_RUNLOG = "CATDOG_RUNLOG"  # the build reads which runs each page used from here
MODEL_FILE = "model.keras"
RECORD_FILE = "record.json"


@dataclass(frozen=True)
class Run:
    """One training run's record (history, test scores, predictions) and its cache folder."""

    record: dict[str, Any]
    folder: Path
    cached: bool

    @property
    def history(self) -> dict[str, list[float]]:
        """Per-epoch metrics as Keras's History.history."""
        return self.record["history"]

    @property
    def name(self) -> str:
        """The model's name."""
        return self.record["model"]

    def load_model(self) -> Any:
        """The trained model, loaded with safe_mode (no code runs from the cache)."""
        import keras

        return keras.saving.load_model(self.folder / MODEL_FILE, safe_mode=True, compile=False)


def layer_rows(model: Any) -> list[dict[str, Any]]:
    """One row per top-level layer: name, type, output shape, parameters, trainable ones."""
    rows = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        shape = tuple(layer.output.shape)
        rows.append({
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": [None if d is None else int(d) for d in shape],
            "params": int(layer.count_params()),
            "trainable": int(sum(np.prod(w.shape) for w in layer.trainable_weights)),
            "frozen": not layer.trainable,
        })
    return rows


def parameter_counts(model: Any) -> dict[str, int]:
    """The model's own parameters (never the optimizer's): total, trainable, non-trainable
    (frozen layers plus BatchNorm's moving statistics) and frozen (layers set
    trainable = False)."""
    total = int(model.count_params())
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = sum(int(layer.count_params()) for layer in model.layers if not layer.trainable)
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable,
            "frozen": frozen}


def run_store(settings: Settings) -> Store:
    """The run cache of these settings."""
    return Store(settings.cache_root / "runs", "run")


def versions() -> dict[str, str]:
    """Versions that change numerics: TensorFlow, Keras, NumPy."""
    out = {}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def architecture(model: Any) -> Any:
    """The model's config with auto-generated layer names made canonical."""
    names: dict[str, str] = {}
    config = model.get_config()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            inner = value.get("config")
            if "class_name" in value and isinstance(inner, dict) and isinstance(
                    inner.get("name"), str):
                names.setdefault(inner["name"], f"layer{len(names)}")
            for v in value.values():
                collect(v)
        elif isinstance(value, list | tuple):
            for v in value:
                collect(v)

    collect(config)

    def canon(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: canon(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [canon(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    return canon(config)


def weights_id(weights: str | Path | None) -> str:
    """What the base weights were: a file's checksum, 'imagenet' or 'random'."""
    if weights is None:
        return "random"
    if str(weights) == "imagenet":
        return "imagenet"
    return "sha256:" + file_digest(Path(weights))


def key_parts(model: Any, name: str, settings: Settings, dataset: Dataset,
              weights: str | Path | None) -> dict[str, Any]:
    """Everything that decides a run's result: the run cache key is its hash."""
    return {
        "format": TRAINING_FORMAT,
        "model": name,
        "architecture": architecture(model),
        "optimizer": model.optimizer.get_config() | {"name": None},
        "loss": model.loss.get_config() | {"name": None},
        "epochs": settings.epochs_for(name),
        "batch_size": settings.batch_size,
        "image_size": settings.image_size,
        "manifest": dataset.manifest,
        "seed": settings.seed,
        "strategy": settings.strategy,
        "versions": versions(),
        "base_weights": weights_id(weights) if name == "model_four" else None,
    }


class EpochLog:
    """A Keras callback that logs one line per epoch."""

    def __new__(cls, name: str, epochs: int, stop: threading.Event | None = None) -> Any:
        import keras

        class _Log(keras.callbacks.Callback):
            seconds: list[float] = []

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.t0 = time.perf_counter()

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                if stop is not None and stop.is_set():  # the build was interrupted
                    raise KeyboardInterrupt

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                logs = logs or {}
                self.seconds.append(round(time.perf_counter() - self.t0, 3))
                log.info("%s epoch %d/%d: loss %.4f, accuracy %.4f, val_accuracy %.4f (%.1f s)",
                         name, epoch + 1, epochs, logs.get("loss", float("nan")),
                         logs.get("accuracy", float("nan")),
                         logs.get("val_accuracy", float("nan")), self.seconds[-1])

        return _Log()


def strategy_scope(settings: Settings) -> Any:
    """The tf.distribute strategy's scope (a no-op scope by default)."""
    import contextlib

    import tensorflow as tf

    if settings.strategy == "mirrored":
        return tf.distribute.MirroredStrategy().scope()
    if settings.strategy == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy().scope()
    return contextlib.nullcontext()


def environment() -> dict[str, Any]:
    """Where a run was trained: versions, devices."""
    import platform

    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "versions": versions(),
        "machine": platform.machine(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def _train(model: Any, name: str, settings: Settings, dataset: Dataset,
           arrays: dict[str, Any], folder: Path, parts: dict[str, Any],
           stop: threading.Event | None = None) -> None:
    """Train, evaluate on the test split, and write the entry's files into folder."""
    from . import data

    epochs = settings.epochs_for(name)
    ds = data.pipelines(arrays, settings.batch_size, settings.seed)
    log.info("training %s: %d epoch%s on %d images", name, epochs, "s" * (epochs != 1),
             len(dataset.train))
    t0 = time.perf_counter()
    epoch_log = EpochLog(name, epochs, stop)
    epoch_log.seconds = []
    hist = model.fit(ds["train"], validation_data=ds["validation"], epochs=epochs, verbose=0,
                     callbacks=[epoch_log], shuffle=False)  # the pipeline shuffles
    seconds = time.perf_counter() - t0
    test_loss, test_acc = model.evaluate(ds["test"], verbose=0)
    logits = model.predict(ds["test"], verbose=0)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    model.save(folder / MODEL_FILE)
    record = {
        "model": name,
        "key": digest(parts),
        "profile": settings.profile,
        "epochs": epochs,
        "batch_size": settings.batch_size,
        "image_size": settings.image_size,
        "seed": settings.seed,
        "manifest": dataset.manifest,
        "data_source": dataset.source,
        "base_weights": parts["base_weights"],
        "params": parameter_counts(model),
        "layers": layer_rows(model),
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
        "test": {"loss": float(test_loss), "accuracy": float(test_acc)},
        "predictions": {
            "files": list(dataset.test.files),
            "true": [int(y) for y in dataset.test.labels],
            "prob": [[round(float(p), 6) for p in row] for row in probs],
        },
        "class_names": list(dataset.class_names),
        "train_seconds": round(seconds, 2),
        "epoch_seconds": epoch_log.seconds,
        "images": {split: len(s) for split, s in dataset.splits.items()},
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(),
    }
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=1))


def load_run(folder: Path, cached: bool = True) -> Run:
    """Read a verified run entry."""
    try:
        record = json.loads((folder / RECORD_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CacheError(f"run record {folder / RECORD_FILE} is unreadable: {exc}; "
                         "delete that folder to retrain") from exc
    return Run(record, folder, cached)


def fit(name: str, settings: Settings, dataset: Dataset, arrays: dict[str, Any],
        weights: str | Path | None = None, stop: threading.Event | None = None) -> Run:
    """Train model `name` through the run cache; return its Run (from cache when unchanged).

    The key hashes the architecture, optimizer and loss configs, epochs, batch size, image
    size, data manifest, seed, strategy and library versions, so changing any of them
    retrains this model alone. Entries are written atomically under a per-key lock.
    Setting `stop` (from another thread) makes training raise KeyboardInterrupt at its
    next batch; nothing is stored.
    """
    import keras

    from . import models

    keras.utils.set_random_seed(settings.seed)  # the same initial weights every time
    with strategy_scope(settings):
        model = models.build(name, settings.image_size, weights)
    parts = key_parts(model, name, settings, dataset, weights)
    key = digest(parts)
    store = run_store(settings)
    with store.lock(key):
        folder = store.get(key)
        cached = folder is not None
        if folder is None:
            folder = store.put(key, lambda tmp: _train(model, name, settings, dataset, arrays,
                                                       tmp, parts, stop))
        else:
            log.info("%s: loaded from the run cache (%s)", name, key[:12])
    run = load_run(folder, cached)
    _log_use(run)
    return run


def memo_key(name: str, settings: Settings, dataset: Dataset,
             weights: str | Path | None) -> str:
    """A key from cheap inputs (no TensorFlow): the library source stands in for the
    architecture, so the same memo key always means the same run cache key."""
    here = Path(__file__).parent
    return digest({
        "format": TRAINING_FORMAT, "model": name,
        "source": {f: file_digest(here / f) for f in ("models.py", "training.py")},
        "epochs": settings.epochs_for(name), "batch_size": settings.batch_size,
        "image_size": settings.image_size, "manifest": dataset.manifest, "seed": settings.seed,
        "strategy": settings.strategy, "versions": versions(),
        "base_weights": weights_id(weights) if name == "model_four" else None,
    })


def find_or_fit(name: str, settings: Settings, dataset: Dataset, arrays: Any,
                weights: str | Path | None = None,
                stop: threading.Event | None = None) -> dict[str, Any]:
    """The run of one model as {"key", "trained"}: from the memo without importing
    TensorFlow when this exact run is cached, else through fit(). arrays is called
    only when fit() needs the decoded images."""
    memo = run_store(settings).root / "memo" / f"{memo_key(name, settings, dataset, weights)}.json"
    try:
        key = json.loads(memo.read_text())["key"]
    except (OSError, ValueError, KeyError):
        key = None
    if key and run_store(settings).get(key) is not None:
        return {"key": key, "trained": False}
    run = fit(name, settings, dataset, arrays(), weights, stop)
    memo.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(memo, json.dumps({"model": name, "key": run.record["key"]}))
    return {"key": run.record["key"], "trained": not run.cached}


def given_runs() -> dict[str, dict[str, Any]]:
    """The runs the build trained or loaded before it started this page's kernel."""
    return json.loads(os.environ.get(ENV_RUNS) or "{}")


def load_given(name: str, settings: Settings, given: dict[str, Any]) -> Run:
    """Load a run the build already has (no TensorFlow needed): given = {"key", "trained"}."""
    store = run_store(settings)
    folder = store.get(given["key"])
    if folder is None:
        raise CacheError(f"run {given['key'][:12]} of {name}, which this build trained or "
                         f"loaded, is no longer in the run cache {store.root}; run the build "
                         "again")
    run = load_run(folder, cached=not given["trained"])
    log.info("%s: %s (%s)", name, "trained by this build" if given["trained"]
             else "loaded from the run cache", given["key"][:12])
    _log_use(run)
    return run


def _log_use(run: Run) -> None:
    """Append which run a page used to the build's run log."""
    path = os.environ.get(ENV_RUNLOG)
    if not path:
        return
    line = {"model": run.name, "key": run.record["key"], "cached": run.cached,
            "trained_at": run.record["trained_at"], "train_seconds": run.record["train_seconds"],
            "gpus": run.record["environment"].get("gpus", [])}
    with open(path, "a") as fh:
        fh.write(json.dumps(line) + "\n")


def runs_from_log(settings: Settings, keys: list[str]) -> list[Run]:
    """Load the runs named by keys (the build manifest) from the run cache."""
    store = run_store(settings)
    out = []
    for key in keys:
        folder = store.get(key)
        if folder is None:
            raise CacheError(f"run {key[:12]} listed in the build manifest is not in the run "
                             f"cache {store.root}; rebuild the model pages")
        out.append(load_run(folder))
    return out
