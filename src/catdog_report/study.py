"""The study declaration (study.yml): data set, profiles and models, read as frozen data.

The engine knows no model, page or class of its own: everything a study contains (titles,
builders, epochs per profile, base weights, parents, colours, class names, the claims it
checks) is read from here, validated once, with errors that name the file and the fix.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

STUDY_FILE = "study.yml"
BASES = ("mobilenet_v2",)  # the pretrained bases the engine can resolve (weights:)
BUILDER_ARGS = ("image_size", "weights", "parent")  # what a builder may ask for
GENERATOR_ARGS = ("rng", "class_name", "size")  # what data.generator is called with, in order
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def suggest(name: str, choices: Any) -> str:
    """Return a ' (did you mean X?)' hint, or ''."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class DataSpec:
    """The data set: its name, where to download it, its classes in label order, and the
    study's own function that draws a synthetic profile's images offline (FILE.py:fn)."""

    name: str
    url: str | None
    classes: tuple[str, ...]
    grid_rows: tuple[str, ...]
    generator: str | None = None


@dataclass(frozen=True)
class ProfileSpec:
    """How much of the study a build runs: images per class, real or synthetic data."""

    name: str
    description: str
    train_per_class: int | None = None  # None: every image
    validation_per_class: int | None = None
    synthetic: bool = False
    seeds: int = 1  # training runs per model, seeds base, base + 1, ...


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study."""

    name: str
    title: str
    builder: str
    epochs: Mapping[str, int]
    colour: str
    weights: str | None = None
    starts_from: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Claim:
    """A result the original study states, checked against this build's runs."""

    model: str
    metric: str
    low: float
    high: float
    text: str
    reason: str = ""  # what is known to make this build differ from the claim
    profile: str | None = None  # the profile the claim describes (None: every profile)

    def applies_to(self, profile: str) -> bool:
        """Whether a build of this profile can be judged against the claim."""
        return self.profile is None or self.profile == profile


