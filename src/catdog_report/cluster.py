"""Training runs on a Dask distributed cluster (--cluster local[:N] or a scheduler address).

Each run that the run cache lacks is one Dask task; a run that starts from another is
submitted with its parent's future, so Dask starts it once the parent is trained and hands
it the parent's entry. Workers need no shared disk: a task receives the study's code (its
study.yml and builder files), the decoded images (scattered once per build), the base
weights file's bytes and its parent's entry; it trains into a temporary run cache of its
own and returns the entry as a tar with its SHA-256. The build process verifies it, writes
it into its run cache atomically (Store.put) and remembers its memo key, so nothing half
written is ever kept, and a worker that dies mid-run has its task retried by the scheduler
on another worker (or the build fails, naming the run).

How TensorFlow and oneDNN split an op's work, and so the rounding of floating-point sums,
follows the size of the intra-op thread pool, so every task sets the thread count a run has
when trained one by one in the build process (RunSpec.threads): the keys and histories are
the same, bit for bit, as one by one. The workers' log lines (progress events included)
reach the build's log through Dask's event topics.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import pickle
import re
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import environment
from .cache import checksum_problem, temp_folder
from .environment import VARIABLES
from .errors import BuildError, CacheError, CatdogError, ConfigError, Interrupted, TrainingError
from .plan import RunSpec

log = logging.getLogger(__name__)

LOCAL = re.compile(r"^local(?::(\d+))?$")
ADDRESS = re.compile(r"^(tcp|tls)://[A-Za-z0-9._\-\[\]:]+:\d+/?$")
# A local cluster retries a run whose worker died once, elsewhere. An error the run raises
# is not retried (no `retries=`): a builder's or TensorFlow's error comes back the same.
ALLOWED_FAILURES = 1
# Data sent with scatter has no recipe: where a scheduler's Active Memory Manager drops the
# extra copies of a broadcast (its ReduceReplicas policy, on by default), the one worker left
# holding it takes it along when it dies, and the runs that need it are cancelled. The build
# sends it again with those runs, this many times. A local cluster keeps every copy.
RESENDS = 1
START_TIMEOUT = 120  # seconds to start a local cluster or reach a scheduler
CLOSE_TIMEOUT = 30  # seconds to close the client and a local cluster
LOG_TOPIC = "catdog-report-log"
POLL = 0.5  # seconds between checks of the build's stop event while runs train
# Set in a local cluster's workers: once TensorFlow is loaded, the process ends at exit
# without its exit handlers (TensorFlow's held every close up by 4 s, then was killed)
QUICK_EXIT = VARIABLES["local_worker"]  # set in a local cluster's workers


def check(value: str) -> str:
    """A valid --cluster value (local, local:N, tcp://host:port, tls://host:port), else a
    ConfigError saying what is expected."""
    match = LOCAL.match(value)
    if match and (match.group(1) is None or int(match.group(1)) > 0):
        return value
    if ADDRESS.match(value):
        return value.rstrip("/")
    raise ConfigError(f"--cluster {value!r} is neither local, local:N (N worker processes on "
                      "this machine, N > 0) nor a Dask scheduler address such as "
                      "tcp://host:8786; give one of those")


def local_workers(value: str) -> int | None:
    """The worker processes of a local cluster (local: one per core), None for an address."""
    match = LOCAL.match(value)
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) else len(os.sched_getaffinity(0))


# --- the build process's side ------------------------------------------------------------


@contextlib.contextmanager
def connect(value: str, threads: int) -> Iterator[Any]:
    """A Dask Client for --cluster value: a LocalCluster of N worker processes (one thread
    each, the scheduler in this process) closed on the way out, or a running scheduler."""
    import dask
    from distributed import Client, LocalCluster

    n = local_workers(value)
    cluster = None
    t0 = time.perf_counter()
    chatty = logging.getLogger("distributed")
    saved = chatty.level
    chatty.setLevel(logging.CRITICAL)  # its steps and failures: the build says them its way
    try:
        if n is not None:
            # every worker keeps its copy of the data sent (no Active Memory Manager), so a
            # killed worker's run is retried on another without sending it again
            with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                                  "distributed.scheduler.active-memory-manager.start": False}):
                cluster = LocalCluster(
                    n_workers=n, processes=True, threads_per_worker=1, dashboard_address=None,
                    silence_logs=logging.ERROR, timeout=START_TIMEOUT,
                    env={"TF_NUM_INTRAOP_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2",
                         QUICK_EXIT: "1"})
            client = Client(cluster, timeout=START_TIMEOUT)
            where = f"a local Dask cluster of {n} worker process{'es' * (n != 1)}"
        else:
            client = Client(value, timeout=START_TIMEOUT)
            where = f"the Dask scheduler at {value}"
    except OSError as exc:  # a scheduler that does not answer: TimeoutError is an OSError
        chatty.setLevel(saved)
        if cluster is not None:
            cluster.close(timeout=CLOSE_TIMEOUT)
        raise BuildError(f"could not reach {value} within {START_TIMEOUT} s ({exc}); start a "
                         "Dask scheduler there (`dask scheduler`) with workers that have "
                         "catdog-report installed, or use --cluster local:N") from None
    log.info("training on %s (started in %.1f s)", where, time.perf_counter() - t0)
    try:
        yield client
    finally:
        chatty.setLevel(logging.ERROR)  # workers stopped on purpose: no warnings about it
        with contextlib.suppress(Exception):
            client.close(timeout=CLOSE_TIMEOUT)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=CLOSE_TIMEOUT)
        chatty.setLevel(saved)


def study_files(study: Any) -> dict[str, bytes]:
    """The study's own files a worker needs (study.yml and its code files), by path
    relative to their common folder."""
    paths = [Path(study.path), *study.code_files()]
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def pack(folder: Path) -> bytes:
    """A run entry folder as tar bytes (files only, sorted, relative names)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, dest: Path) -> None:
    """Write a packed entry's files into dest and check them against its checksums.json
    (a CacheError if anything is missing, extra or different); only plain files with
    relative names inside dest are accepted."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts:
                raise CacheError(f"a trained entry holds {member.name!r}, which is not a "
                                 "plain file inside the entry; retrain the run")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # a regular file
            target.write_bytes(source.read())
    problem = checksum_problem(dest)
    if problem is not None:
        raise CacheError(f"a trained entry's files differ from its checksums ({problem})")


def train(client: Any, jobs: list[RunSpec], settings: Any, dataset: Any, arrays: Any,
          base: str | None, parent_entry: Callable[[RunSpec], bytes | None],
          done: Callable[[RunSpec, dict[str, Any]], None], stop: threading.Event) -> None:
    """Train jobs (parents first) as Dask tasks; done(spec, result) is called here as each
    comes back (result: key, entry bytes, their sha256). parent_entry(spec) packs the entry
    of a parent that is not among jobs, or was trained already. Setting stop cancels the
    tasks. Runs cancelled because the cluster lost the data sent for them are sent again
    with the data, RESENDS times, then the build fails naming one."""
    from distributed import Event

    token = uuid.uuid4().hex[:8]
    stopper = Event(f"catdog-report-stop-{token}", client=client)
    build_level = logging.getLogger("catdog_report").getEffectiveLevel()
    client.subscribe_topic(LOG_TOPIC, _relay)
    payload = {"arrays": arrays, "dataset": dataset, "study": study_files(settings.study),
               "weights": _weights(base)}
    left = jobs
    try:
        for attempt in range(RESENDS + 1):
            if attempt:
                log.warning("the cluster %s lost the data sent for %s (the workers holding "
                            "it died or left): sending it again", settings.cluster,
                            ", ".join(spec.id for spec in left))
            [shared] = client.scatter([payload], hash=False, broadcast=True)
            futures = _submit(client, left, settings, shared, parent_entry,
                              (build_level, stopper.name), f"{token}.{attempt}")
            left = _collect(client, futures, settings, done, stop, stopper)
            if not left:
                return
        raise BuildError(f"training {left[0].id} stopped: the cluster {settings.cluster} "
                         f"lost the data sent for it {RESENDS + 1} times (the workers "
                         "holding it died or left); run the build again")
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(LOG_TOPIC)


def _submit(client: Any, jobs: list[RunSpec], settings: Any, shared: Any,
            parent_entry: Callable[[RunSpec], bytes | None], how: tuple[int, str],
            token: str) -> dict[str, tuple[RunSpec, Any]]:
    """One task per job, by task key, in the plan's order (the first pages start first); a
    child gets its parent's future where the parent is among jobs, else its entry."""
    futures: dict[str, Any] = {}
    for i, spec in enumerate(jobs):
        parent = futures.get(spec.parent_id) if spec.parent_id else None
        if spec.parent_id and parent is None:
            parent = parent_entry(spec)
        futures[spec.id] = client.submit(
            train_task, spec.to_dict(), settings.to_json(), shared, parent, *how,
            key=f"train {spec.id} {token}", pure=False, priority=len(jobs) - i)
    return {future.key: (spec, future) for spec, future in
            zip(jobs, futures.values(), strict=True)}


