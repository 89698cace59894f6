"""Retraining on new paired data: validate an upload, fine-tune the current version from its
checkpoint as a background job, score old and new on the same held-out pairs, register the
new version and promote it only if it is no worse.

Flow of one job (``submit_from_zip`` from the service, ``run_retrain`` from the CLI):

1. **Import** (before anything is written under the store): the zip (or folder) must hold
   aligned A|B images, flat or in ``train/`` with optional ``val/`` and ``test/``; one common
   top-level folder is stripped. Refused with a :class:`DataError` naming the entry: unsafe
   paths (``..``, absolute, drive letters, backslashes, symbolic links: zip-slip), more than
   ``max_files`` files or ``max_bytes`` uncompressed (zip bombs; counted while reading, not
   trusted from the header), non-images, corrupt or too-large images (fully decoded by
   :mod:`translate.imageio` with ``max_pixels``), images too narrow to be a pair, too few
   pairs. Files go to a fresh hidden folder which is renamed into place in one step, so a
   refused upload leaves nothing behind and no job record.
2. **Held-out pairs**: the upload's ``test/`` split, else its ``val/`` split, else a
   deterministic ``HOLDOUT_FRACTION`` of its pairs (:func:`translate.data.split_holdout`)
   moved to ``val/`` at import time, so training (which reads ``train/`` only) never sees them.
3. **Fine-tune** (a detached Ray actor when Ray is running, else a thread; the CLI runs it in
   its own process): :class:`training.loop.Trainer` with the checkpoint's config, ``data`` =
   the upload, ``init_from`` = the current version's checkpoint (networks loaded, fresh
   optimizers and schedule), ``steps`` (default ``DEFAULT_STEPS``), export to ONNX at the end.
4. **Evaluate** the current version's model and the new one with
   :func:`translate.evaluate.evaluate` on the same held-out pairs.
5. **Register and decide**. The metric is mean L1 on the [-1, 1] scale (lower is better).
   The new version is promoted iff ``new L1 <= current L1`` (a tie promotes: same quality,
   fresher data). A worse version is still registered, not promoted, so it can be inspected
   or promoted by hand; the outcome says so and why.

Files under the store root (hidden, so they are not model names)::

    .data/NAME-JOB/{train,val,test}/   the validated upload
    .runs/NAME-JOB/                    the fine-tuning run (config, metrics.jsonl, samples; its checkpoint
                                       and model.onnx are deleted once registered: the version has them)
    .jobs/JOB.json                     the job record, written atomically by the job's worker
    .jobs/JOB.alive                    touched every HEARTBEAT_S by the worker while the job runs: a
                                       queued or running job silent for STALE_S (its process died or
                                       was killed) is reported, and recorded, as failed

``job_status(job_id)`` reads the record, so any replica (or process) sharing the store root
can answer it: it looks in the given store, the stores this process has used
(:func:`use_store`), and the default store (``$TRANSLATE_STORE``, else ``./models``).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from translate import imageio
from translate.errors import ConfigError, DataError, ImageError, TranslateError
from translate.files import write_text_atomic

from .store import ModelStore, check_name

DEFAULT_STEPS = 200
HOLDOUT_FRACTION = 0.1  # of an upload without val/ or test/, held out for the comparison
METRIC = "l1"  # mean L1 on [-1, 1]; lower is better
SPLITS = ("train", "val", "test")
JOB_RE = re.compile(r"[0-9a-f]{12}")
HEARTBEAT_S = 5.0  # a job's worker touches .jobs/JOB.alive this often while it runs
STALE_S = 120.0  # a queued or running job with no sign of life for this long has lost its worker
# trainers that can fine-tune on paired data, by checkpoint method name
METHODS = {"pix2pix": "training.pix2pix:Pix2Pix"}


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may hold. ``None`` means no limit (the CLI's local folders)."""

    max_files: int | None = 10_000
    max_bytes: int | None = 1 << 30  # uncompressed, all files together
    max_file_bytes: int | None = 256 << 20  # uncompressed, one file
    max_pixels: int = 8192 * 4096  # per file: an aligned pair is twice as wide as one image
    min_pairs: int = 2  # at least one to train on and one to compare on


UPLOAD_LIMITS = UploadLimits()
FOLDER_LIMITS = UploadLimits(max_files=None, max_bytes=None, max_file_bytes=None)

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
    job = _create_job(store, name, lambda: _zip_entries(zip_bytes), "upload.zip", steps, limits)
    root = _root_of(store).resolve()
    try:
        _start(root, job["job_id"], background, threads)
    except BaseException as e:
        _update(root, job["job_id"], state="failed", error=f"start: {e.__class__.__name__}: {e}", finished=_now())
        raise
    return job


