import dataclasses
import json
import zipfile

import numpy as np
import pytest

from catdog_report import data, explain, handoff, models, tables, training
from catdog_report.cache import digest
from catdog_report.config import Settings
from catdog_report.errors import Interrupted

pytestmark = pytest.mark.slow


@pytest.fixture
def small(settings: Settings) -> Settings:
    return dataclasses.replace(settings, image_size=100, epochs={"model_one": 1, "model_two": 1})


def _key(name: str, s: Settings, weights: object = None, **overrides: object) -> str:
    ds = data.scan(s, s.data_dir)
    model = models.build(name, s, weights)  # type: ignore[arg-type]
    spec = training.spec_for(name, s, weights)  # type: ignore[arg-type]
    return digest(training.key_parts(model, spec, s, ds) | overrides)


def _fit(name: str, s: Settings, *args: object, **kwargs: object) -> training.Run:
    return training.fit(training.spec_for(name, s), s, *args, **kwargs)  # type: ignore[arg-type]


def _memo(s: Settings, ds: data.Dataset) -> dict[str, str]:
    return training.memo_keys(training.run_specs_for(s, None), s, ds)


def _known(s: Settings, ds: data.Dataset) -> dict[str, str]:
    return training.known_runs(training.run_specs_for(s, None), s, ds)


@pytest.mark.parametrize("name", ["model_one", "model_two", "model_four"])
def test_key_is_stable_across_auto_generated_layer_names(small: Settings, name: str) -> None:
    assert _key(name, small) == _key(name, small)


def test_every_part_of_the_key_invalidates(small: Settings, tiny_data,  # type: ignore[no-untyped-def]
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    base = _key("model_one", small)
    variants = {
        "epochs": _key("model_one", dataclasses.replace(small, epochs={"model_one": 2})),
        "batch": _key("model_one", dataclasses.replace(small, batch_size=4)),
        "size": _key("model_one", dataclasses.replace(small, image_size=128)),
        "seed": _key("model_one", dataclasses.replace(small, seed=1)),
        "strategy": _key("model_one", dataclasses.replace(small, strategy="mirrored")),
        "architecture": _key("model_two", small, model="model_one"),
    }
    from PIL import Image

    Image.new("RGB", (48, 48)).save(next((tiny_data / "train" / "cats").iterdir()))
    variants["manifest"] = _key("model_one", small)
    monkeypatch.setattr(training, "versions", lambda: {"tensorflow": "0.0"})
    variants["versions"] = _key("model_one", small)
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)


def test_optimizer_config_is_in_the_key(small: Settings) -> None:
    import keras

    ds = data.scan(small, small.data_dir)
    model = models.build("model_one", small)
    a = training.key_parts(model, training.spec_for("model_one", small), small, ds)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=model.loss)
    b = training.key_parts(model, training.spec_for("model_one", small), small, ds)
    assert a["optimizer"] != b["optimizer"] and a["architecture"] == b["architecture"]


