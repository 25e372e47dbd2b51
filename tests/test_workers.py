"""Independent runs in worker processes: the same run keys and histories as one by one,
parents first."""

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from catdog_report import data, execute, handoff, training
from catdog_report.config import Settings
from catdog_report.errors import Interrupted
from conftest import make_images
from test_study import write_study

pytestmark = pytest.mark.slow


def _train(tmp_path: Path, n_workers: int, stop: threading.Event | None = None,
           epochs: dict[str, int] | None = None) -> handoff.RunBook:
    shapes = tmp_path.parent / "shapes"
    if not shapes.exists():
        make_images(shapes, classes=("circles", "squares"))
    study = write_study(tmp_path, models__small__builder="builders.py:convnet")
    s = Settings(profile="quick", project_dir=tmp_path, study_file=study,
                 data_dir=shapes, cache_dir=tmp_path / "cache", image_size=32, batch_size=8,
                 seeds=2, workers=n_workers, epochs=epochs or {})
    ds = data.scan(s, s.data_dir)
    handoff.write_dataset(s.build_dir, ds)
    book = handoff.RunBook(s.build_dir, s.seed)
    order: list[str] = []
    execute.train_runs(s, ds, training.run_specs_for(s, None), None, book, order.append,
                       stop or threading.Event())
    book.order = order  # type: ignore[attr-defined]
    return book


def test_workers_train_the_same_runs_as_one_by_one(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    one = _train(tmp_path / "one", 1)
    caplog.clear()
    caplog.set_level(logging.INFO)
    two = _train(tmp_path / "two", 2)
    said = [r.getMessage() for r in caplog.records]  # the workers' lines reach this process
    for run in ("small seed 0", "small seed 1", "tuned seed 0", "tuned seed 1"):
        assert sum(m.startswith(f"training {run}: ") for m in said) == 1, said
        assert sum(m.startswith(f"{run}: trained in ") for m in said) == 1, said
        assert any(m.startswith(f"{run} epoch 1/") for m in said), said
    assert {i: e["key"] for i, e in one.by_id.items()} == {
        i: e["key"] for i, e in two.by_id.items()}  # same keys: same inputs, same cache
    order = two.order  # type: ignore[attr-defined]
    assert sorted(order) == ["small@0", "small@1", "tuned@0", "tuned@1"]
    for seed in (0, 1):  # a child is ready only after its parent of the same seed
        assert order.index(f"small@{seed}") < order.index(f"tuned@{seed}")
    assert all(e["parent"] == two.by_id[f"small@{e['seed']}"]["key"]
               for e in two.by_id.values() if e["model"] == "tuned")
    again = _train(tmp_path / "two", 2)  # everything cached: no worker is needed
    assert not any(e["trained"] for e in again.by_id.values())
    for entry in one.by_id.values():  # same histories, bit for bit (same threads per run)
        records = [json.loads((tmp_path / path / "cache" / "runs" / "entries" / entry["key"]
                               / "record.json").read_text()) for path in ("one", "two")]
        assert records[0]["history"] == records[1]["history"]
        assert records[0]["test"] == records[1]["test"]
        assert (records[0]["environment"]["intra_op_threads"]
                == records[1]["environment"]["intra_op_threads"] == training.intra_op_threads())


def test_intra_op_threads_are_tensorflows_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    assert training.intra_op_threads() == len(os.sched_getaffinity(0))  # what TF would use
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")
    assert training.intra_op_threads() == 3
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "0")  # TensorFlow reads 0 as its default
    assert training.intra_op_threads() == len(os.sched_getaffinity(0))


def test_intra_op_threads_set_through_tf_config_win() -> None:
    import subprocess
    import sys

    code = ("import tensorflow as tf\nfrom catdog_report import training\n"
            "tf.config.threading.set_intra_op_parallelism_threads(3)\n"
            "print(training.intra_op_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TF_NUM_INTRAOP_THREADS": "1"}, check=True)
    assert out.stdout.split()[-1] == "3"  # what TensorFlow will use, not the variable


def test_a_stopped_build_stops_the_workers(tmp_path: Path) -> None:
    import time

    stop = threading.Event()
    threading.Timer(15, stop.set).start()  # the workers are training by then
    t0 = time.perf_counter()
    with pytest.raises(Interrupted):
        _train(tmp_path / "stopped", 2, stop, epochs={"small": 100_000})
    assert time.perf_counter() - t0 < 60  # 100,000 epochs would take hours
    entries = tmp_path / "stopped" / "cache" / "runs" / "entries"
    assert not entries.exists() or not list(entries.iterdir())  # nothing half-trained
