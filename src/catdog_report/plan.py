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
NAMED = (FIT, "title", "seed_runs", "model")  # st.<one>("name") reads that model's declaration
EVERY_MODEL = ("models", "model_pages", "chapters", "titles", "colours", "order",
               "seed_list", *READS_RUNS)  # <x>.<one of them> reads every model's declaration
NAV = ("model_pages", "chapters")  # <x>.<one>() reads the nav of mkdocs.yml and every page
STUDY_WIDE = {  # <x>.<holder>.<attribute> of the declaration that no model's part holds
    "declaration": {"data", "title", "profiles", "profile", "path", "root", "cell_timeout"},
    "settings": {"image_size", "batch_size", "profile", "profile_spec", "seed", "strategy"},
}
SHOW_CODE = "show_code"  # show_code("function", ...) shows functions of the study's code


@dataclass(frozen=True)
class Needs:
    """What a page's code asks of the build, found by parsing it: the runs it shows, and
    which parts of the study declaration and of its code its output can depend on."""

    fits: tuple[str, ...] = ()
    reads_runs: bool = False
    code: str = ""  # a digest of what the page executes (pages.signature); "" if unknown
    literals: tuple[str, ...] = ()  # its string constants: the models and functions it names
    every_model: bool = False  # it reads every model's declaration (EVERY_MODEL, NAMED(x))
    nav: bool = False  # it reads the nav (which pages there are)
    imports: tuple[str, ...] = ()  # the top-level modules it imports
    all_code: bool = False  # it shows functions it does not name literally


def page_needs(code_cells: Sequence[str], where: str, strict: bool = True) -> Needs:
    """The models a page fits (`<x>.fit("name")` with a literal name), whether it calls
    `<x>.runs_in_build()` or `<x>.all_seed_runs()`, and what it reads of the declaration,
    from an AST walk of its code cells; never by substring. A cell that is not valid Python
    fails, or (strict=False) is left for its kernel to report (and every part is assumed
    read)."""
    fits: list[str] = []
    literals: list[str] = []
    imports: list[str] = []
    reads = every = nav = all_code = False
    for i, source in enumerate(code_cells, 1):
        try:
            tree = ast.parse(_without_magics(source))
        except SyntaxError as exc:
            if not strict:
                every = all_code = nav = True
                continue
            raise PageError(f"{where}: code cell {i} is not valid Python "
                            f"(line {exc.lineno}: {exc.msg}); fix the cell") from None
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.append(node.value)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                imports += [n.partition(".")[0] for n in names if n]
            elif isinstance(node, ast.Attribute):
                every |= node.attr in EVERY_MODEL or _reads_beyond(node, parents)
                nav |= node.attr in NAV
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            if name in READS_RUNS:
                reads = True
            if name in NAMED and not _literal(node):
                every = True  # which model it reads is known only when it runs
            elif name == FIT and isinstance(node.func, ast.Attribute):
                fits.append(node.args[0].value)  # type: ignore[attr-defined]
            if name == SHOW_CODE and not all(isinstance(a, ast.Constant) for a in node.args):
                all_code = True
    return Needs(tuple(dict.fromkeys(fits)), reads, "", tuple(sorted(set(literals))),
                 every or reads, nav, tuple(sorted(set(imports))), all_code)


def _called(node: ast.Call) -> str:
    """The name a call calls: f(...) or <x>.f(...)."""
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else \
        func.id if isinstance(func, ast.Name) else ""


def _literal(node: ast.Call) -> bool:
    """Whether a call's first argument is a literal string."""
    return bool(node.args) and isinstance(node.args[0], ast.Constant) \
        and isinstance(node.args[0].value, str)


def _reads_beyond(node: ast.Attribute, parents: Mapping[ast.AST, ast.AST]) -> bool:
    """Whether <x>.declaration or <x>.settings is used for more than a study-wide
    attribute (then what it reads may be any model's part)."""
    if node.attr not in STUDY_WIDE:
        return False
    parent = parents.get(node)
    return not (isinstance(parent, ast.Attribute) and parent.value is node
                and parent.attr in STUDY_WIDE[node.attr])


def study_part(needs: Needs, parts: Mapping[str, Any]) -> dict[str, Any]:
    """What a page's key holds of the study: the study-wide declaration, the declaration
    of each model it names (every model's, in order, when it reads them all), the source
    of each function of the study's code it names (every code file when it shows code
    it does not name, or imports a code file), and the nav when it reads it.

    parts: "study" (digest of the study-wide declaration), "models" (name → digest of its
    declaration, epochs and seeds, in the study's order), "functions" (function name →
    digest of its source), "files" (module name → digest of the code file), "nav"."""
    models = parts["models"]
    named = set(needs.literals) | set(needs.fits)
    used = list(models) if needs.every_model else [m for m in models if m in named]
    files = parts["files"]
    code = files if needs.all_code or set(needs.imports) & set(files) else {
        f: d for f, d in parts["functions"].items() if f in named}
    out = {"study": parts["study"], "models": [[m, models[m]] for m in used], "code": code}
    if needs.nav:
        out["nav"] = parts["nav"]
    return out


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
    inputs: dict[str, Any] = field(default_factory=dict)  # what its key holds (make_plan)

    def key_for(self, run_keys: Mapping[str, str]) -> str:
        """The page cache key, from what the page executes (its code cells; the whole text
        where that is unknown), its inputs (the build's, and the parts of the study it
        uses) and its runs' keys: a prose edit keeps it, and so does a change of a model
        it neither shows nor names."""
        return digest({"page": self.needs.code or self.text, "inputs": self.inputs,
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
              specs: Sequence[RunSpec], tokens: Mapping[str, str] | None = None,
              parts: Mapping[str, Any] | None = None) -> Plan:
    """The plan: every model a page fits (and its parents), every model of the study when a
    page reads the build's runs, each trained once per seed; a page's key where the keys
    of all its runs are known.

    pages: (name, path, text, needs) in nav order; known: run id → key found without
    training (run_id(model, seed)); inputs: what every page's key holds; specs: every run
    the study could train (run_specs); tokens: what page keys hold of the known runs
    (default: their keys; handoff.page_token); parts: the digests of the study's parts
    (study_part), of which each page's key holds those it uses.
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
        own = dict(inputs) | ({"study": study_part(needs, parts)} if parts else {})
        node = PageNode(i, name, path, text, needs, shows, ids, inputs=own)
        if all(i in known for i in ids):
            node.key = node.key_for(tokens or known)
        nodes.append(node)
    every = {spec.id for spec in chosen}
    return Plan(nodes, chosen, {i: k for i, k in known.items() if i in every})