def run_retrain(store, name: str, data: str | os.PathLike, *, steps: int = DEFAULT_STEPS,
                limits: UploadLimits = FOLDER_LIMITS, progress: bool = True) -> dict:
    """The CLI's path: import a local folder of pairs, run the job here, return its status.

    A job that fails raises its error (after recording it), so the CLI reports it.
    """
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"{data}: dataset folder not found")
    job = _create_job(store, name, lambda: _folder_entries(data), str(data), steps, limits)
    return run_job(store.root, job["job_id"], progress=progress, reraise=True)


def job_status(job_id: str, store=None) -> dict:
    """The job's state, progress ``{"step", "total"}``, outcome (when succeeded) and error (when failed).

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
    return {**{k: rec.get(k) for k in keys}, "progress": progress}


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


# --------------------------------------------------------------- the upload


@dataclass
class _Entry:
    name: str  # as given (zip member name, or path relative to the folder)
    size: int  # declared size (the zip header; may lie)
    read: Callable[[int], bytes]  # read at most n bytes
    is_link: bool = False


def _zip_entries(zip_bytes: bytes) -> list[_Entry]:
    if not zip_bytes:
        raise DataError("upload.zip: empty upload")
    try:
        zf = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as e:
        raise DataError(f"upload.zip: not a readable zip archive ({e})") from None

    def reader(info: zipfile.ZipInfo) -> Callable[[int], bytes]:
        def read(n: int) -> bytes:
            try:
                with zf.open(info) as f:
                    return f.read(n)
            except Exception as e:  # bad CRC, unsupported compression, truncated archive
                raise DataError(f"{info.filename}: cannot be extracted ({e.__class__.__name__}: {e})") from None
        return read

    return [_Entry(i.filename, i.file_size, reader(i), stat.S_ISLNK(i.external_attr >> 16))
            for i in zf.infolist() if not i.is_dir()]


def _folder_entries(root: Path) -> list[_Entry]:
    def reader(p: Path) -> Callable[[int], bytes]:
        def read(n: int) -> bytes:
            with open(p, "rb") as f:
                return f.read(n)
        return read

    return [_Entry(p.relative_to(root).as_posix(), p.stat().st_size, reader(p))
            for p in sorted(root.rglob("*")) if p.is_file()]


def _ignored(parts: tuple[str, ...]) -> bool:
    """Archive clutter that is skipped, not refused: macOS resource forks and hidden files."""
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def _safe_parts(name: str) -> tuple[str, ...]:
    if "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\x00" in name:
        raise DataError(f"{name}: unsafe path in the archive (absolute or Windows-style); refused")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if not parts or ".." in parts:
        raise DataError(f"{name}: unsafe path in the archive (leads outside the folder); refused")
    return parts


def _layout(entries: list[_Entry], source: str) -> list[tuple[_Entry, str, str]]:
    """(entry, split, file name) for each image; refuses what is not a flat or split layout."""
    files = []
    for e in entries:
        parts = _safe_parts(e.name)
        if e.is_link:
            raise DataError(f"{e.name}: symbolic link in the archive; refused")
        if not _ignored(parts):
            files.append((e, parts))
    if not files:
        raise DataError(f"{source}: no images found (expected aligned A|B images, flat or in train/, val/, test/)")
    tops = {parts[0] for _, parts in files}
    if len(tops) == 1 and all(len(p) > 1 for _, p in files) and next(iter(tops)) not in SPLITS:
        files = [(e, parts[1:]) for e, parts in files]  # a zipped folder: strip its name
    out, flat, split = [], [], []
    for e, parts in files:
        if len(parts) == 1:
            flat.append(e.name)
            out.append((e, "train", parts[0]))
        elif len(parts) == 2 and parts[0] in SPLITS:
            split.append(e.name)
            out.append((e, parts[0], parts[1]))
        else:
            raise DataError(f"{e.name}: unexpected location (expected images at the top level, "
                            f"or in train/, val/, test/)")
        if not imageio.is_image_file(out[-1][2]):
            raise DataError(f"{e.name}: not an image file (accepted: {', '.join(imageio.IMAGE_EXTENSIONS)})")
    if flat and split:
        raise DataError(f"{flat[0]}: images both at the top level and in split folders ({split[0]}); use one layout")
    if split and not any(s == "train" for _, s, _ in out):
        raise DataError(f"{source}: split folders without train/")
    seen = set()
    for e, s, fname in out:
        key = (s, PurePosixPath(fname).stem.lower())
        if key in seen:
            raise DataError(f"{e.name}: a second file named {PurePosixPath(fname).stem!r} in {s}/")
        seen.add(key)
    return out


def _import_pairs(entries: list[_Entry], dest: Path, source: str, limits: UploadLimits = UPLOAD_LIMITS) -> dict:
    """Validate ``entries`` and write them to ``dest`` (which must not exist) in one rename.

    Returns ``{"train", "val", "test": pair counts, "eval_split", "held_out": "uploaded"|"split_holdout"}``.
    """
    from translate import data as tdata

    files = _layout(entries, source)
    if limits.max_files is not None and len(files) > limits.max_files:
        raise DataError(f"{source}: {len(files):,} files, over the limit of {limits.max_files:,}")
    budget = limits.max_bytes
    declared = sum(e.size for e, _, _ in files)
    if budget is not None and declared > budget:
        raise DataError(f"{source}: {declared:,} bytes uncompressed, over the limit of {budget:,}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        for e, split, fname in files:
            # never trust the declared size: read at most one byte past what is still allowed
            caps = [c for c in (budget, limits.max_file_bytes) if c is not None]
            data = e.read(min(caps) + 1 if caps else -1)
            if caps and len(data) > min(caps):
                raise DataError(f"{e.name}: uncompressed data over the limit of {min(caps):,} bytes "
                                f"({'upload' if min(caps) == budget else 'per file'})")
            if budget is not None:
                budget -= len(data)
            try:
                img = imageio.decode(data, source=e.name, max_pixels=limits.max_pixels)
            except ImageError as err:
                raise DataError(str(err)) from None
            if img.width < 2:
                raise DataError(f"{e.name}: {img.width}x{img.height} is too narrow for A and B side by side")
            (tmp / split).mkdir(exist_ok=True)
            (tmp / split / fname).write_bytes(data)
        counts = {}
        for split in SPLITS:
            if (tmp / split).is_dir():
                try:
                    tdata.check_readable(tdata.find_pairs(tmp, split), strict=True, max_pixels=limits.max_pixels)
                except ImageError as err:
                    raise DataError(f"{source}: {split}/{Path(err.source).name}: {err.reason}") from None
                counts[split] = len(tdata.find_pairs(tmp, split))
        if sum(counts.values()) < limits.min_pairs:
            raise DataError(f"{source}: {sum(counts.values())} pair(s); at least {limits.min_pairs} are needed "
                            f"(some to train on, some held out to compare the versions)")
        held_out = "uploaded"
        if "val" not in counts and "test" not in counts:
            held_out = "split_holdout"
            _, held = tdata.split_holdout(tdata.find_pairs(tmp, "train"), HOLDOUT_FRACTION, seed=0)
            (tmp / "val").mkdir()
            for src in held:
                src.a.rename(tmp / "val" / src.a.name)
            counts["train"] -= len(held)
            counts["val"] = len(held)
        os.chmod(tmp, 0o755)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**{s: counts.get(s, 0) for s in SPLITS}, "eval_split": "test" if counts.get("test") else "val",
            "held_out": held_out}


# ------------------------------------------------------------------ the job


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


def _create_job(store, name: str, entries: Callable[[], list[_Entry]], source: str, steps: int,
                limits: UploadLimits) -> dict:
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
    summary = _import_pairs(entries(), data_dir, source, limits)
    rec = {"id": job_id, "name": name, "state": "queued", "phase": "queued", "base_version": base, "steps": steps,
           "data": summary, "data_dir": str(data_dir), "run": str(root / ".runs" / f"{name}-{job_id}"),
           "progress": {"step": 0, "total": steps}, "outcome": None, "error": None,
           "created": _now(), "started": None, "finished": None, "store": store.url}
    _write_job(root, rec)
    use_store(root)
    return {"job_id": job_id, "name": name, "state": "queued", "base_version": base, "data": summary}


def _start(root: Path, job_id: str, background: str, threads: int) -> None:
    if background == "auto":
        import sys

        background = "ray" if "ray" in sys.modules and sys.modules["ray"].is_initialized() else "thread"
    if background == "ray":
        import ray

        worker = ray.remote(num_cpus=0, max_restarts=0)(_RetrainWorker).options(
            name=f"retrain-{job_id}", lifetime="detached")
        worker.remote().run.remote(str(root), job_id, threads)
    else:
        threading.Thread(target=run_job, args=(root, job_id), name=f"retrain-{job_id}", daemon=True).start()


class _RetrainWorker:
    """A detached Ray actor that runs one job and exits: it outlives the replica that started it.

    It reserves no CPU (a busy service must not keep it queued forever) and trains with
    ``threads`` torch threads, so the replicas keep the rest of the machine.
    """

    def run(self, root: str, job_id: str, threads: int) -> None:
        import ray

        try:
            run_job(root, job_id, threads=threads)
        finally:
            ray.actor.exit_actor()


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
            outcome = _fine_tune_and_decide(root, rec, progress, threads)
    except BaseException as e:
        error = str(e) if isinstance(e, TranslateError) else f"{e.__class__.__name__}: {e}"
        phase = json.loads(_job_path(root, job_id).read_text()).get("phase")
        _update(root, job_id, state="failed", error=f"{phase}: {error}", finished=_now(),
                traceback=None if isinstance(e, TranslateError) else traceback.format_exc())
        if reraise or not isinstance(e, Exception):
            raise
        return job_status(job_id, root)
    _update(root, job_id, state="succeeded", phase="done", outcome=outcome, finished=_now(),
            progress={"step": rec["steps"], "total": rec["steps"]})
    return job_status(job_id, root)


def _method(name: str):
    import importlib

    if name not in METHODS:
        raise ConfigError("method", f"retraining supports {sorted(METHODS)} models, not {name}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _fine_tune_and_decide(root: Path, rec: dict, progress: bool, threads: int) -> dict:
    from training.loop import Trainer
    from translate.checkpoint import load_checkpoint
    from translate.evaluate import evaluate
    from translate.metrics import METRIC_NAMES
    from translate.predictor import Predictor

    store = ModelStore(rec.get("store") or root)  # an object store's job files are in a local folder, not in it
    name, job_id, run = rec["name"], rec["id"], Path(rec["run"])
    ckpt_path = store.checkpoint_path(name, rec["base_version"])
    ckpt = load_checkpoint(ckpt_path)
    method = _method(ckpt["method"])
    config = method.config_class.from_dict({k: v for k, v in ckpt["config"].items() if k != "method"})
    steps = rec["steps"]
    config = dataclasses.replace(
        config, data=rec["data_dir"], out=str(run), init_from=str(ckpt_path), steps=steps, workers=0, device="auto",
        progress=progress, export=True, strict_data=True, time_limit=0.0, log_every=1, val_every=0,
        sample_every=steps, checkpoint_every=steps, keep_checkpoints=1)
    Trainer(method, config).fit()

    _update(root, job_id, phase="evaluate", progress={"step": steps, "total": steps})
    current = store.current(name)  # what serves now (normally the version we started from)
    split = rec["data"]["eval_split"]

    def score(model: Path) -> tuple[dict, int]:
        res = evaluate(Predictor(model, threads=threads), rec["data_dir"], split=split, progress=progress)
        return {k: res[k] for k in METRIC_NAMES}, res["count"]

    (new, count), (cur, _) = score(run / "model.onnx"), score(store.model_path(name, current))
    promote = new[METRIC] <= cur[METRIC]

    _update(root, job_id, phase="register")
    evaluation = {"metric": METRIC, "split": split, "held_out": rec["data"]["held_out"], "count": count,
                  "compared_with": {"version": current, "metrics": cur}, "promoted": promote}
    meta = {"source": "retrain", "job_id": job_id, "base_version": rec["base_version"], "steps": steps,
            "data": rec["data"], "metrics": new, "evaluation": evaluation}
    version = store.register(name, run / "model.onnx", meta=meta, checkpoint=run / "checkpoints" / "latest.pt",
                             promote=promote)
    # the version now holds the model and the weights to fine-tune from: the run's copies (the full training
    # state with optimizers, hundreds of MB for a 256 px Pix2Pix) would only fill the disk job after job
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
    (run / "model.onnx").unlink(missing_ok=True)
    verdict = "no worse than" if promote else "worse than"
    reason = (f"held-out {METRIC} {new[METRIC]:.4f} (new) vs {cur[METRIC]:.4f} ({current}) on {count} "
              f"pairs of '{split}': {verdict} the current version, "
              + (f"{version} promoted" if promote else f"{version} registered but not promoted; {current} stays"))
    return {"promoted": promote, "new_version": version, "current_version": store.current(name),
            "compared_with": current, "metric": METRIC, "new_metric": new[METRIC], "current_metric": cur[METRIC],
            "new_metrics": new, "current_metrics": cur, "eval_split": split, "eval_count": count,
            "reason": reason}


__all__ = ["DEFAULT_STEPS", "HOLDOUT_FRACTION", "METRIC", "UploadLimits", "UPLOAD_LIMITS", "FOLDER_LIMITS",
           "submit_from_zip", "run_retrain", "job_status", "wait", "use_store", "run_job"]
