"""Batch conversion of a folder of images and rasters on Ray Data: ``translate convert MODEL IN_DIR OUT_DIR``.

The files of ``IN_DIR`` go to an actor pool (``map_batches`` with ``ActorPoolStrategy``) as
paths; each actor holds one :class:`translate.predictor.Predictor`, the same predictor
``translate predict`` uses, and translates a file the way predict does
(:func:`translate.raster.translate_path`): an image is read and decoded inside the mapped
function, so a corrupt image is one failed file, not a failed job; a raster (GeoTIFF, other
GDAL formats) is read and written by windows, so a 20000 x 20000 one needs no more memory
than a band of tiles. Large images are tiled by the predictor. Actors ask for a fraction of
a CPU (and a whole GPU when there is one): on a 2-CPU machine, actors holding whole CPUs leave
none for Ray Data's own tasks and the job hangs.

Outputs keep the input's relative path (``IN_DIR/a/b.jpg`` -> ``OUT_DIR/a/b.png``; a raster
``IN_DIR/a/c.tif`` -> ``OUT_DIR/a/c.tif``, georeferenced) and are written atomically by the
actors. Outputs that already exist are skipped, so an interrupted run continues where it
stopped. Failed files are reported on stderr as they happen and listed (path and reason) in
``OUT_DIR/convert_summary.json``. The progress bar counts files, and a second one the tiles
of the rasters being translated (actors report them to the run's registry actor).

Either folder may be an object-storage prefix (``s3://BUCKET/PREFIX``, any fsspec URL): the input prefix is listed
once and each actor fetches the files it translates; the output prefix is listed once at the start, so what is done
is known from the output side and a second run continues the first; each output is translated into a local
temporary file and uploaded as one object (a PUT is all or nothing: no half outputs). An output prefix has no lock or
fence: an object is whole whoever writes it, and two runs would write the same ones.

A multimodal model (BicycleGAN's) gives ``--samples K`` outputs per input, named by index
(``OUT_DIR/a/b_0.png`` ... ``b_{K-1}.png``), from K latent codes drawn once from ``--seed``: every
input gets the same K codes, and the same seed the same outputs. An input counts as done when all K
are there.

:class:`ConvertOptions` holds the command's settings (its flags) and their defaults.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from training import local_ray
from translate.engines import choose
from translate.errors import ConfigError, DataError, TranslateError
from translate.files import write_text_atomic
from translate.imageio import IMAGE_EXTENSIONS, RASTER_EXTENSIONS, is_image_file, is_raster_file, output_name
from translate.latents import sample_paths
from translate.object_storage import ObjectPath, ObjectTree, get_file, is_url, put_bytes, put_file
from translate.options import opt, redefault
from translate.predictor import MAX_SAMPLES, RuntimeOptions
from translate.raster import RasterOptions
from translate.tiling import TileConfig

from . import folder_lock
from .store import ModelStore, check_name, parse_model_id

SUMMARY_NAME = "convert_summary.json"
FORMATS = ("png", "jpg")
DEVICES = ("auto", "cpu", "cuda")
ACTOR_CPUS = 0.5  # per actor: fractional, so Ray Data's own tasks always find a CPU
READ_CPUS = 0.25
CANCELLED = "cancelled"  # the error a file gets when its run ended before it was written


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


def output_path(out_dir: Path | ObjectPath, rel: Path, fmt: str) -> Path | ObjectPath:
    return out_dir / output_name(rel, fmt)


def folder(value: str | os.PathLike, field: str) -> Path | ObjectPath:
    """A folder of convert's: a local one (absolute), or an object-storage prefix listed now (never a listing cached
    from before: the output side is what tells a resumed run what is done)."""
    return ObjectTree(str(value), field=field).root() if is_url(value) else Path(value).resolve()


def output_paths(out_dir: Path | ObjectPath, rel: Path, fmt: str, samples: int) -> list:
    """Where the outputs of ``rel`` go: its output path, or one per sample named by index."""
    return sample_paths(output_path(out_dir, rel, fmt), samples)


def plan(in_dir: Any, out_dir: Any, fmt: str, samples: int = 1) -> tuple[list, list, list[dict[str, str]], int]:
    """(files to convert, files already converted, failures known up front, image files found).

    ``in_dir``, ``out_dir``: what :func:`folder` gives (a :class:`Path` or an :class:`ObjectPath`, the same
    interface here).

    Files are absolute; temporary files a killed run left next to an output still to
    write are removed; two inputs that would write the same output (``a.png``, ``a.jpg``)
    are both refused rather than overwriting each other.
    """
    files = sorted(f for f in in_dir.rglob("*") if f.is_file() and (is_image_file(f) or is_raster_file(f))
                   and not _inside(f, out_dir))
    by_output: dict[Any, list] = {}
    for f in files:
        by_output.setdefault(output_path(out_dir, f.relative_to(in_dir), fmt), []).append(f)
    todo, done, failed = [], [], []
    for dst, srcs in by_output.items():
        if len(srcs) > 1:
            names = ", ".join(str(s.relative_to(in_dir)) for s in srcs)
            failed += [{"path": str(s), "reason": f"inputs {names} would all write {dst.name}"} for s in srcs]
        elif all(p.exists() for p in sample_paths(dst, samples)):
            done.append(srcs[0])
        else:
            todo.append(srcs[0])
            for p in sample_paths(dst, samples):
                _remove_temps(p)  # half a file from a run killed mid-write
    return todo, done, failed, len(files)


def _inside(path: Path | ObjectPath, folder: Path | ObjectPath) -> bool:
    return folder == path or folder in path.parents


class _Unlocked:
    """The lock of an output prefix in object storage: none (see the module doc)."""

    run = ""

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


class Translator:
    """The mapped callable: one Predictor per actor; a batch of paths -> per-file status.

    Every output is written inside the run's fence (:func:`serving.folder_lock.fenced`): once the
    run has ended (Ctrl-C, SIGTERM, an error in the driver), what is still in flight writes nothing,
    and the rest of the batch is not even translated."""

    def __init__(self, model: Any, in_dir: str, out_dir: str, fmt: str, device: str, threads: int, run: str = "",
                 registry: str = "", raster: RasterOptions | None = None, model_name: str = "", tiling=None,
                 codes: np.ndarray | None = None, engine: str = "auto"):
        from translate.predictor import Predictor  # lazy: ONNX Runtime, in the actor process

        if not isinstance(model, (bytes, str, os.PathLike)):  # an ObjectRef to the exported bytes
            import ray

            model = ray.get(model)
        # engine "auto" is resolved here, by the actor's own CPU
        self.predictor = Predictor(model, device=device, threads=threads, tiling=tiling,
                                   runtime=RuntimeOptions(engine=engine))
        self.in_dir, self.out_dir, self.fmt, self.run = in_dir.rstrip("/"), out_dir.rstrip("/"), fmt, run
        self.raster, self.model_name = raster or RasterOptions(), model_name or None
        self.codes = codes  # a multimodal model's latent codes, one output each; None: one output, the default code
        self.registry = None
        if registry:  # tell the driver who we are, so an interrupted run can stop us
            import socket

            import ray

            me = ray.get_runtime_context().current_actor
            self.registry = ray.get_actor(registry)
            ray.get(self.registry.add.remote(me, socket.gethostname(), os.getpid()))
        if run:
            folder_lock.check(Path(self.out_dir), run)  # the run ended while this actor started: no work

    def _guard(self):
        return folder_lock.fenced(Path(self.out_dir), self.run) if self.run else contextlib.nullcontext()

    def _translate(self, path: str, rel: str, progress) -> None:
        """Translate ``path`` (``rel`` under the input folder) into its outputs (one, or one per latent code of a
        multimodal model), fetching and uploading the files that live in object storage through a local temporary
        folder."""
        from translate.raster import translate_path  # lazy: GDAL, in the actor process

        codes = [None] if self.codes is None else list(self.codes)
        names = sample_paths(output_name(rel, self.fmt), len(codes))
        with tempfile.TemporaryDirectory(prefix="i2i-convert-") as tmp:
            src = Path(tmp, "in", Path(rel).name) if is_url(path) else Path(path)
            if is_url(path):
                get_file(path, src)
            for name, z in zip(names, codes, strict=True):
                if self.run:
                    folder_lock.check(Path(self.out_dir), self.run)  # ended: do not spend the CPU
                dst = f"{self.out_dir}/{name.as_posix()}"
                out = Path(tmp, "out", Path(dst).name) if is_url(dst) else Path(dst)
                out.parent.mkdir(parents=True, exist_ok=True)
                try:
                    translate_path(self.predictor, src, out, self.raster, model=self.model_name,
                                   write_guard=self._guard if not is_url(dst) else None, progress=progress, z=z)
                except folder_lock.RunCancelled:
                    raise  # the run ended mid-file: a cancellation, not this file's error
                except TranslateError as e:  # name the file the user knows, not its local copy
                    raise TranslateError(str(e).replace(str(src), path)) from None
                if is_url(dst):
                    put_file(out, dst)

    def _tiles(self, path: str) -> Callable[[int, int], None] | None:
        """A progress callback that reports a file's tiles to the driver (at most twice a second; the
        last report is waited for, so it is in before the file's result)."""
        registry = self.registry
        if registry is None:
            return None
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total:
                import ray

                ray.get(registry.tiles.remote(path, done, total))
            elif now - last[0] >= 0.5:
                last[0] = now
                registry.tiles.remote(path, done, total)  # fire and forget

        return report

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths, errors = [], []
        for path in batch["path"]:
            path = str(path)
            rel = path[len(self.in_dir) + 1:] if is_url(path) else Path(path).relative_to(self.in_dir).as_posix()
            try:
                if self.run:
                    folder_lock.check(Path(self.out_dir), self.run)  # ended: do not spend the CPU
                self._translate(path, rel, self._tiles(path))
                errors.append("")
            except folder_lock.RunCancelled as e:
                errors.append(f"{CANCELLED}: {e}")
            except TranslateError as e:
                errors.append(str(e))
            except Exception as e:  # one bad file must not stop the job
                errors.append(f"{path}: {e.__class__.__name__}: {e}")
            paths.append(path)
        return {"path": np.array(paths, dtype=object), "error": np.array(errors, dtype=object)}


