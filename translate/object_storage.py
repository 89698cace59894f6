"""Object storage for every layer: data sets, runs and converted images under ``s3://BUCKET/PREFIX``
(``gs://``, ``az://`` likewise), through fsspec (s3fs, gcsfs, adlfs).

- :func:`is_url` tells a URL from a local path; :func:`filesystem` opens the URL's filesystem once per process
  (credentials, region and endpoint from the storage library's own environment: ``AWS_PROFILE``,
  ``~/.aws/credentials``, ``AWS_ENDPOINT_URL``, instance roles; never from the URL or a flag).
- :func:`storage_errors` turns what the storage library raises into one :class:`~translate.errors.StorageError`
  line that says what was wrong: no such bucket, a refused request (credentials, permissions), an endpoint
  that does not answer.
- :class:`ObjectPath` is one key under a prefix that is **listed once** (one recursive listing, shared by every
  path of the tree and carried with them into data loader workers), with the part of :class:`pathlib.Path`'s
  interface the data code uses (``/``, ``is_dir``, ``iterdir``, ``rglob``, ``name``, ``stem``, ``open``), so the
  layouts read on disk (aligned A|B, A/B folders, trainA/trainB, class folders) are read the same way from a
  bucket. Objects are fetched when they are read, each by the process that reads it; an optional node-local
  cache keeps up to a stated number of bytes of them (:class:`ObjectTree`'s ``cache_bytes``).
- :func:`list_objects` lists a prefix once, with each object's size and modification time (:func:`list_files`:
  sizes only; :func:`modified`: one object's time).
- :func:`put_file` / :func:`put_bytes` upload a whole object (a PUT is all or nothing: a reader never sees half of
  one); :func:`create_bytes` is the create-only write (``If-None-Match: *``) that commits something last, so
  what it names is whole before anyone can take it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import threading
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Iterator
from urllib.parse import urlsplit

from .errors import ConfigError, StorageError, TranslateError
from .files import atomic_path, write_bytes_atomic

PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
            "abfss": "adlfs"}
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
# errors of the storage libraries that mean "could not talk to the store"
_STORAGE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "azure", "google", "fsspec")
CACHE_ENV = "TRANSLATE_CACHE"


def is_url(value: Any) -> bool:
    """Whether ``value`` names object storage (``SCHEME://...``) rather than a local path."""
    return isinstance(value, (str, ObjectPath)) and bool(_URL_RE.match(str(value)))


def cache_root() -> Path:
    """This node's cache folder: ``$TRANSLATE_CACHE``, default ``~/.cache/i2i-translate``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "i2i-translate"


def split_url(url: str, field: str = "url") -> tuple[str, str]:
    """(scheme, ``BUCKET[/PREFIX]``) of an object-storage URL, refusing what does not belong in one."""
    parts = urlsplit(str(url))
    scheme = parts.scheme.lower()
    if parts.username or parts.password:
        raise ConfigError(field, f"{scheme}://...: credentials do not belong in the {field} URL (they would end up "
                                 "in shell history and logs); use the storage library's environment or config "
                                 "(e.g. AWS_PROFILE or ~/.aws/credentials for s3://)")
    if parts.query or parts.fragment:
        raise ConfigError(field, f"{url}: takes no query or fragment; endpoint and options come from the environment "
                                 "(e.g. AWS_ENDPOINT_URL)")
    path = (parts.netloc + parts.path).strip("/")
    if not path or "//" in path or any(p in (".", "..") for p in path.split("/")):
        raise ConfigError(field, f"{url}: expected {scheme}://BUCKET or {scheme}://BUCKET/PREFIX")
    return scheme, path


_filesystems: dict[tuple, Any] = {}
_lock = threading.Lock()
_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCS", "AZURE_")


def filesystem(url: str, field: str = "url") -> tuple[Any, str]:
    """(fsspec filesystem, ``BUCKET/PREFIX``) of ``url``: one filesystem per scheme, process and storage
    environment (a forked data loader worker opens its own: the parent's event loop and connections do not survive
    a fork; a changed ``AWS_ENDPOINT_URL`` or credential variable gets a new one). Nothing it lists is cached."""
    scheme, path = split_url(url, field)
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)))
    key = (scheme, os.getpid(), env)
    with _lock:
        fs = _filesystems.get(key)
        if fs is None:
            try:
                import fsspec

                fs = fsspec.filesystem(scheme, skip_instance_cache=True, use_listings_cache=False)
            except ImportError as e:
                package = PACKAGES.get(scheme, "the fsspec implementation for it")
                raise ConfigError(field, f"{url}: {scheme}:// object stores need the package {package} (pip install {package}) "
                                         f"({e})") from None
            except ValueError as e:
                raise ConfigError(field, f"{url}: not a URL fsspec knows ({e})") from None
            _filesystems[key] = fs
    return fs, path


def is_storage_error(e: BaseException) -> bool:
    """Whether ``e`` means the storage could not be talked to (as opposed to a bug)."""
    return isinstance(e, (OSError, TimeoutError)) or type(e).__module__.split(".")[0] in _STORAGE_MODULES


def describe(e: BaseException, url: str) -> str:
    """What a storage failure means, in words: a missing bucket, a refused request, an endpoint that does not
    answer, or the library's own message."""
    text = f"{e.__class__.__name__}: {e}"
    bucket = url.split("://", 1)[-1].split("/", 1)[0]
    if isinstance(e, FileNotFoundError) and "bucket" in str(e).lower():
        return f"there is no bucket {bucket!r} ({e})"
    if isinstance(e, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return f"the storage service refused the request: check the credentials and their rights on {bucket!r} ({e})"
    if any(s in text for s in ("Could not connect", "ConnectionError", "Connect call failed", "Cannot connect",
                               "Connection refused", "Name or service not known", "timed out")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        where = f" at {endpoint} (AWS_ENDPOINT_URL)" if endpoint and url.startswith(("s3://", "s3a://")) else ""
        return f"the storage service does not answer{where} ({e})"
    return text


@contextlib.contextmanager
def storage_errors(url: str, what: str) -> Iterator[None]:
    """Storage-library failures inside the block as one :class:`StorageError` naming ``url`` and ``what`` was being
    done. ``FileNotFoundError`` of a missing object (not a missing bucket) passes through for the caller."""
    try:
        yield
    except (TranslateError, FileExistsError):
        raise
    except FileNotFoundError as e:
        if "bucket" not in str(e).lower():
            raise
        raise StorageError(f"{url}: cannot {what}: {describe(e, url)}") from None
    except Exception as e:
        if not is_storage_error(e):
            raise
        raise StorageError(f"{url}: cannot {what}: {describe(e, url)}") from None


def read_bytes(url: str) -> bytes:
    """One object's bytes (FileNotFoundError when there is none; StorageError when the storage fails)."""
    fs, path = filesystem(url)
    with storage_errors(url, "read it"):
        return fs.cat_file(path)


def put_bytes(url: str, data: bytes) -> None:
    """Upload ``data`` as one object (replacing one there: for objects only this run writes)."""
    fs, path = filesystem(url)
    with storage_errors(url, "write it"):
        fs.pipe_file(path, data)


def put_file(local: str | os.PathLike, url: str) -> None:
    """Upload a local file as one object (whole or not at all)."""
    fs, path = filesystem(url)
    with storage_errors(url, "upload it"):
        fs.put_file(str(local), path)


def get_file(url: str, local: str | os.PathLike) -> None:
    """Download one object into ``local`` (written to a temporary name and renamed: never half a file)."""
    fs, path = filesystem(url)
    with storage_errors(url, "download it"), atomic_path(local) as tmp:
        fs.get_file(path, str(tmp))


def create_bytes(url: str, data: bytes) -> None:
    """A create-only write (S3 ``If-None-Match: *``): FileExistsError when the object exists."""
    fs, path = filesystem(url)
    with storage_errors(url, "write it"):
        fs.pipe_file(path, data, mode="create")


def remove(url: str, recursive: bool = False) -> None:
    fs, path = filesystem(url)
    with storage_errors(url, "delete it"), contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=recursive)


def list_files(url: str) -> dict[str, int]:
    """Every object under the prefix ``url``, once: {path relative to it: size}; a missing bucket is a
    StorageError, an empty prefix {}."""
    return {rel: size for rel, (size, _) in list_objects(url).items()}


# where each storage library puts an object's modification time in a listing (s3fs, adlfs, gcsfs)
_MODIFIED_KEYS = ("LastModified", "last_modified", "updated", "mtime")


def list_objects(url: str) -> dict[str, tuple[int, float]]:
    """:func:`list_files` with each object's modification time: {path relative to ``url``: (size, Unix time)}
    (0.0 where the library gives none)."""
    fs, root = filesystem(url)
    with storage_errors(url, "list it"):
        found = fs.find(root, detail=True)
    out = {}
    for key, info in found.items():
        key = key.strip("/")
        if key.startswith(root + "/") and info.get("type", "file") != "directory":
            out[key[len(root) + 1:]] = (int(info.get("size") or 0), _modified(info))
    return out


def modified(url: str) -> float:
    """One object's modification time (Unix time; FileNotFoundError when there is none)."""
    fs, path = filesystem(url)
    with storage_errors(url, "look it up"):
        return _modified(fs.info(path))


def _modified(info: dict) -> float:
    stamp = next((info[k] for k in _MODIFIED_KEYS if info.get(k)), 0.0)
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)


# ------------------------------------------------------------------ a listed tree and its paths


class ObjectTree:
    """The objects under one prefix, listed on first use and then never again (a Python ``dict``; pickled with
    the paths that use it, so data loader workers do not list again).

    ``cache_bytes``: up to this many bytes of the objects read are kept in this node's cache
    (``$TRANSLATE_CACHE/data``) and read from there afterwards; objects beyond it are fetched each time they are
    read. 0: no cache."""

    def __init__(self, url: str, cache_bytes: int = 0, field: str = "data"):
        scheme, path = split_url(url, field)
        self.url, self.cache_bytes, self.field = f"{scheme}://{path}", int(cache_bytes), field
        self._files: dict[str, int] | None = None
        self._dirs: dict[str, set[str]] = {}
        self._cached_bytes: int | None = None

    def __getstate__(self) -> dict:
        self.files()  # the listing travels; nothing lists again in the worker
        return dict(self.__dict__, _cached_bytes=None)

    def files(self) -> dict[str, int]:
        if self._files is None:
            files = list_files(self.url)
            if not files:  # an empty prefix, or a missing bucket: say which
                fs, root = filesystem(self.url, self.field)
                bucket = root.split("/", 1)[0]
                with storage_errors(self.url, "look up its bucket"):
                    if not fs.exists(bucket):
                        raise StorageError(f"{self.url}: there is no bucket {bucket!r}")
            dirs: dict[str, set[str]] = {"": set()}
            for key in files:
                parts = key.split("/")
                for i in range(len(parts)):
                    dirs.setdefault("/".join(parts[:i]), set()).add(parts[i])
            self._files, self._dirs = files, dirs
        return self._files

    def dirs(self) -> dict[str, set[str]]:
        self.files()
        return self._dirs

    def root(self) -> ObjectPath:
        return ObjectPath(self, "")

    # the node-local cache -----------------------------------------------------------
    def _cache_dir(self) -> Path:
        return cache_root() / "data" / hashlib.sha1(self.url.encode()).hexdigest()[:16]

    def read(self, rel: str) -> bytes:
        """The bytes of the object ``rel`` (through the cache when there is one)."""
        url = f"{self.url}/{rel}"
        if not self.cache_bytes:
            return read_bytes(url)
        size = self.files().get(rel, -1)
        local = self._cache_dir() / f"{hashlib.sha1(rel.encode()).hexdigest()}-{size}"
        with contextlib.suppress(OSError):
            return local.read_bytes()
        data = read_bytes(url)
        if self._cached_bytes is None:  # what this node's processes have cached so far
            folder = self._cache_dir()
            self._cached_bytes = sum(f.stat().st_size for f in folder.iterdir()) if folder.is_dir() else 0
        if self._cached_bytes + len(data) <= self.cache_bytes:
            with contextlib.suppress(OSError):  # a full disk only costs the cache
                write_bytes_atomic(local, data)
                self._cached_bytes += len(data)
        return data


class ObjectPath:
    """One key of an :class:`ObjectTree` (a file, or a folder: a prefix that holds files), with the part of
    :class:`pathlib.Path`'s interface the data code uses. ``str()`` is its URL."""

    __slots__ = ("tree", "rel")

    def __init__(self, tree: ObjectTree, rel: str):
        self.tree, self.rel = tree, rel.strip("/")

    def __getstate__(self):
        return (self.tree, self.rel)

    def __setstate__(self, state):
        self.tree, self.rel = state

    def __str__(self) -> str:
        return f"{self.tree.url}/{self.rel}" if self.rel else self.tree.url

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(self) == str(other)

    def __lt__(self, other: ObjectPath) -> bool:  # as pathlib orders paths: part by part
        return (self.tree.url, self.rel.split("/")) < (other.tree.url, other.rel.split("/"))

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, name: str | os.PathLike) -> ObjectPath:
        return ObjectPath(self.tree, f"{self.rel}/{name}" if self.rel else str(name))

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1] if self.rel else self.tree.url.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.tree, self.rel.rsplit("/", 1)[0] if "/" in self.rel else "")

    @property
    def parents(self) -> list[ObjectPath]:
        out, p = [], self
        while p.rel:
            p = p.parent
            out.append(p)
        return out

    def resolve(self) -> ObjectPath:
        return self

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def is_file(self) -> bool:
        return self.rel in self.tree.files()

    def is_dir(self) -> bool:
        return self.rel in self.tree.dirs() and self.rel not in self.tree.files()

    def iterdir(self) -> Iterator[ObjectPath]:
        for name in sorted(self.tree.dirs().get(self.rel, ())):
            yield self / name

    def rglob(self, pattern: str) -> Iterator[ObjectPath]:
        """Everything under this folder (``pattern`` must be ``*``: the data code asks for nothing else)."""
        if pattern != "*":
            raise ValueError(f"ObjectPath.rglob takes '*', not {pattern!r}")
        prefix = f"{self.rel}/" if self.rel else ""
        seen = {d for d in self.tree.dirs() if d.startswith(prefix) and d != self.rel}
        seen |= {f for f in self.tree.files() if f.startswith(prefix)}
        for rel in sorted(seen):
            yield ObjectPath(self.tree, rel)

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        if other.tree.url != self.tree.url or not (not other.rel or self.rel.startswith(other.rel + "/")):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.rel[len(other.rel):].lstrip("/"))

    @property
    def size(self) -> int:
        return self.tree.files().get(self.rel, 0)

    def read_bytes(self) -> bytes:
        try:
            return self.tree.read(self.rel)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self}: no such object (deleted since it was listed?)") from None

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def open(self, mode: str = "rb") -> io.BytesIO:
        if mode != "rb":
            raise ValueError(f"{self}: objects are opened for reading ('rb'), not {mode!r}")
        return io.BytesIO(self.read_bytes())


def data_path(value: str | os.PathLike | ObjectPath, cache_bytes: int = 0, field: str = "data") -> Path | ObjectPath:
    """A data set's root as the data code reads it: a local :class:`Path`, or the :class:`ObjectPath` of a URL (a
    new tree, listed on first use: keep the path to list once)."""
    if isinstance(value, ObjectPath):
        return value
    if not is_url(value):
        return Path(value)
    return ObjectTree(str(value), cache_bytes, field).root()


__all__ = ["is_url", "cache_root", "split_url", "filesystem", "is_storage_error", "describe", "storage_errors",
           "read_bytes", "put_bytes", "put_file", "get_file", "create_bytes", "remove", "list_files", "ObjectTree",
           "ObjectPath", "data_path"]