@dataclass(frozen=True)
class Study:
    """A whole study.yml, validated."""

    path: Path
    title: str
    data: DataSpec
    profiles: Mapping[str, ProfileSpec]
    models: Mapping[str, ModelSpec]
    claims: tuple[Claim, ...] = field(default=())
    cell_timeout: int | None = None  # pages.cell_timeout: seconds a page's cell may run

    @property
    def root(self) -> Path:
        """The folder holding study.yml: builder files are relative to it."""
        return self.path.parent

    def profile(self, name: str) -> ProfileSpec:
        """A profile by name; an unknown one fails with a hint."""
        if name not in self.profiles:
            raise ConfigError(f"unknown profile {name!r}{suggest(name, self.profiles)}; "
                              f"{self.path} declares {', '.join(self.profiles)}")
        return self.profiles[name]

    def model(self, name: str, where: str = "") -> ModelSpec:
        """A model by name; an unknown one fails naming where it was asked for."""
        if name not in self.models:
            place = f"{where} asks for" if where else "unknown"
            raise ConfigError(f"{place} model {name!r}{suggest(name, self.models)}, which "
                              f"{self.path} does not declare; it declares "
                              f"{', '.join(self.models) or 'no model'}")
        return self.models[name]

    def epochs(self, model: str, profile: str) -> int:
        """A model's epochs in a profile (a profile the model does not list fails)."""
        spec = self.model(model)
        if profile not in spec.epochs:
            raise ConfigError(f"model {model!r} in {self.path} lists no epochs for profile "
                              f"{profile!r}; add `{profile}: N` to its epochs "
                              f"({dict(spec.epochs)})")
        return spec.epochs[profile]

    def order(self, names: Any) -> list[str]:
        """The given models and every model they start from, parents first, in
        declaration order otherwise."""
        wanted: set[str] = set()
        for name in names:
            while name and name not in wanted:
                wanted.add(name)
                name = self.model(name).starts_from
        out: list[str] = []

        def visit(name: str) -> None:
            parent = self.models[name].starts_from
            if parent and parent not in out:
                visit(parent)
            if name not in out:
                out.append(name)

        for name in self.models:
            if name in wanted:
                visit(name)
        return out

    def titles(self) -> dict[str, str]:
        """Model name → title."""
        return {m.name: m.title for m in self.models.values()}

    def colours(self) -> dict[str, str]:
        """Model name → colour."""
        return {m.name: m.colour for m in self.models.values()}

    def builder(self, name: str) -> Callable[..., Any]:
        """Import a model's builder function (this imports the study's code)."""
        return self._function(self.model(name).builder, f"model {name!r}",
                              f"builder of model {name!r}")

    def generator(self) -> Callable[..., Any]:
        """Import data.generator, the study's drawer of synthetic images (this imports the
        study's code)."""
        return self._function(self.generator_ref(), "data.generator", "data.generator")

    def generator_ref(self) -> str:
        """data.generator (FILE.py:function); a study without one fails saying how to
        declare it."""
        if self.data.generator is None:
            raise ConfigError(f"{self.path}: data: no generator declared; a synthetic profile "
                              "draws its images offline with the study's own function: add "
                              "`generator: FILE.py:function` under data:")
        return self.data.generator

    def _function(self, ref: str, purpose: str, role: str) -> Callable[..., Any]:
        """Import the function a FILE.py:function or package.module:function names."""
        module, _, function = ref.partition(":")
        try:
            if module.endswith(".py"):
                path = (self.root / module).resolve()
                # named by path and content: an edited file is imported afresh
                tag = hashlib.sha256(str(path).encode() + path.read_bytes()).hexdigest()[:16]
                mod_name = f"catdog_study_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{tag}"
                mod = sys.modules.get(mod_name)
                if mod is None:
                    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
                    if loader_spec is None or loader_spec.loader is None:
                        raise ConfigError(f"cannot load {path} as Python ({self.path})")
                    mod = importlib.util.module_from_spec(loader_spec)
                    sys.modules[mod_name] = mod
                    try:
                        loader_spec.loader.exec_module(mod)
                    except BaseException:
                        del sys.modules[mod_name]
                        raise
            else:
                mod = importlib.import_module(module)
        except ConfigError:
            raise
        except Exception as exc:  # the study's own code can raise anything on import
            raise ConfigError(f"cannot import {module} for {purpose} ({self.path}): "
                              f"{type(exc).__name__}: {exc}") from exc
        fn = getattr(mod, function, None)
        if not callable(fn):
            raise ConfigError(f"{module} has no function {function!r} ({role} in "
                              f"{self.path}){suggest(function, dir(mod))}")
        return fn

    def code_files(self) -> list[Path]:
        """The study's own Python files: the .py files of the folders its builders and its
        data generator live in."""
        refs = [m.builder for m in self.models.values()] + [self.data.generator or ""]
        folders = {(self.root / module).resolve().parent
                   for module in (ref.partition(":")[0] for ref in refs) if module.endswith(".py")}
        return sorted(p for folder in folders for p in folder.glob("*.py"))


def builder_source(study: Study, function: str) -> str:
    """The source of a function in the study's builder files, read without importing."""
    files = study.code_files()
    for name, source in function_sources(files):
        if name == function:
            return source
    raise ConfigError(f"no function {function!r} in the study's code "
                      f"({', '.join(p.name for p in files)})")


def function_sources(files: list[Path]) -> Iterator[tuple[str, str]]:
    """Each top-level function of the files (in order) with its source, read without
    importing; a name defined twice gives its first definition (as builder_source)."""
    seen = set()
    for path in files:
        text = path.read_text()
        lines = _LINES.findall(text)
        for node in ast.parse(text, filename=str(path)).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                    and node.name not in seen:
                seen.add(node.name)
                yield node.name, _segment(lines, node)


_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")  # lines as ast counts them


def _segment(lines: list[str], node: ast.stmt) -> str:
    """ast.get_source_segment(text, node) from the text's lines split once (it splits the
    whole text again on every call: 0.14 s of a warm rebuild for 25 functions)."""
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    start, end = node.col_offset, node.end_col_offset
    if first == last:
        return lines[first].encode()[start:end].decode()
    return "".join([lines[first].encode()[start:].decode(), *lines[first + 1:last],
                    lines[last].encode()[:end].decode()])


def check_builders(study: Study) -> None:
    """Check every model's builder by reading its source, importing nothing: the function
    is a plain top-level `def` of its file or module, it takes only parameters among
    image_size, weights and parent, and the modules its file imports are installed.

    Raises:
        ConfigError: Naming study.yml, the model, the builder and the fix.
    """
    for name in study.models:
        check_builder(study, name)