def _resources(workers: int, device: str) -> tuple[int, float, float, int]:
    """(actors, CPUs per actor, GPUs per actor, ONNX Runtime threads per actor)."""
    import ray

    from translate.predictor import cuda_available  # lazy: ONNX Runtime

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


@dataclass(frozen=True)
class ConvertOptions(RasterOptions):
    """The settings of ``translate convert`` (its flags, through :func:`translate.options.add_arguments`);
    how rasters are read and written comes from :class:`translate.raster.RasterOptions`."""

    workers: int = opt(2, "model actors, each holding one predictor")
    format: str = opt("png", "format of the written images", choices=FORMATS)
    device: str = opt("auto", "where the model runs", choices=DEVICES)
    engine: str = redefault(RuntimeOptions, "engine", "auto")
    direction: str | None = opt(None, "AtoB or BtoA, for checkpoints holding both")
    store: str | None = opt(None, "read MODEL (NAME or NAME@VERSION) from this model store, a folder or "
                            "s3://BUCKET/PREFIX: its promoted version unless a version is named")
    quiet: bool = opt(False, "no progress bar")
    samples: int = opt(1, "outputs per input of a multimodal model (BicycleGAN's), named NAME_0, NAME_1...; at most "
                       f"{MAX_SAMPLES}")
    seed: int = opt(0, "seed of the samples' latent codes (the same K codes for every input; the same seed, the "
                    "same outputs)")

    def kwargs(self) -> dict[str, Any]:
        """These options as :func:`convert`'s keyword arguments."""
        return {"workers": self.workers, "fmt": self.format, "device": self.device, "engine": self.engine,
                "direction": self.direction,
                "progress": not self.quiet, "store": self.store, "raster": RasterOptions.of(self),
                "samples": self.samples, "seed": self.seed}


