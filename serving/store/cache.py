"""A node's local cache of files downloaded from an object-storage model store.

Content-addressed: ``CACHE/blobs/ab/abcdef...`` is the file whose sha256 is ``abcdef...``, so
a file is downloaded once per node whatever version or replica asks for it, and the name is the
checksum the version's manifest promised. A download goes to a temporary file, is hashed while
it is written, and is renamed into place only if its size and sha256 match; a mismatch is a
:class:`~translate.errors.ModelError` (the stored object is corrupt or was changed), remembered
for ``REFUSAL_COOLDOWN_S`` so a replica does not download a bad object on every request.

The cache is bounded (``$TRANSLATE_CACHE_MAX_BYTES``, default 4 GiB): after each download the
least recently used files are removed until it fits (never the file just fetched). Several
processes on a node share it safely: every write is a rename of a complete, verified file.

Location: ``$TRANSLATE_CACHE`` (default ``~/.cache/i2i-translate``); ``work/`` beside ``blobs/``
holds an object store's local working files (retraining jobs).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from translate.errors import ConfigError, ModelError
from translate.object_storage import cache_root

from .vocabulary import sha256_file

CACHE_MAX_ENV = "TRANSLATE_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 4 << 30
REFUSAL_COOLDOWN_S = 30.0


def _max_bytes_from_env() -> int:
    raw = os.environ.get(CACHE_MAX_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        return max(0, int(float(raw)))
    except ValueError:

        raise ConfigError(CACHE_MAX_ENV, f"{raw!r} is not a number of bytes") from None


class BlobCache:
    """Verified local copies of stored files, by sha256; see the module docstring."""

    def __init__(self, root: str | os.PathLike | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else cache_root() / "blobs"
        self.max_bytes = _max_bytes_from_env() if max_bytes is None else max_bytes
        self._refused: dict[str, tuple[float, str]] = {}  # source -> (when, why)
        self._lock = threading.Lock()

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ModelError(f"{sha256!r} is not a sha256 checksum")
        return self.root / sha256[:2] / sha256

    def get(self, sha256: str, size: int, download: Callable[[Path], None], source: str) -> Path:
        """The local file with this checksum; ``download(path)`` writes it there when it is not cached yet.
        ``source`` names the stored object in errors."""
        dst = self.path_for(sha256)
        try:
            if dst.stat().st_size == size:
                os.utime(dst)  # recently used
                return dst
        except FileNotFoundError:
            pass
        with self._lock:
            refused = self._refused.get(source)
        if refused is not None and time.monotonic() - refused[0] < REFUSAL_COOLDOWN_S:
            raise ModelError(refused[1])
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{sha256[:12]}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            download(tmp)
            got, got_size = sha256_file(tmp)
            if got != sha256 or got_size != size:
                why = (f"{source}: checksum mismatch (the manifest says sha256 {sha256[:16]}... and {size:,} bytes, "
                       f"the object has {got[:16]}... and {got_size:,} bytes): the stored file is corrupt or was "
                       "changed after it was registered; refused")
                with self._lock:
                    self._refused[source] = (time.monotonic(), why)
                raise ModelError(why)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        with self._lock:
            self._refused.pop(source, None)
        self.evict(keep=dst)
        return dst

    def files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("*/*") if p.is_file() and not p.name.startswith(".")]

    def size(self) -> int:
        return sum(_size(p) for p in self.files())

    def evict(self, keep: Path | None = None) -> None:
        """Remove least recently used files until the cache holds at most ``max_bytes`` (``keep`` stays)."""
        entries = []
        for p in self.files():
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                p.unlink()  # a reader that opened it keeps its copy; a later get downloads it again
            total -= size


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return 0