def check_builder(study: Study, name: str) -> None:
    """Check one model's builder from its source (see check_builders)."""
    spec = study.model(name)
    function = spec.builder.partition(":")[2]
    where = f"{study.path}: models.{name}.builder: {spec.builder}"
    path, tree, node = _plain_function(study, spec.builder, where, "a builder", (
        f"`def {function}({', '.join(BUILDER_ARGS)})` taking only the ones it needs"))
    args = node.args
    params = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    bad = [p for p in params if p not in BUILDER_ARGS] + [
        f"*{a.arg}" for a in (args.vararg,) if a] + [f"**{a.arg}" for a in (args.kwarg,) if a]
    if args.posonlyargs:
        bad += [f"{a.arg} (positional-only)" for a in args.posonlyargs if a.arg in BUILDER_ARGS]
    if bad:
        raise ConfigError(f"{where}: {function}() takes {', '.join(bad)}; a builder takes "
                          f"only {', '.join(BUILDER_ARGS)} (the ones it needs), by name")
    if spec.builder.partition(":")[0].endswith(".py"):
        _check_imports(tree, path, where)


def check_generator(study: Study) -> Path:
    """Check data.generator from its source, importing nothing: a plain top-level `def` of
    its file or module that takes (rng, class_name, size) by position, whose file imports
    only installed modules.

    Returns:
        The file the generator is defined in.

    Raises:
        ConfigError: Naming study.yml, data.generator and the fix.
    """
    ref = study.generator_ref()
    function = ref.partition(":")[2]
    where = f"{study.path}: data.generator: {ref}"
    signature = f"`def {function}({', '.join(GENERATOR_ARGS)})` returning a PIL image"
    path, tree, node = _plain_function(study, ref, where, "a generator", signature)
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required = len(positional) - len(args.defaults)
    if (len(positional) < len(GENERATOR_ARGS) and args.vararg is None) or required > len(
            GENERATOR_ARGS) or any(d is None for d in args.kw_defaults):
        taken = ", ".join(a.arg for a in [*positional, *args.kwonlyargs]) or "nothing"
        raise ConfigError(f"{where}: {function}() takes {taken}; it is called as "
                          f"{function}({', '.join(GENERATOR_ARGS)}): {signature}")
    if ref.partition(":")[0].endswith(".py"):
        _check_imports(tree, path, where)
    return path


def _plain_function(study: Study, ref: str, where: str, what: str,
                    shape: str) -> tuple[Path, ast.Module, ast.FunctionDef]:
    """The file, syntax tree and `def` of a FILE.py:function or package.module:function,
    read without importing; anything but a plain top-level function fails."""
    module, _, function = ref.partition(":")
    path = _source_path(study, module, where, what)
    try:
        text = path.read_text()
        tree = ast.parse(text, filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        line = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) else ""
        raise ConfigError(f"{where}: cannot read {path.name} as Python{line}: "
                          f"{type(exc).__name__}: {exc}") from None
    bound = _top_level_bindings(tree)
    node = bound.get(function)
    plain = f"{what} is a plain function at the top of {path.name}, {shape}"
    if node is None:
        functions = [n for n, v in bound.items() if isinstance(v, ast.FunctionDef)]
        raise ConfigError(f"{where}: {module} defines no function {function!r} at its top "
                          f"level{suggest(function, functions)}; {plain}")
    if not isinstance(node, ast.FunctionDef) or node.decorator_list:
        kind = ("a decorated function" if isinstance(node, ast.FunctionDef) else
                {ast.AsyncFunctionDef: "an async function", ast.ClassDef: "a class",
                 ast.Import: "an imported name", ast.ImportFrom: "an imported name"}.get(
                     type(node), "an assigned value"))
        raise ConfigError(f"{where}: {function!r} in {module} is {kind}, not a plain Python "
                          f"function; {plain}")
    return path, tree, node