def convert(model: str | os.PathLike, in_dir: str | os.PathLike, out_dir: str | os.PathLike,
            workers: int = ConvertOptions.workers, fmt: str = ConvertOptions.format,
            device: str = ConvertOptions.device, direction: str | None = None, progress: bool = True,
            on_result: Callable[[str, str], None] | None = None, batch_size: int = 4,
            store: str | os.PathLike | None = None, raster: RasterOptions | None = None,
            tiling: TileConfig | None = None, samples: int = 1, seed: int = 0,
            engine: str = ConvertOptions.engine) -> ConvertSummary:
    """Translate every image and raster under ``in_dir`` into ``out_dir`` (same relative paths) on Ray Data.

    Starts a local Ray when none is running (and stops it afterwards). ``on_result(path,
    error)`` is called in the driver as each file finishes (error "" on success).
    Returns the summary, also written to ``out_dir/convert_summary.json``.

    ``store``: ``model`` is NAME or NAME@VERSION (NAME: its promoted version) in this model store,
    a folder or an object-storage URL. The driver reads it once through the store (checksum-verified)
    and the actors, on whatever node, get its bytes from Ray's object store.

    ``raster``: how rasters are read and written (bands, stretch, compression, COG); a batch holds one
    file when there are rasters, so each is reported as soon as it is written. ``tiling``: the
    predictors' (default: :class:`translate.tiling.TileConfig`'s defaults, as ``translate predict``).
    ``samples``: outputs per input of a multimodal model, from codes drawn from ``seed`` (see the module).
    ``engine``: what runs the model in each actor (see :class:`translate.predictor.RuntimeOptions`).
    """
    from translate.loading import model_source  # lazy: torch, for checkpoints

    if store is not None:
        models = ModelStore(store)
        name, version = parse_model_id(str(model)) if "@" in str(model) else (check_name(str(model)), None)
        version = models.resolve(name, version)  # NotFoundError before anything is written
        model = f"{name}@{version} in {models.url}"  # what the summary names
    if fmt not in FORMATS:
        raise ConfigError("--format", f"expected one of {FORMATS}, got {fmt!r}")
    if workers < 1:
        raise ConfigError("--workers", f"must be >= 1, got {workers}")
    if not 1 <= samples <= MAX_SAMPLES:
        raise ConfigError("--samples", f"must be a whole number from 1 to {MAX_SAMPLES}, got {samples}")
    try:  # OpenVINO not installed, or asked for CUDA: said here, before any actor starts
        choose(engine, device=device)
    except ConfigError as e:
        raise ConfigError(f"--{e.field}", e.reason) from None
    if engine == "openvino":
        device = "cpu"  # OpenVINO runs on the CPU: no actor holds a GPU
    in_root, out_root = folder(in_dir, "in_dir"), folder(out_dir, "out_dir")
    if not in_root.is_dir():
        raise DataError(f"{in_dir}: no such folder")
    lock: folder_lock.FolderLock | _Unlocked = folder_lock.FolderLock(out_root) if isinstance(out_root, Path) \
        else _Unlocked()
    lock.acquire()  # ConfigError naming the owner when another run is writing here
    summary = None
    started = time.perf_counter()
    try:
        todo, done, failed, total = plan(in_root, out_root, fmt, samples)  # under the lock: temps left are nobody's
        if total == 0:
            known = ", ".join(dict.fromkeys(IMAGE_EXTENSIONS + RASTER_EXTENSIONS))
            raise DataError(f"{in_dir}: no image files ({known})")
        summary = ConvertSummary(str(model), str(in_root), str(out_root), fmt, total=total, skipped=len(done),
                                 failed=list(failed))
        for f in failed:
            print(f"failed: {f['path']}: {f['reason']}", file=sys.stderr)
        source = (models.model_path(name, version).read_bytes() if store is not None  # ModelError here, before
                  else model_source(model, direction))                               # any worker starts
        if todo:
            if any(is_raster_file(f) for f in todo):
                batch_size = 1
            codes = _sample_codes(source, samples, seed)  # ConfigError or ModelError here, before Ray starts
            _run_on_ray(source, todo, in_root, out_root, fmt, workers, device, progress, batch_size, summary,
                        on_result, lock, raster or RasterOptions(), tiling, codes, engine)
    finally:
        if summary is not None:  # also what an interrupted run did before it stopped
            summary.seconds = round(time.perf_counter() - started, 3)
            if isinstance(out_root, Path):
                write_text_atomic(out_root / SUMMARY_NAME, summary.to_json())
            else:
                put_bytes(f"{out_root}/{SUMMARY_NAME}", summary.to_json().encode())
        lock.release()
    return summary


