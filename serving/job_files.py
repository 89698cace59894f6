"""Where the translation jobs' files live: a folder (:class:`FolderFiles`) or object storage
(:class:`ObjectFiles`, ``s3://BUCKET/PREFIX`` and the other URL forms of :mod:`translate.object_storage`).

Both offer what :class:`serving.translation_jobs.JobStore` needs and nothing more: one listing of every file
with its size and modification time (the job store decides admission and eviction from it without reading a
record), whole writes (a reader never sees half a file), create-only writes (the admission slots), reads,
removal, and a local folder for a job's decoded input. The input never leaves the node: the ingress replica
that took the upload runs the job, so on object storage it stays in a node-local folder
(:func:`local_inputs_root`) and only the records, heartbeats and results go to the bucket.

Times are the storage's own modification times (the object store's clock for objects): the staleness and
expiry checks they feed are tens of seconds and more, far above the clock skew between nodes.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from translate import object_storage
from translate.files import write_bytes_atomic


def local_inputs_root(url: str) -> Path:
    """This node's folder of the decoded inputs of jobs whose files are at ``url`` (on object storage)."""
    return Path(tempfile.gettempdir()) / f"i2i-translate-job-inputs-{hashlib.sha1(url.encode()).hexdigest()[:12]}"


class FolderFiles:
    """The jobs' files in a local (or shared) folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = str(self.root)

    def listing(self) -> dict[str, tuple[int, float]]:
        """Every file one folder down (``ID/name``, ``.slots/K``): {relative path: (bytes, modified)}."""
        out = {}
        for top in os.scandir(self.root):
            if not top.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                for f in os.scandir(top.path):
                    with contextlib.suppress(FileNotFoundError):
                        st = f.stat(follow_symlinks=False)
                        out[f"{top.name}/{f.name}"] = (st.st_size, st.st_mtime)
        return out

    def read(self, rel: str) -> bytes:
        """FileNotFoundError when there is none."""
        try:
            return (self.root / rel).read_bytes()
        except NotADirectoryError:
            raise FileNotFoundError(rel) from None

    def write(self, rel: str, data: bytes) -> None:
        write_bytes_atomic(self.root / rel, data)

    def create(self, rel: str, data: bytes) -> None:
        """A create-only write: FileExistsError when the file exists."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as f:
            f.write(data)

    def touch(self, rel: str) -> None:
        """Mark the file modified now (FileNotFoundError when it is gone: nothing is made again)."""
        os.utime(self.root / rel)

    def modified(self, rel: str) -> float:
        """The file's modification time (FileNotFoundError when there is none)."""
        return (self.root / rel).stat().st_mtime

    def open(self, rel: str) -> IO[bytes]:
        return open(self.root / rel, "rb")

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / rel).unlink()

    def remove_folder(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)

    def input_folder(self, job_id: str) -> Path:
        return self.root / job_id


class ObjectFiles:
    """The jobs' files under an object-storage prefix (shared by ingress replicas on several nodes)."""

    def __init__(self, url: str):
        scheme, base = object_storage.split_url(url, "jobs_dir")
        self.url = f"{scheme}://{base}"
        self.inputs = local_inputs_root(self.url)

    def listing(self) -> dict[str, tuple[int, float]]:
        return object_storage.list_objects(self.url)

    def read(self, rel: str) -> bytes:
        return object_storage.read_bytes(f"{self.url}/{rel}")

    def write(self, rel: str, data: bytes) -> None:
        object_storage.put_bytes(f"{self.url}/{rel}", data)

    def create(self, rel: str, data: bytes) -> None:
        object_storage.create_bytes(f"{self.url}/{rel}", data)

    def touch(self, rel: str) -> None:
        """An object's time is its last write: written again (empty; its heartbeat is all it says)."""
        object_storage.put_bytes(f"{self.url}/{rel}", b"")

    def modified(self, rel: str) -> float:
        return object_storage.modified(f"{self.url}/{rel}")

    def open(self, rel: str) -> IO[bytes]:
        url = f"{self.url}/{rel}"
        fs, path = object_storage.filesystem(url, "jobs_dir")
        with object_storage.storage_errors(url, "read it"):
            f: Any = fs.open(path, "rb")
        return f

    def remove(self, rel: str) -> None:
        object_storage.remove(f"{self.url}/{rel}")

    def remove_folder(self, name: str) -> None:
        object_storage.remove(f"{self.url}/{name}", recursive=True)
        shutil.rmtree(self.inputs / name, ignore_errors=True)

    def input_folder(self, job_id: str) -> Path:
        return self.inputs / job_id


def job_files(where: str | os.PathLike) -> FolderFiles | ObjectFiles:
    """The jobs' files at ``where``: a folder, or an object-storage URL."""
    return ObjectFiles(str(where)) if object_storage.is_url(str(where)) else FolderFiles(where)
