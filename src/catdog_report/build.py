"""The linear build: gather (data, weights, pages), then write (docs, site)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import data, models, pages, site, stamp
from .cache import digest, file_digest, write_atomic
from .config import ENV_DATA_SOURCE, ENV_MANIFEST, ENV_RUNS, ENV_SETTINGS, Settings
from .errors import BuildError, CatdogError, PageError, TrainingError

log = logging.getLogger(__name__)
LIBRARY = Path(__file__).parent


@dataclass
class BuildResult:
    """What a build did."""

    pages: list[pages.Page] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    published: bool = False
    seconds: float = 0.0


def library_digest() -> str:
    """A hash of the library's own source: a change re-executes the pages."""
    return digest({p.name: file_digest(p) for p in sorted(LIBRARY.glob("*.py"))})


def resolve_data(settings: Settings) -> tuple[data.Dataset, Settings]:
    """The dataset, and settings whose data_dir points at it."""
    if settings.profile_spec.synthetic:
        from . import synthetic

        spec = settings.profile_spec
        root = synthetic.generate(
            settings.cache_root / "synthetic" / f"seed{settings.seed}-v{synthetic.FORMAT_VERSION}",
            train_per_class=spec.train_per_class or 300,
            validation_per_class=spec.validation_per_class or 100,
            size=settings.image_size, seed=settings.seed)
        source = "generated offline by catdog_report.synthetic"
    else:
        root, source = data.locate(settings.data_dir)
    dataset = data.scan(settings, root, source)
    weights, _ = models.resolve_weights(settings)  # fail early; kernels get an absolute path
    log.info("data: %s (%s); train %d, validation %d, test %d images; %d skipped",
             root.name, source, len(dataset.train), len(dataset.validation),
             len(dataset.test), len(dataset.skipped))
    local = Path(weights) if weights not in (None, "imagenet") else None
    return dataset, Settings.from_mapping({**_fields(settings), "data_dir": dataset.root,
                                           "weights": local})


def _fields(settings: Settings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in settings.__dataclass_fields__}


def kernel_env(settings: Settings, dataset: data.Dataset, run_keys: list[str]) -> dict[str, str]:
    """The environment a page kernel starts with."""
    env = dict(os.environ)
    env.update({ENV_SETTINGS: settings.to_json(), ENV_DATA_SOURCE: dataset.source,
                ENV_MANIFEST: json.dumps(run_keys), "MPLBACKEND": "Agg",
                "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": str(settings.seed)})
    return env


def page_inputs(settings: Settings, dataset: data.Dataset, weights: str | None,
                source: str, run_keys: list[str]) -> dict[str, Any]:
    """What a page's output depends on besides its own text."""
    inputs: dict[str, Any] = {
        "library": library_digest(), "manifest": dataset.manifest, "profile": settings.profile,
        "seed": settings.seed, "image_size": settings.image_size,
        "batch_size": settings.batch_size, "strategy": settings.strategy,
        "epochs": {m: settings.epochs_for(m) for m in _models_named(source, settings)},
        "weights": file_digest(Path(weights)) if weights and Path(weights).is_file() else weights,
        "versions": stamp.package_versions(), "data_source": dataset.source,
        "skipped": dataset.skipped,
    }
    if "runs_in_build" in source:  # the page reads the runs of earlier pages
        inputs["runs"] = run_keys
    return inputs


def _models_named(source: str, settings: Settings) -> list[str]:
    """The models a page names (its epochs matter to it); all of them if it names none."""
    every = list(settings.profile_spec.epochs)
    named = [m for m in every if m in source]
    return named or every


@dataclass
class PagePlan:
    """One page of the build: its source, its cache key, and its result once known."""

    number: int
    name: str
    path: Path
    source: str
    key: str = ""
    page: pages.Page | None = None


def gather_runs(settings: Settings, dataset: data.Dataset, names: list[str],
                weights: str | None, done: Callable[[str, Any], None] | None = None,
                stop: threading.Event | None = None) -> dict[str, dict[str, Any]]:
    """Train (or find in the run cache) the models that the pages to execute fit.

    TensorFlow is imported here, once, and only when a model must be trained or its run
    key computed; the page kernels load these runs by key and need no TensorFlow.
    done(name, run) is called as each model's run is ready; setting stop interrupts.
    """
    import functools

    from . import training

    arrays = functools.cache(lambda: data.arrays(dataset, settings))
    runs = {}
    for name in dict.fromkeys(names):
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        try:
            runs[name] = training.find_or_fit(name, settings, dataset, arrays,
                                              weights if name == "model_four" else None, stop)
        except (CatdogError, KeyboardInterrupt):
            raise
        except Exception as exc:  # TensorFlow and Keras raise many kinds
            hint = (" (no ImageNet weights could be fetched: pass --weights PATH or set "
                    "CATDOG_WEIGHTS to a local mobilenet_v2_…_160_no_top.h5)"
                    if name == "model_four" and "URL fetch" in str(exc) else "")
            raise TrainingError(f"training {name} failed: {type(exc).__name__}: "
                                f"{str(exc).strip()[:500]}{hint}") from exc
        if done:
            done(name, runs[name])
    return runs


