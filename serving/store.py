"""The model store: named models, numbered versions, one promoted version per name.

One interface (:class:`ModelStore`) over two backends, chosen by the location given
(``--store`` / ``$TRANSLATE_STORE``, default ``./models``):

- a folder (:mod:`serving.store_local`): ``ROOT/NAME/CURRENT`` holds the promoted version,
  ``ROOT/NAME/v0001/{model.onnx,meta.json,checkpoint.pt}`` a version, written under a hidden
  temporary name and renamed into place;
- an object-storage URL (:mod:`serving.store_object`): ``s3://bucket/prefix`` (or ``gs://``,
  ``az://``/``abfs://`` through fsspec): files uploaded first under a fresh id, then a version
  manifest written last with a create-only (If-None-Match) write; promotion is one more
  create-only write of a numbered promotion record. Replicas, convert actors and retraining
  jobs on any node read it through a local, checksum-verified cache (:mod:`serving.store_cache`).

Both give the same guarantees: a version is complete before it is visible; promotion is a
compare-and-swap of the pointer, so two concurrent promotions cannot both win (the loser gets
:class:`PromotionConflict`) and a crash never leaves half a pointer; names and versions come
from HTTP clients and are checked against strict patterns before any path or key is built.

Every version records (``meta``): method, direction, size_multiple, channels, config, metrics,
created, the sha256 of its model, and ``has_checkpoint`` (a slim training checkpoint kept for
fine-tuning).
"""
from __future__ import annotations

import abc
import hashlib
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, NamedTuple, Union

from translate.errors import ConfigError, TranslateError

NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VERSION_RE = r"^v\d{4,}$"
MODEL_FILE, META_FILE, CHECKPOINT_FILE, CURRENT_FILE = "model.onnx", "meta.json", "checkpoint.pt", "CURRENT"
# the keys of a training checkpoint a fine-tuning run needs (no optimizer, scheduler or RNG state)
SLIM_CHECKPOINT_KEYS = ("format", "method", "config", "step", "networks", "generators")
STORE_ENV = "TRANSLATE_STORE"

# what a version's file is given as: bytes, a local file, or a function that writes it to the path it is given
FileSource = Union[bytes, str, os.PathLike, Callable[[Path], None]]


