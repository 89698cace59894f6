"""Batch conversion of a folder of images on Ray Data: ``translate convert MODEL IN_DIR OUT_DIR``.

``IN_DIR`` is read as raw bytes (``read_binary_files(include_paths=True)``) and every file
is decoded inside the mapped function, so a corrupt image is one failed file, not a
failed job. An actor pool (``map_batches`` with ``ActorPoolStrategy``) holds one
:class:`translate.predictor.Predictor` per actor, the same predictor ``translate
predict`` uses, so both write the same pixels; large images are tiled by it. Actors ask
for a fraction of a CPU (and a whole GPU when there is one): on a 2-CPU machine, actors
holding whole CPUs leave none for the read tasks and the job hangs.

Outputs keep the input's relative path (``IN_DIR/a/b.jpg`` -> ``OUT_DIR/a/b.png``) and
are written atomically by the actors. Outputs that already exist are skipped, so an
interrupted run continues where it stopped. Failed files are reported on stderr as
they happen and listed (path and reason) in ``OUT_DIR/convert_summary.json``.
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from translate.errors import ConfigError, DataError, TranslateError
from translate.files import write_text_atomic
from translate.imageio import IMAGE_EXTENSIONS, is_image_file

SUMMARY_NAME = "convert_summary.json"
FORMATS = ("png", "jpg")
ACTOR_CPUS = 0.5  # per actor: fractional, so read tasks always find a CPU
READ_CPUS = 0.25


@dataclass
class ConvertSummary:
    model: str
    in_dir: str
    out_dir: str
    format: str
    total: int = 0  # image files found
    written: int = 0
    skipped: int = 0  # outputs already there (an earlier, interrupted run)
    failed: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def output_path(out_dir: Path, rel: Path, fmt: str) -> Path:
    return out_dir / rel.with_suffix("." + fmt)


def plan(in_dir: Path, out_dir: Path, fmt: str) -> tuple[list[Path], list[Path], list[dict[str, str]], int]:
    """(files to convert, files already converted, failures known up front, image files found).

    Files are absolute; temporary files a killed run left next to an output still to
    write are removed; two inputs that would write the same output (``a.png``, ``a.jpg``)
    are both refused rather than overwriting each other.
    """
    files = sorted(f for f in in_dir.rglob("*") if f.is_file() and is_image_file(f)
                   and not _inside(f, out_dir))
    by_output: dict[Path, list[Path]] = {}
    for f in files:
        by_output.setdefault(output_path(out_dir, f.relative_to(in_dir), fmt), []).append(f)
    todo, done, failed = [], [], []
    for dst, srcs in by_output.items():
        if len(srcs) > 1:
            names = ", ".join(str(s.relative_to(in_dir)) for s in srcs)
            failed += [{"path": str(s), "reason": f"inputs {names} would all write {dst.name}"} for s in srcs]
        elif dst.exists():
            done.append(srcs[0])
        else:
            todo.append(srcs[0])
            for stale in dst.parent.glob(f".{glob.escape(dst.stem)}.*.tmp{dst.suffix}"):
                stale.unlink(missing_ok=True)  # half a file from a run killed mid-write (files.atomic_path)
    return todo, done, failed, len(files)


def _inside(path: Path, folder: Path) -> bool:
    return folder == path or folder in path.parents


class Translator:
    """The mapped callable: one Predictor per actor; a batch of (path, bytes) -> per-file status."""

    def __init__(self, model: Any, in_dir: str, out_dir: str, fmt: str, device: str, threads: int):
        from translate.predictor import Predictor

        if not isinstance(model, (bytes, str, os.PathLike)):  # an ObjectRef to the exported bytes
            import ray

            model = ray.get(model)
        self.predictor = Predictor(model, device=device, threads=threads)
        self.in_dir, self.out_dir, self.fmt = Path(in_dir), Path(out_dir), fmt

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths, errors = [], []
        for path, data in zip(batch["path"], batch["bytes"]):
            path = str(path)
            dst = output_path(self.out_dir, Path(path).relative_to(self.in_dir), self.fmt)
            try:
                self.predictor.translate_file(bytes(data), path, dst)
                errors.append("")
            except TranslateError as e:
                errors.append(str(e))
            except Exception as e:  # one bad file must not stop the job
                errors.append(f"{path}: {e.__class__.__name__}: {e}")
            paths.append(path)
        return {"path": np.array(paths, dtype=object), "error": np.array(errors, dtype=object)}


def _resources(workers: int, device: str) -> tuple[int, float, float, int]:
    """(actors, CPUs per actor, GPUs per actor, ONNX Runtime threads per actor)."""
    import ray

    from translate.predictor import cuda_available

    total = float(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = device == "cuda" or (device == "auto" and gpus >= 1 and cuda_available())
    if use_gpu and gpus < 1:
        raise ConfigError("--device", "cuda was asked for, but Ray sees no GPU")
    if use_gpu:
        workers = min(workers, gpus)  # a whole GPU per actor: more actors than GPUs would never start
    # leave room for the read tasks whatever the pool size
    cpus = min(ACTOR_CPUS, max(0.05, (total - READ_CPUS) / workers))
    return workers, cpus, (1.0 if use_gpu else 0.0), max(1, int(total // workers))


def convert(model: str | os.PathLike, in_dir: str | os.PathLike, out_dir: str | os.PathLike,
            workers: int = 2, fmt: str = "png", device: str = "auto", direction: str | None = None,
            progress: bool = True, on_result: Callable[[str, str], None] | None = None,
            batch_size: int = 4) -> ConvertSummary:
    """Translate every image under ``in_dir`` into ``out_dir`` (same relative paths) on Ray Data.

    Starts a local Ray when none is running (and stops it afterwards). ``on_result(path,
    error)`` is called in the driver as each file finishes (error "" on success).
    Returns the summary, also written to ``out_dir/convert_summary.json``.
    """
    import ray

    from translate.predictor import model_source

    if fmt not in FORMATS:
        raise ConfigError("--format", f"expected one of {FORMATS}, got {fmt!r}")
    if workers < 1:
        raise ConfigError("--workers", f"must be >= 1, got {workers}")
    in_root, out_root = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not in_root.is_dir():
        raise DataError(f"{in_dir}: no such folder")
    started = time.perf_counter()
    todo, done, failed, total = plan(in_root, out_root, fmt)
    if total == 0:
        raise DataError(f"{in_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    summary = ConvertSummary(str(model), str(in_root), str(out_root), fmt, total=total, skipped=len(done),
                             failed=list(failed))
    for f in failed:
        print(f"failed: {f['path']}: {f['reason']}", file=sys.stderr)
    source = model_source(model, direction)  # ModelError here, before any worker starts
    own_ray = not ray.is_initialized()
    if todo and own_ray:
        import logging

        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        if todo:
            _run(source, todo, in_root, out_root, fmt, workers, device, progress, batch_size, summary, on_result)
    finally:
        summary.seconds = round(time.perf_counter() - started, 3)
        out_root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_root / SUMMARY_NAME, summary.to_json())
        if todo and own_ray:
            ray.shutdown()
    return summary


def _run(source, todo, in_root, out_root, fmt, workers, device, progress, batch_size, summary, on_result):
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    from translate.predictor import Predictor

    Predictor(source, device="cpu")  # a model ONNX Runtime cannot load fails here, in the driver
    model: Any = ray.put(source) if isinstance(source, bytes) else str(source)
    workers, cpus, gpus, threads = _resources(workers, device)
    context = DataContext.get_current()
    bars, context.enable_progress_bars = context.enable_progress_bars, False  # ours below counts files
    ds = ray.data.read_binary_files([str(f) for f in todo], include_paths=True, num_cpus=READ_CPUS,
                                    override_num_blocks=min(len(todo), 4 * workers))
    ds = ds.map_batches(Translator, batch_size=batch_size, compute=ActorPoolStrategy(size=workers),
                        num_cpus=cpus, num_gpus=gpus,
                        fn_constructor_args=(model, str(in_root), str(out_root), fmt,
                                             "cuda" if gpus else "cpu", threads))
    try:
        _collect(ds, len(todo), progress, summary, on_result)
    finally:
        context.enable_progress_bars = bars


def _collect(ds, count, progress, summary, on_result):
    from tqdm.auto import tqdm

    with tqdm(total=count, desc="convert", unit="img", disable=not progress, file=sys.stderr) as bar:
        for row in ds.iter_rows():
            path, error = str(row["path"]), str(row["error"])
            if error:
                summary.failed.append({"path": path, "reason": error})
                bar.write(f"failed: {error}", file=sys.stderr)
            else:
                summary.written += 1
            if on_result is not None:
                on_result(path, error)
            bar.update(1)
