"""The freeze: a build's runs kept beside study.yml in frozen/, meant to be committed (like
Quarto's _freeze/), so that a fresh clone with an empty run cache builds with no training.

    frozen/RUNKEY/record.json     the run record (history, predictions, test scores, layer
                                  table, parameters, environment: what the pages and stamps read)
    frozen/RUNKEY/model.keras     its trained weights, only when frozen --with-weights
    frozen/RUNKEY/frozen.json     its memo key and the cheap inputs behind it (no TensorFlow)
    frozen/RUNKEY/checksums.json  the SHA-256 of every other file

A build finds a frozen run by its memo key (cheap: no TensorFlow), else by its run key once
fit() has computed it; a frozen run whose inputs changed has other keys and is not used
(the build says which inputs differ). A frozen file that no longer matches its checksum
stops the build with a line naming it: the freeze is committed source, and a silent
retrain would hide the damage (and cost the training it exists to save).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .cache import CHECKSUMS, checksum_problem, checksums, file_digest, write_error
from .errors import CacheError

log = logging.getLogger(__name__)

FREEZE_DIR = "frozen"
INFO_FILE = "frozen.json"
RECORD_FILE = "record.json"
MODEL_FILE = "model.keras"
FREEZE_FORMAT = 1
LABELS = {"epochs": "epochs", "batch_size": "batch size", "image_size": "image size",
          "manifest": "the data set (its manifest)", "versions": "library versions",
          "code": "the study's model code", "training": "catdog-report's training code",
          "strategy": "strategy", "precision": "precision", "base_weights": "base weights",
          "parent": "the run it starts from", "format": "the run format"}


def root(study_path: Path) -> Path:
    """The freeze folder of a study: frozen/ beside its study.yml."""
    return study_path.parent / FREEZE_DIR


def _info(folder: Path) -> dict[str, Any] | None:
    """A frozen run's frozen.json, or None when unreadable."""
    try:
        info = json.loads((folder / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def infos(study_path: Path) -> list[dict[str, Any]]:
    """The frozen.json of every frozen run."""
    base = root(study_path)
    found = []
    for path in sorted(base.glob(f"*/{INFO_FILE}")) if base.is_dir() else ():
        info = _info(path.parent)
        if info is not None and path.parent.name == info.get("key"):
            found.append(info)
    return found


def folder(study_path: Path, key: str) -> Path | None:
    """The checked folder of the frozen run key; None when it is not frozen. A frozen file
    that does not match its checksum raises a CacheError naming it and the fix."""
    where = root(study_path) / key
    if not (where / INFO_FILE).is_file():
        return None
    problem = checksum_problem(where)
    if problem is not None:
        raise CacheError(f"the frozen run {where} is damaged ({problem}); restore it with "
                         f"`git checkout -- {FREEZE_DIR}/{key}`, or delete that folder and "
                         "run `catdog-report freeze` again")
    return where


def key_for_memo(study_path: Path, memo: str) -> str | None:
    """The run key of the frozen run with this memo key, if any (no TensorFlow)."""
    for info in infos(study_path):
        if info.get("memo") == memo:
            return str(info["key"])
    return None


def write(study_path: Path, entry: Path, info: Mapping[str, Any],
          with_weights: bool) -> bool:
    """Freeze one run from its run cache entry (or frozen) folder: its record, its weights
    when with_weights, frozen.json (info) and checksums, written in a temp folder and moved
    into place. Returns False when that frozen run was already the same."""
    key = str(info["key"])
    base = root(study_path)
    target = base / key
    weights = with_weights and (entry / MODEL_FILE).is_file()
    if with_weights and not weights:
        log.warning("%s (run %s): no weights to freeze (it was loaded from a freeze without "
                    "them); delete %s and build to retrain it", info.get("model"), key[:12],
                    target)
    body = dict(info) | {"format": FREEZE_FORMAT, "weights": weights,
                         "frozen_at": datetime.now(UTC).isoformat(timespec="seconds")}
    old = _info(target) if target.is_dir() else None
    files = [RECORD_FILE, *([MODEL_FILE] if weights else [])]
    if (old is not None and checksum_problem(target) is None
            and {k: v for k, v in old.items() if k != "frozen_at"}
            == {k: v for k, v in body.items() if k != "frozen_at"}
            and all(file_digest(target / f) == file_digest(entry / f) for f in files)):
        return False
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".tmp-{key[:12]}-"))
    except OSError as exc:
        raise write_error(exc, f"the frozen run {key[:12]}", base, CacheError,
                          "or freeze on a writable checkout") from exc
    try:
        for name in files:
            shutil.copyfile(entry / name, tmp / name)
        (tmp / INFO_FILE).write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        (tmp / CHECKSUMS).write_text(json.dumps(checksums(tmp), indent=1, sort_keys=True) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would be committed as is
        if target.exists():
            aside = base / f".old-{key[:12]}-{os.getpid()}"
            os.rename(target, aside)
            os.rename(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(exc, f"the frozen run {key[:12]}", base, CacheError,
                              "or freeze on a writable checkout") from exc
        raise
    return True


def sweep(study_path: Path) -> None:
    """Remove the temp folders a killed freeze left in frozen/ (call under the project lock:
    no other freeze of this project is writing)."""
    base = root(study_path)
    for left in [*base.glob(".tmp-*"), *base.glob(".old-*")] if base.is_dir() else ():
        shutil.rmtree(left, ignore_errors=True)


def prune(study_path: Path, profile: str, keep: Iterable[str]) -> list[str]:
    """Remove the frozen runs of a profile that are not in keep; returns their keys."""
    kept = set(keep)
    gone = []
    for info in infos(study_path):
        if info.get("profile") == profile and info["key"] not in kept:
            shutil.rmtree(root(study_path) / info["key"])
            gone.append(str(info["key"]))
    return gone


def why_not(study_path: Path, model: str, seed: int, profile: str,
            inputs: Mapping[str, Any], key: str) -> str | None:
    """Why no frozen run of this model, seed and profile was used for the run key: the
    inputs that differ from the ones it was frozen with (None when none is frozen, or the
    run of that key is)."""
    candidates = [i for i in infos(study_path)
                  if (i.get("model"), i.get("seed"), i.get("profile")) == (model, seed, profile)]
    if not candidates or any(i["key"] == key for i in candidates):
        return None
    frozen = candidates[-1].get("inputs", {})
    changed = []
    for name in sorted(set(frozen) | set(inputs)):
        was, now = frozen.get(name), inputs.get(name)
        if was == now:
            continue
        label = LABELS.get(name, name)
        if name == "versions" and isinstance(was, dict) and isinstance(now, dict):
            diff = [f"{k} {was.get(k)} → {now.get(k)}" for k in sorted(set(was) | set(now))
                    if was.get(k) != now.get(k)]
            changed.append(f"{label} ({', '.join(diff)})")
        elif name == "code" and isinstance(was, dict) and isinstance(now, dict):
            files = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
            changed.append(f"{label} ({', '.join(files)})")
        elif isinstance(was, int | float | str | None) and not (
                isinstance(was, str) and len(was) > 24):
            changed.append(f"{label} {was} → {now}")
        else:
            changed.append(label)
    return ("its frozen run was made with other inputs: " + "; ".join(changed)
            if changed else "its frozen run has another run key (the model's architecture, "
            "optimizer or loss differ)")
