"""Retraining jobs: the queue on disk and its worker.

Flow of one job (``submit_from_zip`` from the service, ``run_retrain`` from the CLI):

1. **Import** the upload (:mod:`serving.retraining.upload`) before anything else is written
   under the store; a refused upload leaves no data and no job record.
2. **Queue**: the job record ``.jobs/JOB.json`` (state "queued") under the store root.
3. **Start** the worker: a detached Ray actor when Ray is running, else a thread; the CLI runs
   the job in its own process (:func:`run_job`).
4. **Run**: the worker fine-tunes, evaluates, registers and decides
   (:mod:`serving.retraining.promotion`), recording each phase; every failure is recorded
   (state "failed", ``error``).

5. **Prune**: when a job ends, the uploads of its model's older finished jobs are deleted, all but
   the newest ``KEEP_UPLOADS`` (up to 1 GB each, they would fill the disk of a service that
   retrains often); their records and fine-tuning logs stay, with ``data_pruned`` set.

The worker touches ``.jobs/JOB.alive`` every ``HEARTBEAT_S`` while the job runs: a queued or
running job silent for ``STALE_S`` (its process died or was killed) is reported, and recorded,
as failed.

``job_status(job_id)`` reads the record, so any replica (or process) sharing the store root
can answer it: it looks in the given store, the stores this process has used
(:func:`use_store`), and the default store (``$TRANSLATE_STORE``, else ``./models``).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from translate.errors import ConfigError, DataError, TranslateError
from translate.files import write_text_atomic
from translate.options import opt

from ..store import ModelStore, check_name
from .promotion import DEFAULT_STEPS, fine_tune_and_decide
from .upload import FOLDER_LIMITS, UPLOAD_LIMITS, Entry, UploadLimits, folder_entries, import_pairs, zip_entries

JOB_RE = re.compile(r"[0-9a-f]{12}")
HEARTBEAT_S = 5.0  # a job's worker touches .jobs/JOB.alive this often while it runs
STALE_S = 120.0  # a queued or running job with no sign of life for this long has lost its worker
KEEP_UPLOADS = 5  # finished jobs per model whose uploaded pairs stay under .data/ (the newest ones)
START_WAIT_S = 60.0  # submit_from_zip waits at most this long for the job's worker (a Ray actor) to be up

log = logging.getLogger(__name__)
_known_roots: list[Path] = []  # stores this process has used, for job_status(job_id)


# --------------------------------------------------------------------- the API


def submit_from_zip(store, name: str, zip_bytes: bytes, token_ok: bool, *, steps: int = DEFAULT_STEPS,
                    limits: UploadLimits = UPLOAD_LIMITS, background: str = "auto", threads: int = 1) -> dict:
    """Validate and import a zip of pairs, queue a fine-tuning job for model ``name``, start it.

    Returns ``{"job_id", "name", "state", "base_version", "data"}`` (``data``: pair counts and the
    held-out split). Raises PermissionError when ``token_ok`` is false, ConfigError for an unknown
    model or bad settings, DataError for a bad upload; nothing is written in those cases.
    ``background``: "ray" (a detached actor on the running Ray, ``threads`` torch threads),
    "thread" (in this process), or "auto" (Ray when initialised, else a thread).
    """
    if not token_ok:
        raise PermissionError("retraining needs a valid token")
    if background not in ("auto", "ray", "thread"):
        raise ConfigError("background", f"must be 'auto', 'ray' or 'thread', got {background!r}")
    job = create_job(store, name, lambda: zip_entries(zip_bytes), "upload.zip", steps, limits)
    root = _root_of(store).resolve()
    try:
        _start(root, job["job_id"], background, threads)
    except BaseException as e:
        _update(root, job["job_id"], state="failed", error=f"start: {e.__class__.__name__}: {e}", finished=_now())
        raise
    return job


@dataclass(frozen=True)
class RetrainOptions:
    """The settings of ``translate retrain`` (its flags, through :func:`translate.options.add_arguments`)."""

    steps: int = opt(DEFAULT_STEPS, "fine-tuning steps")
    quiet: bool = opt(False, "no progress bars")


def run_retrain(store, name: str, data: str | os.PathLike, *, steps: int = DEFAULT_STEPS,
                limits: UploadLimits = FOLDER_LIMITS, progress: bool = True) -> dict:
    """The CLI's path: import a local folder of pairs, run the job here, return its status.

    A job that fails raises its error (after recording it), so the CLI reports it.
    """
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"{data}: dataset folder not found")
    job = create_job(store, name, lambda: folder_entries(data), str(data), steps, limits)
    return run_job(store.root, job["job_id"], progress=progress, reraise=True)


def job_status(job_id: str, store=None) -> dict:
    """The job's state, progress ``{"step", "total"}``, outcome (when succeeded), error (when failed) and
    whether its uploaded pairs were since deleted (``data_pruned``: see :func:`prune_uploads`).

    Raises KeyError for an unknown id. ``store``: a ModelStore or its root folder; see the
    module doc for where else records are looked up.
    """
    root, rec = _find_job(job_id, store)
    if rec["state"] in ("queued", "running"):
        rec = _fail_if_stale(root, rec)
    progress = dict(rec["progress"])
    if rec["state"] == "running" and rec.get("phase") == "train":
        progress["step"] = min(progress["total"], _last_logged_step(Path(rec["run"]) / "metrics.jsonl"))
    keys = ("id", "name", "state", "phase", "outcome", "error", "base_version", "steps", "data",
            "created", "started", "finished")
    return {**{k: rec.get(k) for k in keys}, "progress": progress, "data_pruned": bool(rec.get("data_pruned"))}


def wait(job_id: str, timeout: float | None = None, store=None, poll: float = 0.2) -> dict:
    """Poll until the job has succeeded or failed; returns its status (TimeoutError after ``timeout`` s)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = job_status(job_id, store)
        if status["state"] in ("succeeded", "failed"):
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status['state']} after {timeout} s")
        time.sleep(poll)


