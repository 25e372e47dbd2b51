"""A shared run cache on any file system fsspec reaches (a shared disk, file://, s3://,
gs://, memory://): a build pulls an entry on a local miss and pushes the runs it trains.

Layout under the URL (every object written once, under a temp name, then moved into place):

    blobs/SHA256           the files of entries, by the SHA-256 of their bytes (immutable)
    entries/KEY.json       an entry: its files by name → blob digest, written last
    memo/MEMO.json         a memo key → its run key (found without TensorFlow)

An entry exists once its manifest does, and the manifest only names blobs already written,
so a reader never sees half an entry. Two builds pushing the same key at once write the same
blobs (same bytes, same names) and each writes a complete manifest: whichever move lands
last wins, and either is a whole entry. Object stores have no rename of folders, which is
why an entry is one object pointing at content-addressed ones. A pulled file is checked
against its digest before it enters the local run cache; a pushed temp object that a killed
build left behind is never read (it is not named by any manifest).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cache import CHECKSUMS, Store, file_digest
from .errors import CacheError, ConfigError

log = logging.getLogger(__name__)

ENV_REMOTE = "CATDOG_REMOTE_CACHE"
REMOTE_FORMAT = 1
FIX = "check the URL and your access to it, or build without --remote-cache"


class Remote:
    """A remote run cache at one fsspec URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = _open(url)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def _error(self, what: str, exc: BaseException) -> CacheError:
        return CacheError(f"remote run cache {self.url}: {what} failed "
                          f"({type(exc).__name__}: {exc}); {FIX}")

    def _read_json(self, path: str) -> Any:
        """A small JSON object, or None when it does not exist or is unreadable."""
        try:
            with self.fs.open(path, "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            log.warning("remote run cache %s: %s is unreadable (%s); ignoring it", self.url,
                        path, exc)
            return None
        except OSError as exc:
            raise self._error(f"reading {path}", exc) from exc

    def _put(self, path: str, write: Callable[[Any], None]) -> None:
        """Write one object under a temp name, then move it into place."""
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            parent = path.rsplit("/", 1)[0]
            self.fs.makedirs(parent, exist_ok=True)
            with self.fs.open(tmp, "wb") as fh:
                write(fh)
            self.fs.mv(tmp, path)
        except BaseException as exc:
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except Exception:  # noqa: BLE001 (best effort; the temp name is never read)
                pass
            if isinstance(exc, OSError):
                raise self._error(f"writing {path}", exc) from exc
            raise

    def key_for_memo(self, memo: str) -> str | None:
        """The run key a memo key names here, if any."""
        found = self._read_json(self._path("memo", f"{memo}.json"))
        return found.get("key") if isinstance(found, dict) else None

    def manifest(self, key: str) -> dict[str, str] | None:
        """The files (name → SHA-256) of an entry, or None when it is not here."""
        found = self._read_json(self._path("entries", f"{key}.json"))
        if not isinstance(found, dict) or not isinstance(found.get("files"), dict):
            return None
        return {str(k): str(v) for k, v in found["files"].items()}

    def has(self, key: str) -> bool:
        """Whether an entry for key is here."""
        return self.manifest(key) is not None

    def pull(self, key: str, store: Store) -> Path | None:
        """Copy the entry of key into the local store, every file checked against its
        digest; None (with a warning) when it is absent or a file does not match."""
        files = self.manifest(key)
        if files is None:
            return None

        def fill(tmp: Path) -> None:
            for name, sha in files.items():
                target = tmp / name
                if target.resolve().parent != tmp.resolve() or name == CHECKSUMS:
                    raise _Corrupt(f"it names the file {name!r}")
                try:
                    self.fs.get_file(self._path("blobs", sha), str(target))
                except FileNotFoundError:
                    raise _Corrupt(f"its file {name} (blob {sha[:12]}) is missing") from None
                except OSError as exc:
                    raise self._error(f"downloading {name} of {key[:12]}", exc) from exc
                if file_digest(target) != sha:
                    raise _Corrupt(f"{name} does not match its checksum")

        try:
            folder = store.put(key, fill)
        except _Corrupt as exc:
            log.warning("remote run cache %s: entry %s is not usable (%s); it is not used",
                        self.url, key[:12], exc)
            return None
        log.debug("pulled run %s from the remote run cache %s", key[:12], self.url)
        return folder

    def push(self, key: str, folder: Path, memo: str | None = None,
             model: str | None = None) -> bool:
        """Push a local entry (its files' blobs, then its manifest) and its memo key;
        False when the remote had the entry already."""
        pushed = False
        if not self.has(key):
            files = json.loads((folder / CHECKSUMS).read_text())
            for name, sha in sorted(files.items()):
                blob = self._path("blobs", sha)
                if self.fs.exists(blob):
                    continue  # content-addressed: the same bytes are there already
                source = folder / name
                self._put(blob, lambda fh, source=source: _copy(source, fh))
            manifest = {"format": REMOTE_FORMAT, "key": key, "model": model, "files": files}
            self._put(self._path("entries", f"{key}.json"),
                      lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))
            pushed = True
            log.info("pushed run %s to the remote run cache %s", key[:12], self.url)
        if memo and self.key_for_memo(memo) != key:
            body = json.dumps({"model": model, "key": key}).encode()
            self._put(self._path("memo", f"{memo}.json"), lambda fh: fh.write(body))
        return pushed


class _Corrupt(Exception):
    """A remote entry that does not match its manifest."""


def _copy(source: Path, fh: Any) -> None:
    """Copy a local file into an open remote file."""
    with open(source, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            fh.write(block)


def _open(url: str) -> tuple[Any, str]:
    """The fsspec file system and root path of url (a plain path is a local folder)."""
    try:
        import fsspec
    except ImportError as exc:  # a dependency: only a broken install lacks it
        raise ConfigError(f"--remote-cache {url}: fsspec is not installed; run make "
                          "install") from exc
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        raise ConfigError(f"--remote-cache {url}: fsspec cannot open {protocol!r} URLs "
                          f"({exc}); install the package it names (s3fs for s3://, gcsfs for "
                          "gs://) or use a path on a shared disk") from exc
    return fs, root


@functools.lru_cache(maxsize=8)
def remote(url: str) -> Remote:
    """The Remote of a URL (one per URL and process)."""
    return Remote(url)

