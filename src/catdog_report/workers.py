"""Independent training runs in parallel worker processes (--workers N).

Each worker is a fresh (spawned) Python process. How TensorFlow and oneDNN split an op's
work, and so the order in which floating-point sums are rounded, follows the size of the
intra-op thread pool: a run trained with 1 thread differs from the same run with 2 in the
last bits, and after a few epochs in its history. So every worker keeps the thread count a
run has when trained one by one in the build process (training.intra_op_threads) and the
operating system shares the cores between the workers: the histories are the same, bit for
bit, as training the runs one by one, and the workers still fill the cores that one run
leaves idle (Python, the input pipeline, single-threaded ops). A run starts once its
parent's run (same seed) is ready; every run goes through the same run cache, keys and
memo as in the build process, so the run keys are the same too. For more than one
machine, this is where a run queue on an existing engine (Ray, Dask) would take the place
of the process pool.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import CatdogError, Interrupted

log = logging.getLogger(__name__)


def _init(threads: int, levels: tuple[int, int], queue: Any) -> None:
    """In each worker, before TensorFlow loads: the build's intra-op threads; its log records
    (progress events included) go to the build process through queue."""
    from logging.handlers import QueueHandler

    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = logging.getLogger()
    root.handlers[:] = [QueueHandler(queue)]
    root.setLevel(levels[0])
    logging.getLogger("catdog_report").setLevel(levels[1])


def _relay(queue: Any) -> None:
    """In the build process: hand each worker's log record to its logger here, until None."""
    while (record := queue.get()) is not None:
        logging.getLogger(record.name).handle(record)


def _run(name: str, settings_json: str, dataset_file: str, base: str | None,
         parent: str | None) -> dict[str, Any]:
    """One run, inside a worker: find it in the run cache or train it."""
    import json

    from . import data, training

    settings = Settings.from_mapping(json.loads(settings_json))
    dataset = data.read_dataset(Path(dataset_file))
    try:
        return training.find_or_fit(name, settings, dataset,
                                    lambda: data.arrays(dataset, settings), base, parent)
    except CatdogError:
        raise
    except Exception as exc:  # TensorFlow and Keras raise many kinds; keep it picklable
        raise training.training_error(name, settings, exc) from None


def train(jobs: list[tuple[str, Settings, str | None]], workers: int, dataset_file: Path,
          base: str | None, parent_key: Callable[[str, Settings], str | None],
          done: Callable[[str, Settings, dict[str, Any]], None], stop: Any,
          finished: set[tuple[str, int]] | None = None) -> None:
    """Train jobs (model, settings at its seed, parent model or None) in `workers`
    processes, each once its parent run is done (finished: (model, seed) runs that already
    are); done() is called in this process as each run is ready. Setting `stop` kills the
    workers; nothing half-trained is stored."""
    import multiprocessing
    import threading

    from .training import intra_op_threads

    pending = list(jobs)
    finished = set(finished or ())
    running: dict[Future[dict[str, Any]], tuple[str, Settings]] = {}
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    relay = threading.Thread(target=_relay, args=(queue,), daemon=True)
    relay.start()
    levels = (logging.getLogger().getEffectiveLevel(),
              logging.getLogger("catdog_report").getEffectiveLevel())
    pool = ProcessPoolExecutor(workers, context, _init, (intra_op_threads(), levels, queue))
    t0 = time.perf_counter()
    try:
        while pending or running:
            for job in [j for j in pending if j[2] is None or (j[2], j[1].seed) in finished]:
                name, settings, _ = job
                pending.remove(job)
                future = pool.submit(_run, name, settings.to_json(), str(dataset_file), base,
                                     parent_key(name, settings))
                running[future] = (name, settings)
            ready, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            if stop.is_set():  # interrupted, or a page failed
                raise Interrupted("the build stopped its training")
            for future in ready:
                name, settings = running.pop(future)
                done(name, settings, future.result())
                finished.add((name, settings.seed))
        log.info("%d run(s) in %d worker processes: %.1f s", len(jobs), workers,
                 time.perf_counter() - t0)
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()  # a training worker stops at once; its temp entry is swept
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        queue.put(None)  # after the last record of the workers that finished
        queue.cancel_join_thread()  # a killed worker may hold the queue's lock: never wait
        relay.join(timeout=5)
