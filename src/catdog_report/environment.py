"""The CATDOG_* environment, read in one place: every variable the package knows, checked
and typed once. A command-line option wins over its variable, and a variable over the
default; the build hands its settings to page kernels in CATDOG_SETTINGS."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .display import MODES
from .engines import ENGINES
from .errors import ConfigError
from .study import suggest

log = logging.getLogger(__name__)

PREFIX = "CATDOG_"
CHOICES = {"engine": ENGINES, "progress": MODES}  # variables with a fixed set of values
_WARNED: set[str] = set()  # unknown variables already warned about in this process


@dataclass(frozen=True)
class Environment:
    """The CATDOG_* variables of this process, typed; None where one is unset or empty.

    Each field is read from the variable CATDOG_ + its name in capitals (``variable``).

    Attributes:
        profile: CATDOG_PROFILE, a profile of study.yml (the default of --profile).
        data_dir: CATDOG_DATA_DIR, a local copy of the data set (after --data-dir).
        weights: CATDOG_WEIGHTS, a local no-top weights file of the base (after --weights).
        cache_dir: CATDOG_CACHE_DIR, where the run and page caches live (after --cache-dir).
        strategy: CATDOG_STRATEGY, the distribution strategy of a page run by hand.
        engine: CATDOG_ENGINE, the site engine (the default of --engine).
        jobs: CATDOG_JOBS, pages executed at once (the default of --jobs).
        workers: CATDOG_WORKERS, worker processes training runs (the default of --workers).
        cluster: CATDOG_CLUSTER, the Dask cluster the runs train on: local, local:N or a
            scheduler's address (the default of --cluster).
        local_worker: CATDOG_LOCAL_WORKER, set by a build in the worker processes of the
            local cluster it starts ("1": a throw-away worker, which ends at once at exit).
        progress: CATDOG_PROGRESS, auto, live or plain (the default of --progress).
        remote_cache: CATDOG_REMOTE_CACHE, a run cache shared by a team: a path or an
            fsspec URL (the default of --remote-cache).
        settings: CATDOG_SETTINGS, the build's settings handed to its page kernels (parsed
            JSON); inside a build it stands for all the other variables.
        build_dir: CATDOG_BUILD_DIR, inside a build: the folder holding dataset.json and
            runs.json.
        unknown: The names of the CATDOG_ variables that are none of the above.
    """

    profile: str | None = None
    data_dir: Path | None = None
    weights: Path | None = None
    cache_dir: Path | None = None
    strategy: str | None = None
    engine: str | None = None
    jobs: int | None = None
    workers: int | None = None
    cluster: str | None = None
    local_worker: str | None = None
    progress: str | None = None
    remote_cache: str | None = None
    settings: Mapping[str, Any] | None = None
    build_dir: Path | None = None
    unknown: tuple[str, ...] = ()

    def warn_unknown(self) -> None:
        """Log one warning per unknown CATDOG_ variable (once per process), with a hint when
        its name is close to one the package knows; the variable is ignored."""
        for name in self.unknown:
            if name not in _WARNED:
                _WARNED.add(name)
                log.warning("%s is not a catdog-report variable and is ignored%s", name,
                            _hint(name))


def variable(field: str) -> str:
    """The name of the variable behind a field of Environment: CATDOG_DATA_DIR for data_dir."""
    return PREFIX + field.upper()


VARIABLES = {f.name: variable(f.name) for f in fields(Environment) if f.name != "unknown"}
ENV_SETTINGS = VARIABLES["settings"]  # JSON of Settings, handed to page kernels
ENV_BUILD = VARIABLES["build_dir"]  # inside a build: where dataset.json and runs.json are
PATHS = ("data_dir", "weights", "cache_dir", "build_dir")
COUNTS = {"jobs": "the number of pages to execute at once, such as 2",  # → the fix
          "workers": "the number of worker processes that train runs at once, such as 2"}


def read(environ: Mapping[str, str] | None = None) -> Environment:
    """Read and check the CATDOG_* variables (default: this process's environment).

    An empty variable counts as unset. Unknown CATDOG_ names are collected in
    ``Environment.unknown``; ``Environment.warn_unknown`` tells the user about them.

    Args:
        environ: The variables to read, for tests; default ``os.environ``.

    Returns:
        The typed, frozen environment.

    Raises:
        ConfigError: A variable's value has the wrong form (a count that is not a positive
            whole number, a value not among its choices, CATDOG_SETTINGS that is not a JSON
            object); the message names the variable and the fix.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, name in VARIABLES.items():
        raw = environ.get(name, "")
        if raw.strip():
            values[field] = _parse(field, name, raw)
    unknown = sorted(n for n in environ if n.startswith(PREFIX) and n not in VARIABLES.values())
    return Environment(**values, unknown=tuple(unknown))


def _parse(field: str, name: str, raw: str) -> Any:
    """One variable's value in its field's type; a ConfigError naming it and the fix."""
    if field in COUNTS:
        number = int(raw) if raw.strip().isascii() and raw.strip().isdigit() else 0
        if number <= 0:
            raise ConfigError(f"{name}={raw!r} is not a positive whole number; set {name} to "
                              f"{COUNTS[field]}, or unset it")
        return number
    if field in PATHS:
        return Path(raw)
    if field == "settings":
        try:
            settings = json.loads(raw)
        except ValueError as exc:
            settings = exc
        if not isinstance(settings, dict):
            raise ConfigError(f"{name} is not a JSON object of settings ({settings}); the "
                              "build sets it for its page kernels: unset it to run a page "
                              "by hand")
        return MappingProxyType(settings)
    if field in CHOICES and raw not in CHOICES[field]:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(CHOICES[field])}"
                          f"{suggest(raw, CHOICES[field])}; set {name} to one of them, or "
                          "unset it")
    return raw


def _hint(name: str) -> str:
    """' (did you mean CATDOG_X?)' for a name close to a known variable, else the list."""
    import difflib

    known = [v.removeprefix(PREFIX) for v in VARIABLES.values()]
    close = difflib.get_close_matches(name.removeprefix(PREFIX), known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {PREFIX}{close[0]}?)"
    return f" (the variables it reads: {', '.join(VARIABLES.values())})"
