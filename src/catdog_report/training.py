"""Training through the run cache: a hit loads the record, a miss trains, evaluates and stores."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import freeze, malloc
from .cache import Store, digest, file_digest, write_atomic
from .config import Settings
from .data import Dataset
from .errors import CacheError, ConfigError, Interrupted, TrainingError
from .handoff import RunEntry, run_entry
from .plan import RunSpec, run_specs
from .progress import TICK, BatchDone, EpochDone, RunDone, RunStarted, emit, run_label
from .weights import weights_id

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

TRAINING_FORMAT = 2  # bump when what fit() records or how it trains changes
MODEL_FILE = "model.keras"
AUTO_NAME = re.compile(r"^(sequential|functional|model)(_\d+)?$")
RECORD_FILE = "record.json"


@dataclass(frozen=True)
class Run:
    """One training run's record (history, test scores, predictions) and its cache folder."""

    record: dict[str, Any]
    folder: Path
    cached: bool
    source: str = "cache"  # trained (by this process), cache, freeze or remote

    @property
    def has_weights(self) -> bool:
        """Whether its trained weights are at hand (a run frozen without them has none)."""
        return self.folder is not None and (self.folder / MODEL_FILE).is_file()

    @property
    def history(self) -> dict[str, list[float]]:
        """Per-epoch metrics as Keras's History.history."""
        return self.record["history"]

    @property
    def name(self) -> str:
        """The model's name."""
        return self.record["model"]

    @property
    def key(self) -> str:
        """The run cache key."""
        return self.record["key"]

    def load_model(self) -> Any:
        """The trained model, loaded with safe_mode (no code runs from the cache)."""
        import keras

        if not self.has_weights:
            raise CacheError(f"the run {self.key[:12]} of {self.name} was frozen without its "
                             f"weights ({self.folder}); freeze it with `catdog-report freeze "
                             "--with-weights`, or delete that folder and build to retrain it")
        return keras.saving.load_model(self.folder / MODEL_FILE, safe_mode=True, compile=False)


