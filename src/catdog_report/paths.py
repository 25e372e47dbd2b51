"""Up-front checks of every path a build is given: one line each, naming the option, the
path and the fix, before anything is read, trained or written."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from . import environment
from .config import Settings
from .errors import ConfigError
from .weights import expected_file

COPY_PROJECT = ("catdog-report writes build/ and site/ in the project: copy the project to a "
                "writable folder and build it there (--project)")
OPTIONS = {"cache_dir": "--cache-dir", "data_dir": "--data-dir", "weights": "--weights"}


def given_paths(cli: Mapping[str, Path | str | None]) -> dict[str, tuple[Path, str]]:
    """The paths a build is given, each with the option or variable that gave it."""
    env = environment.read()
    out: dict[str, tuple[Path, str]] = {}
    for key, option in OPTIONS.items():
        value, source = cli.get(key), option
        if value is None or str(value) == "":
            value, source = getattr(env, key), environment.variable(key)
        if value is not None:
            out[key] = (Path(value).expanduser().absolute(), source)
    return out


def check_build_paths(settings: Settings, given: Mapping[str, tuple[Path, str]]) -> None:
    """Check the project, the cache, build/, site/, the data and the weights; the first
    problem raises a ConfigError (exit 2) naming the option, the path and the fix."""
    project = settings.project_dir
    _existing_folder(project, "--project", "run catdog-report in the project folder or pass "
                     "--project PATH (the folder holding mkdocs.yml and content/)")
    if "cache_dir" in given:
        path, option = given["cache_dir"]
        writable_folder(path, option, f"point {option} at a writable folder")
    else:
        writable_folder(settings.cache_root, "the cache folder",
                        "choose another with --cache-dir (or CATDOG_CACHE_DIR)")
    for folder, name in ((settings.build_dir, "the build folder"),
                         (settings.site_dir, "the site folder")):
        writable_folder(folder, name, COPY_PROJECT, is_file_fix="remove or rename that "
                        f"file; catdog-report creates the folder {folder.name}/ in its place")
    if problem := folder_writable_problem(project):  # site/ is swapped in from a sibling
        raise ConfigError(f"--project {project} {problem}; {COPY_PROJECT}")
    if "data_dir" in given:
        path, option = given["data_dir"]
        _existing_folder(path, option, f"point {option} at the {settings.study.data.name} "
                         "folder (the one holding train/ and validation/)")
    if "weights" in given:
        path, option = given["weights"]
        _weights_file(path, option, expected_file(settings))


def folder_writable_problem(folder: Path) -> str | None:
    """None when a file can be created in folder, else why not, in words."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".catdog-write-check-")
    except OSError as exc:
        return _why(exc)
    os.close(fd)
    with contextlib.suppress(OSError):  # gone already if a build swapped the folder meanwhile
        os.unlink(name)
    return None


def _why(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "is on a read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "is not writable (permission denied)"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "is on a full disk (no space left on device)"
    return f"cannot be written to ({(exc.strerror or str(exc)).lower()})"


def _dangling(path: Path) -> str | None:
    if path.is_symlink() and not path.exists():
        return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    return None


def writable_folder(path: Path, name: str, fix: str, is_file_fix: str | None = None) -> None:
    """A folder the build writes in: it is one and writable, or it can be created."""
    if problem := _dangling(path):
        raise ConfigError(f"{name} {path} {problem}; {fix}")
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{name} {path} is a file, not a folder; "
                              f"{is_file_fix or fix + ' (or remove that file)'}")
        if problem := folder_writable_problem(path):
            raise ConfigError(f"{name} {path} {problem}; {fix}")
        return
    parent = path.parent
    if not parent.exists():
        raise ConfigError(f"{name} {path} cannot be created: its parent folder {parent} does "
                          f"not exist; create {parent} first, or {fix}")
    if not parent.is_dir():
        raise ConfigError(f"{name} {path} cannot be created: {parent} is a file, not a "
                          f"folder; {fix}")
    if problem := folder_writable_problem(parent):
        raise ConfigError(f"{name} {path} cannot be created: {parent} {problem}; {fix}")


def _existing_folder(path: Path, name: str, fix: str) -> None:
    """A folder the build only reads: it exists, is a folder, and can be listed."""
    if problem := _dangling(path):
        raise ConfigError(f"{name} {path} {problem}; {fix}")
    if not path.exists():
        raise ConfigError(f"{name} {path} does not exist; {fix}")
    if not path.is_dir():
        unzip = " (unzip it first)" if path.suffix.lower() == ".zip" else ""
        raise ConfigError(f"{name} {path} is a file, not a folder{unzip}; {fix}")
    try:
        os.listdir(path)
    except OSError as exc:
        reason = ("permission denied" if exc.errno in (errno.EACCES, errno.EPERM)
                  else (exc.strerror or str(exc)).lower())
        raise ConfigError(f"{name} {path} cannot be read ({reason}); {fix}") from None


def _weights_file(path: Path, option: str, name: str) -> None:
    """The base weights: an existing, readable file (name: the file the build expects)."""
    fix = f"point {option} at a local no-top weights file of the base, such as {name}"
    if problem := _dangling(path):
        raise ConfigError(f"{option} {path} {problem}; {fix}")
    if not path.exists():
        raise ConfigError(f"{option} {path} does not exist; {fix}")
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.h5"))
        hint = f" such as {path / inside[0]}" if inside else ""
        raise ConfigError(f"{option} {path} is a folder, not a file; point {option} at the "
                          f".h5 file{hint}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        reason = ("permission denied" if exc.errno in (errno.EACCES, errno.EPERM)
                  else (exc.strerror or str(exc)).lower())
        raise ConfigError(f"{option} {path} cannot be read ({reason}); {fix}") from None
