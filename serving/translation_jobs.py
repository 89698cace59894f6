"""Translations that take longer than a request: jobs whose state and results live in a folder or a bucket.

``POST /v1/models/NAME/translate?async=true`` (or any upload over ``async_pixels``) answers 202 with a
job; ``GET /v1/translations/ID`` reports its progress and, once done, the URL of its result. The ingress
replica that took the upload runs the job (:mod:`serving.ingress`); this module keeps what every replica must
agree on, in ``jobs_dir`` (a folder, or ``s3://BUCKET/PREFIX``: :mod:`serving.job_files`)::

    jobs_dir/.slots/K      one per job queued or running (K < max_jobs), written create-only: the admission bound
    jobs_dir/ID/job.json   the record: model, size, state, tiles done, its slot (written whole)
    jobs_dir/ID/alive      there while the job is queued or running; touched every HEARTBEAT_S by its replica
    jobs_dir/ID/result.png (or .jpg) the translation, written whole before the state says "done"
    jobs_dir/ID/fetched    written when a client fetches the result: fetched results are evicted first
    input.npy (and alpha.npy) the decoded upload, memory-mapped when the job starts, then gone: in ID/ in a
                           folder, in a node-local folder on object storage (the replica that took it runs it)

So any ingress replica that sees ``jobs_dir`` answers for any job (on one node, always; across nodes, with
``jobs_dir`` on object storage or a shared file system), and a queued job holds disk, not memory.

What runs and waits is bounded, finished jobs are not: a job takes one of ``max_jobs`` slots when it is
created (by a create-only write, so replicas on several nodes agree) and gives it back when it ends; when
every slot is taken :class:`JobsFull` says when the running job nearest its end should be done. A queued or
running job whose replica stopped touching ``alive`` for ``STALE_S`` is reported failed and its slot taken
back. Finished jobs are removed ``ttl_s`` after they finished, and sooner when their results pass
``disk_budget_bytes``: the least recently fetched results go first, then the oldest never fetched. Admission,
expiry and eviction are decided from one listing of the files (sizes and modification times), not by reading
every record.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from typing import IO, Any, Callable

import numpy as np

from translate.errors import TranslateError

from .job_files import FolderFiles, ObjectFiles, job_files
from .store import NotFoundError

JOB_ID = re.compile(r"[0-9a-f]{32}")
HEARTBEAT_S = 5.0
STALE_S = 60.0  # a queued or running job whose replica has not touched it for this long has lost it
RETRY_WHEN_BUSY_S = 30  # Retry-After when every slot is taken and no running job says how far it is
STATES = ("queued", "running", "done", "failed")
SLOTS = ".slots"
RESULT = re.compile(r"result\.(png|jpg)")


def default_jobs_dir() -> str:
    """A new folder name under the temporary folder (made by the ingress replicas when they start)."""
    return os.path.join(tempfile.gettempdir(), f"i2i-translate-jobs-{uuid.uuid4().hex[:12]}")


class JobsFull(Exception):
    """Every one of the ``max_jobs`` slots holds a queued or running job; one should be done in about
    ``retry_after`` seconds."""

    def __init__(self, count: int, retry_after: int):
        super().__init__(f"{count} translation jobs are queued or running, as many as this service's model replicas "
                         f"take (max_jobs); retry in about {retry_after} s")
        self.retry_after = retry_after


class JobGone(TranslateError):
    """The job was deleted (or expired) while it ran."""


def _by_job(listing: dict[str, tuple[int, float]]) -> dict[str, dict[str, tuple[int, float]]]:
    """The listing's files by job id: {id: {file name: (bytes, modified)}}."""
    out: dict[str, dict[str, tuple[int, float]]] = {}
    for rel, stat in listing.items():
        top, _, name = rel.partition("/")
        if JOB_ID.fullmatch(top) and name and "/" not in name:
            out.setdefault(top, {})[name] = stat
    return out


