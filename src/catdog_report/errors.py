"""The one exceptions module: every error a user can meet derives from CatdogError; an
interruption is Interrupted, a KeyboardInterrupt."""

from __future__ import annotations

from typing import Any


class CatdogError(Exception):
    """Base error: the message says what was wrong, where, and how to fix it."""

    exit_code = 1


class ConfigError(CatdogError):
    """A setting or CLI value is unknown or out of range."""

    exit_code = 2


class DataError(CatdogError):
    """The data set is missing or malformed."""


class WeightsError(CatdogError):
    """The MobileNetV2 weights file is missing or unusable."""


class TrainingError(CatdogError):
    """A model could not be built or trained."""


class CacheError(CatdogError):
    """A cache entry or lock could not be used."""


class PageError(CatdogError):
    """A content page failed to execute or breaks a page rule.

    Attributes:
        notebook: The page's notebook as far as it ran (outputs up to and including the
            failing cell's error), or None when the page failed before any cell ran.
    """

    def __init__(self, message: str, notebook: Any = None) -> None:
        super().__init__(message)
        self.notebook = notebook


class BuildError(CatdogError):
    """The site could not be built or published."""


class Interrupted(KeyboardInterrupt):
    """The build was stopped before it finished: Ctrl-C or SIGTERM during its pages and
    training (kernel.run_batch raises it), or, inside the training thread, the build
    stopping its training at a failed page. What was unfinished left the caches and site/
    unchanged.

    A KeyboardInterrupt, not a CatdogError: no ``except Exception`` (in a page, a training
    callback or a library) can swallow it, and whatever handles Ctrl-C handles it too. The
    CLI turns it (and a plain Ctrl-C) into exit code 130 and one line.
    """

    exit_code = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
