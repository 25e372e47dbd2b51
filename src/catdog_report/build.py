"""One build: plan (pure), execute the plan (training thread + page kernels), then write the
docs and publish the site. Data flows one way: the build writes build/dataset.json and
build/runs.json, the page kernels and the stamps read them; nothing travels back."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import data, pages, site, stamp, weights
from .cache import digest, file_digest, write_atomic
from .config import DATASET_FILE, RUNS_FILE, Settings
from .environment import ENV_BUILD, ENV_SETTINGS
from .errors import BuildError, CatdogError, Interrupted, PageError
from .kernel import KERNEL
from .plan import Needs, Plan, make_plan, page_needs, run_id
from .progress import BuildPlanned, PageDone, PageStarted, RunPlan, StageDone, emit
from .study import Study

log = logging.getLogger(__name__)
LIBRARY = Path(__file__).parent
NEEDS_FORMAT = 3  # bump when page_needs() or pages.signature() change


@dataclass
class BuildResult:
    """What a build did."""

    pages: list[pages.Page] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # model → base-seed run
    seeds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # model → its runs
    failures: list[str] = field(default_factory=list)
    published: bool = False
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # data, plan, execute, docs, site


def library_digest() -> str:
    """A hash of the library's own source: a change re-executes the pages."""
    return digest({p.name: file_digest(p) for p in sorted(LIBRARY.glob("*.py"))})


def study_digest(settings: Settings) -> str:
    """A hash of the study's declaration and its own code (the builders the pages show)."""
    study = settings.study
    return digest({"study.yml": file_digest(study.path),
                   "code": {p.name: file_digest(p) for p in study.builder_files()}})


def resolve_data(settings: Settings) -> data.Dataset:
    """The dataset of this build (generated offline for a synthetic profile)."""
    t0 = time.perf_counter()
    spec = settings.profile_spec
    if spec.synthetic:
        from . import demo_data

        root = demo_data.generate_for(settings)
        source = "generated offline by catdog_report.synthetic"
    else:
        root, source = data.locate(settings.data_dir, settings.study.data)
    dataset = data.scan(settings, root, source)
    emit(log, StageDone("data", time.perf_counter() - t0),
         "data: %s (%s); train %d, validation %d, test %d images; %d skipped",
         root.name, source, len(dataset.train), len(dataset.validation),
         len(dataset.test), len(dataset.skipped))
    return dataset


def page_inputs(settings: Settings, dataset: data.Dataset, base: str | None) -> dict[str, Any]:
    """What every page's output depends on besides its own text and its runs."""
    return {
        "kernel": KERNEL, "library": library_digest(), "study": study_digest(settings),
        "manifest": dataset.manifest, "profile": settings.profile, "seed": settings.seed,
        "image_size": settings.image_size, "batch_size": settings.batch_size,
        "strategy": settings.strategy, "epochs": dict(settings.epochs),
        "weights": weights.weights_id(base), "versions": stamp.package_versions(),
        "data_source": dataset.source, "skipped": dataset.skipped,
    }


def kernel_env(settings: Settings) -> dict[str, str]:
    """The environment a page kernel starts with: the settings and where the build's
    dataset.json and runs.json are."""
    env = dict(os.environ)
    env.update({ENV_SETTINGS: settings.to_json(), ENV_BUILD: str(settings.build_dir),
                "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2",
                "PYTHONHASHSEED": str(settings.seed)})
    return env


def plan_build(settings: Settings, dataset: data.Dataset, base: str | None) -> Plan:
    """Parse every page in nav order and plan the runs and pages (no TensorFlow)."""
    from . import training
    from .study import check_builders

    check_builders(settings.study)  # by their source, before any kernel or training
    sources = []
    for name in site.nav_pages(settings.project_dir):
        path = settings.project_dir / "content" / f"{name}.md"
        text = path.read_text()
        sources.append((name, path, text, parsed_needs(settings, path, text)))
    known = training.known_runs(settings, dataset, base)
    return make_plan(settings.study, sources, known, page_inputs(settings, dataset, base),
                     {m: settings.seeds_for(m) for m in settings.study.models})


