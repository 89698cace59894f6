"""The model store in object storage (``s3://bucket/prefix``; ``gs://``, ``az://``/``abfs://`` likewise),
through fsspec (s3fs, gcsfs, adlfs). Layout under the prefix::

    NAME/files/UPLOAD/model.onnx       a version's files, uploaded first under a fresh random UPLOAD id
    NAME/files/UPLOAD/checkpoint.pt    (never overwritten; unreferenced until a manifest names them)
    NAME/versions/v0002.json           the version's manifest, written last with a create-only write:
                                       {"format", "name", "version", "upload", "files": {FILE: {"key",
                                       "size", "sha256"}}, "meta": {...}}. The version exists iff it does.
    NAME/promotions/000000000007       {"version": "v0002", "promoted", "by"}: the highest number is the
                                       promoted version

Every write that decides something is create-only (S3 ``If-None-Match: *``, GCS
``ifGenerationMatch=0``, Azure ``If-None-Match: *``: fsspec's ``pipe_file(mode="create")``,
which raises FileExistsError when the key exists):

- **numbering**: two writers that pick the same next number both try to create its manifest;
  one gets it, the other takes the next number (a manifest that names our own upload is ours:
  a retried request whose first try did land);
- **promotion** (compare-and-swap): read the highest promotion number N and its version, then
  create N+1. Two promotions that read the same N cannot both create N+1: the loser gets
  :class:`~serving.store.vocabulary.PromotionConflict`. One small PUT either happened or did not, so a crash
  never leaves half a pointer. Old records beyond ``KEEP_PROMOTIONS`` are pruned (the history
  of the last promotions stays readable).

Only create-only writes are needed, so the three stores behave alike (no ETag or generation
plumbing per provider); the first write of a process checks that the server really refuses a
second create (some S3-compatible servers ignore If-None-Match) and refuses to write otherwise.

Credentials, region and endpoint come from the storage library's own environment and config
(``AWS_PROFILE``, ``~/.aws/credentials``, ``AWS_ENDPOINT_URL``, instance roles;
``GOOGLE_APPLICATION_CREDENTIALS``; ``AZURE_STORAGE_*``), never from the URL or a flag.
Files are read through a node-local, checksum-verified cache (:mod:`serving.store.cache`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from translate import object_storage
from translate.errors import ModelError, TranslateError

from .cache import BlobCache, cache_root
from .vocabulary import (
    NAME_RE,
    VERSION_RE,
    FileSource,
    NotFoundError,
    Pointer,
    PromotionConflict,
    StoreBackend,
    StoreError,
    sha256_file,
    sort_versions,
    utc_now,
    version_number,
)

MANIFEST_FORMAT = "i2i-translate/version-manifest/1"
KEEP_PROMOTIONS = 20
PROMOTION_RE = re.compile(r"\d{12}")
FILE_KEY_RE = re.compile(r"files/[0-9a-f]{32}/(model\.onnx|checkpoint\.pt)")
_conditional_writes_checked: set[str] = set()  # store URLs whose server was seen refusing a second create


class ObjectBackend(StoreBackend):
    cheap_reads = False

    def __init__(self, url: str):
        scheme, self.base = object_storage.split_url(url, "store")
        self.fs, _ = object_storage.filesystem(url, "store")
        self.url = f"{scheme}://{self.base}"
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.url)[:80]
        self.root = cache_root() / "work" / f"{slug}-{hashlib.sha1(self.url.encode()).hexdigest()[:8]}"
        self.cache = BlobCache()
        self._manifests: dict[tuple[str, str], dict] = {}  # immutable once written
        self._promotions: dict[tuple[str, int], str | None] = {}  # likewise

    def __repr__(self) -> str:
        return f"ObjectBackend({self.url!r})"

    # ------------------------------------------------------------------ keys and errors
    def _key(self, *parts: str) -> str:
        return "/".join((self.base, *parts))

    def _manifest_key(self, name: str, version: str) -> str:
        return self._key(name, "versions", f"{version}.json")

    def _promotion_key(self, name: str, seq: int) -> str:
        return self._key(name, "promotions", f"{seq:012d}")

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        """Storage-library failures as one StoreError naming the store and what was being done."""
        try:
            yield
        except (FileExistsError, TranslateError):
            raise
        except Exception as e:
            if not object_storage.is_storage_error(e):
                raise
            raise StoreError(f"{self.url}: cannot {what}: {object_storage.describe(e, self.url)}") from e

    def _ls(self, *parts: str, what: str) -> list[str]:
        """Base names under a prefix ([] when there is nothing)."""
        with self._io(what):
            try:
                entries = self.fs.ls(self._key(*parts), detail=False)
            except FileNotFoundError:
                return []
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries})

    def _cat(self, key: str, what: str) -> bytes | None:
        with self._io(what):
            try:
                return self.fs.cat_file(key)
            except FileNotFoundError:
                return None

    def _create(self, key: str, data: bytes, what: str) -> None:
        """A create-only write: FileExistsError when the key exists."""
        with self._io(what):
            self.fs.pipe_file(key, data, mode="create")

    def check_conditional_writes(self) -> None:
        """Refuse to write to a server that ignores create-only writes (then nothing here would be safe)."""
        if self.url in _conditional_writes_checked:
            return
        key = self._key(".store-probe", uuid.uuid4().hex)
        try:
            self._create(key, b"1", "write to the store")
            try:
                self._create(key, b"2", "check that the store honours conditional writes")
                honoured = False
            except FileExistsError:
                honoured = True
        finally:
            with contextlib.suppress(Exception):
                self.fs.rm_file(key)
        if not honoured:
            raise StoreError(f"{self.url}: the storage server accepted a create-only write (If-None-Match: *) onto an "
                             "existing object: it does not support conditional writes, so versions and promotions "
                             "could overwrite each other. Use a server that does (AWS S3, GCS, Azure Blob, a recent "
                             "MinIO)")
        _conditional_writes_checked.add(self.url)

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        found = self._ls(what="list the models")
        if not found:  # an empty store, or a mistyped bucket: say which
            bucket = self.base.split("/", 1)[0]
            with self._io("look up the bucket"):
                if not self.fs.exists(bucket):
                    raise StoreError(f"{self.url}: there is no bucket {bucket!r} (or no access to it)")
        return [n for n in found if re.fullmatch(NAME_RE, n) and self.versions(n)]

    def versions(self, name: str) -> list[str]:
        found = self._ls(name, "versions", what=f"list the versions of {name}")
        return sort_versions(f[:-len(".json")] for f in found if f.endswith(".json"))

    def has_version(self, name: str, version: str) -> bool:
        with self._io(f"look up {name} {version}"):
            try:
                self.fs.info(self._manifest_key(name, version))
                return True
            except FileNotFoundError:
                self._manifests.pop((name, version), None)
                return False

    def manifest(self, name: str, version: str) -> dict | None:
        """The version's manifest (None when the version does not exist)."""
        cached = self._manifests.get((name, version))
        if cached is not None:
            return cached
        raw = self._cat(self._manifest_key(name, version), f"read the manifest of {name} {version}")
        if raw is None:
            return None
        try:
            m = json.loads(raw)
            ok = (m.get("format") == MANIFEST_FORMAT and m.get("version") == version and isinstance(m.get("files"), dict)
                  and all(FILE_KEY_RE.fullmatch(str(f.get("key"))) for f in m["files"].values()))
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise ModelError(f"{self.url}/{name}/versions/{version}.json: not a version manifest this program wrote")
        self._manifests[(name, version)] = m
        return m

    def _required_manifest(self, name: str, version: str) -> dict:
        m = self.manifest(name, version)
        if m is None:
            raise NotFoundError(f"model {name!r} has no version {version!r}")
        return m

    def promotion_numbers(self, name: str) -> list[int]:
        found = self._ls(name, "promotions", what=f"read the promoted version of {name}")
        return sorted(int(f) for f in found if PROMOTION_RE.fullmatch(f))

    def read_pointer(self, name: str) -> Pointer:
        numbers = self.promotion_numbers(name)
        if not numbers:
            return Pointer(None, 0)
        seq = numbers[-1]
        if (name, seq) not in self._promotions:
            raw = self._cat(self._promotion_key(name, seq), f"read the promoted version of {name}")
            try:
                version = json.loads(raw)["version"] if raw is not None else None
            except (ValueError, KeyError, TypeError):
                version = None
            if raw is None:  # deleted meanwhile (the model is being deleted)
                return Pointer(None, seq)
            self._promotions[(name, seq)] = version if isinstance(version, str) and re.fullmatch(VERSION_RE, version) \
                else None
        return Pointer(self._promotions[(name, seq)], seq)

    def read_meta(self, name: str, version: str) -> dict:
        return dict(self._required_manifest(name, version).get("meta") or {"name": name, "version": version})

    def fetch(self, name: str, version: str, filename: str) -> Path | None:
        entry = self._required_manifest(name, version)["files"].get(filename)
        if entry is None:
            return None
        key = self._key(name, entry["key"])
        source = f"{self.url}/{name}/{entry['key']}"

        def download(dst: Path) -> None:
            with self._io(f"download {name} {version} {filename}"):
                try:
                    self.fs.get_file(key, str(dst))
                except FileNotFoundError:
                    raise ModelError(f"{source}: missing from the store (named by {name} {version}'s manifest)") \
                        from None

        return self.cache.get(str(entry["sha256"]), int(entry["size"]), download, source)

    # ------------------------------------------------------------------ writing
    def swap_pointer(self, name: str, version: str, token: Any) -> None:
        self.check_conditional_writes()
        seq = int(token) + 1
        record = {"version": version, "promoted": utc_now(), "by": f"{socket.gethostname()}:{os.getpid()}"}
        try:
            self._create(self._promotion_key(name, seq), json.dumps(record).encode(), f"promote {name} {version}")
        except FileExistsError:
            raise PromotionConflict(f"{name}: promotion {seq} was written by someone else first") from None
        self._promotions[(name, seq)] = version
        old = [n for n in self.promotion_numbers(name) if n <= seq - KEEP_PROMOTIONS]
        with contextlib.suppress(Exception):  # pruning the history is best effort
            if old:
                self.fs.rm([self._promotion_key(name, n) for n in old])

    def publish(self, name: str, files: dict[str, FileSource], record: dict) -> str:
        self.check_conditional_writes()
        upload = uuid.uuid4().hex
        entries: dict[str, dict] = {}
        manifest_tried = False
        try:
            with tempfile.TemporaryDirectory(prefix="i2i-upload-") as tmp:
                for filename, source in files.items():
                    key = f"files/{upload}/{filename}"
                    if callable(source):
                        local = Path(tmp) / filename
                        source(local)
                        source = local
                    with self._io(f"upload {name} {filename}"):
                        if isinstance(source, bytes):
                            sha, size = hashlib.sha256(source).hexdigest(), len(source)
                            self.fs.pipe_file(self._key(name, key), source)
                        else:
                            sha, size = sha256_file(source)
                            self.fs.put_file(str(source), self._key(name, key))
                    entries[filename] = {"key": key, "size": size, "sha256": sha}
            existing = self.versions(name)
            n = version_number(existing[-1]) + 1 if existing else 1
            while True:
                version = f"v{n:04d}"
                record.update(version=version, created=utc_now())
                manifest = {"format": MANIFEST_FORMAT, "name": name, "version": version, "upload": upload,
                            "files": entries, "meta": record}
                data = json.dumps(manifest, indent=2, default=str).encode()
                manifest_tried = True
                try:
                    self._create(self._manifest_key(name, version), data, f"write the manifest of {name} {version}")
                except FileExistsError:
                    theirs = self.manifest(name, version)
                    if theirs is None or theirs.get("upload") != upload:
                        n += 1  # another writer took this number
                        continue
                self._manifests[(name, version)] = json.loads(data)
                return version
        except BaseException:
            # a manifest write that failed may still have landed (a lost response): then these files are
            # a version's; leave them to sweep(), which removes only files no manifest names
            if not manifest_tried:
                with contextlib.suppress(Exception):
                    self.fs.rm(self._key(name, "files", upload), recursive=True)
            raise

    def _remove_files(self, name: str, manifest: dict | None) -> None:
        if manifest and re.fullmatch(r"[0-9a-f]{32}", str(manifest.get("upload"))):
            with self._io(f"delete the files of {name} {manifest['version']}"):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(self._key(name, "files", manifest["upload"]), recursive=True)

    def remove_version(self, name: str, version: str) -> None:
        manifest = self.manifest(name, version)
        with self._io(f"delete {name} {version}"):
            self.fs.rm_file(self._manifest_key(name, version))  # the version is gone for every reader
        self._manifests.pop((name, version), None)
        self._remove_files(name, manifest)

    def remove_model(self, name: str) -> None:
        for version in self.versions(name):  # the versions go first: then the model is no longer listed
            self.remove_version(name, version)
        with self._io(f"delete {name}"):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self._key(name), recursive=True)
        self._promotions = {k: v for k, v in self._promotions.items() if k[0] != name}

    def sweep(self, name: str, older_than_s: float = 3600.0) -> int:
        """Remove uploads of ``name`` that no manifest names and that are older than ``older_than_s``
        (an interrupted register); returns how many."""
        uploads = [u for u in self._ls(name, "files", what=f"list the uploads of {name}")
                   if re.fullmatch(r"[0-9a-f]{32}", u)]
        versions = self.versions(name)
        if len(uploads) <= len(versions):  # every upload is a version's (each version has its own)
            return 0
        named = {(self.manifest(name, v) or {}).get("upload") for v in versions}
        removed, cutoff = 0, time.time() - older_than_s
        for upload in uploads:
            if upload in named:
                continue
            prefix = self._key(name, "files", upload)
            with self._io(f"look at the upload {upload} of {name}"):
                try:
                    stamps = [self.fs.modified(p) for p in self.fs.find(prefix)]
                except FileNotFoundError:
                    continue
            if all(s.timestamp() < cutoff for s in stamps):
                with self._io(f"delete the upload {upload} of {name}"):
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm(prefix, recursive=True)
                removed += 1
        return removed
