"""The words every part of the model store is written in, below its backends and its facade: names and
versions and their checks, the file names of a version, :class:`Pointer`, the :class:`StoreBackend`
interface, the store's errors and :func:`sha256_file`. Imports nothing of the store."""
from __future__ import annotations

import abc
import hashlib
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, NamedTuple, Union

from translate.errors import ConfigError, StorageError, TranslateError

NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VERSION_RE = r"^v\d{4,}$"
MODEL_FILE, META_FILE, CHECKPOINT_FILE, CURRENT_FILE = "model.onnx", "meta.json", "checkpoint.pt", "CURRENT"

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


class StoreError(StorageError):
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


def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