def gather_pages(settings: Settings, dataset: data.Dataset, names: list[str],
                 result: BuildResult) -> None:
    """Take each page from the page cache or execute it, settings.jobs kernels at a time.

    The models the pages need train in a thread meanwhile, in nav order; a page starts
    once its models are ready, and a page that reads earlier runs waits for the pages
    before it.
    """
    from .kernel import run_batch

    weights, _ = models.resolve_weights(settings)
    store = pages.page_store(settings.cache_root)
    plans = []
    for i, name in enumerate(names, 1):
        path = settings.project_dir / "content" / f"{name}.md"
        plans.append(PagePlan(i, name, path, path.read_text()))
    for plan in plans:
        if not pages.reads_runs(plan.source):
            plan.key = pages.page_key(plan.path, page_inputs(settings, dataset, weights,
                                                             plan.source, []))
            plan.page = pages.load_cached(store, plan.key, plan.name)
    needed = [m for plan in plans if plan.page is None and plan.key
              for m in pages.fitted_models(plan.source) if m in settings.profile_spec.epochs]
    run_batch(lambda: _execute_pages(plans, settings, dataset, weights, needed, result))
    result.pages = [plan.page for plan in plans if plan.page is not None]


async def _execute_pages(plans: list[PagePlan], settings: Settings, dataset: data.Dataset,
                         weights: str | None, needed: list[str], result: BuildResult) -> None:
    """Train the needed models in a thread; execute the pages the cache lacks, up to
    settings.jobs at once, each as soon as its models are ready."""
    import asyncio

    loop = asyncio.get_running_loop()
    ready = {m: loop.create_future() for m in dict.fromkeys(needed)}

    def train() -> None:
        def done(name: str, run: Any) -> None:
            loop.call_soon_threadsafe(ready[name].set_result, run)

        try:
            gather_runs(settings, dataset, list(ready), weights, done, stop)
        except BaseException as exc:  # a waiting page gets an Exception, never the interrupt
            failure = exc if isinstance(exc, Exception) else BuildError("training stopped")
            for future in ready.values():
                loop.call_soon_threadsafe(_fail, future, failure)
            raise

    stop = threading.Event()
    trainer = loop.run_in_executor(None, train) if ready else None
    try:
        await _schedule(plans, settings, dataset, weights, ready, result, stop)
        if trainer:
            await trainer
    except BaseException:
        stop.set()  # the training thread stops at its next batch
        if trainer:  # its exception is the interrupt itself: nothing more to report
            trainer.add_done_callback(lambda f: f.cancelled() or f.exception())
        raise


def _fail(future: Any, exc: BaseException) -> None:
    """Hand a training failure to the pages waiting for that run."""
    if not future.done():
        future.set_exception(exc)
        future.exception()  # retrieved: the waiting page, if any, raises it