def _source_path(study: Study, module: str, where: str, what: str) -> Path:
    """The source file of a FILE.py or package.module the study names, found without
    importing."""
    if module.endswith(".py"):
        path = (study.root / module).resolve()
        if not path.is_file():
            raise ConfigError(f"{where}: {module} does not exist next to {study.path.name}")
        return path
    parts = module.split(".")
    if not all(part.isidentifier() for part in parts):
        raise ConfigError(f"{where}: {module!r} is not a module name; expected FILE.py:function "
                          "or package.module:function")
    found = _find_module(parts, [str(study.root), *sys.path])
    if found is None:
        raise ConfigError(f"{where}: no module {module!r} is installed; install it, or name a "
                          "FILE.py next to study.yml")
    origin = getattr(found, "origin", None)
    if origin == "frozen":  # a standard module kept frozen in the interpreter: its file
        origin = getattr(getattr(found, "loader_state", None), "filename", None) or origin
    if not origin or not str(origin).endswith(".py") or not Path(origin).is_file():
        raise ConfigError(f"{where}: {module} is not Python source ({origin or 'built in'}), "
                          f"so it holds no plain Python function; {what} is a plain "
                          "function in a FILE.py or in an installed package's .py module")
    return Path(origin)


def _find_module(parts: list[str], path: list[str]) -> Any:
    """A module's spec found on path by name, part by part, without importing anything."""
    from importlib.machinery import PathFinder

    spec = sys.modules[parts[0]].__spec__ if parts[0] in sys.modules else None
    spec = spec or PathFinder.find_spec(parts[0], path)
    for part in parts[1:]:
        locations = getattr(spec, "submodule_search_locations", None)
        if not locations:
            return None
        spec = PathFinder.find_spec(part, list(locations))
    return spec


def _top_level_bindings(tree: ast.Module) -> dict[str, ast.stmt]:
    """Name → the last top-level statement that binds it (def, class, import, assignment)."""
    bound: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound[node.name] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound[(alias.asname or alias.name).partition(".")[0]] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        bound[leaf.id] = node
    return bound


def _check_imports(tree: ast.Module, path: Path, where: str) -> None:
    """Every module a study's file imports at its top level is installed (found, not run)."""
    places = [str(path.parent), *sys.path]
    for node in tree.body:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module
                 and not node.level else [])
        for dotted in names:
            top = dotted.partition(".")[0]
            if top not in sys.builtin_module_names and _find_module([top], places) is None:
                raise ConfigError(f"{where}: {path.name} imports {dotted} (line {node.lineno}), "
                                  f"which is not installed: ModuleNotFoundError: No module "
                                  f"named {top!r}; install it or fix the import")


