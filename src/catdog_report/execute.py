"""Execute a plan: its runs (found in the run cache, or trained in a thread or on a Dask
cluster) and its pages (each in its own kernel once the runs it shows are ready, or from
the page cache), writing build/runs.json as each run is ready."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import data, handoff, pages
from .config import Settings
from .environment import ENV_BUILD, ENV_SETTINGS
from .errors import BuildError, CacheError, CatdogError, Interrupted, PageError
from .handoff import RunBook, RunEntry
from .kernel import KernelPool, run_batch
from .plan import Plan, RunSpec
from .progress import PageDone, PageStarted, emit

log = logging.getLogger(__name__)


def kernel_env(settings: Settings) -> dict[str, str]:
    """The environment a page kernel starts with: the settings and where the build's
    dataset.json and runs.json are."""
    env = dict(os.environ)
    env.update({ENV_SETTINGS: settings.to_json(), ENV_BUILD: str(settings.build_dir),
                "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2",
                "PYTHONHASHSEED": str(settings.seed)})
    return env


def train(settings: Settings, dataset: data.Dataset, specs: Sequence[RunSpec],
          base: str | None) -> RunBook:
    """Find or train the runs of specs (parents first) outside a page build, as a build
    does: through the run cache, on settings.cluster when one is set.

    The dataset is recorded in settings.build_dir first (as for a build's pages); returns
    the book of ready runs (run id → its runs.json entry in book.by_id).
    """
    handoff.write_dataset(settings.build_dir, dataset)
    book = RunBook(settings.build_dir, settings.seed)
    train_runs(settings, dataset, specs, base, book, lambda _: None, threading.Event())
    return book


def train_runs(settings: Settings, dataset: data.Dataset, specs: Sequence[RunSpec],
               base: str | None, book: RunBook, on_ready: Callable[[str], Any],
               stop: threading.Event, known: Mapping[str, str] | None = None,
               decoded: Callable[[], Any] | None = None) -> None:
    """Find or train every run of specs (parents first), recording each in book and calling
    on_ready(run id) as it is ready; known: run id → key found by the memo, so TensorFlow
    is imported only when a run is not known to be cached; decoded: gives the decoded
    images (default: data.arrays, called once a run trains). Setting stop interrupts."""
    import functools

    from .training import memo_keys

    known = known or {}
    memo = memo_keys(list(specs), settings, dataset)
    arrays = functools.cache(decoded or (lambda: data.arrays(dataset, settings)))
    jobs: list[RunSpec] = []  # runs to train on the cluster
    for spec in specs:
        if stop.is_set():  # interrupted, or a page failed
            raise Interrupted("the build stopped its training")
        found = known.get(spec.id)
        if settings.cluster:
            waits = spec.parent_id in {j.id for j in jobs}  # its parent trains there
            if found is None and not waits:
                found = _held_by_key(spec, settings, dataset, base, book, memo[spec.id])
            if waits or (found is None and _parent_at_hand(spec, settings, book)):
                jobs.append(spec)
                continue
        entry = _find_or_fit(spec, settings, dataset, base, book, arrays, found,
                             memo[spec.id], stop)
        _ready(book, on_ready, spec, entry)
    if jobs:
        _train_on_cluster(settings, dataset, jobs, base, memo, book, on_ready, stop)


def _held_by_key(spec: RunSpec, settings: Settings, dataset: data.Dataset,
                 base: str | None, book: RunBook, memo: str) -> str | None:
    """The key of a run the memo does not know if the run cache, the freeze or the remote
    run cache holds it (say, after an edit of the study's code that left the model as it
    was), from the built model as one by one finds it, so the cluster never retrains it;
    None if not (nothing is asked when none holds any run)."""
    from . import freeze, training

    store = training.run_store(settings)
    if not (store.entries.is_dir() and any(store.entries.iterdir())) \
            and not freeze.infos(settings.study.path) and not settings.remote_cache:
        return None
    try:
        key = training.key_of(spec, settings, dataset, base, book.parent_key(spec))
    except CatdogError:
        raise
    except Exception as exc:  # TensorFlow and Keras raise many kinds
        raise training.training_error(spec, settings, exc) from exc
    if not training.held(settings, key):
        return None
    training.remember(settings, memo, spec.model, key)  # found without training: as known
    return key


def _parent_at_hand(spec: RunSpec, settings: Settings, book: RunBook) -> bool:
    """Whether the run spec starts from (if any) is at hand with its trained weights, for
    its task; a parent frozen without them is retrained here, so its child trains here."""
    from . import training

    key = book.parent_key(spec)
    if key is None or training.locate(settings, key, weights=True) is not None:
        return True
    log.info("%s trains here: the run it starts from has no weights at hand", spec.id)
    return False


def _ready(book: RunBook, on_ready: Callable[[str], Any], spec: RunSpec,
           entry: RunEntry) -> None:
    """Record a ready run in runs.json and tell the pages waiting for it."""
    book.add(entry)
    on_ready(spec.id)


def _train_on_cluster(settings: Settings, dataset: data.Dataset, jobs: list[RunSpec],
                      base: str | None, memo: dict[str, str], book: RunBook,
                      on_ready: Callable[[str], Any], stop: threading.Event) -> None:
    """Train the runs the cache lacks on settings.cluster (cluster.py), one Dask task each;
    every entry that comes back is verified and stored here, with its memo key."""
    from . import cluster, training

    assert settings.cluster is not None
    store = training.run_store(settings)
    arrays = data.arrays(dataset, settings)  # decoded once here, sent once to each worker

    def parent_entry(spec: RunSpec) -> bytes:
        """The entry of a parent this build found in its run cache, for the child's task."""
        key = book.parent_key(spec)
        found = training.locate(settings, key, weights=True) if key else None
        if found is None:
            raise CacheError(f"the run {spec.parent_id}, which {spec.id} starts from, is no "
                             f"longer in the run cache {store.root}; run the build again")
        return cluster.pack(found[0])

    def done(spec: RunSpec, result: dict[str, Any]) -> None:
        """A run came back: store it, remember its memo key, push it to the remote run
        cache (if any), tell the pages."""
        key = cluster.receive(store, result, spec.id)
        training.remember(settings, memo[spec.id], spec.model, key)
        training.push(settings, key, store.path(key), memo[spec.id], spec.model)
        run = training.load_run(store.path(key), cached=False)
        _ready(book, on_ready, spec, training.ready_entry(spec, settings, dataset, run))

    log.info("training %d run(s) on the cluster %s (%d TensorFlow thread(s) each, as one "
             "by one)", len(jobs), settings.cluster, jobs[0].threads)
    t0 = time.perf_counter()
    with cluster.connect(settings.cluster, jobs[0].threads) as client:
        cluster.train(client, jobs, settings, dataset, arrays, base, parent_entry, done, stop)
    log.info("%d run(s) on the cluster: %.1f s", len(jobs), time.perf_counter() - t0)


def _find_or_fit(spec: RunSpec, settings: Settings, dataset: data.Dataset, base: str | None,
                 book: RunBook, arrays: Any, known: str | None, memo: str,
                 stop: threading.Event) -> RunEntry:
    """One run, with training errors made one clear line."""
    from . import training

    try:
        return training.find_or_fit(spec, settings, dataset, arrays, base,
                                    book.parent_key(spec), known, memo, stop)
    except (CatdogError, KeyboardInterrupt):
        raise
    except Exception as exc:  # TensorFlow and Keras raise many kinds
        raise training.training_error(spec, settings, exc) from exc


def execute(settings: Settings, dataset: data.Dataset, plan: Plan, base: str | None,
            failures: list[str]) -> RunBook:
    """Run the plan: the runs train in a thread; each page starts once its runs are ready
    (from the page cache when its key is known and stored), settings.jobs kernels at once.
    Each node of the plan gets its page; failures gets the failed pages' errors where the
    build goes on (keep_going, publish_failures). Returns the book of the build's runs."""
    book = RunBook(settings.build_dir, settings.seed)
    run_batch(lambda: _execute(settings, dataset, plan, base, book, failures))
    return book


async def _execute(settings: Settings, dataset: data.Dataset, plan: Plan, base: str | None,
                   book: RunBook, failures: list[str]) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    ready = {i: loop.create_future() for i in plan.ids}
    imported = loop.create_future()  # the builders of the runs to train here are imported
    stop = threading.Event()

    def train() -> None:
        try:
            decoded = _decode_meanwhile(settings, dataset, plan)
            import_builders(settings, plan)
            loop.call_soon_threadsafe(_done, imported)
            train_runs(settings, dataset, plan.specs, base, book,
                       lambda run: loop.call_soon_threadsafe(_done, ready[run]), stop,
                       plan.known, decoded)
        except BaseException as exc:  # a waiting page gets an Exception, never the interrupt
            failure = exc if isinstance(exc, Exception) else BuildError("training stopped")
            for future in [imported, *ready.values()]:
                loop.call_soon_threadsafe(_fail, future, failure)
            raise

    trainer = loop.run_in_executor(None, train) if ready else None
    if trainer is None:
        imported.set_result(None)
    try:
        await _schedule(settings, plan, ready, book, failures, stop, imported)
        if trainer:
            await trainer
    except BaseException:
        stop.set()  # the training thread stops at its next batch
        if trainer:  # its exception is the interrupt itself: nothing more to report
            trainer.add_done_callback(lambda f: f.cancelled() or f.exception())
        raise


def _decode_meanwhile(settings: Settings, dataset: data.Dataset,
                      plan: Plan) -> Callable[[], Any] | None:
    """Decode the images in another thread while TensorFlow and the builders import, when
    a run trains here (decoding releases the GIL; the import mostly holds it): what
    gives them (None: decoded when first needed, if ever)."""
    if settings.cluster or not plan.to_train:
        return None
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
        future = pool.submit(data.arrays, dataset, settings)
        pool.shutdown(wait=False)
    return future.result


def _done(future: Any) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: Any, exc: BaseException) -> None:
    """Hand a training failure to the pages waiting for that run."""
    if not future.done():
        future.set_exception(exc)
        future.exception()  # retrieved: the waiting page, if any, raises it


