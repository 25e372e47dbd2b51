"""One build: plan (pure), execute the plan (execute.py: runs and page kernels), render the
docs (render.py) and publish the site. Data flows one way: the build writes the hand-off
(handoff.py: build/dataset.json, build/runs.json), the page kernels and the stamps read
it; nothing travels back."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import data, handoff, pages, render, site, stamp, weights
from .cache import digest, file_digest, write_atomic
from .config import Settings
from .errors import BuildError, CatdogError
from .execute import execute
from .handoff import RunEntry
from .kernel import KERNEL
from .plan import Needs, Plan, RunSpec, make_plan, page_needs
from .progress import BuildPlanned, RunPlan, StageDone, emit

log = logging.getLogger(__name__)
LIBRARY = Path(__file__).parent
NEEDS_FORMAT = 4  # bump when page_needs() or pages.signature() change


@dataclass
class BuildResult:
    """What a build did."""

    pages: list[pages.Page] = field(default_factory=list)
    runs: dict[str, RunEntry] = field(default_factory=dict)  # model → base-seed run
    seeds: dict[str, list[RunEntry]] = field(default_factory=dict)  # model → its runs
    failures: list[str] = field(default_factory=list)
    published: bool = False
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # data, plan, execute, docs, site


def library_digest() -> str:
    """A hash of the library's own source: a change re-executes the pages."""
    return digest({p.name: file_digest(p) for p in sorted(LIBRARY.glob("*.py"))})


def study_parts(settings: Settings) -> dict[str, Any]:
    """The digests of the parts of the study a page's key may hold (plan.study_part): the
    study-wide declaration; each model's declaration with its claims, epochs and seeds in
    this build; each function of the study's code files; each code file; the nav."""
    from .study import function_sources

    study = settings.study
    wide = {"title": study.title, "data": dataclasses.asdict(study.data),
            "profiles": {k: dataclasses.asdict(v) for k, v in study.profiles.items()}}
    models = {name: digest({"declared": dataclasses.asdict(spec),
                            "claims": [dataclasses.asdict(c) for c in study.claims
                                       if c.model == name],
                            "epochs": settings.epochs_for(name),
                            "seeds": settings.seeds_for(name)})
              for name, spec in study.models.items()}
    files = study.code_files()
    return {"study": digest(wide), "models": models,
            "functions": {name: digest(source) for name, source in function_sources(files)},
            "files": {p.stem: file_digest(p) for p in files},
            "nav": site.nav_pages(settings.project_dir)}


def resolve_data(settings: Settings) -> data.Dataset:
    """The dataset of this build (generated offline for a synthetic profile)."""
    t0 = time.perf_counter()
    spec = settings.profile_spec
    if spec.synthetic:
        from . import demo_data

        root = demo_data.generate_for(settings)
        source = f"generated offline by {settings.study.data.generator}"
    else:
        root, source = data.locate(settings.data_dir, settings.study.data)
    dataset = data.scan(settings, root, source)
    emit(log, StageDone("data", time.perf_counter() - t0),
         "data: %s (%s); train %d, validation %d, test %d images; %d skipped",
         root.name, source, len(dataset.train), len(dataset.validation),
         len(dataset.test), len(dataset.skipped))
    return dataset


def page_inputs(settings: Settings, dataset: data.Dataset, base: str | None) -> dict[str, Any]:
    """What every page's output depends on besides its own text, its runs and the parts of
    the study it uses (study_parts)."""
    return {
        "kernel": KERNEL, "library": library_digest(),
        "manifest": dataset.manifest, "profile": settings.profile, "seed": settings.seed,
        "image_size": settings.image_size, "batch_size": settings.batch_size,
        "strategy": settings.strategy,
        "weights": weights.weights_id(base), "versions": stamp.package_versions(),
        "data_source": dataset.source, "skipped": dataset.skipped,
    }


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
    specs = training.run_specs_for(settings, base)
    known = training.known_runs(specs, settings, dataset)
    return make_plan(settings.study, sources, known, page_inputs(settings, dataset, base), specs,
                     training.page_tokens(known, settings), study_parts(settings))


