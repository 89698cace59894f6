"""Data-parallel training on Ray Train: N processes, one run directory, the same run as one process.

``translate train ... --processes N`` runs the trainer in N Ray Train workers (``TorchTrainer``:
torch.distributed with gloo on CPU, NCCL on GPU), on a local Ray or an existing cluster
(``--address``). Each process takes ``--batch-size`` samples a step from one global sample order
(``translate.data.EpochSampler``'s shard), so N processes at batch b see exactly the samples of one
process at batch N * b, and the learning-rate schedule counts global steps.

Each process is the shared loop (``training.process_loop``) given its :class:`training.world.World`,
which this module builds from Ray Train's context; the loop knows nothing of Ray.

Gradients are averaged across processes by a hook before every optimizer step
(:meth:`World.average_gradients`, one flat all-reduce per step, as NVlabs' stylegan3 does),
not by wrapping networks in ``DistributedDataParallel``: a GAN step breaks DDP's assumptions (D
called several times before one backward, D frozen and not reduced while G's loss flows through
it, the gradient penalty's double backward, G skipping steps under ``n_critic``), while averaging
what each optimizer is about to apply is right for all of them. Rank 0 alone writes the run
directory (config, metrics, TensorBoard, samples, validation, checkpoints, export); a checkpoint
also keeps every process's RNG state and per-process state (CycleGAN's image pools), so a resume
with the same number of processes is exact, and one with another number re-splits the order.

The driver (the ``translate`` process) shows progress from the metrics the run writes; Ctrl-C or
SIGTERM asks every process to stop after the current step with a checkpoint (a second Ctrl-C kills
them).
"""
from __future__ import annotations

import json
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from translate.errors import ConfigError, TranslateError
from translate.object_storage import is_url

from . import method as lookup
from .process_loop import ProcessLoop, open_run
from .run_storage import RunStorage
from .world import STOP_FILE, World


@dataclass(frozen=True)
class Placement:
    """Where the processes run: resources per process and the backend that fits them."""

    processes: int
    cpus: float
    gpus: float
    threads: int

    @property
    def backend(self) -> str:
        return "nccl" if self.gpus > 0 else "gloo"