def _collect(client: Any, tasks: dict[str, tuple[RunSpec, Any]], settings: Any,
             done: Callable[[RunSpec, dict[str, Any]], None], stop: threading.Event,
             stopper: Any) -> list[RunSpec]:
    """Wait for every task: hand each finished run to done, raise a failed run's error
    (stopping the others), and return the runs cancelled because their data was lost."""
    pending = {future for _, future in tasks.values()}
    lost: list[RunSpec] = []
    try:
        while pending:
            if stop.is_set():  # interrupted, or a page failed
                raise Interrupted("the build stopped its training")
            finished = [future for future in pending if future.done()]
            if not finished:
                time.sleep(POLL)
            pending.difference_update(finished)
            # a run's own error first: the runs that lost its data are cancelled after it
            for future in sorted(finished, key=lambda f: f.status == "cancelled"):
                spec = tasks[future.key][0]
                if future.status == "cancelled":
                    lost.append(spec)
                elif future.status != "finished":
                    raise _failure(spec, future.exception(timeout=CLOSE_TIMEOUT), settings)
                else:
                    done(spec, future.result(timeout=CLOSE_TIMEOUT))
    except BaseException:
        with contextlib.suppress(Exception):
            stopper.set()  # a running task stops at its next batch, on any cluster
            client.cancel(list(pending), force=True)
        raise
    return [spec for spec, _ in tasks.values() if spec in lost]  # in the plan's order