def layer_rows(model: Any) -> list[dict[str, Any]]:
    """One row per top-level layer: name, type, output shape, parameters, trainable ones."""
    import numpy as np
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
    import numpy as np
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
    """The model's config with auto-generated layer (and unnamed model) names made canonical."""
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
    top = config.get("name") if isinstance(config, dict) else None
    if isinstance(top, str) and AUTO_NAME.match(top):  # Keras numbers unnamed models per process
        names.setdefault(top, "model")

    def canon(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: canon(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [canon(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    return canon(config)


def _config(obj: Any) -> Any:
    """An optimizer's or loss's config without its name (a loss may be given by name)."""
    return obj.get_config() | {"name": None} if hasattr(obj, "get_config") else str(obj)


def key_parts(model: Any, spec: RunSpec, settings: Settings, dataset: Dataset,
              parent: str | None = None) -> dict[str, Any]:
    """Everything that decides a run's result: the run cache key is its hash. A parent's
    run key is part of its child's (absent for a model that starts from nothing, so the
    keys of such models are what they were before parents existed). The spec's threads
    are not: a run made on one machine is found on another."""
    parts = {
        "format": TRAINING_FORMAT,
        "model": spec.model,
        "architecture": architecture(model),
        "optimizer": _config(model.optimizer),
        "loss": _config(model.loss),
        "epochs": spec.epochs,
        "batch_size": settings.batch_size,
        "image_size": settings.image_size,
        "manifest": dataset.manifest,
        "seed": spec.seed,
        "strategy": settings.strategy,
        "versions": versions(),
        "base_weights": spec.base_weights,
    }
    if parent is not None:
        parts["parent"] = parent
    return parts | _precision_part(spec)


def _precision_part(spec: RunSpec) -> dict[str, str]:
    """The precision, in a key only when it is not float32 (older keys stay valid)."""
    return {"precision": spec.precision} if spec.precision != "float32" else {}


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Keras's global dtype policy for building and training one run, then float32."""
    import keras

    from .config import PRECISIONS

    keras.mixed_precision.set_global_policy(PRECISIONS[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


INTER_OP_THREADS = 1  # TensorFlow's inter-op threads in a process that trains

NATIVE_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|"
                          r"[IWE]\d{4} |To enable the following instructions)")


def import_tensorflow() -> None:
    """Import TensorFlow (once per process) with its native start-up lines (absl's banner,
    oneDNN's and cpu_feature_guard's notices, which TF_CPP_MIN_LOG_LEVEL no longer hides)
    kept off the terminal: they are logged at debug, and with the root logger at debug (-v)
    nothing is held back; anything else written to the process's stderr meanwhile is
    written there after the import. glibc's malloc is set up for training first
    (malloc.tune)."""
    malloc.tune()
    if "tensorflow" in sys.modules or logging.getLogger().isEnabledFor(logging.DEBUG):
        import keras  # noqa: F401

        _set_inter_op_threads()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said = sink.read().decode(errors="replace")
    for line in said.splitlines(keepends=True):
        if NATIVE_NOISE.match(line):
            log.debug("tensorflow: %s", line.rstrip())
        else:
            sys.stderr.write(line)
    _set_inter_op_threads()


def _set_inter_op_threads() -> None:
    """INTER_OP_THREADS unless TF_NUM_INTEROP_THREADS is set: the ops of these models run
    one after another anyway, each on every intra-op thread, and one inter-op thread
    spares them the switching (measured on a 2-core AMD EPYC: the quick profile's four
    fits in 58.8 and 57.5 s against 61.2 and 59.7 s with TensorFlow's default of one per
    core, with bitwise the same histories)."""
    if os.environ.get("TF_NUM_INTEROP_THREADS", "").strip():
        return
    config = sys.modules["tensorflow"].config.threading
    if config.get_inter_op_parallelism_threads() == INTER_OP_THREADS:
        return
    try:
        config.set_inter_op_parallelism_threads(INTER_OP_THREADS)
    except RuntimeError:  # this process ran TensorFlow ops already: too late to change
        log.debug("TensorFlow started before its inter-op threads could be set; left as is")


class EpochLog:
    """A Keras callback that logs one line per epoch and a progress event per batch."""

    def __new__(cls, name: str, epochs: int, stop: threading.Event | None = None,
                run: str | None = None) -> Any:
        import keras

        run = run or name

        class _Log(keras.callbacks.Callback):
            seconds: list[float] = []

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.t0 = time.perf_counter()

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                if stop is not None and stop.is_set():  # interrupted, or a page failed
                    raise Interrupted("the build stopped its training")

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                steps = int((self.params or {}).get("steps") or 0)
                epoch = len(self.seconds) + 1
                emit(log, BatchDone(run, epoch, epochs, batch + 1, steps),
                     "%s epoch %d/%d: batch %d/%d", name, epoch, epochs, batch + 1, steps,
                     level=TICK)

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                logs = logs or {}
                self.seconds.append(round(time.perf_counter() - self.t0, 3))
                emit(log, EpochDone(run, epoch + 1, epochs, self.seconds[-1]),
                     "%s epoch %d/%d: loss %.4f, accuracy %.4f, val_accuracy %.4f (%.1f s)",
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


def intra_op_threads() -> int:
    """TensorFlow's intra-op thread count in this process: as set through tf.config, else
    TF_NUM_INTRAOP_THREADS, else (TensorFlow's own default) the cores it may run on."""
    import sys

    if "tensorflow" in sys.modules:  # never imported here just to ask
        configured = sys.modules["tensorflow"].config.threading
        if configured.get_intra_op_parallelism_threads() > 0:
            return int(configured.get_intra_op_parallelism_threads())
    value = os.environ.get("TF_NUM_INTRAOP_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def environment() -> dict[str, Any]:
    """Where a run was trained: versions, devices, intra-op threads (they set the rounding),
    the malloc it trained with."""
    import platform

    import_tensorflow()
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "versions": versions(),
        "machine": platform.machine(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "intra_op_threads": intra_op_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "malloc": malloc.tune(),
    }


def _train(model: Any, spec: RunSpec, settings: Settings, dataset: Dataset,
           arrays: dict[str, Any], folder: Path, parts: dict[str, Any],
           stop: threading.Event | None = None) -> None:
    """Train, evaluate on the test split, and write the entry's files into folder."""
    from . import data, explain

    name, epochs = spec.model, spec.epochs
    ds = data.pipelines(arrays, settings.batch_size, spec.seed)
    run = spec.id
    label = run_label(name, spec.seed, len(settings.seed_list))
    emit(log, RunStarted(run, epochs, steps_per_epoch(len(dataset.train), settings.batch_size)),
         "training %s: %d epoch%s on %d images", label, epochs, "s" * (epochs != 1),
         len(dataset.train))
    t0 = time.perf_counter()
    epoch_log = EpochLog(label, epochs, stop, run)
    epoch_log.seconds = []
    hist = model.fit(ds["train"], validation_data=ds["validation"], epochs=epochs, verbose=0,
                     callbacks=[epoch_log], shuffle=False)  # the pipeline shuffles
    seconds = time.perf_counter() - t0
    x_test, y_test = arrays["test"]
    logits = _store_maps(model, spec, folder, x_test, dataset.test.files)
    if logits is None:
        logits = explain.predict(model, x_test, settings.batch_size)
    test_loss, test_acc = test_scores(model, logits, y_test)
    rounded = probabilities(logits)
    model.save(folder / MODEL_FILE)
    record = {
        "model": name,
        "key": digest(parts),
        "profile": settings.profile,
        "epochs": epochs,
        "batch_size": settings.batch_size,
        "image_size": settings.image_size,
        "seed": spec.seed,
        "precision": spec.precision,
        "manifest": dataset.manifest,
        "data_source": dataset.source,
        "base_weights": parts["base_weights"],
        "parent": parts.get("parent"),
        "params": parameter_counts(model),
        "layers": layer_rows(model),
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
        "test": {"loss": float(test_loss), "accuracy": float(test_acc)},
        "predictions": {
            "files": list(dataset.test.files),
            "true": [int(y) for y in dataset.test.labels],
            "prob": rounded,
        },
        "class_names": list(dataset.class_names),
        "train_seconds": round(seconds, 2),
        "epoch_seconds": epoch_log.seconds,
        "images": {split: len(s) for split, s in dataset.splits.items()},
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(),
    }
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=1))


def test_scores(model: Any, logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The model's compiled loss on its test logits, and its accuracy (argmax against the
    label)."""
    import keras
    import numpy as np

    per_photo = keras.ops.convert_to_numpy(keras.losses.get(model.loss)(labels, logits))
    return float(np.mean(per_photo)), float(np.mean(logits.argmax(axis=1) == labels))


def probabilities(logits: np.ndarray) -> list[list[float]]:
    """Softmax of each photo's logits, rounded to 6 places (as a run records them)."""
    import numpy as np

    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return [[round(float(p), 6) for p in row] for row in probs]


def predicted_classes(logits: np.ndarray) -> np.ndarray:
    """The class a run records as predicted: the largest of its rounded probabilities."""
    import numpy as np

    return np.asarray(probabilities(logits)).reshape(len(logits), -1).argmax(axis=1)


def _store_maps(model: Any, spec: RunSpec, folder: Path, images: np.ndarray,
                files: Sequence[str]) -> np.ndarray | None:
    """The run's Grad-CAM maps of its predicted classes on every test photo, computed here
    where the model is at hand (its pages then need no TensorFlow), in the forward pass that
    predicts them: returns the model's outputs on the photos. A model they cannot be
    computed for is left to its pages, which say why (then None)."""
    from . import explain

    t0 = time.perf_counter()
    try:
        outputs = explain.store_maps(folder, model, images, files, predicted_classes)
    except Exception as exc:  # noqa: BLE001 - the pages compute them and report the error
        log.warning("%s: Grad-CAM maps not stored with the run (%s: %s); its pages compute "
                    "them", spec.id, type(exc).__name__, exc)
        (folder / explain.MAPS_FILE).unlink(missing_ok=True)
        return None
    log.debug("%s: test photos predicted and their Grad-CAM maps stored in %.1f s", spec.id,
              time.perf_counter() - t0)
    return outputs


def load_run(folder: Path, cached: bool = True, source: str | None = None) -> Run:
    """Read a verified run entry (of the run cache or the freeze)."""
    try:
        record = json.loads((folder / RECORD_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CacheError(f"run record {folder / RECORD_FILE} is unreadable: {exc}; "
                         "delete that folder to retrain") from exc
    return Run(record, folder, cached, source or ("cache" if cached else "trained"))


def entry_folder(settings: Settings, key: str) -> tuple[Path, str] | None:
    """The checked folder of run key at hand on this machine and where it is: the run
    cache ("cache"), else the committed freeze ("freeze"); None when neither has it."""
    folder = run_store(settings).get(key)
    if folder is not None:
        return folder, "cache"
    frozen = freeze.folder(settings.study.path, key)
    return (frozen, "freeze") if frozen is not None else None


def locate(settings: Settings, key: str, weights: bool = False) -> tuple[Path, str] | None:
    """The run key from the run cache, the freeze, or pulled from the remote run cache into
    the run cache ("remote"); None when none has it (or a remote copy is damaged); weights:
    only a run with its trained weights will do."""
    found = entry_folder(settings, key)
    if found is not None and weights and not (found[0] / MODEL_FILE).is_file():
        found = None  # frozen without them (run cache entries always hold them)
    if found is None and settings.remote_cache:
        pulled = _remote(settings, f"pulling run {key[:12]}",
                         lambda r: r.pull(key, run_store(settings)))
        found = (pulled, "remote") if pulled is not None else None
    return found


def _remote(settings: Settings, what: str, call: Any) -> Any:
    """call(the remote run cache); a remote that cannot be reached is a miss, with a
    warning (the build goes on with the run cache and the freeze), never a failed build."""
    from .remote import remote

    try:
        return call(remote(settings.remote_cache))
    except CacheError as exc:
        log.warning("%s: %s; going on without it", what, exc)
        return None


def _weights_at_hand(settings: Settings, key: str) -> bool:
    """False only when the run key is at hand without its trained weights (frozen without
    them): a child cannot start from it, and its pages leave out what needs them."""
    found = entry_folder(settings, key)
    return found is None or (found[0] / MODEL_FILE).is_file()  # absent: load_parent says so


def push(settings: Settings, key: str, folder: Path, memo: str | None, model: str) -> None:
    """Push a run this process trained (and its memo key) to the remote run cache, if any."""
    if settings.remote_cache:
        _remote(settings, f"pushing run {key[:12]} of {model} (it stays in the run cache)",
                lambda r: r.push(key, folder, memo, model))


def fit(spec: RunSpec, settings: Settings, dataset: Dataset, arrays: dict[str, Any],
        weights: str | Path | None = None, parent: str | None = None,
        stop: threading.Event | None = None, memo: str | None = None,
        need_weights: bool = False) -> Run:
    """Train the run `spec` through the run cache; return its Run (from cache when unchanged).

    The key hashes the architecture, optimizer and loss configs, epochs, batch size, image
    size, data manifest, seed, strategy, library versions, base weights and the parent's
    run key, so changing any of them retrains this model (and the models that start from
    it) alone. A run of that key is taken from the run cache, the committed freeze
    (frozen/) or the remote run cache (settings.remote_cache), in that order; a run trained
    here is pushed to the remote with its memo key. A run that starts from another gets the
    parent's trained model; with no parent key given, the parent's run is fitted (or
    loaded) first, and again (from the remote run cache, else trained) when its run at
    hand was frozen without its weights; need_weights: such a run is not enough here either.
    Entries are written atomically under a per-key lock. Setting `stop` (from another
    thread) makes training raise Interrupted at its next batch; nothing is stored.
    """
    import_tensorflow()
    import keras

    if spec.parent and (parent is None or not _weights_at_hand(settings, parent)):
        parent = fit(spec_for(spec.parent, settings, weights, spec.seed), settings, dataset,
                     arrays, weights, None, stop, need_weights=True).key
    keras.utils.set_random_seed(spec.seed)  # the same initial weights every time
    with own_python_random(spec.seed), precision_policy(spec.precision):
        model = _built(spec, settings, weights, parent)
        parts = key_parts(model, spec, settings, dataset, parent)
        return _fit_or_load(model, spec, settings, dataset, arrays, parts, stop, memo,
                            need_weights)


@contextlib.contextmanager
def own_python_random(seed: int) -> Iterator[None]:
    """Keras draws the seeds of unseeded layers and initializers from Python's shared
    `random`, so another thread drawing from it meanwhile (a Dask worker's event loop does)
    would change a run's initial weights; for one run, Keras draws from its own
    Random(seed): the numbers `random.seed(seed)` gives when nothing else draws."""
    import random

    try:
        from keras.src.random import seed_generator
    except ImportError:  # a Keras without that module: the shared one, as before
        yield
        return
    saved = seed_generator.python_random
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = saved


def _built(spec: RunSpec, settings: Settings, weights: str | Path | None,
           parent: str | None) -> Any:
    """The compiled model of spec, from its parent's run when it has one (under the
    precision policy already set)."""
    from . import models

    with strategy_scope(settings):
        parent_model = load_parent(settings, spec.parent, parent) if parent else None
        model = models.build(spec.model, settings, weights, parent_model)
        if spec.precision != "float32":
            model = models.float32_augmentation(model)
    return model


def key_of(spec: RunSpec, settings: Settings, dataset: Dataset,
           weights: str | Path | None = None, parent: str | None = None) -> str:
    """The run key of spec, from its built model (no training): for a run the memo does
    not know, to find it in the run cache before sending it to a cluster."""
    import_tensorflow()
    import keras

    keras.utils.set_random_seed(spec.seed)
    with precision_policy(spec.precision):
        return digest(key_parts(_built(spec, settings, weights, parent), spec, settings,
                                dataset, parent))


def run_specs_for(settings: Settings, weights: str | Path | None,
                  seeds: Mapping[str, Sequence[int]] | None = None) -> list[RunSpec]:
    """Every run of the study in these settings as a build plans it: each model (parents
    first) at each of its seeds (default: the settings'), with its epochs, precision, base
    weights (the resolved file or name, by its digest) and this process's threads."""
    study = settings.study
    return run_specs(study, seeds or {m: settings.seeds_for(m) for m in study.models},
                     {m: settings.epochs_for(m) for m in study.models}, settings.precision,
                     weights_id(weights), intra_op_threads())


def spec_for(name: str, settings: Settings, weights: str | Path | None = None,
             seed: int | None = None) -> RunSpec:
    """The RunSpec of one model at a seed (default: the settings' seed), for a page run by
    hand and for tools; weights: the resolved base weights."""
    seed = settings.seed if seed is None else seed
    specs = run_specs_for(settings, weights, {m: [seed] for m in settings.study.models})
    return next(s for s in specs if s.model == name)


def _fit_or_load(model: Any, spec: RunSpec, settings: Settings, dataset: Dataset,
                 arrays: dict[str, Any], parts: dict[str, Any],
                 stop: threading.Event | None, memo: str | None = None,
                 need_weights: bool = False) -> Run:
    """The run of these key parts: from the run cache, the freeze or the remote run cache,
    or trained, stored and pushed now."""
    key = digest(parts)
    store = run_store(settings)
    with store.lock(key):
        found = locate(settings, key, need_weights)
        if found is None:
            folder = store.put(key, lambda tmp: _train(model, spec, settings, dataset, arrays,
                                                       tmp, parts, stop))
            source = "trained"
        else:
            folder, source = found
            log.debug("%s: found by its run key (%s, %s)", spec.model, source, key[:12])
    if source == "trained":
        push(settings, key, folder, memo, spec.model)
    return load_run(folder, source != "trained", source)


def load_parent(settings: Settings, name: str | None, key: str) -> Any:
    """The trained model of a parent run, to continue from."""
    found = locate(settings, key, weights=True)
    if found is None:
        raise CacheError(f"the run {key[:12]} of {name}, which a model starts from, is not in "
                         f"the run cache {run_store(settings).root}; run the build again")
    return load_run(*found).load_model()


def memo_inputs(spec: RunSpec, settings: Settings, dataset: Dataset) -> dict[str, Any]:
    """The cheap inputs of one run's memo key but its parent's memo key (no TensorFlow)."""
    study = settings.study
    code = {p.name: file_digest(p) for p in study.code_files()}
    return {"format": TRAINING_FORMAT, "code": code,
            "training": file_digest(Path(__file__)), "batch_size": settings.batch_size,
            "image_size": settings.image_size, "manifest": dataset.manifest,
            "strategy": settings.strategy, "versions": versions(),
            "seed": spec.seed, "model": spec.model, "builder": study.models[spec.model].builder,
            "epochs": spec.epochs, "base_weights": spec.base_weights} | _precision_part(spec)


def memo_keys(specs: list[RunSpec], settings: Settings, dataset: Dataset) -> dict[str, str]:
    """Per run (id → key), a key from cheap inputs (no TensorFlow): the study's code and
    the training source stand in for the architecture, so the same memo key always means
    the same run key. A parent's memo key is part of its child's; specs: parents first."""
    keys: dict[str, str] = {}
    for spec in specs:
        keys[spec.id] = digest(memo_inputs(spec, settings, dataset) | {
            "parent": keys[spec.parent_id] if spec.parent_id else None})
    return keys


def _memo_path(settings: Settings, memo: str) -> Path:
    return run_store(settings).root / "memo" / f"{memo}.json"


def key_for_memo(settings: Settings, memo: str) -> str | None:
    """The run key a memo key names, from the run cache's memo, the freeze or the remote
    run cache (no TensorFlow); None when none knows it."""
    try:
        key = json.loads(_memo_path(settings, memo).read_text())["key"]
        if run_store(settings).get(key) is not None:
            return str(key)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    key = freeze.key_for_memo(settings.study.path, memo)
    if key is None and settings.remote_cache:
        key = _remote(settings, "reading a memo key", lambda r: r.key_for_memo(memo))
    return key


def remember(settings: Settings, memo: str, model: str, key: str) -> None:
    """Record that the run of memo key memo has the run key key."""
    write_atomic(_memo_path(settings, memo), json.dumps({"model": model, "key": key}))


def known_runs(specs: list[RunSpec], settings: Settings, dataset: Dataset) -> dict[str, str]:
    """The run keys (by run id) that the memo knows and the run cache, the freeze or the
    remote run cache holds whole, without TensorFlow; specs: parents first."""
    known = {}
    for run, memo in memo_keys(specs, settings, dataset).items():
        key = key_for_memo(settings, memo)
        if key is not None and held(settings, key):
            known[run] = key
    return known


def held(settings: Settings, key: str) -> bool:
    """Whether the run cache, the freeze or the remote run cache holds run key."""
    if entry_folder(settings, key) is not None:
        return True
    if settings.remote_cache:
        return bool(_remote(settings, f"looking up run {key[:12]}", lambda r: r.has(key)))
    return False


def page_tokens(known: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """What the page keys hold of the known runs: each run key, marked where the run's
    weights are not at hand (a freeze without them)."""
    from .handoff import page_token

    return {run: page_token(key, _weights_at_hand(settings, key)) for run, key in known.items()}


def find_or_fit(spec: RunSpec, settings: Settings, dataset: Dataset, arrays: Any,
                weights: str | Path | None = None, parent: str | None = None,
                known: str | None = None, memo: str | None = None,
                stop: threading.Event | None = None) -> RunEntry:
    """The run of one spec as its runs.json entry: from the run cache, the freeze or the
    remote run cache without importing TensorFlow when its key is known (known, else its
    memo key), else through fit(), remembering its key under its memo key. arrays is called
    only when fit() needs the decoded images."""
    key = known or (key_for_memo(settings, memo) if memo else None)
    found = locate(settings, key) if key else None
    if found is not None:
        run = load_run(found[0], True, found[1])
    else:
        run = fit(spec, settings, dataset, arrays(), weights, parent, stop, memo)
        if memo:
            remember(settings, memo, spec.model, run.record["key"])
    return ready_entry(spec, settings, dataset, run)


def ready_entry(spec: RunSpec, settings: Settings, dataset: Dataset, run: Run) -> RunEntry:
    """The runs.json entry of a ready run (found, or trained here or on a cluster), said in
    one line; a run not from the freeze while a frozen run of the same model and seed exists
    gets a note saying which inputs differ."""
    note = None
    if run.source != "freeze":
        note = freeze.why_not(settings.study.path, spec.model, spec.seed, settings.profile,
                              frozen_inputs(spec, settings, dataset, run.record.get("parent")),
                              run.key)
        if note:
            log.warning("%s: not from the freeze: %s", run_label(
                spec.model, spec.seed, len(settings.seed_list)), note)
    title = settings.study.models[spec.model].title
    entry = run_entry(run.record, not run.cached, title, run.source, run.has_weights, note)
    say_ready(spec, settings, entry)
    return entry


def frozen_inputs(spec: RunSpec, settings: Settings, dataset: Dataset,
                  parent: str | None) -> dict[str, Any]:
    """What a frozen run records of its inputs, to say later why it could not be used: its
    memo inputs and the run key it starts from."""
    return memo_inputs(spec, settings, dataset) | {"parent": parent}


def say_ready(spec: RunSpec, settings: Settings, entry: RunEntry) -> None:
    """One line (and event) per run ready: trained now, or found in the run cache."""
    trained, seconds = bool(entry["trained"]), float(entry["train_seconds"])
    how = f"trained in {seconds:.1f} s" if trained else LOADED[entry["source"]]
    emit(log, RunDone(spec.id, trained, seconds if trained else 0.0),
         "%s: %s (%s)", run_label(spec.model, spec.seed, len(settings.seed_list)), how,
         entry["key"][:12])


LOADED = {"cache": "loaded from the run cache", "freeze": "loaded from the freeze (frozen/)",
          "remote": "pulled from the remote run cache", "trained": "trained"}


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Training steps per epoch (the last batch may be short)."""
    return max(1, math.ceil(images / max(1, batch_size)))


def earlier_step_seconds(settings: Settings) -> dict[str, float]:
    """Per model, the seconds per training step (validation included) of its latest run in
    the run cache trained with this batch and image size and thread count: an estimate
    from an earlier build on this machine (no TensorFlow, records only)."""
    entries = run_store(settings).entries
    best: dict[str, tuple[str, float]] = {}
    threads = intra_op_threads()
    for path in entries.glob(f"*/{RECORD_FILE}") if entries.is_dir() else ():
        try:
            r = json.loads(path.read_text())
            if (r["batch_size"], r["image_size"]) != (settings.batch_size,
                                                      settings.image_size):
                continue
            if r["environment"].get("intra_op_threads") not in (None, threads):
                continue
            steps = steps_per_epoch(int(r["images"]["train"]), r["batch_size"])
            epochs = [float(s) for s in r["epoch_seconds"]]
            step = sum(epochs) / (len(epochs) * steps)
            if r["model"] not in best or r["trained_at"] > best[r["model"]][0]:
                best[r["model"]] = (r["trained_at"], step)
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
            continue
    return {model: step for model, (_, step) in best.items()}


def load_given(name: str, settings: Settings, entry: dict[str, Any]) -> Run:
    """Load a run the build already has (no TensorFlow needed)."""
    found = entry_folder(settings, entry["key"])
    if found is None:
        raise CacheError(f"run {entry['key'][:12]} of {name}, which this build trained or "
                         f"loaded, is no longer in the run cache {run_store(settings).root}; "
                         "run the build again")
    source = entry.get("source") or ("trained" if entry["trained"] else found[1])
    run = load_run(found[0], cached=not entry["trained"], source=source)
    log.debug("%s: %s (%s)", name, "trained by this build" if entry["trained"]
              else LOADED.get(source, source), entry["key"][:12])
    return run


def training_error(spec: RunSpec, settings: Settings, exc: Exception) -> TrainingError:
    """One clear line for an exception TensorFlow or Keras raised while training a run
    (the seed named when the build has several; a hint when base weights could not be
    fetched)."""
    seed = f" (seed {spec.seed})" if len(settings.seed_list) > 1 else ""
    hint = (" (no ImageNet weights could be fetched: pass --weights PATH or set "
            "CATDOG_WEIGHTS to a local copy)"
            if settings.study.models[spec.model].weights and "URL fetch" in str(exc) else "")
    return TrainingError(f"training {spec.model}{seed} failed: {type(exc).__name__}: "
                         f"{str(exc).strip()[:500]}{hint}")


def missing_run(name: str, settings: Settings) -> ConfigError:
    """A page asked for a run this build does not have."""
    return ConfigError(f"this build has no run of {name!r}; a page fits it only with a "
                       f"literal name, st.fit({name!r}), and {settings.study.path.name} must "
                       "declare it")
