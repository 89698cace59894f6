"""The model store in a folder (the layout ``translate`` has always written)::

    ROOT/NAME/CURRENT            "v0002"
    ROOT/NAME/v0001/model.onnx   the exported generator (translate.export)
    ROOT/NAME/v0001/meta.json    the version's metadata (see serving.store)
    ROOT/NAME/v0001/checkpoint.pt  optional slim training checkpoint, for fine-tuning

A version is written under a hidden temporary name and renamed into place (renaming onto an
existing version fails, which is how concurrent writers get distinct numbers). CURRENT is
replaced atomically, under an exclusive ``flock`` of the model's folder, and only if it still
holds what the promotion read: two concurrent promotions cannot both win. A folder on a shared
file system works from several machines as far as that file system honours rename and flock.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from translate.files import write_text_atomic

from .vocabulary import (
    CURRENT_FILE,
    META_FILE,
    MODEL_FILE,
    NAME_RE,
    VERSION_RE,
    FileSource,
    NotFoundError,
    Pointer,
    PromotionConflict,
    StoreBackend,
    sort_versions,
    utc_now,
    version_number,
)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (flock of the directory itself: nothing is created next to the versions)."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: the compare below still narrows the window to microseconds
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class LocalBackend(StoreBackend):
    cheap_reads = True

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.url = str(self.root.resolve())

    def _dir(self, name: str) -> Path:
        return self.root / name

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and re.fullmatch(NAME_RE, p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        d = self._dir(name)
        if not d.is_dir():
            return []
        return sort_versions(p.name for p in d.iterdir() if (p / MODEL_FILE).is_file())

    def has_version(self, name: str, version: str) -> bool:
        return (self._dir(name) / version / MODEL_FILE).is_file()

    def _read_current(self, name: str) -> str | None:
        try:
            return (self._dir(name) / CURRENT_FILE).read_text()
        except FileNotFoundError:
            return None

    def read_pointer(self, name: str) -> Pointer:
        raw = self._read_current(name)
        version = raw.strip() if raw is not None else None
        return Pointer(version if version and re.fullmatch(VERSION_RE, version) else None, raw)

    def swap_pointer(self, name: str, version: str, token: Any) -> None:
        with _locked(self._dir(name)):
            now = self._read_current(name)
            if now != token:
                raise PromotionConflict(f"{name}: CURRENT changed from {token!r} to {now!r}")
            write_text_atomic(self._dir(name) / CURRENT_FILE, version + "\n")

    def read_meta(self, name: str, version: str) -> dict:
        try:
            return json.loads((self._dir(name) / version / META_FILE).read_text())
        except (FileNotFoundError, ValueError):
            if not self.has_version(name, version):
                raise NotFoundError(f"model {name!r} has no version {version!r}") from None
            return {"name": name, "version": version}

    def fetch(self, name: str, version: str, filename: str) -> Path | None:
        p = self._dir(name) / version / filename
        return p if p.is_file() else None

    def publish(self, name: str, files: dict[str, FileSource], record: dict) -> str:
        name_dir = self._dir(name)
        name_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=name_dir))
        try:
            for filename, source in files.items():
                if isinstance(source, bytes):
                    (tmp / filename).write_bytes(source)
                elif callable(source):
                    source(tmp / filename)
                else:
                    shutil.copyfile(source, tmp / filename)
            os.chmod(tmp, 0o755)
            # claim the next free number: renaming onto an existing (non-empty) version fails
            versions = self.versions(name)
            n = version_number(versions[-1]) + 1 if versions else 1
            while True:
                version = f"v{n:04d}"
                record.update(version=version, created=utc_now())
                (tmp / META_FILE).write_text(json.dumps(record, indent=2, default=str))
                try:
                    os.rename(tmp, name_dir / version)
                    return version
                except OSError:
                    if not (name_dir / version).exists():
                        raise
                    n += 1
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _discard(self, target: Path, trash_in: Path) -> None:
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=trash_in))
        os.rename(target, trash / target.name)  # atomic: readers see the version or nothing
        shutil.rmtree(trash, ignore_errors=True)

    def remove_version(self, name: str, version: str) -> None:
        self._discard(self._dir(name) / version, self._dir(name))

    def remove_model(self, name: str) -> None:
        self._discard(self._dir(name), self.root)

    def sweep(self, name: str, older_than_s: float = 3600.0) -> int:
        """Temporary and trash folders a killed writer left, older than ``older_than_s``."""
        removed, cutoff = 0, time.time() - older_than_s
        for folder in (self.root, self._dir(name)):
            for p in folder.glob(".t*-*") if folder.is_dir() else []:
                if p.name.startswith((".tmp-", ".trash-")) and p.is_dir() and p.stat().st_mtime < cutoff:
                    shutil.rmtree(p, ignore_errors=True)
                    removed += 1
        return removed
