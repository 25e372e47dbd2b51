"""The plan of a build (pure: no TensorFlow, no kernel): which runs to train, in which order,
and which pages to execute, each with what it needs and its cache key once that is known."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import digest
from .errors import ConfigError, PageError
from .study import Study, suggest

FIT = "fit"  # st.fit("name") trains or loads a model
READS_RUNS = ("runs_in_build", "all_seed_runs")  # st.<one of them>() reads every run


@dataclass(frozen=True)
class Needs:
    """What a page's code asks of the build, found by parsing it."""

    fits: tuple[str, ...] = ()
    reads_runs: bool = False
    code: str = ""  # a digest of what the page executes (pages.signature); "" if unknown


def page_needs(code_cells: Sequence[str], where: str, strict: bool = True) -> Needs:
    """The models a page fits (`<x>.fit("name")` with a literal name) and whether it calls
    `<x>.runs_in_build()` or `<x>.all_seed_runs()`, from an AST walk of its code cells;
    never by substring. A cell that is not valid Python fails, or (strict=False) is left for
    its kernel to report."""
    fits: list[str] = []
    reads = False
    for i, source in enumerate(code_cells, 1):
        try:
            tree = ast.parse(_without_magics(source))
        except SyntaxError as exc:
            if not strict:
                continue
            raise PageError(f"{where}: code cell {i} is not valid Python "
                            f"(line {exc.lineno}: {exc.msg}); fix the cell") from None
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr in READS_RUNS:
                reads = True
            elif (node.func.attr == FIT and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                fits.append(node.args[0].value)
    return Needs(tuple(dict.fromkeys(fits)), reads)


def _without_magics(source: str) -> str:
    """IPython magics and shell escapes are not Python: blank them before parsing."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def run_id(model: str, seed: int) -> str:
    """The id of one training run of the build: a model and a training seed."""
    return f"{model}@{seed}"


@dataclass
class PageNode:
    """One page of the plan."""

    number: int
    name: str
    path: Path
    text: str
    needs: Needs
    runs: tuple[str, ...] = ()  # the models it shows: its fits, or all for reads_runs
    ids: tuple[str, ...] = ()  # their runs, every seed of each
    key: str | None = None  # known once the keys of its runs are
    page: Any = None  # the executed or cached page, once the build has it

    def key_for(self, run_keys: Mapping[str, str], inputs: Mapping[str, Any]) -> str:
        """The page cache key, from what the page executes (its code cells; the whole text
        where that is unknown), the build inputs and its runs' keys: a prose edit keeps it."""
        return digest({"page": self.needs.code or self.text, "inputs": dict(inputs),
                       "runs": {i: run_keys[i] for i in self.ids}})


@dataclass(frozen=True)
class RunSpec:
    """One training run, fixed by the plan: what training, the run and memo keys, the
    workers, the progress display and the stamps read (none looks the settings up again).
    threads are recorded with the run, never part of its key."""

    model: str
    seed: int
    epochs: int
    parent: str | None = None  # the model it starts from (that model's run at this seed)
    precision: str = "float32"
    base_weights: str | None = None  # the digest of the base it declares (weights_id)
    threads: int = 1  # TensorFlow's intra-op threads it trains with

    @property
    def id(self) -> str:
        """Its run id: model@seed."""
        return run_id(self.model, self.seed)

    @property
    def parent_id(self) -> str | None:
        """The run id of the run it starts from (None if it starts from nothing)."""
        return run_id(self.parent, self.seed) if self.parent else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (for a worker process)."""
        return dict(self.__dict__)


def run_specs(study: Study, seeds: Mapping[str, Sequence[int]], epochs: Mapping[str, int],
              precision: str, base_weights: str | None, threads: int) -> list[RunSpec]:
    """A RunSpec for every model of the study (parents first) at each of its seeds.

    seeds, epochs: per model; base_weights: the digest of the resolved base weights, set
    on the models that declare a base."""
    return [RunSpec(name, seed, epochs[name], study.models[name].starts_from, precision,
                    base_weights if study.models[name].weights else None, threads)
            for name in study.order(study.models) for seed in seeds[name]]


@dataclass
class Plan:
    """What a build does: runs in dependency order, pages in nav order."""

    pages: list[PageNode]
    specs: list[RunSpec]  # every run of the build, parents first
    known: dict[str, str] = field(default_factory=dict)  # run id → key, known untrained
    inputs: dict[str, Any] = field(default_factory=dict)  # what every page's key holds

    @property
    def runs(self) -> list[str]:
        """The models the build trains, parents first."""
        return list(dict.fromkeys(spec.model for spec in self.specs))

    def seeds_of(self, model: str) -> list[int]:
        """A model's training seeds, base first."""
        return [spec.seed for spec in self.specs if spec.model == model]

    @property
    def ids(self) -> list[str]:
        """Every run of the build in training order: each model's seeds, parents first."""
        return [spec.id for spec in self.specs]

    @property
    def to_train(self) -> list[str]:
        """The runs the cache does not already hold (per the memo)."""
        return [i for i in self.ids if i not in self.known]


def make_plan(study: Study, pages: Sequence[tuple[str, Path, str, Needs]],
              known: Mapping[str, str], inputs: Mapping[str, Any],
              specs: Sequence[RunSpec], tokens: Mapping[str, str] | None = None) -> Plan:
    """The plan: every model a page fits (and its parents), every model of the study when a
    page reads the build's runs, each trained once per seed; a page's key where the keys
    of all its runs are known.

    pages: (name, path, text, needs) in nav order; known: run id → key found without
    training (run_id(model, seed)); specs: every run the study could train (run_specs);
    tokens: what page keys hold of the known runs (default: their keys; handoff.page_token).
    """
    for name, path, _, needs in pages:
        for model in needs.fits:
            if model not in study.models:
                raise ConfigError(f"page {path.name} fits model {model!r}"
                                  f"{suggest(model, study.models)}, which {study.path.name} "
                                  f"does not declare; declare it under models: or fix the "
                                  f"page ({name})")
    fitted = [m for *_, needs in pages for m in needs.fits]
    everything = any(needs.reads_runs for *_, needs in pages)
    runs = study.order(list(study.models) if everything else fitted)
    chosen = [spec for model in runs for spec in specs if spec.model == model]
    nodes = []
    for i, (name, path, text, needs) in enumerate(pages, 1):
        shows = tuple(runs) if needs.reads_runs else needs.fits
        ids = tuple(spec.id for m in shows for spec in chosen if spec.model == m)
        node = PageNode(i, name, path, text, needs, shows, ids)
        if all(i in known for i in ids):
            node.key = node.key_for(tokens or known, inputs)
        nodes.append(node)
    every = {spec.id for spec in chosen}
    return Plan(nodes, chosen, {i: k for i, k in known.items() if i in every}, dict(inputs))