def use_store(store_or_root) -> None:
    """Make ``job_status(job_id)`` (without a store) look in this store too."""
    root = _root_of(store_or_root).resolve()
    if root not in _known_roots:
        _known_roots.append(root)


# ------------------------------------------------------------------ the record


def _job_path(root: Path, job_id: str) -> Path:
    return Path(root) / ".jobs" / f"{job_id}.json"


def _write_job(root: Path, rec: dict) -> None:
    write_text_atomic(_job_path(root, rec["id"]), json.dumps(rec, indent=1) + "\n")


def _update(root: Path, job_id: str, **fields) -> dict:
    rec = json.loads(_job_path(root, job_id).read_text())
    rec.update(fields)
    _write_job(root, rec)
    return rec


def _find_job(job_id: str, store=None) -> tuple[Path, dict]:
    if not isinstance(job_id, str) or not JOB_RE.fullmatch(job_id):
        raise KeyError(job_id)
    roots = ([_root_of(store)] if store is not None else []) + _known_roots
    roots.append(ModelStore().root)
    for root in roots:
        try:
            return root, json.loads(_job_path(root, job_id).read_text())
        except FileNotFoundError:
            continue
    raise KeyError(job_id)


def _fail_if_stale(root: Path, rec: dict) -> dict:
    """The record, marked failed when its worker has shown no sign of life for STALE_S."""
    try:
        last = _job_path(root, rec["id"]).with_suffix(".alive").stat().st_mtime
    except FileNotFoundError:
        last = _job_path(root, rec["id"]).stat().st_mtime  # not started yet: since it was queued
    silent = time.time() - last
    if silent <= STALE_S:
        return rec
    error = (f"{rec.get('phase')}: the job's worker stopped (no sign of life for {silent:.0f} s: its process died "
             "or was killed); nothing was registered, submit the data again")
    return _update(root, rec["id"], state="failed", error=error, finished=_now())


class _Heartbeat:
    """Touch .jobs/JOB.alive every HEARTBEAT_S from a daemon thread while the job runs."""

    def __init__(self, root: Path, job_id: str):
        self.path = _job_path(root, job_id).with_suffix(".alive")
        self.stop = threading.Event()

    def _beat(self) -> None:
        while True:
            self.path.touch()
            if self.stop.wait(HEARTBEAT_S):
                return

    def __enter__(self):
        self.path.touch()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.path.stem}", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()  # no touch after the job's end (the job's folder may be gone by then)


def _root_of(store) -> Path:
    """A ModelStore's root, or a root given as a path (note: a Path has a ``root`` attribute too)."""
    return Path(store) if isinstance(store, (str, os.PathLike)) else Path(store.root)


