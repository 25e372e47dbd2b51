"""Settings: a frozen, validated object built from CLI values and the environment, checked
against the study it builds (study.yml)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import environment
from .engines import ENGINES
from .errors import ConfigError
from .study import STUDY_FILE, ProfileSpec, Study, load, suggest

STRATEGIES = ("none", "mirrored", "multi-worker")
PRECISIONS = {"float32": "float32", "bf16": "mixed_bfloat16"}  # --precision → Keras policy
MIN_IMAGE_SIZE = 32
# Seconds one cell of a page may run in a build. Pages start once their runs are ready, so
# no cell trains: the slowest cells decode the data set or plot every run (seconds on the
# full study); ten minutes leaves a wide margin on a slow, busy machine.
CELL_TIMEOUT = 600
# the settings a page run by hand takes from CATDOG_* variables (environment.py)
FROM_ENVIRONMENT = ("profile", "data_dir", "weights", "cache_dir", "strategy", "engine",
                    "remote_cache")


def _choice(kind: str, value: str, choices: Any) -> str:
    if value not in choices:
        raise ConfigError(
            f"unknown {kind} {value!r}{suggest(value, choices)}; choose one of {', '.join(choices)}"
        )
    return value


@dataclass(frozen=True)
class Settings:
    """Everything one build needs to know; frozen once validated against its study."""

    profile: str = "full"
    project_dir: Path = field(default_factory=Path.cwd)
    study_file: Path | None = None  # default: project_dir / study.yml
    data_dir: Path | None = None
    weights: Path | None = None
    cache_dir: Path | None = None
    seed: int = 0  # the walkthrough seeds with tf.random.set_seed(0)
    image_size: int = 160
    batch_size: int = 32
    epochs: Mapping[str, int] = field(default_factory=dict)  # overrides of the profile's
    strategy: str = "none"
    keep_going: bool = False
    publish_failures: bool = False  # serve: a failing page is published with its error
    jobs: int = 2  # page kernels executing at once
    engine: str = "mkdocs"  # the site engine: mkdocs (Material) or zensical
    seeds: int | None = None  # training runs per model (default: the profile's seeds)
    model_seeds: Mapping[str, int] = field(default_factory=dict)  # per-model overrides of it
    precision: str = "float32"  # or bf16: Keras's mixed_bfloat16 policy
    workers: int = 1  # local worker processes training runs at once: an alias of local:N
    cluster: str | None = None  # Dask: None (one by one here), local, local:N or an address
    cell_timeout: int | None = None  # seconds per page cell (default: study.yml, else 600)
    remote_cache: str | None = None  # a shared run cache: an fsspec URL or a path

    def __post_init__(self) -> None:
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("site engine", self.engine, ENGINES)
        _choice("precision", self.precision, PRECISIONS)
        for name in ("seeds", "workers", "cell_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value <= 0):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self._check_cluster()
        if self.image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"image size {self.image_size} is too small; use at least "
                              f"{MIN_IMAGE_SIZE} (the walkthrough uses 160)")
        if not isinstance(self.jobs, int) or self.jobs <= 0:
            raise ConfigError(f"jobs must be a positive integer (pages executed at once), "
                              f"got {self.jobs!r}")
        if self.batch_size <= 0:
            raise ConfigError(f"batch size must be positive, got {self.batch_size}")
        for attr in ("project_dir", "study_file", "data_dir", "weights", "cache_dir"):
            value = getattr(self, attr)
            if value is not None:
                object.__setattr__(self, attr, Path(value).expanduser().absolute())
        if self.remote_cache and "://" not in self.remote_cache:  # a path: the same in kernels
            object.__setattr__(self, "remote_cache",
                               str(Path(self.remote_cache).expanduser().absolute()))
        object.__setattr__(self, "epochs", dict(self.epochs))
        object.__setattr__(self, "model_seeds", dict(self.model_seeds))
        study = self.study
        study.profile(self.profile)
        for name, value in self.epochs.items():
            study.model(name, "--epochs")
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"epochs for {name} must be a positive integer, got {value!r}")
        self._check_model_seeds(study)

    def _check_cluster(self) -> None:
        """--workers N (N > 1) is --cluster local:N; a cluster is local, local:N or a Dask
        scheduler's address; workers says how many runs a local cluster trains at once."""
        from .cluster import check, local_workers

        if self.cluster is None:
            if self.workers > 1:
                object.__setattr__(self, "cluster", f"local:{self.workers}")
            return
        if not isinstance(self.cluster, str):
            raise ConfigError(f"cluster must be local, local:N or a Dask scheduler address, "
                              f"got {self.cluster!r}")
        object.__setattr__(self, "cluster", check(self.cluster))
        n = local_workers(self.cluster)
        if self.workers > 1 and n != self.workers:
            raise ConfigError(f"--workers {self.workers} means --cluster local:{self.workers}, "
                              f"which contradicts --cluster {self.cluster}; give one of them")
        if n is not None:
            object.__setattr__(self, "workers", n)

    def _check_model_seeds(self, study: Study) -> None:
        """Per-model seed counts name models of the study, are positive, and never exceed
        the seeds of the model a model starts from (each seed continues its parent's)."""
        for name, value in self.model_seeds.items():
            study.model(name, "--seeds")
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"seeds for {name} must be a positive integer, got {value!r}")
        for name, spec in study.models.items():
            parent = spec.starts_from
            if parent and len(self.seeds_for(name)) > len(self.seeds_for(parent)):
                raise ConfigError(f"{name} starts from {parent}, so it cannot have more seeds "
                                  f"({len(self.seeds_for(name))}) than {parent} "
                                  f"({len(self.seeds_for(parent))}); raise {parent}'s with "
                                  f"--seeds {parent}=N")

    @property
    def study(self) -> Study:
        """The study this build runs (study.yml, validated; cached while unchanged)."""
        return load(self.study_file or self.project_dir / STUDY_FILE)

    @property
    def cell_limit(self) -> int:
        """Seconds one cell of a page may run in a build: --cell-timeout, else study.yml's
        pages.cell_timeout, else CELL_TIMEOUT."""
        return self.cell_timeout or self.study.cell_timeout or CELL_TIMEOUT

    @property
    def profile_spec(self) -> ProfileSpec:
        """The profile this build runs."""
        return self.study.profile(self.profile)

    def epochs_for(self, model: str) -> int:
        """Epochs for one model: the override, else the profile's in the study."""
        if model in self.epochs:
            return self.epochs[model]
        return self.study.epochs(model, self.profile)

    @property
    def seed_list(self) -> list[int]:
        """Every training seed of the build: seed, seed + 1, ... up to the most any model
        has (--seeds, else the profile's seeds; --seeds MODEL=N for one model)."""
        return max((self.seeds_for(m) for m in self.study.models), key=len)

    def seeds_for(self, model: str) -> list[int]:
        """The training seeds of one model: seed, seed + 1, ... (its --seeds MODEL=N, else
        --seeds N, else the profile's seeds)."""
        count = self.model_seeds.get(model) or self.seeds or self.profile_spec.seeds
        return [self.seed + i for i in range(count)]

    @property
    def cache_root(self) -> Path:
        """Where both caches live: CATDOG_CACHE_DIR, or .cache/ in the project."""
        return (self.cache_dir or self.project_dir / ".cache").resolve()

    @property
    def build_dir(self) -> Path:
        """The git-ignored folder for generated Markdown and build records."""
        return self.project_dir / "build"

    @property
    def site_dir(self) -> Path:
        """The published site."""
        return self.project_dir / "site"

    def to_json(self) -> str:
        """Serialise for a page kernel."""
        data = dataclasses.asdict(self)
        return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()})

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build settings from a mapping; unknown keys fail with a hint."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}{suggest(key, sorted(known))}")
        return cls(**{k: v for k, v in values.items() if v is not None})


def from_environment(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from CATDOG_SETTINGS (inside a build) or the CATDOG_* variables."""
    env = environment.read()
    if env.settings is not None:
        values: dict[str, Any] = dict(env.settings)
    else:  # a page run by hand
        env.warn_unknown()
        values = {k: getattr(env, k) for k in FROM_ENVIRONMENT if getattr(env, k) is not None}
    values.update(overrides or {})
    return Settings.from_mapping(values)