def _weights(base: str | None) -> tuple[str, bytes] | str | None:
    """The base weights as a worker gets them: a file's name and bytes, or Keras's name."""
    if base is None or base == "imagenet":
        return base
    path = Path(base)
    return path.name, path.read_bytes()


def _failure(spec: RunSpec, exc: BaseException | None, settings: Any) -> CatdogError:
    """One line for a run whose task failed: its own error, or its worker's death."""
    from distributed import KilledWorker

    from .training import training_error

    if isinstance(exc, CatdogError):
        return exc
    if isinstance(exc, KilledWorker):
        return TrainingError(f"training {spec.id} failed: the worker process training it "
                             "died (killed, or out of memory) each time it was tried; give "
                             "the cluster's workers more memory, or train one by one without "
                             "--cluster")
    if isinstance(exc, Exception):
        return training_error(spec, settings, exc)
    return BuildError(f"training {spec.id} stopped on the cluster ({exc!r})")


def _relay(event: tuple[float, Any]) -> None:
    """In the build process: hand a worker's log record to its logger here."""
    _, payload = event
    with contextlib.suppress(Exception):  # a record this process cannot read is dropped
        record = pickle.loads(payload)
        logging.getLogger(record.name).handle(record)


# --- the worker's side -------------------------------------------------------------------


class _Forward(logging.Handler):
    """In a worker, during a task: send each record to the build through Dask's events."""

    def __init__(self, worker: Any, level: int) -> None:
        super().__init__(level)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg, record.args = record.getMessage(), None
            record.exc_info = record.exc_text = None
            self.worker.log_event(LOG_TOPIC, pickle.dumps(record))
        except Exception:  # never fail a run for a log line
            self.handleError(record)


def set_threads(threads: int) -> None:
    """TensorFlow's intra-op threads in this worker: set before TensorFlow starts, else
    checked (a worker that trained before kept the count it started with)."""
    from .training import intra_op_threads

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        return
    if intra_op_threads() == threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        raise TrainingError(f"this Dask worker already runs TensorFlow with "
                            f"{intra_op_threads()} intra-op threads, not the build's "
                            f"{threads}; start the workers with TF_NUM_INTRAOP_THREADS="
                            f"{threads}") from None


