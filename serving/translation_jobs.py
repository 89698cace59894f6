"""Translations that take longer than a request: jobs whose state and results live in a folder.

``POST /v1/models/NAME/translate?async=true`` (or any upload over ``async_pixels``) answers 202 with a
job; ``GET /v1/translations/ID`` reports its progress and, once done, the URL of its result. The ingress
replica that took the upload runs the job (:mod:`serving.ingress`); this module keeps what every replica must
agree on, in ``jobs_dir``::

    jobs_dir/.lock         flock'ed while a job is created, so the count stays within max_jobs
    jobs_dir/ID/job.json   the record: model, size, state, tiles done (written atomically)
    jobs_dir/ID/alive      touched every HEARTBEAT_S by the replica running the job
    jobs_dir/ID/input.npy  the decoded upload (and alpha.npy), memory-mapped when the job starts; then gone
    jobs_dir/ID/result.png (or .jpg) the translation, written atomically before the state says "done"

So any ingress replica that sees the folder answers for any job (on one node, always; across nodes,
with ``jobs_dir`` on a shared file system), and a queued job holds disk, not memory. A finished job is
removed ``ttl_s`` after it finished; a queued or running job whose replica stopped touching ``alive``
for ``STALE_S`` is reported failed. ``max_jobs`` counts every job kept, finished ones included: when
full, :class:`JobsFull` says how long until one expires.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from translate.errors import TranslateError
from translate.files import atomic_path, write_text_atomic

from .store import NotFoundError

JOB_ID = re.compile(r"[0-9a-f]{32}")
HEARTBEAT_S = 5.0
STALE_S = 60.0  # a queued or running job whose replica has not touched it for this long has lost it
RETRY_WHEN_BUSY_S = 30  # Retry-After when every kept job is still running
STATES = ("queued", "running", "done", "failed")


def default_jobs_dir() -> str:
    """A new folder name under the temporary folder (made by the ingress replicas when they start)."""
    return os.path.join(tempfile.gettempdir(), f"i2i-translate-jobs-{uuid.uuid4().hex[:12]}")


class JobsFull(Exception):
    """``max_jobs`` jobs are kept; one expires (or finishes) in about ``retry_after`` seconds."""

    def __init__(self, count: int, retry_after: int):
        super().__init__(f"{count} translation jobs are kept, the most this service holds; retry in about "
                         f"{retry_after} s")
        self.retry_after = retry_after


class JobGone(TranslateError):
    """The job was deleted (or expired) while it ran."""


class JobStore:
    """The jobs in ``root``: at most ``max_jobs`` kept, finished ones for ``ttl_s`` seconds."""

    def __init__(self, root: str | os.PathLike, max_jobs: int = 16, ttl_s: float = 900.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_jobs, self.ttl_s = max_jobs, ttl_s

    # ------------------------------------------------------------------ creating
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def create(self, record: dict[str, Any], image: np.ndarray, alpha: np.ndarray | None = None) -> dict:
        """A new queued job for the decoded upload; :class:`JobsFull` when ``max_jobs`` are kept."""
        job_id = uuid.uuid4().hex
        with self._locked():
            self.sweep()
            kept = self.ids()
            if len(kept) >= self.max_jobs:
                raise JobsFull(len(kept), self._retry_after(kept))
            tmp = self.root / f".new-{job_id}"  # the job appears whole, with its input, or not at all
            tmp.mkdir()
            try:
                np.save(tmp / "input.npy", image)
                if alpha is not None:
                    np.save(tmp / "alpha.npy", alpha)
                job = {**record, "id": job_id, "state": "queued", "done": 0, "total": 0, "created": time.time()}
                write_text_atomic(tmp / "job.json", json.dumps(job))
                (tmp / "alive").touch()
                os.rename(tmp, self.root / job_id)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return job

    def _retry_after(self, kept: list[str]) -> int:
        now, expiries = time.time(), []
        for job_id in kept:
            with contextlib.suppress(NotFoundError):
                finished = self._read(job_id).get("finished")
                if finished is not None:
                    expiries.append(finished + self.ttl_s - now)
        return max(1, int(min(expiries)) + 1) if expiries else RETRY_WHEN_BUSY_S

    # ------------------------------------------------------------------ reading
    def ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if JOB_ID.fullmatch(p.name))

    def folder(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id):
            raise NotFoundError(f"no translation job {job_id!r}")
        return self.root / job_id

    def _read(self, job_id: str) -> dict:
        try:
            return json.loads((self.folder(job_id) / "job.json").read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no translation job {job_id} (finished jobs are kept for {self.ttl_s:g} s)") \
                from None

    def get(self, job_id: str) -> dict:
        """The job's record; a queued or running job nobody has touched for STALE_S is failed first."""
        job = self._read(job_id)
        if job["state"] in ("queued", "running") and self._silent_for(job_id) > STALE_S:
            self.update(job_id, state="failed", finished=time.time(), status=503, error="job_lost",
                        detail=f"the service replica running this job stopped (no sign of it for {STALE_S:g} s); "
                               "send the image again")
            job = self._read(job_id)
        return job

    def _silent_for(self, job_id: str) -> float:
        try:
            return time.time() - (self.folder(job_id) / "alive").stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def load_input(self, job_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The decoded upload, memory-mapped (read when it is sent to the model)."""
        folder = self.folder(job_id)
        try:
            image = np.load(folder / "input.npy", mmap_mode="r")
        except FileNotFoundError:
            raise JobGone(f"translation job {job_id} was deleted") from None
        alpha = np.load(folder / "alpha.npy") if (folder / "alpha.npy").exists() else None
        return image, alpha

    def result_path(self, job_id: str) -> Path:
        job = self.get(job_id)
        return self.folder(job_id) / job["result_file"]

    # ------------------------------------------------------------------ writing (the running replica)
    def update(self, job_id: str, **fields) -> dict:
        """Merge ``fields`` into the record; JobGone when the job was deleted meanwhile."""
        folder = self.folder(job_id)
        try:
            job = {**json.loads((folder / "job.json").read_text()), **fields}
            write_text_atomic(folder / "job.json", json.dumps(job))
        except (FileNotFoundError, NotADirectoryError):
            raise JobGone(f"translation job {job_id} was deleted") from None
        return job

    def touch(self, job_ids) -> None:
        for job_id in job_ids:
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.folder(job_id) / "alive")

    def finish(self, job_id: str, content: bytes, ext: str, **fields) -> dict:
        """Write the result (atomically), then mark the job done; its input goes."""
        folder = self.folder(job_id)
        name = f"result.{ext}"
        if not (folder / "job.json").exists():  # deleted: write nothing (atomic_path would make the folder again)
            raise JobGone(f"translation job {job_id} was deleted")
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(content)
        try:
            job = self.update(job_id, state="done", finished=time.time(), result_file=name, **fields)
        except JobGone:  # deleted while the result was written
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._drop_input(folder)
        return job

    def fail(self, job_id: str, status: int, error: str, detail: Any) -> None:
        with contextlib.suppress(JobGone):
            self.update(job_id, state="failed", finished=time.time(), status=status, error=error, detail=detail)
            self._drop_input(self.folder(job_id))

    @staticmethod
    def _drop_input(folder: Path) -> None:
        for name in ("input.npy", "alpha.npy"):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()

    def delete(self, job_id: str) -> None:
        folder = self.folder(job_id)
        if not folder.is_dir():
            raise NotFoundError(f"no translation job {job_id}")
        shutil.rmtree(folder, ignore_errors=True)

    def sweep(self) -> list[str]:
        """Remove finished jobs older than ttl_s (lost ones too) and half-made ones; returns the ids removed."""
        now, removed = time.time(), []
        for p in self.root.iterdir():
            if p.name.startswith(".new-") and now - p.stat().st_mtime > STALE_S:
                shutil.rmtree(p, ignore_errors=True)
                continue
            if not JOB_ID.fullmatch(p.name):
                continue
            try:
                job = self.get(p.name)
            except (NotFoundError, ValueError):  # removed meanwhile, or a record cut off by a crash
                if now - p.stat().st_mtime > STALE_S:
                    shutil.rmtree(p, ignore_errors=True)
                continue
            if job.get("finished") is not None and now - job["finished"] > self.ttl_s:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed


def public_view(job: dict, ttl_s: float, base: str = "") -> dict:
    """What GET /v1/translations/ID answers: the record without its internals, with URLs under ``base``."""
    done, total = job.get("done", 0), job.get("total", 0)
    state = job["state"]
    out = {k: job.get(k) for k in ("id", "model", "version", "width", "height", "created", "started", "finished")}
    out.update(status=state, tiles_done=done, tiles_total=total,
               progress=1.0 if state == "done" else (round(done / total, 4) if total else 0.0),
               url=f"{base}/v1/translations/{job['id']}")
    if job.get("finished") is not None:
        out["expires"] = job["finished"] + ttl_s
    if state == "done":
        out["result"] = f"{base}/v1/translations/{job['id']}/result"
        out["media_type"] = job.get("media_type")
    if state == "failed":
        out["error"], out["detail"] = job.get("error"), job.get("detail")
    return out
