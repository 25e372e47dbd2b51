"""Runs on a real Dask cluster (a LocalCluster, and a scheduler and workers started as their
own processes): the same run keys and histories as one by one, parents first, entries
verified and stored by the build, a killed worker's run retried elsewhere, a run whose
worker always dies failing in one line that names it."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from catdog_report import cluster, data, execute, handoff, training
from catdog_report.config import Settings
from catdog_report.errors import Interrupted, TrainingError
from conftest import make_images
from test_study import write_study

pytestmark = pytest.mark.slow

DIES = '''

def broken(image_size):
    raise ValueError("no such layer")


def dies(image_size):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-run, every time
'''


def _train(tmp_path: Path, cluster: str | None, stop: threading.Event | None = None,
           epochs: dict[str, int] | None = None, seeds: int = 2,
           builder: str = "builders.py:convnet", remote: Path | None = None,
           edit: str = "") -> handoff.RunBook:
    shapes = tmp_path.parent / "shapes"
    if not shapes.exists():
        make_images(shapes, classes=("circles", "squares"))
    study = write_study(tmp_path, models__small__builder=builder)
    with open(tmp_path / "builders.py", "a") as fh:
        fh.write(DIES + edit)
    s = Settings(profile="quick", project_dir=tmp_path, study_file=study,
                 data_dir=shapes, cache_dir=tmp_path / "cache", image_size=32, batch_size=8,
                 seeds=seeds, cluster=cluster, epochs=epochs or {},
                 remote_cache=str(remote) if remote else None)
    ds = data.scan(s, s.data_dir)
    handoff.write_dataset(s.build_dir, ds)
    book = handoff.RunBook(s.build_dir, s.seed)
    order: list[str] = []
    execute.train_runs(s, ds, training.run_specs_for(s, None), None, book, order.append,
                       stop or threading.Event())
    book.order = order  # type: ignore[attr-defined]
    return book


def _records(folder: Path, book: handoff.RunBook) -> dict[str, dict[str, Any]]:
    """The run records of a book, read from the run cache under folder."""
    entries = folder / "cache" / "runs" / "entries"
    return {i: json.loads((entries / e["key"] / "record.json").read_text())
            for i, e in book.by_id.items()}


def _nothing_half_written(folder: Path) -> None:
    """The run cache holds whole entries only: no temp folder, every entry verified."""
    runs = folder / "cache" / "runs"
    assert not (runs / "tmp").exists() or not list((runs / "tmp").iterdir())
    store = training.run_store(Settings(cache_dir=folder / "cache"))
    for entry in (runs / "entries").iterdir() if (runs / "entries").exists() else ():
        assert store.verify(entry) is None


def test_a_local_cluster_trains_the_same_runs_as_one_by_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    one = _train(tmp_path / "one", None)
    caplog.clear()
    caplog.set_level(logging.INFO)
    two = _train(tmp_path / "two", "local:2")
    said = [r.getMessage() for r in caplog.records]  # the workers' lines reach the build
    assert any(m.startswith("training on a local Dask cluster of 2 worker processes")
               for m in said), said
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
    records = [_records(tmp_path / name, book) for name, book in (("one", one), ("two", two))]
    for run in one.by_id:  # same histories, bit for bit (same threads per run)
        assert records[0][run]["history"] == records[1][run]["history"]
        assert records[0][run]["test"] == records[1][run]["test"]
        assert (records[0][run]["environment"]["intra_op_threads"]
                == records[1][run]["environment"]["intra_op_threads"]
                == training.intra_op_threads())
    _nothing_half_written(tmp_path / "two")
    memo = tmp_path / "two" / "cache" / "runs" / "memo"
    assert len(list(memo.glob("*.json"))) == 4  # the build remembers what the cluster trained
    caplog.clear()
    again = _train(tmp_path / "two", "local:2")  # everything cached: no cluster is started
    assert not any(e["trained"] for e in again.by_id.values())
    assert not any("Dask" in r.getMessage() for r in caplog.records)


def test_a_child_whose_parent_is_cached_gets_the_parents_entry(tmp_path: Path) -> None:
    first = _train(tmp_path / "p", "local:2", seeds=1, epochs={"small": 1, "tuned": 1})
    again = _train(tmp_path / "p", "local:2", seeds=1, epochs={"small": 1, "tuned": 2})
    assert not again.by_id["small@0"]["trained"] and again.by_id["tuned@0"]["trained"]
    assert again.by_id["tuned@0"]["parent"] == first.by_id["small@0"]["key"]
    _nothing_half_written(tmp_path / "p")


def test_a_stopped_build_stops_the_cluster(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(25, stop.set).start()  # the workers are training by then
    t0 = time.perf_counter()
    with pytest.raises(Interrupted):
        _train(tmp_path / "stopped", "local:2", stop, epochs={"small": 100_000})
    assert time.perf_counter() - t0 < 90  # 100,000 epochs would take hours
    entries = tmp_path / "stopped" / "cache" / "runs" / "entries"
    assert not entries.exists() or not list(entries.iterdir())  # nothing half-trained
    _nothing_half_written(tmp_path / "stopped")


def test_runs_the_remote_holds_are_never_sent_even_after_a_code_edit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    remote = tmp_path / "team-remote"
    a = _train(tmp_path / "a", "local:2", seeds=1, remote=remote)  # pushed from the cluster
    assert len(list((remote / "entries").iterdir())) == 2
    caplog.set_level(logging.INFO)
    # B's builders.py has one more comment: the memo (which holds the code) misses, the run
    # keys (from the built models) are the same, so the runs are pulled, not sent
    b = _train(tmp_path / "b", "local:2", seeds=1, remote=remote, edit="\n# B's comment\n")
    assert {i: (e["key"], e["source"]) for i, e in b.by_id.items()} == {
        i: (e["key"], "remote") for i, e in a.by_id.items()}
    assert not any("Dask" in r.getMessage() for r in caplog.records)
    _nothing_half_written(tmp_path / "b")


def test_a_run_whose_worker_always_dies_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"^training small@0 failed: the worker process "
                                            r"training it died .* each time it was tried"):
        _train(tmp_path / "dies", "local:2", seeds=1, builder="builders.py:dies")
    entries = tmp_path / "dies" / "cache" / "runs" / "entries"
    assert not entries.exists() or not list(entries.iterdir())
    _nothing_half_written(tmp_path / "dies")


def test_a_failing_builder_on_the_cluster_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"^the builder builders.py:broken of small failed: "
                                            r"ValueError: no such layer$"):
        _train(tmp_path / "broken", "local:2", seeds=1, builder="builders.py:broken")
    _nothing_half_written(tmp_path / "broken")


@pytest.fixture
def scheduler(tmp_path: Path) -> Any:
    """A Dask scheduler and two single-threaded workers, each its own process (as on a
    cluster); yields the scheduler's address."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
           # as Dask's defaults have it: its Active Memory Manager drops the copies of a
           # broadcast that no task running there needs
           "DASK_DISTRIBUTED__SCHEDULER__ACTIVE_MEMORY_MANAGER__START": "True",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    file = tmp_path / "scheduler.json"
    processes = [subprocess.Popen(
        [bin_dir / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", file], env=env, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not file.exists():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.2)
        processes.append(subprocess.Popen(
            [bin_dir / "dask", "worker", "--scheduler-file", file, "--nworkers", "2",
             "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"], env=env,
            stderr=subprocess.DEVNULL, cwd=tmp_path))
        yield json.loads(file.read_text())["address"]
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# small@0 is killed while both workers hold the data sent (the scheduler retries it on the
# other); tuned@0, which runs alone, once Dask's Active Memory Manager has dropped the other
# copy (the data is lost with the worker: the build sends it again with the run)
@pytest.mark.parametrize(("run", "copies"), [("small", 2), ("tuned", 1)])
def test_a_killed_worker_is_retried_elsewhere_by_address(
        tmp_path: Path, scheduler: str, caplog: pytest.LogCaptureFixture, run: str,
        copies: int) -> None:
    from distributed import Client

    epochs = {"small": 1, "tuned": 1, run: 200}  # the AMM runs every 2 s
    one = _train(tmp_path / "one", None, seeds=1, epochs=epochs)
    killed: list[int] = []
    with Client(scheduler, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)

        def kill_mid_run() -> None:
            """Kill the worker training run@0 once its second epoch is done, when the data
            sent for it has `copies` holders."""
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                if any(r.getMessage().startswith(f"{run} epoch 2/") for r in caplog.records):
                    sent = [sorted(holders) for key, holders in client.who_has().items()
                            if not str(key).startswith("train ")]
                    pids = client.run(os.getpid)
                    for worker, keys in client.processing().items():
                        if (any(f"{run}@0" in str(k) for k in keys) and sent
                                and len(sent[0]) == copies and worker in sent[0]):
                            os.kill(pids[worker], signal.SIGKILL)
                            killed.append(pids[worker])
                time.sleep(0.1)

        caplog.set_level(logging.INFO)
        killer = threading.Thread(target=kill_mid_run)
        killer.start()
        two = _train(tmp_path / "two", scheduler, seeds=1, epochs=epochs)
        killer.join()
    assert killed, f"no worker was training {run}@0 with {copies} copies of its data"
    said = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith(f"training {run}: ") for m in said) == 2, said  # tried twice
    assert sum(f"lost the data sent for {run}@0" in m and "sending it again" in m
               for m in said) == (copies == 1), said  # sent again where no copy was left
    for one_run in ("small", "tuned"):  # stored once
        assert sum(m.startswith(f"{one_run}: trained in ") for m in said) == 1, said
    assert {i: e["key"] for i, e in one.by_id.items()} == {
        i: e["key"] for i, e in two.by_id.items()}
    records = [_records(tmp_path / name, book) for name, book in (("one", one), ("two", two))]
    for run_id in one.by_id:  # the retried run is the same, bit for bit
        assert records[0][run_id]["history"] == records[1][run_id]["history"]
    _nothing_half_written(tmp_path / "two")


def test_a_local_cluster_keeps_every_copy_of_the_data_sent(tmp_path: Path) -> None:
    with cluster.connect("local:2", 1) as client:
        client.wait_for_workers(2, timeout=60)
        [sent] = client.scatter([{"arrays": b"x" * 1000}], hash=False, broadcast=True)
        time.sleep(5)  # two rounds of an Active Memory Manager, were one running
        assert len(client.who_has([sent])[sent.key]) == 2  # a killed worker loses no data


def test_a_thread_drawing_from_pythons_random_leaves_a_run_as_it_was(tmp_path: Path) -> None:
    import random

    quiet = _records(tmp_path / "quiet", _train(tmp_path / "quiet", None, seeds=1))
    drawing = threading.Event()

    def draw() -> None:
        """As a Dask worker's event loop does, beside the task that trains."""
        while not drawing.is_set():
            random.random()
            time.sleep(0)

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    try:
        busy = _records(tmp_path / "busy", _train(tmp_path / "busy", None, seeds=1))
    finally:
        drawing.set()
        thread.join()
    for run in quiet:  # Keras's default seeds come from the run's own Random(seed)
        assert quiet[run]["history"] == busy[run]["history"]