def _sample_codes(source: Path | bytes, samples: int, seed: int) -> np.ndarray | None:
    """The latent codes of ``samples`` outputs per input (drawn once, from ``seed``), None for one output; loading
    the model here, in the driver, a model ONNX Runtime cannot load and a one-answer model asked for samples fail
    before any worker starts."""
    from translate.predictor import Predictor  # lazy: ONNX Runtime

    probe = Predictor(source, device="cpu")
    try:
        return probe.latents(samples, seed) if samples > 1 else None
    except ConfigError as e:
        raise ConfigError(f"--{e.field}", e.reason) from None


def _run_on_ray(source, todo, in_root, out_root, fmt, workers, device, progress, batch_size, summary, on_result,
                lock, raster, tiling, codes, engine):
    """Run the conversion on the current Ray (or a local one started and stopped here).

    However it ends (done, Ctrl-C, SIGTERM, an error), nothing of this run writes after it returns:
    on an interruption the fence is closed first (writes in flight finish, later ones refuse), then
    every actor of the run is killed and waited for, and half-written files are removed."""
    import ray

    own_ray = not ray.is_initialized()
    if own_ray:
        local_ray.init()
    registry = _start_registry(f"convert-{lock.run}")
    try:
        _run(source, todo, in_root, out_root, fmt, workers, device, progress, batch_size, summary, on_result,
             lock.run, f"convert-{lock.run}", raster, tiling, codes, engine)
    except BaseException:
        lock.release()  # the fence: from here on no actor of this run writes
        left = stop_workers(registry)
        if left:
            print(f"warning: convert workers {left} were still running after 30 s; they can no longer write",
                  file=sys.stderr)
        for f in todo:
            for dst in output_paths(out_root, f.relative_to(in_root), fmt, 1 if codes is None else len(codes)):
                _remove_temps(dst)
        raise
    finally:
        ray.kill(registry)
        if own_ray:
            ray.shutdown()


