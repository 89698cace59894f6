"""A run directory in object storage (``--out s3://BUCKET/PREFIX``): the run is written locally, as any run, and
uploaded at each checkpoint; ``--resume s3://...`` continues it on any machine.

The local working copy is ``$TRANSLATE_CACHE/runs/<url slug>`` on each node. Rank 0 uploads at every checkpoint,
in this order:

1. the run's other files that changed since the last upload (config.json, metrics.jsonl, TensorBoard event files,
   sample grids; at the end the exported models), each a whole object;
2. the checkpoint ``checkpoints/step_N.pt``, a whole object;
3. last, its marker ``checkpoints/step_N.done`` (create-only: ``{"step", "size", "sha256"}``).

A checkpoint without its marker is not one: a run killed before the marker landed (mid-upload) resumes from the
last checkpoint that has one, and the checksum is verified after the download, so a partial or changed object is
never taken. Older checkpoints beyond ``--keep-checkpoints`` are removed marker first. Resuming downloads the run's
files and its latest marked checkpoint into the working copy (the first process of a node; the others only the
checkpoint), so the loop resumes from a local run directory exactly as from a run that never left the disk; what
a killed run left in a working copy beyond its last marked checkpoint is replaced or never uploaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from translate import object_storage
from translate.errors import ConfigError, StorageError
from translate.files import atomic_path

CHECKPOINTS = "checkpoints"
STOP_KEY = ".stop"  # the driver's request to stop after the current step (no node but its own sees its disk)
STOP_CHECK_S = 0.5  # rank 0 looks for it at most this often: one small GET (a short run stops at its next step)
_STEP_RE = re.compile(r"step_(\d{8})\.(pt|done)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunStorage:
    """The object-storage side of a run whose ``--out`` is a URL, and its local working copy."""

    def __init__(self, url: str):
        scheme, path = object_storage.split_url(url, "out")
        self.url = f"{scheme}://{path}"
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.url)[:80]
        self.local = object_storage.cache_root() / "runs" / f"{slug}-{hashlib.sha1(self.url.encode()).hexdigest()[:8]}"
        self._uploaded: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) as last uploaded
        self._stop_checked = 0.0

    def __repr__(self) -> str:
        return f"RunStorage({self.url!r})"

    # ------------------------------------------------------------------ what is there
    def marked_steps(self, files: dict[str, int] | None = None) -> list[int]:
        """The steps whose checkpoint is complete (uploaded, then marked), oldest first."""
        files = object_storage.list_files(self.url) if files is None else files
        found: dict[int, set[str]] = {}
        for rel in files:
            head, _, name = rel.rpartition("/")
            m = _STEP_RE.fullmatch(name)
            if head == CHECKPOINTS and m:
                found.setdefault(int(m.group(1)), set()).add(m.group(2))
        return sorted(step for step, kinds in found.items() if kinds == {"pt", "done"})

    def check_new(self) -> None:
        """Refuse to start a new run where a run already is; start the working copy empty."""
        if self.marked_steps():
            raise ConfigError("out", f"{self.url} already holds a run: use --resume {self.url}")
        shutil.rmtree(self.local, ignore_errors=True)

    # ------------------------------------------------------------------ resuming
    def download(self, run_files: bool = True) -> Path:
        """The run's latest complete checkpoint (and with ``run_files`` its other files) into the working copy, as
        ``checkpoints/latest.pt``; returns the working copy. ConfigError when the URL holds no checkpoint."""
        files = object_storage.list_files(self.url)
        steps = self.marked_steps(files)
        if not steps:
            raise ConfigError("resume", f"{self.url} holds no complete checkpoint to resume from")
        step = steps[-1]
        name = f"{CHECKPOINTS}/step_{step:08d}"
        marker = json.loads(object_storage.read_bytes(f"{self.url}/{name}.done"))
        if run_files:  # each replaced whole (another process of this node may be reading the copy)
            for rel in files:
                if not rel.startswith((CHECKPOINTS + "/", ".")):
                    object_storage.get_file(f"{self.url}/{rel}", self.local / rel)
        ckpt_dir = self.local / CHECKPOINTS
        local = ckpt_dir / f"step_{step:08d}.pt"
        object_storage.get_file(f"{self.url}/{name}.pt", local)
        if local.stat().st_size != marker["size"] or _sha256(local) != marker["sha256"]:
            local.unlink()
            raise StorageError(f"{self.url}/{name}.pt: does not match its marker (size or sha256): changed since it "
                               "was written")
        with atomic_path(ckpt_dir / "latest.pt") as tmp:
            tmp.unlink()
            os.link(local, tmp)
        self._remember_all()
        return self.local

    def _remember_all(self) -> None:
        """Everything in the working copy counts as uploaded (it came from the bucket)."""
        for path in self.local.rglob("*"):
            if path.is_file():
                st = path.stat()
                self._uploaded[path.relative_to(self.local).as_posix()] = (st.st_size, st.st_mtime_ns)

    # ------------------------------------------------------------------ stopping
    def request_stop(self) -> None:
        object_storage.put_bytes(f"{self.url}/{STOP_KEY}", b"stop after this step\n")

    def clear_stop(self) -> None:
        object_storage.remove(f"{self.url}/{STOP_KEY}")

    def stop_requested(self) -> bool:
        """Whether the driver asked the run to stop (looked up at most every ``STOP_CHECK_S`` seconds)."""
        now = time.monotonic()
        if now - self._stop_checked < STOP_CHECK_S:
            return False
        self._stop_checked = now
        try:
            object_storage.read_bytes(f"{self.url}/{STOP_KEY}")
            return True
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------------ uploading
    def upload_files(self) -> None:
        """Upload the run's files (not its checkpoints) that changed since the last upload."""
        for path in sorted(self.local.rglob("*")):
            rel = path.relative_to(self.local).as_posix()
            if not path.is_file() or rel.startswith(CHECKPOINTS + "/") or any(p.startswith(".") for p in rel.split("/")):
                continue
            st = path.stat()
            if self._uploaded.get(rel) != (st.st_size, st.st_mtime_ns):
                object_storage.put_file(path, f"{self.url}/{rel}")
                self._uploaded[rel] = (st.st_size, st.st_mtime_ns)

    def upload_checkpoint(self, checkpoint: Path, keep: int) -> None:
        """Upload the run's changed files, then ``checkpoint``, then its marker; remove the marked checkpoints
        beyond the ``keep`` newest."""
        self.upload_files()
        step = int(_STEP_RE.fullmatch(checkpoint.name).group(1))  # type: ignore[union-attr]
        name = f"{self.url}/{CHECKPOINTS}/step_{step:08d}"
        object_storage.put_file(checkpoint, f"{name}.pt")
        marker = {"step": step, "size": checkpoint.stat().st_size, "sha256": _sha256(checkpoint)}
        try:
            object_storage.create_bytes(f"{name}.done", json.dumps(marker).encode())
        except FileExistsError:
            raise ConfigError("out", f"{name}.done was written by another run: two runs write to {self.url}") from None
        for old in self.marked_steps()[:-keep] if keep > 0 else []:
            old_name = f"{self.url}/{CHECKPOINTS}/step_{old:08d}"
            object_storage.remove(f"{old_name}.done")  # no longer a checkpoint for any reader
            object_storage.remove(f"{old_name}.pt")


__all__ = ["RunStorage"]