class NotFoundError(TranslateError, KeyError):
    """A model name or version that the store does not hold (the service answers 404)."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class PromotionConflict(TranslateError):
    """Another promotion changed the pointer between our read and our write: nothing was changed."""


class StoreError(TranslateError):
    """The store could not be read or written (unreachable, refused, misconfigured); the service answers 503."""


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(NAME_RE, name):
        raise ConfigError("name", f"{name!r} is not a model name (lowercase letters, digits, '_' and '-', "
                                  "starting with a letter or digit, at most 64 characters)")
    return name


def check_version(version: Any) -> str:
    if not isinstance(version, str) or not re.fullmatch(VERSION_RE, version):
        raise ConfigError("version", f"{version!r} is not a version (expected 'v' and at least 4 digits, e.g. v0001)")
    return version


def parse_model_id(model_id: str) -> tuple[str, str]:
    """'NAME@VERSION' -> (name, version), both checked."""
    name, sep, version = str(model_id).partition("@")
    if not sep:
        raise ConfigError("model_id", f"{model_id!r} is not NAME@VERSION")
    return check_name(name), check_version(version)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def version_number(version: str) -> int:
    return int(version[1:])


def sort_versions(versions) -> list[str]:
    return sorted((v for v in versions if re.fullmatch(VERSION_RE, v)), key=version_number)


def is_url(location: str | os.PathLike) -> bool:
    """True for an object-storage URL (``s3://...``); False for a folder (a path or ``file://``)."""
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", str(location))
    return bool(scheme) and scheme.group(1).lower() not in ("file", "local")


class Pointer(NamedTuple):
    """A read of a model's promoted-version pointer."""

    version: str | None  # the promoted version (None: none promoted, or an unreadable pointer)
    token: Any  # what a compare-and-swap of this pointer compares against (backend-specific)


class StoreBackend(abc.ABC):
    """Where versions live. :class:`ModelStore` holds the rules (names, numbering, what may be deleted,
    the metadata); a backend only stores and reads. Names and versions reaching it are checked."""

    url: str  # where the store is: an absolute folder or an object-storage URL
    root: Path  # a local folder for this store's working files (retraining jobs): the store itself for a folder
    cheap_reads: bool = True  # reads cost a local file access (else: a network request, worth caching)

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Model names that have at least one version, sorted."""

    @abc.abstractmethod
    def versions(self, name: str) -> list[str]:
        """Complete versions of ``name``, oldest first."""

    @abc.abstractmethod
    def has_version(self, name: str, version: str) -> bool: ...

    @abc.abstractmethod
    def read_pointer(self, name: str) -> Pointer: ...

    @abc.abstractmethod
    def swap_pointer(self, name: str, version: str, token: Any) -> None:
        """Point ``name`` at ``version`` if the pointer is still as read with ``token``; else PromotionConflict."""

    @abc.abstractmethod
    def read_meta(self, name: str, version: str) -> dict:
        """The version's metadata; NotFoundError when the version does not exist (any more)."""

    @abc.abstractmethod
    def fetch(self, name: str, version: str, filename: str) -> Path | None:
        """A local path holding the version's file (None when it has no such file)."""

    @abc.abstractmethod
    def publish(self, name: str, files: dict[str, FileSource], record: dict) -> str:
        """Store a new version (complete before it is visible) under the next free number; returns it.
        ``record`` is its metadata; the backend adds ``version`` and ``created``."""

    @abc.abstractmethod
    def remove_version(self, name: str, version: str) -> None: ...

    @abc.abstractmethod
    def remove_model(self, name: str) -> None: ...

    def sweep(self, name: str, older_than_s: float = 3600.0) -> int:
        """Remove what interrupted writers of ``name`` left (older than ``older_than_s``, so never a write
        in progress); returns how many items."""
        return 0


def open_backend(location: str | os.PathLike) -> StoreBackend:
    if is_url(location):
        from .store_object import ObjectBackend

        return ObjectBackend(str(location))
    from .store_local import LocalBackend

    text = str(location)
    return LocalBackend(Path(text[len("file://"):] if text.startswith("file://") else location))


def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class ModelStore:
    """Versions of exported models in a folder or in object storage; see the module docstring.

    ``max_staleness_s``: how old a read of the pointer or of the version list may be (a server
    polling an object store per request sets a few seconds; folders are always read afresh).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, max_staleness_s: float = 0.0):
        self.backend = open_backend(root if root is not None else os.environ.get(STORE_ENV, "models"))
        self.max_staleness_s = 0.0 if self.backend.cheap_reads else max_staleness_s
        self._cache: dict[tuple, tuple[float, Any]] = {}

    @property
    def url(self) -> str:
        """Where the store is: an absolute folder or an object-storage URL (what replicas elsewhere open)."""
        return self.backend.url

    @property
    def root(self) -> Path:
        """The store's folder; for an object store, the local folder for its working files."""
        return self.backend.root

    def __repr__(self) -> str:
        return f"ModelStore({self.url!r})"

    def _cached(self, key: tuple, read: Callable[[], Any]) -> Any:
        if self.max_staleness_s > 0:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.max_staleness_s:
                return hit[1]
        value = read()
        if self.max_staleness_s > 0:
            self._cache[key] = (time.monotonic(), value)
        return value

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        return self.backend.names()

    def versions(self, name: str) -> list[str]:
        check_name(name)
        return self._cached(("versions", name), lambda: self.backend.versions(name))

    def current(self, name: str) -> str | None:
        check_name(name)
        return self._cached(("current", name), lambda: self.backend.read_pointer(name).version)

    def resolve(self, name: str, version: str | None = None) -> str:
        """The version NAME/VERSION names (None: the promoted one), checked to exist; NotFoundError if not.
        Reads no model file (nothing is downloaded)."""
        check_name(name)
        if version is None:
            version = self.current(name)
            if version is None:
                if not self.versions(name):
                    raise NotFoundError(f"no model named {name!r}")
                raise NotFoundError(f"model {name!r} has no promoted version")
        check_version(version)
        if not self._cached(("has", name, version), lambda: self.backend.has_version(name, version)):
            versions = self.backend.versions(name)
            if not versions:
                raise NotFoundError(f"no model named {name!r}")
            raise NotFoundError(f"model {name!r} has no version {version!r} (has {', '.join(versions)})")
        return version

    def model_path(self, name: str, version: str | None = None) -> Path:
        """A local file holding the model (for an object store: downloaded once, checksum-verified)."""
        version = self.resolve(name, version)
        path = self.backend.fetch(name, version, MODEL_FILE)
        if path is None:
            raise NotFoundError(f"model {name!r} {version} has no {MODEL_FILE}")
        return path

    def checkpoint_path(self, name: str, version: str | None = None) -> Path | None:
        return self.backend.fetch(name, self.resolve(name, version), CHECKPOINT_FILE)

    def meta(self, name: str, version: str | None = None) -> dict:
        version = self.resolve(name, version)
        return self.backend.read_meta(name, version)

    def list(self) -> list[dict]:
        out = []
        for name in self.names():
            versions = []
            for v in self.versions(name):
                try:
                    versions.append({**self.backend.read_meta(name, v), "version": v})
                except NotFoundError:  # deleted meanwhile
                    continue
            out.append({"name": name, "current": self.current(name), "versions": versions})
        return out

    # ------------------------------------------------------------------ writing
    def register(self, name: str, onnx: str | os.PathLike | bytes, meta: dict | None = None,
                 checkpoint: str | os.PathLike | None = None, promote: bool = False) -> str:
        """Add a new version of ``name``; returns it. The first version of a name is promoted."""
        from translate.predictor import Predictor  # lazy: ONNX Runtime, only when registering

        check_name(name)
        if not isinstance(onnx, bytes):
            if not Path(onnx).is_file():
                raise ConfigError("onnx", f"{onnx}: no such model file")
        model = Predictor(onnx, device="cpu")  # ModelError when it is not a usable model
        m = model.metadata
        record: dict[str, Any] = {
            "name": name,
            "method": m.get("method", ""),
            "direction": m.get("direction", "AtoB"),
            "size_multiple": model.size_multiple,
            "channels": model.input_nc,
            "output_channels": model.output_nc,
            "arch": m.get("arch", {}),
            "step": m.get("step"),
            "config": m.get("config", {}),
            "metrics": {},
        }
        files: dict[str, FileSource] = {MODEL_FILE: onnx if isinstance(onnx, bytes) else Path(onnx)}
        if checkpoint is not None:
            from translate.checkpoint import load_checkpoint, resolve_checkpoint  # lazy: torch

            ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
            slim = {k: ckpt[k] for k in SLIM_CHECKPOINT_KEYS if k in ckpt}
            record["metrics"] = dict(ckpt.get("last_val") or {})  # the run's last validation scores

            def write_slim(path: Path, slim=slim) -> None:
                import torch

                torch.save(slim, path)

            files[CHECKPOINT_FILE] = write_slim
        record["sha256"] = (hashlib.sha256(onnx).hexdigest() if isinstance(onnx, bytes)
                            else sha256_file(onnx)[0])
        record.update(meta or {})
        record["has_checkpoint"] = CHECKPOINT_FILE in files
        self.backend.sweep(name)  # what killed writers left long ago; never a write in progress
        version = self.backend.publish(name, files, record)
        self._cache.clear()
        if promote:
            self.promote(name, version)
        else:
            self._promote_if_none(name)
        return version

    def _promote_if_none(self, name: str) -> None:
        """Point the pointer at the first version when none (or a version that is gone) is promoted:
        concurrent first registrations agree, since v0001 exists before any later number."""
        pointer = self.backend.read_pointer(name)
        versions = self.backend.versions(name)
        if not versions or pointer.version in versions:
            return
        try:
            self.backend.swap_pointer(name, versions[0], pointer.token)
        except PromotionConflict:
            pass  # another writer promoted meanwhile: theirs stands
        self._cache.clear()

    def promote(self, name: str, version: str, expected: str | None = None) -> None:
        """Serve ``version`` of ``name``: one compare-and-swap of the pointer, no restart needed.

        ``expected``: promote only if this is still the promoted version (e.g. the version a
        retraining job compared against). Raises PromotionConflict when another promotion
        changed the pointer first; nothing is changed then.
        """
        check_name(name)
        check_version(version)
        pointer = self.backend.read_pointer(name)
        if expected is not None and pointer.version != check_version(expected):
            raise PromotionConflict(f"{name}: not promoting {version}: the promoted version is "
                                    f"{pointer.version or 'none'}, not {expected} as expected")
        self._cache.clear()
        self.resolve(name, version)
        if pointer.version == version:
            return
        try:
            self.backend.swap_pointer(name, version, pointer.token)
        except PromotionConflict:
            now = self.backend.read_pointer(name).version
            if now == version and expected is None:
                return  # the other promotion did what we asked
            raise PromotionConflict(
                f"{name}: another promotion changed the promoted version from {pointer.version or 'none'} to "
                f"{now or 'none'} while {version} was being promoted; nothing was changed (look at "
                f"`translate models list` and promote again if {version} should still be served)") from None
        finally:
            self._cache.clear()

    def delete(self, name: str, version: str | None = None) -> None:
        """Delete one version, or (``version=None``) the whole model with all its versions.

        The promoted version of a model that has other versions cannot be deleted: promote
        another one first. Deleting the only version deletes the model.
        """
        check_name(name)
        self._cache.clear()
        if version is not None:
            self.resolve(name, version)
        elif not self.backend.versions(name):
            raise NotFoundError(f"no model named {name!r}")
        versions = self.backend.versions(name)
        try:
            if version is None or versions == [version]:
                self.backend.remove_model(name)
                return
            if self.backend.read_pointer(name).version == version:
                raise ConfigError("version", f"{version} is the promoted version of {name!r}; promote another "
                                             f"version first (has {', '.join(versions)})")
            self.backend.remove_version(name, version)
        finally:
            self._cache.clear()