def _last_logged_step(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line being written
    return 0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def create_job(store, name: str, entries: Callable[[], list[Entry]], source: str, steps: int,
               limits: UploadLimits) -> dict:
    """Check the model and settings, import the upload, write the queued job's record (started by no one)."""
    check_name(name)
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError("steps", f"must be a positive number of steps, got {steps!r}")
    root = _root_of(store).resolve()  # the record's paths must hold for workers in other folders
    base = store.current(name)
    if base is None:
        raise ConfigError("name", f"no model named {name!r} in the store {root}: register one first")
    ckpt = store.checkpoint_path(name, base)
    if ckpt is None or not Path(ckpt).exists():
        raise ConfigError("name", f"{name} {base} has no training checkpoint to fine-tune from")
    job_id = uuid.uuid4().hex[:12]
    data_dir = root / ".data" / f"{name}-{job_id}"
    summary = import_pairs(entries(), data_dir, source, limits)
    rec = {"id": job_id, "name": name, "state": "queued", "phase": "queued", "base_version": base, "steps": steps,
           "data": summary, "data_dir": str(data_dir), "run": str(root / ".runs" / f"{name}-{job_id}"),
           "progress": {"step": 0, "total": steps}, "outcome": None, "error": None,
           "created": _now(), "started": None, "finished": None, "store": store.url}
    _write_job(root, rec)
    use_store(root)
    return {"job_id": job_id, "name": name, "state": "queued", "base_version": base, "data": summary}


# ------------------------------------------------------------------ the worker


def _start(root: Path, job_id: str, background: str, threads: int) -> None:
    if background == "auto":
        import sys

        background = "ray" if "ray" in sys.modules and sys.modules["ray"].is_initialized() else "thread"
    if background == "ray":
        import ray

        worker = ray.remote(num_cpus=0, max_restarts=0)(_RetrainWorker).options(
            name=f"retrain-{job_id}", lifetime="detached")
        handle: Any = worker.remote(str(root), job_id, threads)  # the job starts in its constructor: _RetrainWorker
        # once the actor is up its job runs whatever becomes of this process (the request that took the upload is
        # answered after that, a few seconds); a caller that dies before Ray has created it can lose it
        ray.wait([handle.__ray_ready__.remote()], timeout=START_WAIT_S)
    else:
        threading.Thread(target=run_job, args=(root, job_id), name=f"retrain-{job_id}", daemon=True).start()


class _RetrainWorker:
    """A detached Ray actor that runs one job and ends itself: it outlives the replica that started it.

    The job starts in the constructor (on a thread, so the actor is ready at once), and the submitter waits until
    the actor is up: a method call would wait in the caller's process until the actor's own process is up (seconds)
    and was lost with a replica killed meanwhile (the soak's colocated run). It reserves no CPU (a busy service must
    not keep it queued forever) and trains with ``threads`` torch threads, so the replicas keep the rest of the
    machine.
    """

    def __init__(self, root: str, job_id: str, threads: int):
        threading.Thread(target=self.run, args=(root, job_id, threads), name=f"retrain-{job_id}", daemon=True).start()

    @staticmethod
    def run(root: str, job_id: str, threads: int) -> None:
        import ray

        try:
            run_job(root, job_id, threads=threads)
        finally:
            ray.kill(ray.get_runtime_context().current_actor)  # done (or failed, and recorded): the actor goes


def run_job(root: str | os.PathLike, job_id: str, progress: bool = False, reraise: bool = False,
            threads: int = 0) -> dict:
    """Run a queued job to the end in this process: fine-tune, evaluate, register, decide.

    Every failure is recorded (state "failed", ``error``); nothing is registered unless
    every step before registration succeeded. ``threads`` > 0 sets torch's and ONNX Runtime's
    thread counts (process-wide: for a worker process of its own).
    """
    root = Path(root)
    _, rec = _find_job(job_id, root)
    if rec["state"] != "queued":
        raise ConfigError("job", f"{job_id} is {rec['state']}, not queued")
    rec = _update(root, job_id, state="running", phase="train", started=_now())
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        with _Heartbeat(root, job_id):
            # an object store's job files are in a local folder (root), not in the store: reopen it by URL
            outcome = fine_tune_and_decide(ModelStore(rec.get("store") or root), rec, lambda **fields: _update(root, job_id, **fields),
                                           progress, threads)
    except BaseException as e:
        error = str(e) if isinstance(e, TranslateError) else f"{e.__class__.__name__}: {e}"
        phase = json.loads(_job_path(root, job_id).read_text()).get("phase")
        _update(root, job_id, state="failed", error=f"{phase}: {error}", finished=_now(),
                traceback=None if isinstance(e, TranslateError) else traceback.format_exc())
        _prune_quietly(root, rec["name"])
        if reraise or not isinstance(e, Exception):
            raise
        return job_status(job_id, root)
    _update(root, job_id, state="succeeded", phase="done", outcome=outcome, finished=_now(),
            progress={"step": rec["steps"], "total": rec["steps"]})
    _prune_quietly(root, rec["name"])
    return job_status(job_id, root)


def _prune_quietly(root: Path, name: str) -> None:
    """:func:`prune_uploads` after a job's end: a failure to delete old data is logged, never the job's."""
    try:
        prune_uploads(root, name)
    except OSError as e:
        log.warning("could not prune the old uploads of %s under %s: %s", name, root, e)


def prune_uploads(root: str | os.PathLike, name: str, keep: int | None = None) -> list[Path]:
    """Delete the uploaded pairs of ``name``'s finished jobs (succeeded or failed), all but the newest
    ``keep`` (default :data:`KEEP_UPLOADS`); queued and running jobs keep theirs, and so does any job
    whose data is not in this store's ``.data/``. Each pruned job's record gets ``data_pruned``.
    Returns the folders deleted."""
    root = Path(root)
    keep = KEEP_UPLOADS if keep is None else keep
    finished = []
    for path in (root / ".jobs").glob("*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a record being replaced, or not ours
        if rec.get("name") == name and rec.get("state") in ("succeeded", "failed") and not rec.get("data_pruned"):
            finished.append(rec)
    finished.sort(key=lambda r: (r.get("finished") or "", r.get("created") or ""), reverse=True)
    removed = []
    data_root = (root / ".data").resolve()
    for rec in finished[keep:]:
        folder = Path(rec.get("data_dir") or "")
        if not folder.name or folder.resolve().parent != data_root:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        _update(root, rec["id"], data_pruned=True)
        removed.append(folder)
    return removed