def test_fit_miss_then_hit_then_one_model_retrains(small: Settings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ds = data.scan(small, small.data_dir)
    arrays = data.arrays(ds, small)
    first = _fit("model_one", small, ds, arrays)
    assert not first.cached and len(first.history["val_accuracy"]) == 1
    assert set(first.record["test"]) == {"loss", "accuracy"}
    assert len(first.record["predictions"]["true"]) == len(ds.test)

    calls = []
    real_train = training._train
    monkeypatch.setattr(training, "_train", lambda *a: calls.append(a[1].model) or real_train(*a))
    again = _fit("model_one", small, ds, arrays)
    assert again.cached and again.record == first.record and calls == []

    other = dataclasses.replace(small, epochs={"model_one": 1, "model_two": 2})
    assert _fit("model_one", other, ds, arrays).cached  # model two's epochs: no effect
    retrained = _fit("model_one", dataclasses.replace(small, epochs={"model_one": 2}),
                             ds, arrays)
    assert not retrained.cached and calls == ["model_one"]


def test_entry_is_data_not_code_and_loads_in_safe_mode(small: Settings) -> None:
    ds = data.scan(small, small.data_dir)
    run = _fit("model_one", small, ds, data.arrays(ds, small))
    files = sorted(p.name for p in run.folder.iterdir())
    assert files == ["checksums.json", "gradcam.npz", "model.keras", "record.json"]
    with zipfile.ZipFile(run.folder / "model.keras") as z:
        assert not [n for n in z.namelist() if n.endswith((".pkl", ".pickle", ".py"))]
    with np.load(run.folder / "gradcam.npz", allow_pickle=False) as npz:  # arrays only
        assert [npz[k].dtype.kind for k in sorted(npz.files)] == ["b", "f", "u"]
    preds = tables.predictions(run.record)  # its pages take the maps of its test photos
    maps = explain.stored(run.folder, preds, run.record["class_names"], (32, 32))
    assert maps is not None and maps.files == list(ds.test.files) and maps.maps
    model = run.load_model()
    assert model.count_params() == run.record["params"]["total"]
    x, y = data.arrays(ds, small)["test"]  # its test scores are its weights' on the photos
    logits = explain.predict(model, x)
    np.testing.assert_allclose(run.record["predictions"]["prob"],
                               training.probabilities(logits), atol=1e-5)
    assert run.record["test"]["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))


def test_interrupted_training_leaves_no_entry(small: Settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ds = data.scan(small, small.data_dir)

    def crash(model, name, settings, dataset, arrays, folder, *rest):  # type: ignore[no-untyped-def]
        (folder / "model.keras").write_bytes(b"half")
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(training, "_train", crash)
        with pytest.raises(KeyboardInterrupt):
            _fit("model_one", small, ds, {})
    store = training.run_store(small)
    assert list(store.entries.iterdir()) == [] and list((store.root / "tmp").iterdir()) == []

    import threading

    stop = threading.Event()  # the build sets it from another thread when interrupted
    stop.set()
    with pytest.raises(Interrupted):  # a KeyboardInterrupt: no `except Exception` stops it
        _fit("model_one", small, ds, data.arrays(ds, small), stop=stop)
    assert list(store.entries.iterdir()) == [] and list((store.root / "tmp").iterdir()) == []


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from catdog_report import data, training
from catdog_report.config import Settings
from catdog_report.errors import Interrupted
out = {}
for strategy in ("none", "mirrored"):
    s = Settings(profile="quick", data_dir=sys.argv[1], cache_dir=sys.argv[2], image_size=100,
                 batch_size=8, epochs={"model_one": 2}, strategy=strategy)
    ds = data.scan(s, s.data_dir)
    run = training.fit(training.spec_for("model_one", s), s, ds, data.arrays(ds, s))
    out[strategy] = {"history": run.history, "test": run.record["test"], "key": run.record["key"],
                     "replicas": len(tf.config.list_logical_devices("CPU"))}
print(json.dumps(out))
"""


def test_mirrored_strategy_on_two_cpu_devices_matches_default(tiny_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", MIRRORED, str(tiny_data), str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["mirrored"]["replicas"] == 2
    # Per-replica BatchNorm statistics (4 images each instead of 8) and dropout streams
    # differ, so the two trajectories differ; both must train: the loss falls and the
    # (trivially separable) training images are learnt. Validation and test scores are not
    # compared: after 6 steps BatchNorm's moving statistics (momentum 0.99) are still near
    # their initial values, so inference-mode scores are noise at this size.
    for strategy in ("none", "mirrored"):
        history = out[strategy]["history"]
        assert history["loss"][-1] < history["loss"][0], (strategy, history["loss"])
        assert history["accuracy"][-1] >= 0.75, (strategy, history["accuracy"])
    assert out["none"]["key"] != out["mirrored"]["key"]  # the strategy is part of the key


INTER_OP = """
from catdog_report import malloc
from catdog_report.training import environment, import_tensorflow
import_tensorflow()
print(environment()["malloc"] == malloc.tune() != "")  # the record says which malloc trained
print(environment()["inter_op_threads"])
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("2", "0")])
def test_a_training_process_runs_one_inter_op_thread_unless_told(
        given: str | None, expected: str) -> None:
    """One inter-op thread where training imports TensorFlow (same numbers, faster fits);
    TF_NUM_INTEROP_THREADS, TensorFlow's own setting, wins (0 = left to TensorFlow)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTEROP_THREADS"}
    if given:
        env["TF_NUM_INTEROP_THREADS"] = given
    done = subprocess.run([sys.executable, "-c", INTER_OP], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["True", expected]


def test_memo_finds_the_run_without_fit_and_changes_with_the_inputs(
        small: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = data.scan(small, small.data_dir)
    decoded = []

    def arrays() -> object:
        decoded.append(1)
        return data.arrays(ds, small)

    assert _known(small, ds) == {}
    memo = _memo(small, ds)["model_one@0"]
    spec = training.spec_for("model_one", small)
    first = training.find_or_fit(spec, small, ds, arrays, memo=memo)
    assert first["trained"] and decoded == [1]
    assert first["key"] == _key("model_one", small)  # the memo names the real run key
    known = _known(small, ds)
    assert known == {"model_one@0": first["key"]}  # found without TensorFlow (seed 0)

    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("fit() was called"))
    again = training.find_or_fit(spec, small, ds, arrays, known=known["model_one@0"])
    assert again | {"trained_at": 0} == first | {"trained": False, "trained_at": 0,
                                                 "source": "cache"}
    assert decoded == [1]

    other = dataclasses.replace(small, epochs={**small.epochs, "model_one": 2})
    changed = _memo(other, ds)
    assert changed["model_one@0"] != _memo(small, ds)["model_one@0"]
    assert changed["model_two@0"] == _memo(small, ds)["model_two@0"]
    assert _known(other, ds) == {}  # a changed input misses the memo

    for entry in (small.cache_root / "runs" / "entries").iterdir():  # entry gone: memo unused
        import shutil

        shutil.rmtree(entry)
    assert _known(small, ds) == {}


GIVEN = """
import json, os, sys
from catdog_report import notebook
run = notebook.study().fit("model_one")
from catdog_report import tables
layers = tables.layer_table(run.record)
print(json.dumps({"key": run.record["key"], "cached": run.cached,
                  "layers": layers.reset_index().to_dict("records"),
                  "totals": tables.parameter_totals(run.record),
                  "tf": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


def test_a_page_loads_a_given_run_without_tensorflow(small: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    ds = data.scan(small, small.data_dir)
    run = _fit("model_one", small, ds, data.arrays(ds, small))
    build_dir = tmp_path / "build"
    handoff.write_dataset(build_dir, ds)
    (build_dir / "runs.json").write_text(json.dumps({"runs": {"model_one": handoff.run_entry(
        run.record, True, "Model one")}}))
    env = dict(os.environ, CATDOG_SETTINGS=small.to_json(), CATDOG_BUILD_DIR=str(build_dir))
    out = subprocess.run([sys.executable, "-c", GIVEN], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["key"] == run.record["key"] and seen["cached"] is False  # trained this build
    first = seen["layers"][0]  # the model's layers, recorded at training time
    assert (first["type"], first["params"], first["trainable"]) == ("Conv2D", 896, 896)
    assert first["output shape"] == "(None, 98, 98, 32)"
    assert [row["type"] for row in seen["layers"]][:4] == [
        "Conv2D", "MaxPooling2D", "BatchNormalization", "Activation"]
    # the model's own parameters, never the optimizer's (Keras's summary counts those too)
    total = sum(row["params"] for row in seen["layers"])
    assert seen["totals"].startswith(f"Total params: {total:,} · trainable: {total - 64:,}")
    assert seen["totals"].endswith("non-trainable: 64 (64 BatchNorm moving statistics)")
    assert not seen["tf"] and not seen["keras"]
    assert "trained by this build" not in out.stderr  # the build said it once already


def test_a_model_that_starts_from_another(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_images
    from test_study import write_study

    shapes = make_images(tmp_path / "shapes", classes=("circles", "squares"))
    s = Settings(profile="quick", project_dir=tmp_path, study_file=write_study(tmp_path),
                 data_dir=shapes, cache_dir=tmp_path / "cache", image_size=32, batch_size=8)
    ds = data.scan(s, s.data_dir)
    arrays = data.arrays(ds, s)
    child = _fit("tuned", s, ds, arrays)  # fits its parent first
    parent = _fit("small", s, ds, arrays)
    assert parent.cached and child.record["parent"] == parent.key
    # the child continued from the parent's trained weights, not from a fresh model
    trained = [w for w in parent.load_model().get_weights()]
    started = training.load_parent(s, "small", parent.key).get_weights()
    assert all((a == b).all() for a, b in zip(trained, started, strict=True))
    more = dataclasses.replace(s, epochs={"small": 2})  # the parent changes: both retrain
    assert not _fit("tuned", more, ds, arrays).cached
    assert _fit("small", more, ds, arrays).cached
    assert _memo(more, ds)["tuned@0"] != _memo(s, ds)["tuned@0"]
    alone = dataclasses.replace(s, epochs={"tuned": 2})  # the child alone changes
    assert _fit("small", alone, ds, arrays).cached
    assert not _fit("tuned", alone, ds, arrays).cached


def test_bf16_is_keyed_and_trains(small: Settings) -> None:
    ds = data.scan(small, small.data_dir)
    arrays = data.arrays(ds, small)
    bf16 = dataclasses.replace(small, precision="bf16")
    run = _fit("model_one", bf16, ds, arrays)
    assert run.record["precision"] == "bf16" and not run.cached
    assert run.key != _key("model_one", small)  # float32's key has no precision in it
    assert training.key_parts(models.build("model_one", small),
                              training.spec_for("model_one", small), small, ds
                              ).get("precision") is None
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    assert run.load_model().layers[0].compute_dtype == "bfloat16"
    assert _fit("model_one", bf16, ds, arrays).cached