class _Registry:
    """The actors of one run (handle, host, pid), as they start: Ray Data keeps its actors to itself.
    Also the tiles of the files being translated, as the actors report them, for the progress bar."""

    def __init__(self):
        self.workers: list = []
        self.tile_counts: dict[str, tuple[int, int]] = {}

    def add(self, handle, host: str, pid: int) -> None:
        self.workers.append((handle, host, pid))

    def list(self) -> list:
        return self.workers

    def tiles(self, path: str, done: int, total: int) -> None:
        self.tile_counts[path] = (done, total)

    def tile_totals(self) -> tuple[int, int]:
        """(tiles done, tiles planned) over every file that has reported."""
        counts = list(self.tile_counts.values())
        return sum(d for d, _ in counts), sum(t for _, t in counts)


def _start_registry(name: str):
    import ray

    return ray.remote(num_cpus=0, max_restarts=0)(_Registry).options(name=name).remote()


def stop_workers(registry, timeout: float = 30.0) -> list[int]:
    """Kill every actor that registered with ``registry`` and wait for this host's ones to exit.

    Returns the pids still alive after ``timeout`` (they can no longer write: the fence is closed).
    An actor that registers after this look finds the run ended in its constructor and does no work."""
    import socket

    import ray

    workers = ray.get(registry.list.remote())
    for handle, _, _ in workers:
        ray.kill(handle, no_restart=True)
    here = socket.gethostname()
    pending = [pid for _, host, pid in workers if host == here]
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if folder_lock.process_alive(pid)]
        time.sleep(0.02 if pending else 0)
    return pending