async def _schedule(plans: list[PagePlan], settings: Settings, dataset: data.Dataset,
                    weights: str | None, ready: dict[str, Any], result: BuildResult,
                    stop: threading.Event) -> None:
    """Start each page the cache lacks, in nav order, once what it reads is ready; the
    first failing page (without keep_going) stops the training and the pages to come."""
    import asyncio

    store = pages.page_store(settings.cache_root)
    slots = asyncio.Semaphore(settings.jobs)
    errors: list[PageError] = []
    tasks: list[tuple[asyncio.Task[None], PagePlan]] = []

    async def execute(plan: PagePlan, run_keys: list[str]) -> None:
        try:
            runs = {m: await ready[m] for m in pages.fitted_models(plan.source) if m in ready}
        except Exception:
            if errors:  # training was stopped because a page failed
                return
            raise
        async with slots:
            if errors:  # an earlier page failed and the build stops
                return
            t0 = time.perf_counter()
            log.info("[%d/%d] %s: executing", plan.number, len(plans), plan.name)
            env = kernel_env(settings, dataset, run_keys) | {ENV_RUNS: json.dumps(runs)}
            try:
                page = await pages.run_page_async(plan.path, env, settings.build_dir / "logs")
            except PageError as exc:
                log.error("%s", exc)
                if settings.keep_going:
                    result.failures.append(str(exc))
                else:
                    errors.append(exc)
                    stop.set()
                return
            pages.save(store, plan.key, page)
            plan.page = page
            log.info("[%d/%d] %s: executed in %.1f s", plan.number, len(plans), plan.name,
                     time.perf_counter() - t0)

    for plan in plans:
        run_keys: list[str] = []
        if pages.reads_runs(plan.source):  # needs the runs of every earlier page
            await asyncio.gather(*[t for t, earlier in tasks if ".fit(" in earlier.source])
            for earlier in plans[:plan.number - 1]:
                keys = [r["key"] for r in earlier.page.runs] if earlier.page else []
                run_keys += [k for k in keys if k not in run_keys]
            plan.key = pages.page_key(plan.path, page_inputs(settings, dataset, weights,
                                                             plan.source, run_keys))
            plan.page = pages.load_cached(store, plan.key, plan.name)
        if plan.page is not None:
            log.info("[%d/%d] %s: cached", plan.number, len(plans), plan.name)
            continue
        tasks.append((asyncio.create_task(execute(plan, run_keys)), plan))
    await asyncio.gather(*[t for t, _ in tasks])
    if errors:
        raise errors[0]


def render(page: pages.Page, state: dict[str, Any], head: str) -> str:
    """A page's final Markdown: banner, body, downloads, stamp."""
    body = page.markdown
    lines = body.split("\n", 1)  # keep the H1 first, then the banner
    if lines[0].startswith("# "):
        top, rest = lines[0] + "\n\n", lines[1] if len(lines) > 1 else ""
    else:
        top, rest = "", body
    return (top + head + "\n" + stamp.downloads(page.name) + "\n" + rest.strip() + "\n\n"
            + stamp.stamp(page, state, page.runs))


def docs_files(settings: Settings, result: BuildResult, dataset: data.Dataset) -> dict[str, bytes]:
    """Every file of the generated docs folder."""
    _, weights_text = models.resolve_weights(settings)
    spec = settings.profile_spec
    head = stamp.banner(dataset.source, spec.synthetic, weights_text, spec.name, spec.description)
    state = {"commit": stamp.git_state(settings.project_dir), "versions": stamp.package_versions(),
             "manifest": dataset.manifest, "seed": settings.seed, "profile": settings.profile,
             "cpu": stamp.cpu_model()}
    files: dict[str, bytes] = {}
    content = settings.project_dir / "content"
    for page in result.pages:
        files[f"{page.name}.md"] = render(page, state, head).encode()
        files.update({name: data for name, data in page.images.items()})
        files[f"notebooks/{page.name}.ipynb"] = page.notebook.encode()
        files[f"sources/{page.name}.md.txt"] = (content / f"{page.name}.md").read_bytes()
    assets = content / "assets"
    if assets.is_dir():
        for p in sorted(assets.rglob("*")):
            if p.is_file():
                files[f"assets/{p.relative_to(assets).as_posix()}"] = p.read_bytes()
    return files


def build(settings: Settings) -> BuildResult:
    """Build the site: gather data and pages, then write docs and publish site/ atomically.

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


def _build(settings: Settings) -> BuildResult:
    """The build itself, under the project lock."""
    t0 = time.perf_counter()
    result = BuildResult()
    names = site.nav_pages(settings.project_dir)
    site.recover(settings.site_dir)
    from .training import run_store

    for store in (pages.page_store(settings.cache_root), run_store(settings)):
        store.sweep()  # temp folders of killed builds
    dataset, settings = resolve_data(settings)
    gather_pages(settings, dataset, names, result)
    if result.failures:
        raise BuildError(f"{len(result.failures)} page(s) failed; site/ was not changed:\n"
                         + "\n".join(result.failures))
    docs = settings.build_dir / "docs"
    written = site.sync_docs(docs, docs_files(settings, result, dataset))
    log.info("docs: %d file(s) written to %s", written, docs)
    write_atomic(settings.build_dir / "manifest.json", json.dumps({
        "profile": settings.profile, "manifest": dataset.manifest,
        "pages": [{"name": p.name, "cached": p.cached, "seconds": p.seconds, "runs": p.runs}
                  for p in result.pages]}, indent=1, sort_keys=True))
    result.published = site.publish(settings.project_dir, settings.site_dir, docs)
    result.seconds = time.perf_counter() - t0
    return result


__all__ = ["build", "BuildResult", "CatdogError"]
