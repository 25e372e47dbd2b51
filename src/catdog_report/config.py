"""Profiles and settings: frozen, validated objects built from CLI values and the environment."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

MODEL_NAMES = ("model_one", "model_two", "model_three", "model_four")
STRATEGIES = ("none", "mirrored", "multi-worker")
MIN_IMAGE_SIZE = 97  # model four: MobileNetV2 divides by 32, then its head pools twice
ENV_SETTINGS = "CATDOG_SETTINGS"  # JSON of Settings, handed to page kernels
ENV_DATA_SOURCE = "CATDOG_DATA_SOURCE"  # how the build found the data
ENV_MANIFEST = "CATDOG_BUILD_MANIFEST"  # JSON list of the runs earlier pages used
ENV_RUNS = "CATDOG_RUNS"  # JSON {model: {"key", "trained"}}: runs the build already has


@dataclass(frozen=True)
class Profile:
    """How much of the study a build runs: epochs per model and images per class."""

    name: str
    epochs: Mapping[str, int]
    train_per_class: int | None  # None: every image
    validation_per_class: int | None
    synthetic: bool
    description: str


PROFILES: dict[str, Profile] = {
    "full": Profile(
        "full",
        {"model_one": 20, "model_two": 30, "model_three": 20, "model_four": 10},
        None,
        None,
        False,
        "the walkthrough's epochs on every image",
    ),
    "quick": Profile(
        "quick",
        {"model_one": 2, "model_two": 2, "model_three": 2, "model_four": 1},
        150,
        75,
        False,
        "a preview: 300 training images, 1-2 epochs",
    ),
    "demo": Profile(
        "demo",
        {"model_one": 4, "model_two": 4, "model_three": 4, "model_four": 2},
        300,
        100,
        True,
        "an offline demo on generated drawings of cats and dogs",
    ),
}


def suggest(name: str, choices: Any) -> str:
    """Return a ' (did you mean X?)' hint, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choice(kind: str, value: str, choices: Any) -> str:
    if value not in choices:
        raise ConfigError(
            f"unknown {kind} {value!r}{suggest(value, choices)}; choose one of {', '.join(choices)}"
        )
    return value


@dataclass(frozen=True)
class Settings:
    """Everything one build needs to know; frozen once validated."""

    profile: str = "full"
    project_dir: Path = field(default_factory=Path.cwd)
    data_dir: Path | None = None
    weights: Path | None = None
    cache_dir: Path | None = None
    seed: int = 0  # the walkthrough seeds with tf.random.set_seed(0)
    image_size: int = 160
    batch_size: int = 32
    epochs: Mapping[str, int] = field(default_factory=dict)  # overrides of the profile's
    strategy: str = "none"
    keep_going: bool = False
    jobs: int = 2  # page kernels executing at once

    def __post_init__(self) -> None:
        _choice("profile", self.profile, PROFILES)
        _choice("strategy", self.strategy, STRATEGIES)
        if self.image_size < MIN_IMAGE_SIZE:
            raise ConfigError(
                f"image size {self.image_size} is too small for the models; "
                f"use at least {MIN_IMAGE_SIZE} (the walkthrough uses 160)"
            )
        if not isinstance(self.jobs, int) or self.jobs <= 0:
            raise ConfigError(f"jobs must be a positive integer (pages executed at once), "
                              f"got {self.jobs!r}")
        if self.batch_size <= 0:
            raise ConfigError(f"batch size must be positive, got {self.batch_size}")
        for name, value in dict(self.epochs).items():
            _choice("model name", name, MODEL_NAMES)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"epochs for {name} must be a positive integer, got {value!r}")
        for attr in ("project_dir", "data_dir", "weights", "cache_dir"):
            value = getattr(self, attr)
            if value is not None:
                object.__setattr__(self, attr, Path(value).expanduser().absolute())
        object.__setattr__(self, "epochs", dict(self.epochs))

    @property
    def profile_spec(self) -> Profile:
        """The Profile object this build runs."""
        return PROFILES[self.profile]

    def epochs_for(self, model: str) -> int:
        """Epochs for one model: the override, else the profile's."""
        _choice("model name", model, MODEL_NAMES)
        return self.epochs.get(model, self.profile_spec.epochs[model])

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
    raw = os.environ.get(ENV_SETTINGS)
    values: dict[str, Any] = json.loads(raw) if raw else {}
    if not raw:
        env = {
            "profile": os.environ.get("CATDOG_PROFILE"),
            "data_dir": os.environ.get("CATDOG_DATA_DIR"),
            "weights": os.environ.get("CATDOG_WEIGHTS"),
            "cache_dir": os.environ.get("CATDOG_CACHE_DIR"),
            "strategy": os.environ.get("CATDOG_STRATEGY"),
        }
        values.update({k: v for k, v in env.items() if v})
    values.update(overrides or {})
    return Settings.from_mapping(values)