def _remove_temps(dst: Path | ObjectPath) -> None:
    """Remove the temporary files a killed writer of ``dst`` left (see files.atomic_path); an object has none."""
    if isinstance(dst, ObjectPath):
        return
    for stale in dst.parent.glob(f".{glob.escape(dst.stem)}.*.tmp{dst.suffix}") if dst.parent.is_dir() else []:
        stale.unlink(missing_ok=True)


def _run(source, todo, in_root, out_root, fmt, workers, device, progress, batch_size, summary, on_result, run,
         registry, raster, tiling, codes, engine):
    import onnx
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    # the bytes, never a path: the actors may run on nodes that do not have the file (a model's external
    # weights, as the dynamo exporter writes them, are read in with it)
    model: Any = ray.put(source if isinstance(source, bytes) else onnx.load(str(source)).SerializeToString())
    workers, cpus, gpus, threads = _resources(workers, device)
    context = DataContext.get_current()
    bars, context.enable_progress_bars = context.enable_progress_bars, False  # ours below counts files
    # paths, not bytes: a raster is read by windows where it is translated (the folder must be
    # readable there, as Ray Data's own file readers need too)
    ds = ray.data.from_items([{"path": str(f)} for f in todo], override_num_blocks=min(len(todo), 4 * workers))
    ds = ds.map_batches(Translator, batch_size=batch_size, compute=ActorPoolStrategy(size=workers),
                        num_cpus=cpus, num_gpus=gpus,
                        fn_constructor_args=(model, str(in_root), str(out_root), fmt,
                                             "cuda" if gpus else "cpu", threads, run, registry, raster,
                                             summary.model, tiling, codes, engine))
    try:
        _collect(ds, len(todo), progress, summary, on_result,
                 ray.get_actor(registry) if progress and any(is_raster_file(f) for f in todo) else None)
    finally:
        context.enable_progress_bars = bars


def _collect(ds, count, progress, summary, on_result, registry=None):
    """Gather the per-file results; with ``registry``, a second bar follows the tiles the actors report."""
    from tqdm.auto import tqdm

    with tqdm(total=count, desc="convert", unit="img", disable=not progress, file=sys.stderr) as bar, \
            _TileBar(registry) as _:
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


class _TileBar:
    """A progress bar of the tiles reported to the run's registry actor, polled by a thread twice a second."""

    def __init__(self, registry):
        self.registry = registry
        self.stop = None

    def __enter__(self):
        if self.registry is None:
            return self
        import threading

        from tqdm.auto import tqdm

        self.bar = tqdm(total=0, desc="tiles", unit="tile", position=1, file=sys.stderr)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _update(self) -> None:
        import ray

        try:
            done, total = ray.get(self.registry.tile_totals.remote(), timeout=5)
        except Exception:  # the run is ending; the bar is only a view
            return
        self.bar.total = max(total, self.bar.total or 0)
        self.bar.update(done - self.bar.n)

    def _poll(self) -> None:
        while not self.stop.wait(0.5):
            self._update()

    def __exit__(self, *exc):
        if self.stop is not None:
            self.stop.set()
            self.thread.join(timeout=10)
            if exc[0] is None:
                self._update()  # the last files' final counts
            self.bar.close()
        return False