def placement(config, cluster_cpus: float, local: bool) -> Placement:
    """Resources per process from the config (None = auto) and what the Ray cluster has."""
    n = config.processes
    if config.cpus_per_process is not None:
        cpus = float(config.cpus_per_process)
    else:  # a local Ray: share this machine's CPUs; a cluster: one each unless told
        cpus = max(1.0, float(int(cluster_cpus // n))) if local else 1.0
    if config.gpus_per_process is not None:
        gpus = float(config.gpus_per_process)
    else:
        gpus = 1.0 if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else 0.0
    if config.device == "cpu" and gpus:
        raise ConfigError("gpus_per_process", "--device cpu with GPUs per process")
    if config.sync_batchnorm and not gpus:
        raise ConfigError("sync_batchnorm", "SyncBatchNorm runs on GPUs only (torch has no CPU kernel for it); on CPU "
                          "each process normalises by its own batch (or use --norm instance)")
    if local and cpus * n > cluster_cpus:
        raise ConfigError("processes", f"{n} processes x {cpus:g} CPUs need {cpus * n:g} CPUs; this machine's Ray "
                          f"has {cluster_cpus:g} (lower --processes or --cpus-per-process)")
    return Placement(n, cpus, gpus, max(1, int(cpus)))


# ------------------------------------------------------------------ the driver
def fit(method_name: str, config, run_dir: Path, resume: bool, overrides: dict[str, Any], total: int | None,
        start: int = 0) -> Path:
    """Run ``config.processes`` training processes on Ray Train and wait for them; returns the run directory.

    ``total`` / ``start``: the run's length and where it starts, for the progress bar (None: unknown)."""
    import ray

    from .local_ray import init as init_ray  # lazy: Ray, only for multi-process runs

    own = not ray.is_initialized()
    if own:
        init_ray(address=config.address)  # None: a local Ray for this run
    stop = _StopRequest(run_dir, RunStorage(config.out) if is_url(config.out) else None)
    try:
        place = placement(config, ray.cluster_resources().get("CPU", 0.0), local=config.address is None)
        stop.clear()
        # the processes open the run where it lives: a folder every node sees, or its object storage
        args = dict(method=method_name, config=config.to_dict(), run_dir=config.out, resume=resume,
                    overrides=overrides, threads=place.threads)
        print(f"training on {place.processes} processes ({place.cpus:g} CPU" + (f", {place.gpus:g} GPU" if place.gpus
              else "") + f" each, {place.backend}); the run writes to {run_dir}", flush=True)
        _run_and_watch(_trainer(args, place, run_dir), run_dir, total, start, stop, bar=config.progress)
    finally:
        stop.clear()
        shutil.rmtree(run_dir / ".ray_train", ignore_errors=True)  # Ray Train's own records of the run
        if own:
            ray.shutdown()
    return run_dir


def _trainer(args: dict, place: Placement, run_dir: Path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    resources = {"CPU": place.cpus, **({"GPU": place.gpus} if place.gpus else {})}
    return TorchTrainer(
        _worker, train_loop_config=args,
        scaling_config=ScalingConfig(num_workers=place.processes, use_gpu=place.gpus > 0,
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend=place.backend),
        # Ray Train's own files; the run's checkpoints are ours (rank 0 writes them into the run directory)
        run_config=RunConfig(storage_path=str(run_dir / ".ray_train"), name="train"))


class _StopRequest:
    """The driver's request that every process stop after the current step: a file in the run directory, or an
    object in the run's object storage (rank 0 may run on a node that does not see this one's disk)."""

    def __init__(self, run_dir: Path, storage: RunStorage | None):
        self.run_dir, self.storage = run_dir, storage

    def make(self) -> None:
        if self.storage is not None:
            self.storage.request_stop()
        else:
            (self.run_dir / STOP_FILE).write_text("stop after this step\n")

    def clear(self) -> None:
        if self.storage is not None:
            self.storage.clear_stop()
        (self.run_dir / STOP_FILE).unlink(missing_ok=True)


def _run_and_watch(trainer, run_dir: Path, total: int | None, start: int, stop: _StopRequest,
                   bar: bool = True) -> None:
    """``trainer.fit()`` in a thread while this one follows the run (a progress bar unless ``bar`` is False, as
    ``--no-progress`` asks; validation lines either way) and turns Ctrl-C into a clean stop."""
    outcome: dict[str, BaseException | None] = {"error": None}

    def run() -> None:
        try:
            trainer.fit()
        except BaseException as e:  # noqa: BLE001 (re-raised in the caller's thread)
            outcome["error"] = e

    thread = threading.Thread(target=run, name="ray-train", daemon=True)
    thread.start()
    progress = _Progress(run_dir, total, start, bar)
    stopping = False
    try:
        while thread.is_alive():
            try:
                thread.join(0.5)
                progress.update()
            except KeyboardInterrupt:
                if stopping:
                    raise
                stopping = True
                stop.make()
                progress.write("interrupted: every process finishes this step, then a checkpoint is written "
                               "(Ctrl-C again to kill them)")
    finally:
        progress.update()
        progress.close()
    if outcome["error"] is not None:
        raise _worker_error(outcome["error"]) from None


def _worker_error(e: BaseException) -> BaseException:
    """The first failed process's own error when it is one of ours (the CLI prints it in one line)."""
    failures = getattr(e, "worker_failures", None) or {}
    for rank in sorted(failures):
        cause = failures[rank]
        while cause is not None and not isinstance(cause, TranslateError):
            cause = cause.__cause__ or getattr(cause, "cause", None)
        if cause is not None:
            return cause
    if failures:
        rank = min(failures)
        return TranslateError(f"training process {rank} failed: {failures[rank].__class__.__name__}: {failures[rank]}")
    return e


class _Progress:
    """A progress bar in the driver, fed by the metrics the run's rank 0 writes."""

    def __init__(self, run_dir: Path, total: int | None, start: int, bar: bool = True):
        from tqdm.auto import tqdm

        self.path, self.offset = run_dir / "metrics.jsonl", 0
        self.bar = tqdm(total=total, initial=start, unit="step", desc=f"train {run_dir.name}", dynamic_ncols=True,
                        disable=not bar)

    def update(self) -> None:
        if not self.path.exists():
            return
        with open(self.path) as f:
            f.seek(self.offset)
            lines = f.read().splitlines(keepends=True)
        for line in lines:
            if not line.endswith("\n"):
                break  # half a line: read it whole next time
            self.offset += len(line.encode())
            try:
                row = json.loads(line)
            except ValueError:
                continue
            step = int(row.get("step", 0))
            if step > self.bar.n:
                self.bar.update(step - self.bar.n)
            vals = {k: v for k, v in row.items() if k.startswith("val/") and isinstance(v, (int, float))}
            if vals:  # the line a one-process run prints (training.loop)
                self.bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in vals.items()))
            elif "lr" in row:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in row.items()
                                      if k not in ("step", "epoch", "lr", "it_per_s") and isinstance(v, float)})

    def write(self, text: str) -> None:
        self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


# ------------------------------------------------------------------ a process
def _worker(args: dict) -> None:
    """One training process (a Ray Train worker): the shared loop, told its place in the world."""
    import ray.train

    ctx = ray.train.get_context()
    world = World(rank=ctx.get_world_rank(), size=ctx.get_world_size(), local_rank=ctx.get_local_rank())
    torch.set_num_threads(args["threads"])
    method = lookup(args["method"])
    if args["resume"]:  # the writer (rank 0) needs the run's files where it runs; the others, the checkpoint
        run = open_run(method, method.config_class(), resume=args["run_dir"], overrides=args["overrides"],
                       run_files=world.rank == 0)
    else:  # the driver opened it (checked that the URL holds no run)
        run = open_run(method, method.config_class.from_dict(args["config"]), run_files=False)
    ProcessLoop(method, run, world).fit()


__all__ = ["Placement", "placement", "fit"]