def builder_kwargs(fn: Callable[..., Any], available: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments a builder names among image_size, weights and parent."""
    params = inspect.signature(fn).parameters
    unknown = [p for p in params if p not in BUILDER_ARGS
               and params[p].default is inspect.Parameter.empty]
    if unknown:
        raise ConfigError(f"builder {fn.__qualname__} asks for {unknown}; a builder may take "
                          f"only {', '.join(BUILDER_ARGS)}")
    return {k: v for k, v in available.items() if k in params}


TOP_KEYS = {"title", "data", "profiles", "models", "claims", "pages"}
PAGES_KEYS = {"cell_timeout"}
DATA_KEYS = {"name", "url", "classes", "grid_rows", "generator"}
PROFILE_KEYS = {"description", "train_per_class", "validation_per_class", "synthetic", "seeds"}
MODEL_KEYS = {"title", "builder", "epochs", "weights", "starts_from", "colour", "description"}
CLAIM_KEYS = {"model", "metric", "low", "high", "text", "reason", "profile"}
METRICS = ("val_accuracy", "test_accuracy")


class _Check:
    """Validation helpers that name the file and the place in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, what: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {what}")

    def mapping(self, value: Any, where: str, keys: set[str],
                required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping of {', '.join(sorted(keys))}, "
                                   f"got {type(value).__name__}")
        for key in value:
            if key not in keys:
                raise self.fail(where, f"unknown key {key!r}{suggest(key, sorted(keys))}; "
                                       f"allowed: {', '.join(sorted(keys))}")
        for key in required:
            if value.get(key) in (None, ""):
                raise self.fail(where, f"{key!r} is required")
        return value

    def count(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self.fail(where, f"expected a positive whole number, got {value!r}")
        return value


def _data(check: _Check, raw: Any) -> DataSpec:
    raw = check.mapping(raw, "data", DATA_KEYS, ("name", "classes"))
    classes = raw["classes"]
    if (not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes)
            or not all(isinstance(c, str) and c for c in classes)):
        raise check.fail("data.classes", f"expected two or more distinct folder names, got "
                                          f"{classes!r}")
    rows = raw.get("grid_rows") or classes
    if not isinstance(rows, list) or any(r not in classes for r in rows):
        raise check.fail("data.grid_rows", f"expected class names among {classes}, got {rows!r}")
    generator = raw.get("generator")
    if generator is not None:
        generator = _function_ref(check, generator, "data.generator")
    return DataSpec(_text(check, raw, "name", "data"), raw.get("url"), tuple(classes), tuple(rows),
                    generator)


def _function_ref(check: _Check, value: Any, where: str) -> str:
    """A FILE.py:function (the file next to study.yml) or package.module:function."""
    ref = str(value)
    module, _, function = ref.partition(":")
    if not module or not function.isidentifier():
        raise check.fail(where, f"expected FILE.py:function or package.module:function, "
                                f"got {ref!r}")
    if module.endswith(".py") and not (check.path.parent / module).is_file():
        raise check.fail(where, f"{module} does not exist next to {check.path.name}")
    return ref


def _profile(check: _Check, name: str, raw: Any) -> ProfileSpec:
    where = f"profiles.{name}"
    raw = check.mapping(raw or {}, where, PROFILE_KEYS)
    synthetic = raw.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise check.fail(f"{where}.synthetic", f"expected true or false, got {synthetic!r}")
    return ProfileSpec(name, _text(check, raw, "description", where),
                       check.count(raw.get("train_per_class"), f"{where}.train_per_class"),
                       check.count(raw.get("validation_per_class"),
                                   f"{where}.validation_per_class"), synthetic,
                       check.count(raw.get("seeds", 1), f"{where}.seeds") or 1)


def _model(check: _Check, name: str, raw: Any, index: int,
           profiles: Mapping[str, ProfileSpec]) -> ModelSpec:
    where = f"models.{name}"
    if not NAME.match(name):
        raise check.fail(where, "a model name is letters, digits and underscores")
    raw = check.mapping(raw, where, MODEL_KEYS, ("builder", "epochs"))
    builder = _function_ref(check, raw["builder"], f"{where}.builder")
    epochs = raw["epochs"]
    if not isinstance(epochs, dict):
        raise check.fail(f"{where}.epochs", f"expected {{profile: N}}, got {epochs!r}")
    for profile, n in epochs.items():
        if profile not in profiles:
            raise check.fail(f"{where}.epochs", f"unknown profile {profile!r}"
                                                f"{suggest(profile, profiles)}")
        check.count(n, f"{where}.epochs.{profile}")
    weights = raw.get("weights")
    if weights is not None and weights not in BASES:
        raise check.fail(f"{where}.weights", f"unknown base {weights!r}{suggest(weights, BASES)}"
                                             f"; known: {', '.join(BASES)}")
    colour = raw.get("colour") or PALETTE[index % len(PALETTE)]
    if not COLOUR.match(str(colour)):
        raise check.fail(f"{where}.colour", f"expected #rrggbb, got {colour!r}")
    return ModelSpec(name, _text(check, raw, "title", where) or name, builder, dict(epochs),
                     str(colour), weights, raw.get("starts_from"),
                     _text(check, raw, "description", where))


def _claim(check: _Check, i: int, raw: Any, models: Mapping[str, ModelSpec],
           profiles: Mapping[str, ProfileSpec]) -> Claim:
    where = f"claims[{i}]"
    raw = check.mapping(raw, where, CLAIM_KEYS, ("model", "metric", "low", "high"))
    if raw["model"] not in models:  # a typo, or a model removed without its claims
        raise check.fail(f"{where}.model", f"a claim about model {raw['model']!r}, which "
                                           f"{check.path.name} does not declare (it declares "
                                           f"{', '.join(models)}); a removed model's claims "
                                           "go with it: delete this claim, or fix the name")
    if raw["metric"] not in METRICS:
        raise check.fail(f"{where}.metric", f"expected one of {', '.join(METRICS)}")
    low, high = raw["low"], raw["high"]
    if not all(isinstance(v, int | float) and 0 <= v <= 1 for v in (low, high)) or low > high:
        raise check.fail(where, f"low and high are fractions with low <= high, got "
                                f"{low!r}, {high!r}")
    profile = raw.get("profile")
    if profile is not None and profile not in profiles:
        raise check.fail(f"{where}.profile", f"unknown profile {profile!r}"
                                             f"{suggest(str(profile), profiles)}; the claim "
                                             "describes one of the profiles: declared")
    return Claim(raw["model"], raw["metric"], float(low), float(high),
                 _text(check, raw, "text", where), _text(check, raw, "reason", where),
                 None if profile is None else str(profile))


def _check_parents(check: _Check, models: Mapping[str, ModelSpec]) -> None:
    for spec in models.values():
        seen = [spec.name]
        parent = spec.starts_from
        while parent is not None:
            if parent not in models:
                raise check.fail(f"models.{spec.name}.starts_from",
                                 f"unknown model {parent!r}{suggest(parent, models)}")
            if parent in seen:
                raise check.fail(f"models.{spec.name}.starts_from",
                                 f"a cycle: {' -> '.join(seen + [parent])}")
            seen.append(parent)
            parent = models[parent].starts_from


MAX_VALUES = 50_000  # values in study.yml with its aliases expanded; a study has hundreds


def _check_size(check: _Check, raw: Any) -> None:
    """Refuse a study whose aliases expand to more than MAX_VALUES values (an alias bomb):
    counted by walking the loaded data, which stops at the limit."""
    count, stack = 0, [raw]
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise check.fail("top level", f"more than {MAX_VALUES:,} values once its YAML "
                                          "aliases (*name) are expanded; an alias repeated "
                                          "inside aliases grows exponentially; write the "
                                          "values out or use fewer aliases")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _text(check: _Check, raw: Mapping[str, Any], key: str, where: str,
          default: str = "") -> str:
    """A text field: a string (a number is written as text), never a list or mapping."""
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, dict | list):
        raise check.fail(f"{where}.{key}", f"expected text, got a {type(value).__name__}")
    return str(value)