class JobStore:
    """The jobs in ``root`` (a folder or an object-storage URL): at most ``max_jobs`` queued or running, finished
    ones for ``ttl_s`` seconds while their results fit in ``disk_budget_bytes``. ``clock``: Unix time now (the
    storage's modification times are compared with it)."""

    def __init__(self, root: str | os.PathLike, max_jobs: int = 16, ttl_s: float = 900.0,
                 disk_budget_bytes: int = 2048 * 2**20, clock: Callable[[], float] = time.time):
        self.files: FolderFiles | ObjectFiles = job_files(root)
        self.root = self.files.url
        self.max_jobs, self.ttl_s, self.disk_budget_bytes, self.clock = max_jobs, ttl_s, disk_budget_bytes, clock

    # ------------------------------------------------------------------ creating
    def create(self, record: dict[str, Any], image: np.ndarray, alpha: np.ndarray | None = None) -> dict:
        """A new queued job for the decoded upload; :class:`JobsFull` when every slot holds a job."""
        job_id = uuid.uuid4().hex
        slot = self._take_slot(job_id)
        inputs = self.files.input_folder(job_id)
        try:
            inputs.mkdir(parents=True, exist_ok=True)
            np.save(inputs / "input.npy", image)
            if alpha is not None:
                np.save(inputs / "alpha.npy", alpha)
            job = {**record, "id": job_id, "state": "queued", "done": 0, "total": 0, "created": self.clock(),
                   "slot": slot}
            self.files.write(f"{job_id}/alive", b"")
            self.files.write(f"{job_id}/job.json", json.dumps(job).encode())  # the job exists from here
        except BaseException:
            self.files.remove_folder(job_id)
            self._give_back(job_id, slot)
            raise
        return job

    def _take_slot(self, job_id: str) -> int:
        """The first free slot, taken by a create-only write; slots whose job is gone are taken back first
        when none is free."""
        for attempt in range(2):
            listing = self.files.listing()
            taken = {rel.split("/", 1)[1] for rel in listing if rel.startswith(SLOTS + "/")}
            for k in range(self.max_jobs):
                if str(k) in taken:
                    continue
                with contextlib.suppress(FileExistsError):  # taken meanwhile by another replica
                    self.files.create(f"{SLOTS}/{k}", job_id.encode())
                    return k
            if attempt == 0 and not self._free_lost_slots(listing):
                break
        raise JobsFull(self.max_jobs, self._retry_after(listing))

    def _free_lost_slots(self, listing: dict[str, tuple[int, float]]) -> int:
        """Remove the slots whose job no longer runs (its replica stopped, or it ended without giving the slot
        back); a slot younger than STALE_S is left to the job being created in it. Returns how many."""
        now, jobs, freed = self.clock(), _by_job(listing), 0
        for k in range(self.max_jobs):
            stat = listing.get(f"{SLOTS}/{k}")
            if stat is None or now - stat[1] <= STALE_S:
                continue
            with contextlib.suppress(FileNotFoundError):
                holder = self.files.read(f"{SLOTS}/{k}").decode()
                files = jobs.get(holder, {})
                if "job.json" not in files or "alive" not in files or now - files["alive"][1] > STALE_S:
                    self.files.remove(f"{SLOTS}/{k}")
                    freed += 1
        return freed

    def _give_back(self, job_id: str, slot: int | None) -> None:
        """Free the job's slot (when it still holds it)."""
        if slot is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self.files.read(f"{SLOTS}/{slot}").decode() == job_id:
                self.files.remove(f"{SLOTS}/{slot}")

    def _retry_after(self, listing: dict[str, tuple[int, float]]) -> int:
        """Seconds until the running job nearest its end should be done, from its progress so far."""
        now, etas = self.clock(), []
        for job_id, files in _by_job(listing).items():
            if "alive" not in files:
                continue
            with contextlib.suppress(NotFoundError, ValueError):
                job = self._read(job_id)
                done, total, started = job.get("done", 0), job.get("total", 0), job.get("started")
                if job["state"] == "running" and started and 0 < done < total:
                    etas.append((now - started) * (total - done) / done)
        return max(1, math.ceil(min(etas))) if etas else RETRY_WHEN_BUSY_S

    # ------------------------------------------------------------------ reading
    def ids(self) -> list[str]:
        return sorted(job_id for job_id, files in _by_job(self.files.listing()).items() if "job.json" in files)

    def check_id(self, job_id: str) -> str:
        if not JOB_ID.fullmatch(job_id):
            raise NotFoundError(f"no translation job {job_id!r}")
        return job_id

    def _read(self, job_id: str) -> dict:
        try:
            return json.loads(self.files.read(f"{self.check_id(job_id)}/job.json"))
        except FileNotFoundError:
            raise NotFoundError(f"no translation job {job_id} (finished jobs are kept for {self.ttl_s:g} s, or until "
                                "their results pass the service's disk budget: fetched ones first)") from None

    def get(self, job_id: str) -> dict:
        """The job's record; a queued or running job nobody has touched for STALE_S is failed first."""
        job = self._read(job_id)
        if job["state"] in ("queued", "running") and self._silent_for(job_id) > STALE_S:
            self.fail(job_id, 503, "job_lost", f"the service replica running this job stopped (no sign of it for "
                                               f"{STALE_S:g} s); send the image again")
            job = self._read(job_id)
        return job

    def _silent_for(self, job_id: str) -> float:
        try:
            return self.clock() - self.files.modified(f"{job_id}/alive")
        except FileNotFoundError:
            return float("inf")

    def load_input(self, job_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The decoded upload, memory-mapped (read when it is sent to the model)."""
        folder = self.files.input_folder(self.check_id(job_id))
        try:
            image = np.load(folder / "input.npy", mmap_mode="r")
        except FileNotFoundError:
            raise JobGone(f"translation job {job_id} was deleted") from None
        alpha = np.load(folder / "alpha.npy") if (folder / "alpha.npy").exists() else None
        return image, alpha

    def open_result(self, job: dict, fetched: bool = True) -> IO[bytes]:
        """A done job's result, to read; ``fetched``: note that a client fetched it (evicted first)."""
        job_id = self.check_id(job["id"])
        try:
            f = self.files.open(f"{job_id}/{job['result_file']}")
        except FileNotFoundError:
            raise NotFoundError(f"no translation job {job_id} (its result was just removed)") from None
        if fetched:
            self.files.write(f"{job_id}/fetched", b"")
        return f

    # ------------------------------------------------------------------ writing (the running replica)
    def update(self, job_id: str, **fields) -> dict:
        """Merge ``fields`` into the record; JobGone when the job was deleted meanwhile."""
        rel = f"{self.check_id(job_id)}/job.json"
        try:
            job = {**json.loads(self.files.read(rel)), **fields}
        except FileNotFoundError:
            raise JobGone(f"translation job {job_id} was deleted") from None
        self.files.write(rel, json.dumps(job).encode())
        return job

    def touch(self, job_ids) -> None:
        for job_id in job_ids:
            with contextlib.suppress(FileNotFoundError):
                self.files.touch(f"{self.check_id(job_id)}/alive")

    def finish(self, job_id: str, content: bytes, ext: str, **fields) -> dict:
        """Write the result (whole), then mark the job done; its input, heartbeat and slot go, and the oldest
        results beyond the disk budget."""
        name = f"result.{ext}"
        try:
            self.files.read(f"{self.check_id(job_id)}/job.json")
        except FileNotFoundError:  # deleted: write nothing
            raise JobGone(f"translation job {job_id} was deleted") from None
        self.files.write(f"{job_id}/{name}", content)
        try:
            job = self.update(job_id, state="done", finished=self.clock(), result_file=name,
                              result_bytes=len(content), **fields)
        except JobGone:  # deleted while the result was written
            self.files.remove_folder(job_id)
            raise
        self._ended(job)
        self._evict(self.files.listing(), keep=job_id)
        return job

    def fail(self, job_id: str, status: int, error: str, detail: Any) -> None:
        with contextlib.suppress(JobGone):
            job = self.update(job_id, state="failed", finished=self.clock(), status=status, error=error, detail=detail)
            self._ended(job)

    def _ended(self, job: dict) -> None:
        """A job that ended holds no input, heartbeat or slot."""
        self.drop_input(job["id"])
        self.files.remove(f"{job['id']}/alive")
        self._give_back(job["id"], job.get("slot"))

    def drop_input(self, job_id: str) -> None:
        folder = self.files.input_folder(self.check_id(job_id))
        for name in ("input.npy", "alpha.npy"):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()

    def delete(self, job_id: str, missing_ok: bool = False) -> None:
        """Remove the job (a running one stops at its next progress report) and free its slot."""
        try:
            job = self._read(job_id)
        except NotFoundError:
            if missing_ok:
                return
            raise
        self.files.remove_folder(job_id)
        self._give_back(job_id, job.get("slot"))

    # ------------------------------------------------------------------ keeping
    def sweep(self) -> list[str]:
        """Fail lost jobs, remove finished jobs older than ttl_s, half-made ones and results beyond the disk
        budget; returns the ids of the finished jobs removed."""
        now, removed = self.clock(), []
        listing = self.files.listing()
        for job_id, files in _by_job(listing).items():
            if "job.json" not in files:  # half made (or half removed): gone once nobody has written it for a while
                if all(now - modified > STALE_S for _, modified in files.values()):
                    self.files.remove_folder(job_id)
                continue
            if "alive" in files:
                if now - files["alive"][1] > STALE_S:
                    with contextlib.suppress(NotFoundError, ValueError):
                        if self.get(job_id)["state"] in ("done", "failed"):  # a heartbeat written as it ended
                            self.files.remove(f"{job_id}/alive")
                continue
            if now - files["job.json"][1] > self.ttl_s:  # the record's last write is the job's end
                self.files.remove_folder(job_id)
                removed.append(job_id)
        if isinstance(self.files, ObjectFiles) and self.files.inputs.is_dir():  # inputs of jobs gone elsewhere
            live = set(_by_job(listing))
            for folder in self.files.inputs.iterdir():
                if folder.name not in live and now - folder.stat().st_mtime > STALE_S:
                    shutil.rmtree(folder, ignore_errors=True)
        kept = {rel: stat for rel, stat in listing.items() if rel.split("/", 1)[0] not in removed}
        return removed + self._evict(kept)

    def _evict(self, listing: dict[str, tuple[int, float]], keep: str | None = None) -> list[str]:
        """Remove finished jobs until their results fit in the disk budget: the least recently fetched first,
        then the oldest never fetched; ``keep`` (a result just written) stays. Returns the ids removed."""
        results = []  # (never fetched, fetched or finished time, bytes, id)
        for job_id, files in _by_job(listing).items():
            found = [stat for name, stat in files.items() if RESULT.fullmatch(name)]
            if not found or "alive" in files:
                continue
            size, finished = found[0]
            fetched = files.get("fetched")
            results.append((fetched is None, fetched[1] if fetched else finished, size, job_id))
        total = sum(r[2] for r in results)
        removed = []
        for _, _, size, job_id in sorted(results):
            if total <= self.disk_budget_bytes:
                break
            if job_id == keep:
                continue
            self.files.remove_folder(job_id)
            total -= size
            removed.append(job_id)
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