def import_builders(settings: Settings, plan: Plan) -> None:
    """Import the builders of the runs this process trains, so that an import error fails
    the build (naming study.yml and the model) before any page kernel starts."""
    if settings.cluster:  # the workers import them; their source was checked in the plan
        return
    names = list(dict.fromkeys(s.model for s in plan.specs if s.id in plan.to_train))
    if names:
        from .training import import_tensorflow

        import_tensorflow()  # builders import Keras: its start-up lines stay off the terminal
    for name in names:
        settings.study.builder(name)


async def _schedule(settings: Settings, plan: Plan, ready: dict[str, Any], book: RunBook,
                    failures: list[str], stop: threading.Event, imported: Any) -> None:
    """Start every page in nav order; each waits for its runs, then comes from the page
    cache or executes once the builders to train with are imported. The first failing page
    (without keep_going) stops the build."""
    import asyncio

    store = pages.page_store(settings.cache_root)
    slots = asyncio.Semaphore(settings.jobs)
    errors: list[PageError] = []
    total = len(plan.pages)
    env = kernel_env(settings)
    pool = KernelPool(env, str(settings.project_dir / "content"), settings.jobs)
    pending = [n for n in plan.pages if n.key is None or not store.path(n.key).is_dir()]

    async def start_ahead() -> None:
        """Once the study's code imported (an import error fails before any kernel starts),
        start kernels for the pages still to execute while some wait for training."""
        try:
            await imported
        except Exception:  # noqa: BLE001 - the pages report it
            return
        if any(n.key is None for n in pending):
            pool.want(len(pending) - sum(n.page is not None for n in pending))

    ahead = asyncio.ensure_future(start_ahead())

    def from_cache(node: Any) -> bool:
        """Take the page from the page cache if its key is stored there."""
        node.page = pages.load_cached(store, node.key, node.name, node.path)
        if node.page is not None:
            emit(log, PageDone(node.name, True, 0.0), "[%d/%d] %s: cached", node.number,
                 total, node.name)
        return node.page is not None

    async def one(node: Any) -> None:
        if node.key is not None and from_cache(node):
            return
        try:
            for i in node.ids:
                await ready[i]
        except Exception:
            if errors:  # training was stopped because a page failed
                return
            raise
        if node.key is None:
            node.key = node.key_for({i: handoff.page_token(book.by_id[i]["key"],
                                                           book.by_id[i].get("weights", True))
                                     for i in node.ids})
            if from_cache(node):
                pool.want(pool.wanted - 1)  # one page fewer to execute
                return
        await imported  # an import error of the study's code fails before any kernel starts
        async with slots:
            if errors:  # an earlier page failed and the build stops
                return
            t0 = time.perf_counter()
            emit(log, PageStarted(node.name), "[%d/%d] %s: executing", node.number, total,
                 node.name)
            try:
                page = await pages.run_page_async(node.path, env, settings.build_dir / "logs",
                                                  settings.cell_limit,
                                                  await pool.take(env, str(node.path.parent)))
            except PageError as exc:
                emit(log, PageDone(node.name, False, time.perf_counter() - t0, failed=True),
                     "%s", exc, level=logging.ERROR)
                if settings.publish_failures:  # the serve loop: show it, never cache it
                    node.page = pages.failure_page(node.path, exc)
                    failures.append(str(exc))
                elif settings.keep_going:
                    failures.append(str(exc))
                else:
                    errors.append(exc)
                    stop.set()
                return
            page.runs = [book.by_id[i] for i in node.ids]  # the stamp: as this build had them
            pages.save(store, node.key, page)
            node.page = page
            seconds = time.perf_counter() - t0
            emit(log, PageDone(node.name, False, seconds), "[%d/%d] %s: executed in %.1f s",
                 node.number, total, node.name, seconds)

    try:
        await asyncio.gather(*[one(node) for node in plan.pages])
    except BaseException:
        stop.set()  # training stops now, not after the kernels started ahead are closed
        raise
    finally:
        ahead.cancel()
        await pool.close()
    if errors:
        raise errors[0]


