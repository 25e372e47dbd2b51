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
from .handoff import RunEntry
from .plan import RunSpec

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


def _run(spec: dict[str, Any], settings_json: str, build_dir: str, base: str | None,
         parent: str | None, memo: str) -> RunEntry:
    """One run, inside a worker: find it in the run cache or train it."""
    import json

    from . import data, handoff, training

    run = RunSpec(**spec)
    settings = Settings.from_mapping(json.loads(settings_json))
    dataset = handoff.read_dataset(Path(build_dir))
    try:
        return training.find_or_fit(run, settings, dataset,
                                    lambda: data.arrays(dataset, settings), base, parent,
                                    memo=memo)
    except CatdogError:
        raise
    except Exception as exc:  # TensorFlow and Keras raise many kinds; keep it picklable
        raise training.training_error(run, settings, exc) from None


def train(jobs: list[RunSpec], settings: Settings, workers: int, base: str | None,
          memo: dict[str, str], parent_key: Callable[[RunSpec], str | None],
          done: Callable[[RunSpec, RunEntry], None], stop: Any,
          finished: set[str] | None = None) -> None:
    """Train the runs of jobs in `workers` processes, each once the run it starts from is
    done (finished: the ids of runs that already are); the dataset is the one the build
    recorded in settings.build_dir; done() is called in this process as each run is
    ready. Setting `stop` kills the workers; nothing half-trained is stored."""
    import multiprocessing
    import threading


    pending = list(jobs)
    finished = set(finished or ())
    running: dict[Future[RunEntry], RunSpec] = {}
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    relay = threading.Thread(target=_relay, args=(queue,), daemon=True)
    relay.start()
    levels = (logging.getLogger().getEffectiveLevel(),
              logging.getLogger("catdog_report").getEffectiveLevel())
    threads = max(spec.threads for spec in jobs)  # one build: the same for every run
    pool = ProcessPoolExecutor(workers, context, _init, (threads, levels, queue))
    t0 = time.perf_counter()
    try:
        while pending or running:
            for spec in [j for j in pending if j.parent_id is None or j.parent_id in finished]:
                pending.remove(spec)
                future = pool.submit(_run, spec.to_dict(), settings.to_json(),
                                     str(settings.build_dir), base, parent_key(spec),
                                     memo[spec.id])
                running[future] = spec
            ready, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            if stop.is_set():  # interrupted, or a page failed
                raise Interrupted("the build stopped its training")
            for future in ready:
                spec = running.pop(future)
                done(spec, future.result())
                finished.add(spec.id)
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