def train_task(spec: dict[str, Any], settings_json: str, shared: dict[str, Any],
               parent: dict[str, Any] | bytes | None, level: int, stop_name: str
               ) -> dict[str, Any]:
    """One run, as a Dask task: train it into a temporary run cache of this worker and
    return its entry (key, tar bytes, sha256)."""
    from distributed import Event, get_worker

    run = RunSpec(**spec)
    worker = get_worker()
    if getattr(worker, "nthreads", 1) != 1:  # Keras's seed and precision are process-wide
        raise TrainingError(f"training {run.id} needs Dask workers of one thread each, and "
                            f"{worker.address} has {worker.nthreads}; start the workers with "
                            "`dask worker SCHEDULER --nthreads 1` (more processes instead)")
    set_threads(run.threads)
    handler = _Forward(worker, level)
    # the run's lines, and TensorFlow's (its own handler writes to the worker's stderr): to
    # the build, whose display shows them as it shows its own
    loggers = [logging.getLogger(name) for name in ("catdog_report", "tensorflow")]
    saved = [(one.handlers, one.level, one.propagate) for one in loggers]
    for one in loggers:
        one.handlers = [handler]
        one.propagate = False
    loggers[0].setLevel(level)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(Event(stop_name), stop), daemon=True)
    watcher.start()
    try:
        return _train_here(run, json.loads(settings_json), shared, parent, stop)
    finally:
        stop.set()
        if environment.read().local_worker == "1":
            _exit_quickly()
        for one, (handlers, level_was, propagate) in zip(loggers, saved, strict=True):
            one.handlers, one.propagate = handlers, propagate
            one.setLevel(level_was)


@functools.cache
def _exit_quickly() -> None:
    """End this (local, throw-away) worker process at exit before TensorFlow's handlers
    run: exit handlers run last registered first."""
    import atexit

    atexit.register(os._exit, 0)


def _watch(remote: Any, stop: threading.Event) -> None:
    """Set stop when the build sets the Dask Event remote (or the task ends)."""
    with contextlib.suppress(Exception):
        while not stop.is_set():
            if remote.wait(timeout=1):
                stop.set()


def _train_here(run: RunSpec, values: dict[str, Any], shared: dict[str, Any],
                parent: dict[str, Any] | bytes | None, stop: threading.Event
                ) -> dict[str, Any]:
    """Lay out the study, weights and parent entry in a temp folder and train the run."""
    from . import training
    from .config import Settings

    with temp_folder("catdog-report-task-") as tmp:
        study_root = tmp / "study"
        for name, data in shared["study"].items():
            (study_root / name).parent.mkdir(parents=True, exist_ok=True)
            (study_root / name).write_bytes(data)
        study_file = study_root / next(iter(shared["study"]))
        weights = shared["weights"]
        if isinstance(weights, tuple):
            (tmp / "weights").mkdir()
            path = tmp / "weights" / weights[0]
            path.write_bytes(weights[1])
            weights = str(path)
        settings = Settings.from_mapping(values | {
            "project_dir": str(study_root), "study_file": str(study_file),
            "cache_dir": str(tmp / "cache"), "data_dir": None,
            "weights": weights if weights not in (None, "imagenet") else None})
        parent_key = None
        if parent is not None:
            entry = parent if isinstance(parent, bytes) else parent["entry"]
            parent_key = _store_entry(training.run_store(settings), entry)
        try:
            result = training.fit(run, settings, shared["dataset"], shared["arrays"], weights,
                                  parent_key, stop)
        except CatdogError:
            raise
        except KeyboardInterrupt:  # the build set the stop event: an error, never a signal
            raise BuildError(f"training {run.id} was stopped by its build") from None
        except Exception as exc:  # TensorFlow and Keras raise many kinds: keep it picklable
            raise training.training_error(run, settings, exc) from None
        data = pack(result.folder)
    return {"key": result.key, "entry": data, "sha256": hashlib.sha256(data).hexdigest()}


def _store_entry(store: Any, data: bytes) -> str:
    """Write a packed entry into store (verified) and return its run key."""
    record = _record_of(data)
    key = record["key"]
    if store.get(key) is None:
        store.put(key, lambda tmp: unpack(data, tmp))
    return key


def _record_of(data: bytes) -> dict[str, Any]:
    """The record.json of a packed entry."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        member = tar.extractfile("record.json")
        if member is None:
            raise CacheError("a trained entry has no record.json; retrain the run")
        return json.loads(member.read())


def receive(store: Any, result: dict[str, Any], run: str) -> str:
    """In the build process: verify a task's entry (its sha256, then every file's
    checksum) and write it into store atomically; returns its key."""
    data = result["entry"]
    if hashlib.sha256(data).hexdigest() != result["sha256"]:
        raise CacheError(f"the entry of {run} came back from the cluster damaged (its "
                         "SHA-256 differs); nothing was stored; run the build again")
    record = _record_of(data)
    if record.get("key") != result["key"]:
        raise CacheError(f"the entry of {run} came back with the key {record.get('key')!r}, "
                         f"not {result['key']!r}; nothing was stored; run the build again")
    with store.lock(result["key"]):
        if store.get(result["key"]) is None:
            store.put(result["key"], lambda tmp: unpack(data, tmp))
    return result["key"]