def parsed_needs(settings: Settings, path: Path, text: str) -> Needs:
    """A page's needs (an AST walk of its code cells) and the signature of what it
    executes, remembered by the page's text."""
    memo = settings.cache_root / "pages" / "needs" / f"{digest([NEEDS_FORMAT, text])}.json"
    try:
        raw = json.loads(memo.read_text())
        return Needs(tuple(raw["fits"]), bool(raw["reads_runs"]), str(raw["code"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    nb = pages.read(path)
    found = page_needs(pages.code_cells(nb), f"page {path.name}",
                       strict=not settings.publish_failures)
    needs = Needs(found.fits, found.reads_runs, pages.signature(nb))
    write_atomic(memo, json.dumps({"fits": list(needs.fits), "reads_runs": needs.reads_runs,
                                   "code": needs.code}))
    return needs


class RunBook:
    """build/runs.json: the runs of this build, rewritten atomically as each is ready:
    "runs" maps each model to its base-seed run, "seeds" to every seed's runs in order."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.build_dir / RUNS_FILE
        self.base = settings.seed
        self.by_id: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        write_atomic(self.path, json.dumps({"runs": {}, "seeds": {}}))

    def add(self, model: str, seed: int, entry: dict[str, Any]) -> None:
        """Record one ready run and rewrite runs.json."""
        with self.lock:
            self.by_id[run_id(model, seed)] = entry | {"model": model}
            write_atomic(self.path, json.dumps({"runs": self.runs, "seeds": self.seeds},
                                               indent=1))

    def key(self, model: str, seed: int) -> str:
        """The run key of a ready run."""
        return self.by_id[run_id(model, seed)]["key"]

    def parent_key(self, study: Study, model: str, seed: int) -> str | None:
        """The run key of the run a model starts from at this seed (None if it starts
        from nothing)."""
        parent = study.models[model].starts_from
        return self.key(parent, seed) if parent else None

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """Model → its base-seed run."""
        return {e["model"]: e for e in self.by_id.values() if e["seed"] == self.base}

    @property
    def seeds(self) -> dict[str, list[dict[str, Any]]]:
        """Model → its runs, one per seed, in seed order."""
        out: dict[str, list[dict[str, Any]]] = {}
        for e in sorted(self.by_id.values(), key=lambda e: e["seed"]):
            out.setdefault(e["model"], []).append(e)
        return out


def train_runs(settings: Settings, dataset: data.Dataset, plan: Plan, base: str | None,
               book: RunBook, on_ready: Any, stop: threading.Event) -> None:
    """Find or train every run of the plan in dependency order; TensorFlow is imported only
    when a run is not already known to be cached."""
    import functools


    arrays = functools.cache(lambda: data.arrays(dataset, settings))
    jobs = []  # runs to train in worker processes
    for name in plan.runs:
        parent = settings.study.models[name].starts_from
        for seed in plan.seeds_of(name):
            if stop.is_set():  # interrupted, or a page failed
                raise Interrupted("the build stopped its training")
            if settings.workers > 1 and (run_id(name, seed) not in plan.known
                                         or any(j[0] == parent for j in jobs)):
                jobs.append((name, settings.replace(seed=seed), parent))
                continue
            entry = _find_or_fit(settings.replace(seed=seed), dataset, plan, name, base, book,
                                 arrays, stop)
            _ready(settings, book, on_ready, name, seed, entry)
    if jobs:
        _train_in_workers(settings, dataset, jobs, base, book, on_ready, stop)


def _ready(settings: Settings, book: RunBook, on_ready: Any, name: str, seed: int,
           entry: dict[str, Any]) -> None:
    """Record a ready run in runs.json and tell the pages waiting for it."""
    book.add(name, seed, entry | {"title": settings.study.models[name].title})
    on_ready(run_id(name, seed))


def _train_in_workers(settings: Settings, dataset: data.Dataset, jobs: list[Any],
                      base: str | None, book: RunBook, on_ready: Any,
                      stop: threading.Event) -> None:
    """Train the runs the cache lacks in settings.workers processes (workers.py)."""
    from . import workers
    from .training import intra_op_threads

    data.arrays(dataset, settings)  # decode once here; every worker reads the cached arrays
    log.info("training %d run(s) in %d worker processes (%d TensorFlow thread(s) each, as one "
             "by one)", len(jobs), settings.workers, intra_op_threads())

    done = {(e["model"], e["seed"]) for e in book.by_id.values()}
    workers.train(jobs, settings.workers, settings.build_dir / DATASET_FILE, base,
                  lambda name, s: book.parent_key(settings.study, name, s.seed),
                  lambda name, s, entry: _ready(settings, book, on_ready, name, s.seed, entry),
                  stop, done)


def _find_or_fit(settings: Settings, dataset: data.Dataset, plan: Plan, name: str,
                 base: str | None, book: RunBook, arrays: Any,
                 stop: threading.Event) -> dict[str, Any]:
    """One run (a model at settings.seed), with training errors made one clear line."""
    from . import training

    parent = book.parent_key(settings.study, name, settings.seed)
    try:
        return training.find_or_fit(name, settings, dataset, arrays, base, parent,
                                    plan.known.get(run_id(name, settings.seed)), stop)
    except (CatdogError, KeyboardInterrupt):
        raise
    except Exception as exc:  # TensorFlow and Keras raise many kinds
        raise training.training_error(name, settings, exc) from exc


def execute(settings: Settings, dataset: data.Dataset, plan: Plan, base: str | None,
            result: BuildResult) -> None:
    """Run the plan: the runs train in a thread; each page starts once its runs are ready
    (from the page cache when its key is known and stored), settings.jobs kernels at once."""
    from .kernel import run_batch

    book = RunBook(settings)
    try:
        run_batch(lambda: _execute(settings, dataset, plan, base, book, result))
    finally:
        result.runs, result.seeds = book.runs, book.seeds


async def _execute(settings: Settings, dataset: data.Dataset, plan: Plan, base: str | None,
                   book: RunBook, result: BuildResult) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    ready = {i: loop.create_future() for i in plan.ids}
    imported = loop.create_future()  # the builders of the runs to train here are imported
    stop = threading.Event()

    def train() -> None:
        try:
            import_builders(settings, plan)
            loop.call_soon_threadsafe(_done, imported)
            train_runs(settings, dataset, plan, base, book,
                       lambda name: loop.call_soon_threadsafe(_done, ready[name]), stop)
        except BaseException as exc:  # a waiting page gets an Exception, never the interrupt
            failure = exc if isinstance(exc, Exception) else BuildError("training stopped")
            for future in [imported, *ready.values()]:
                loop.call_soon_threadsafe(_fail, future, failure)
            raise

    trainer = loop.run_in_executor(None, train) if ready else None
    if trainer is None:
        imported.set_result(None)
    try:
        await _schedule(settings, plan, ready, book, result, stop, imported)
        if trainer:
            await trainer
    except BaseException:
        stop.set()  # the training thread stops at its next batch
        if trainer:  # its exception is the interrupt itself: nothing more to report
            trainer.add_done_callback(lambda f: f.cancelled() or f.exception())
        raise


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
    if settings.workers > 1:  # the workers import them; their source was checked in the plan
        return
    names = list(dict.fromkeys(i.partition("@")[0] for i in plan.to_train))
    if names:
        from .training import import_tensorflow

        import_tensorflow()  # builders import Keras: its start-up lines stay off the terminal
    for name in names:
        settings.study.builder(name)


async def _schedule(settings: Settings, plan: Plan, ready: dict[str, Any], book: RunBook,
                    result: BuildResult, stop: threading.Event, imported: Any) -> None:
    """Start every page in nav order; each waits for its runs, then comes from the page
    cache or executes once the builders to train with are imported. The first failing page
    (without keep_going) stops the build."""
    import asyncio

    store = pages.page_store(settings.cache_root)
    slots = asyncio.Semaphore(settings.jobs)
    errors: list[PageError] = []
    inputs = plan.inputs
    total = len(plan.pages)

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
            node.key = node.key_for({i: book.by_id[i]["key"] for i in node.ids}, inputs)
            if from_cache(node):
                return
        await imported  # an import error of the study's code fails before any kernel starts
        async with slots:
            if errors:  # an earlier page failed and the build stops
                return
            t0 = time.perf_counter()
            emit(log, PageStarted(node.name), "[%d/%d] %s: executing", node.number, total,
                 node.name)
            try:
                page = await pages.run_page_async(node.path, kernel_env(settings),
                                                  settings.build_dir / "logs",
                                                  settings.cell_limit)
            except PageError as exc:
                emit(log, PageDone(node.name, False, time.perf_counter() - t0, failed=True),
                     "%s", exc, level=logging.ERROR)
                if settings.publish_failures:  # the serve loop: show it, never cache it
                    node.page = pages.failure_page(node.path, exc)
                    result.failures.append(str(exc))
                elif settings.keep_going:
                    result.failures.append(str(exc))
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

    await asyncio.gather(*[one(node) for node in plan.pages])
    if errors:
        raise errors[0]


def render(page: pages.Page, state: dict[str, Any], head: str) -> str:
    """A page's final Markdown: title, banner, downloads, body, stamp."""
    body = page.markdown
    lines = body.split("\n", 1)  # keep the H1 first, then the banner
    if lines[0].startswith("# "):
        top, rest = lines[0] + "\n\n", lines[1] if len(lines) > 1 else ""
    else:
        top, rest = "", body
    return (top + head + "\n" + stamp.downloads(page.name) + "\n" + rest.strip() + "\n\n"
            + stamp.stamp(page, state, page.runs))


def docs_files(settings: Settings, plan: Plan, dataset: data.Dataset,
               base_text: str) -> dict[str, bytes]:
    """Every file of the generated docs folder."""
    spec = settings.profile_spec
    study = settings.study
    head = stamp.banner(study, dataset.source, spec, base_text)
    state = {"commit": stamp.git_state(settings.project_dir), "versions": stamp.package_versions(),
             "manifest": dataset.manifest, "seed": settings.seed, "profile": settings.profile,
             "cpu": stamp.cpu_model()}
    files: dict[str, bytes] = {}
    content = settings.project_dir / "content"
    for node in plan.pages:
        page = node.page
        if page is None:
            continue
        files[f"{page.name}.md"] = render(page, state, head).encode()
        files.update(page.images)
        files[f"notebooks/{page.name}.ipynb"] = page.notebook.encode()
        files[f"sources/{page.name}.md.txt"] = node.text.encode()
    assets = content / "assets"
    if assets.is_dir():
        for p in sorted(assets.rglob("*")):
            if p.is_file():
                files[f"assets/{p.relative_to(assets).as_posix()}"] = p.read_bytes()
    return files


def build(settings: Settings) -> BuildResult:
    """Build the site: plan, execute, then write docs and publish site/ atomically.

    Nothing is published when any page fails; the previous site/ stays as it was.
    """
    with project_lock(settings.build_dir):
        return _build(settings)


@contextlib.contextmanager
def project_lock(build_dir: Path) -> Iterator[None]:
    """One build at a time per project: a second one waits, saying so."""
    from .cache import Store

    with Store(build_dir, "build").lock("project"):
        yield


def announce(settings: Settings, dataset: data.Dataset, plan: Plan) -> None:
    """Say what the build will do (said before TensorFlow loads: the pages showing the
    runs to train wait for them): the plan event of the progress display."""
    from . import training

    steps = training.steps_per_epoch(len(dataset.train), settings.batch_size)
    earlier = training.earlier_step_seconds(settings) if plan.to_train else {}
    runs = tuple(RunPlan(run_id(m, s), m, s, settings.epochs_for(m), steps,
                         run_id(m, s) in plan.known, earlier.get(m))
                 for m in plan.runs for s in plan.seeds_of(m))
    event = BuildPlanned(runs, tuple(n.name for n in plan.pages), settings.workers)
    if plan.to_train:
        emit(log, event, "may need training (no cached run known for its inputs): %s",
             ", ".join(plan.to_train))
    else:
        emit(log, event, "plan: %d page(s); %d run(s), all in the run cache", len(plan.pages),
             len(runs), level=logging.DEBUG)  # each run says so when it is ready


def _build(settings: Settings) -> BuildResult:
    """The build itself, under the project lock."""
    t0 = time.perf_counter()
    result = BuildResult()
    site.recover(settings.site_dir)
    from .training import run_store

    for store in (pages.page_store(settings.cache_root), run_store(settings)):
        store.sweep()  # temp folders of killed builds
    stage = time.perf_counter()

    def lap(name: str) -> float:
        nonlocal stage
        now = time.perf_counter()
        result.stages[name] = now - stage
        stage = now
        return result.stages[name]

    dataset = resolve_data(settings)
    data.write_dataset(settings.build_dir / DATASET_FILE, dataset)
    lap("data")
    base, base_text = weights.resolve(settings)  # fail early; kernels get an absolute path
    if base not in (None, "imagenet"):
        settings = settings.replace(weights=Path(base))
    plan = plan_build(settings, dataset, base)
    announce(settings, dataset, plan)
    lap("plan")
    execute(settings, dataset, plan, base, result)
    lap("execute")
    result.pages = [node.page for node in plan.pages if node.page is not None]
    if result.failures and not settings.publish_failures:
        raise BuildError(f"{len(result.failures)} page(s) failed; site/ was not changed:\n"
                         + "\n".join(result.failures))
    docs = settings.build_dir / "docs"
    written = site.sync_docs(docs, docs_files(settings, plan, dataset, base_text))
    log.debug("docs: %d file(s) written to %s", written, docs)
    write_atomic(settings.build_dir / "manifest.json", json.dumps({
        "profile": settings.profile, "manifest": dataset.manifest,
        "runs": result.seeds,
        "pages": [{"name": n.name, "cached": n.page.cached, "seconds": n.page.seconds,
                   "runs": list(n.runs)} for n in plan.pages if n.page]},
        indent=1, sort_keys=True))
    lap("docs")
    result.published = site.publish(settings.project_dir, settings.site_dir, docs,
                                    settings.engine)
    done = StageDone("site", lap("site"))
    if result.published:
        emit(log, done, "site: built with %s in %.1f s", settings.engine, done.seconds)
    else:
        emit(log, done, "site: %s is up to date (%s not run)", settings.site_dir,
             settings.engine)
    result.seconds = time.perf_counter() - t0
    return result


__all__ = ["build", "BuildResult", "CatdogError"]