def parsed_needs(settings: Settings, path: Path, text: str) -> Needs:
    """A page's needs (an AST walk of its code cells) and the signature of what it
    executes, remembered by the page's text."""
    memo = settings.cache_root / "pages" / "needs" / f"{digest([NEEDS_FORMAT, text])}.json"
    try:
        raw = json.loads(memo.read_text())
        return Needs(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except (OSError, ValueError, KeyError, TypeError):
        pass
    nb = pages.read(path)
    found = page_needs(pages.code_cells(nb), f"page {path.name}",
                       strict=not settings.publish_failures)
    needs = dataclasses.replace(found, code=pages.signature(nb))
    write_atomic(memo, json.dumps(dataclasses.asdict(needs)))
    return needs


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
    runs = tuple(RunPlan(spec.id, spec.model, spec.seed, spec.epochs, steps,
                         spec.id in plan.known, earlier.get(spec.model))
                 for spec in plan.specs)
    event = BuildPlanned(runs, tuple(n.name for n in plan.pages), settings.workers)
    if plan.to_train:
        emit(log, event, "may need training (no cached run known for its inputs): %s",
             ", ".join(plan.to_train))
    else:
        emit(log, event, "plan: %d page(s); %d run(s), all in the run cache", len(plan.pages),
             len(runs), level=logging.DEBUG)  # each run says so when it is ready


def freeze_build(settings: Settings, with_weights: bool = False,
                 prune: bool = False) -> list[tuple[Path, bool]]:
    """Freeze the runs of the build these settings make: find or train each run of its
    plan (no page executes), then write them to frozen/ beside study.yml (freeze_runs);
    prune removes this profile's frozen runs the plan no longer has. Returns each frozen
    run's folder and whether it was written (else it was already frozen as it is)."""
    from . import freeze
    from .execute import train

    with project_lock(settings.build_dir):
        dataset = resolve_data(settings)
        base, _ = weights.resolve(settings)
        if base not in (None, "imagenet"):
            settings = settings.replace(weights=Path(base))
        plan = plan_build(settings, dataset, base)
        book = train(settings, dataset, plan.specs, base)
        freeze.sweep(settings.study.path)
        out = freeze_runs(settings, dataset, plan.specs, book.by_id, with_weights)
        if prune:
            for key in freeze.prune(settings.study.path, settings.profile,
                                    [f.name for f, _ in out]):
                log.info("removed the frozen run %s (no longer in this build)", key[:12])
        return out


def freeze_runs(settings: Settings, dataset: data.Dataset, specs: Sequence[RunSpec],
                entries: Mapping[str, RunEntry],
                with_weights: bool = False) -> list[tuple[Path, bool]]:
    """Write the runs of specs (entries: their runs.json entries by run id, all ready) to
    frozen/ beside study.yml with their memo keys and inputs, their weights only with
    with_weights. Returns each frozen run's folder and whether it was written."""
    from . import freeze, training

    memo = training.memo_keys(list(specs), settings, dataset)
    out = []
    for spec in specs:
        entry = entries[spec.id]
        found = training.entry_folder(settings, entry["key"])
        if found is None:
            raise BuildError(f"the run {entry['key'][:12]} of {spec.id} is no longer in the "
                             "run cache; run `catdog-report freeze` again")
        info = {"key": entry["key"], "memo": memo[spec.id], "model": spec.model,
                "seed": spec.seed, "profile": settings.profile, "epochs": spec.epochs,
                "inputs": training.frozen_inputs(spec, settings, dataset, entry["parent"])}
        written = freeze.write(settings.study.path, found[0], info, with_weights)
        folder = freeze.root(settings.study.path) / entry["key"]
        log.info("%s: %s %s", spec.id, "froze it in" if written else "already frozen in",
                 folder)
        out.append((folder, written))
    return out


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
    handoff.write_dataset(settings.build_dir, dataset)
    lap("data")
    base, base_text = weights.resolve(settings)  # fail early; kernels get an absolute path
    if base not in (None, "imagenet"):
        settings = settings.replace(weights=Path(base))
    plan = plan_build(settings, dataset, base)
    announce(settings, dataset, plan)
    lap("plan")
    book = execute(settings, dataset, plan, base, result.failures)
    result.runs, result.seeds = book.runs, book.seeds
    lap("execute")
    result.pages = [node.page for node in plan.pages if node.page is not None]
    if result.failures and not settings.publish_failures:
        raise BuildError(f"{len(result.failures)} page(s) failed; site/ was not changed:\n"
                         + "\n".join(result.failures))
    docs = settings.build_dir / "docs"
    written = site.sync_docs(docs, render.docs_files(settings, plan, dataset, base_text))
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