_CACHE: dict[tuple[str, int, int], Study] = {}


def load(path: Path) -> Study:
    """Read and validate a study.yml (cached while the file is unchanged)."""
    path = Path(path).expanduser().absolute()
    try:
        st = path.stat()
    except OSError:
        raise ConfigError(f"no study declaration at {path}; a project needs a {STUDY_FILE} "
                          "beside mkdocs.yml (see the README, 'Add a model'), or pass "
                          "--project to the folder that has one") from None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _CACHE:
        return _CACHE[key]
    check = _Check(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not readable YAML: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply to read; a study is a few "
                          "levels of mappings and lists") from None
    _check_size(check, raw)
    raw = check.mapping(raw, "top level", TOP_KEYS, ("data", "profiles", "models"))
    data = _data(check, raw["data"])
    if not isinstance(raw["profiles"], dict):
        raise check.fail("profiles", "expected a mapping of profile names")
    profiles = {n: _profile(check, n, p) for n, p in raw["profiles"].items()}
    for spec in profiles.values():
        if spec.synthetic and data.generator is None:
            raise check.fail(f"profiles.{spec.name}.synthetic", (
                "a synthetic profile draws its images with the study's own function: declare "
                "`generator: FILE.py:function` under data:, a function "
                f"({', '.join(GENERATOR_ARGS)}) returning a PIL image"))
    if not isinstance(raw["models"], dict) or not raw["models"]:
        raise check.fail("models", "expected a mapping of one or more models")
    models = {n: _model(check, n, m, i, profiles) for i, (n, m) in enumerate(raw["models"].items())}
    _check_parents(check, models)
    claims = tuple(_claim(check, i, c, models, profiles)
                   for i, c in enumerate(raw.get("claims") or []))
    page_settings = check.mapping(raw.get("pages") or {}, "pages", PAGES_KEYS)
    timeout = check.count(page_settings.get("cell_timeout"), "pages.cell_timeout")
    study = Study(path, _text(check, raw, "title", "top level"), data, profiles, models, claims,
                  timeout)
    _CACHE[key] = study
    return study
