"""The one training loop every method shares, as each process runs it.

A method (see :class:`training.method_base.Method`) brings its networks, optimizers, losses and
``step``; this loop owns the rest: device and AMP, data loading in worker processes with a
resumable order, the learning-rate schedule, checkpoints (atomic, complete enough for exact
resumption), metrics JSONL + TensorBoard, sample grids, validation by the task's score with the best
checkpoint kept beside the latest, progress bar, a clean stop on Ctrl-C or a time limit, and the ONNX
export at the end (of the best checkpoint when the run kept one).

It runs alone, or as one process of a data-parallel run when it is given a
:class:`training.world.World` (gradients averaged, rank 0 writing the run directory). It never
starts processes: ``training.distributed`` starts them on Ray Train and runs this loop in each,
and ``training.loop.Trainer`` chooses between the two.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from translate.checkpoint import BEST_RECORD, CHECKPOINT_FORMAT, load_checkpoint, resolve_checkpoint
from translate.data import EpochSampler
from translate.errors import ConfigError
from translate.files import atomic_path, write_text_atomic
from translate.imageio import save_image, tensor_to_array
from translate.object_storage import is_url
from translate.task_score import Score

from .config import TrainConfig, resolved
from .method_base import Method, Validation, dataset_size, to_device
from .run_storage import RunStorage
from .world import World, stop_requested

log = logging.getLogger(__name__)

#: What a resume may change: how long, where and how fast the run goes, and how it reports; never its math.
#: The number of processes may change too: the global sample order is re-split over the new count.
RESUMABLE_OVERRIDES = ("steps", "epochs", "device", "workers", "progress", "time_limit", "amp", "compile",
                       "log_every", "val_every", "sample_every", "checkpoint_every", "export", "processes", "address",
                       "cpus_per_process", "gpus_per_process")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was asked for but no CUDA GPU is visible")
    return torch.device(name)



# ----------------------------------------------------------------- run directory


def new_run_dir(config: TrainConfig) -> Path:
    if config.out:
        return Path(config.out)
    base = Path("runs")
    stem = f"{config.method}-{Path(config.data.rstrip('/')).name or 'data'}"
    nums = [int(m.group(1)) for p in base.glob(f"{stem}-*") if (m := re.fullmatch(rf"{re.escape(stem)}-(\d+)", p.name))]
    return base / f"{stem}-{max(nums, default=0) + 1:03d}"


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_lambda(total: int, decay_fraction: float):
    """The reference's linear rule: constant, then linear decay over the last part.

    With ``total`` units split into n_const + n_decay: factor(t) = 1 - max(0, t + 1 - n_const) / (n_decay + 1),
    the scheduler stepping at the end of each unit (epoch, or step when training by steps).
    """
    n_decay = int(round(total * decay_fraction))
    n_const = total - n_decay
    return lambda t: 1.0 - max(0, t + 1 - n_const) / float(n_decay + 1)


def _worker_init(_: int) -> None:
    # Ctrl-C is handled by the main process, which stops after the current step
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class OpenRun:
    """A run ready to train: its config (a resumed run's own, with the overrides a resume may make), its
    directory (for a run in object storage: its local working copy), the checkpoint it resumes from (None: it
    starts), and the object storage it is uploaded to (None: it stays on disk)."""

    config: TrainConfig
    run_dir: Path
    checkpoint: dict[str, Any] | None = None
    storage: RunStorage | None = None

    @property
    def step(self) -> int:
        """Steps done before this start."""
        return int(self.checkpoint["step"]) if self.checkpoint is not None else 0


def open_run(method_class: type[Method], config: TrainConfig, resume: str | os.PathLike | None = None,
             overrides: dict[str, Any] | None = None, run_files: bool = True) -> OpenRun:
    """A new run of ``config`` (validated; its directory must not hold a run), or with ``resume`` the run in that
    directory, from its latest checkpoint, with ``overrides`` of the fields a resume may change.

    A directory that is an object-storage URL is worked on in a local copy (training.run_storage); ``run_files``:
    this process opens the run for its writer (alone, the driver, or rank 0 on resume): a new run's URL is checked
    and its working copy started empty, a resumed run's files are downloaded, not only its checkpoint."""
    checkpoint, storage = None, None
    if resume is not None and is_url(resume):
        storage = RunStorage(str(resume))
        run_dir = storage.download(run_files)
    elif resume is not None:
        run_dir = Path(resume)
    if resume is not None:
        ckpt_path = latest_checkpoint(run_dir)
        checkpoint = load_checkpoint(ckpt_path)
        if checkpoint["method"] != method_class.name:
            raise ConfigError("resume", f"{ckpt_path} is a {checkpoint['method']} run, not {method_class.name}")
        config = method_class.config_class.from_dict({k: v for k, v in checkpoint["config"].items() if k != "method"})
        for k, v in (overrides or {}).items():
            if k not in RESUMABLE_OVERRIDES:
                raise ConfigError(k, "cannot be changed when resuming (it would change the run's math)")
            setattr(config, k, v)
    elif is_url(config.out):
        config.validate()
        storage = RunStorage(config.out)
        if run_files:
            storage.check_new()
        run_dir = storage.local
    else:
        config.validate()
        run_dir = new_run_dir(config)
        if (run_dir / "checkpoints" / "latest.pt").exists():
            raise ConfigError("out", f"{run_dir} already holds a run: use --resume {run_dir}")
    config.out = storage.url if storage is not None else str(run_dir)
    return OpenRun(config, run_dir, checkpoint, storage)


class ProcessLoop:
    """Runs a method to completion in this process, alone or as one process of a data-parallel ``world``."""

    def __init__(self, method_class: type[Method], run: OpenRun, world: World | None = None):
        """``world``: this process's place in a data-parallel run (given by training.distributed's workers)."""
        self.method_class, self.world = method_class, world
        self.config, self.run_dir, self.checkpoint, self.step = run.config, run.run_dir, run.checkpoint, run.step
        self.storage = run.storage
        config = self.config
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop sizes: let cuDNN pick the fastest kernels
        _seed_everything(config.seed)  # every process builds the same networks
        self.method = method_class(config, self.device)
        self.train_set, self.val_set = self.method.datasets()
        if self.method.sized_by_batch:
            self.method.size_networks(self._first_batch())
        if config.compile:
            self.method.compile()
        self.last_val: dict[str, float] = {}
        self.best: dict[str, Any] | None = None  # the best validation score's step and score (best_record)
        self.samples_seen = 0
        if world is not None:
            self._join(world)
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        elif config.init_from:
            self._init_networks(config.init_from)

    def _first_batch(self) -> dict:
        """The first ``batch_size`` training items, collated, on the device: what a method sized by its data
        measures (read by index, outside the sampler's order, which starts untouched)."""
        n = min(resolved(self.config.batch_size), dataset_size(self.train_set))
        return to_device(torch.utils.data.default_collate([self.train_set[i] for i in range(n)]), self.device)

    def _join(self, world: World) -> None:
        """Make this process one of ``world``'s: the same networks, gradients averaged before every
        optimizer step, its own random streams for what it samples (dropout, latents, pools)."""
        for net in self.method.networks.values():
            if self.config.sync_batchnorm:
                torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            world.broadcast_module(net)
        for opt in self.method.optimizers.values():
            world.hook_optimizer(opt)
        if world.rank:  # rank 0 keeps the single process's streams
            _seed_everything(self.config.seed + 1_000_003 * world.rank)

    @property
    def processes(self) -> int:
        return self.world.size if self.world is not None else 1

    @property
    def is_main(self) -> bool:
        return self.world is None or self.world.is_main

    # ------------------------------------------------------------------ set-up
    @property
    def steps_per_epoch(self) -> int:
        return max(1, dataset_size(self.train_set) // (resolved(self.config.batch_size) * self.processes))

    @property
    def total_steps(self) -> int:
        c = self.config
        steps = resolved(c.steps)
        if steps > 0:
            return steps
        if c.epochs > 0:
            return c.epochs * self.steps_per_epoch
        raise ConfigError("steps", "give --steps N or --epochs N")

    def _make_schedulers(self) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        c = self.config
        steps = resolved(c.steps)
        units = steps if steps > 0 else c.epochs
        rule = lr_lambda(units, resolved(c.decay_fraction))
        return {k: torch.optim.lr_scheduler.LambdaLR(o, rule) for k, o in self.method.optimizers.items()}

    def _restore(self, ckpt: dict[str, Any]) -> None:
        for k, sd in ckpt["networks"].items():
            self.method.networks[k].load_state_dict(sd)
        for k, sd in ckpt["optimizers"].items():
            self.method.optimizers[k].load_state_dict(sd)
        rank = self.world.rank if self.world is not None else 0
        extras = [ckpt.get("extra", {}), *ckpt.get("extra_ranks", [])]
        if rank < len(extras):  # a process the checkpoint did not have starts its own state afresh
            self.method.load_extra_state(extras[rank])
        self.step = self.method.steps_done = int(ckpt["step"])
        # samples of the global order consumed so far (checkpoints before data-parallel runs: step x batch)
        self.samples_seen = int(ckpt.get("samples_seen", self.step * resolved(self.config.batch_size)))
        self.last_val = dict(ckpt.get("last_val", {}))
        self.best = ckpt.get("best")

    def _init_networks(self, source: str) -> None:
        ckpt = load_checkpoint(resolve_checkpoint(source))
        if ckpt["method"] != self.method.name:
            raise ConfigError("init_from", f"{source} is a {ckpt['method']} checkpoint, not {self.method.name}")
        for k, net in self.method.networks.items():
            # a weight average the source did not keep starts from the network it averages
            source = k if k in ckpt["networks"] or k not in self.method.averages else self.method.averages[k]
            try:
                net.load_state_dict(ckpt["networks"][source])
            except (KeyError, RuntimeError) as e:
                raise ConfigError("init_from", f"{source}: network {k} does not fit this config ({e})") from None

    def _loader(self) -> DataLoader:
        c = self.config
        batch_size = resolved(c.batch_size)
        shard = (self.world.rank, self.world.size, batch_size) if self.world is not None else None
        sampler = EpochSampler(dataset_size(self.train_set), seed=c.seed, start=self.samples_seen, shard=shard)
        return DataLoader(
            self.train_set, batch_size=batch_size, sampler=sampler, num_workers=c.workers,
            pin_memory=self.device.type == "cuda", worker_init_fn=_worker_init if c.workers else None,
            persistent_workers=False, generator=torch.Generator().manual_seed(c.seed),
            prefetch_factor=4 if c.workers else None)

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self, schedulers, best: bool = False) -> Path | None:
        """Write a checkpoint (rank 0; every process takes part: each one's RNG and own state are kept); ``best``:
        it is also the run's best (``checkpoints/best.pt``, its step and score in ``best.json``)."""
        rng, extra = _rng_state(), self.method.extra_state()
        if self.world is not None:
            rngs, extras = self.world.gather(rng), self.world.gather(extra)
            if not self.is_main:
                return None
            rng, extra = rngs[0], extras[0]
        ckpt_dir = self.run_dir / "checkpoints"
        state = {
            "format": CHECKPOINT_FORMAT,
            "method": self.method.name,
            "config": self.config.to_dict(),
            "step": self.step,
            "samples_seen": self.samples_seen,
            "networks": {k: n.state_dict() for k, n in self.method.networks.items()},
            "optimizers": {k: o.state_dict() for k, o in self.method.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "extra": extra,
            "rng": rng,
            "last_val": self.last_val,
            "best": self.best,
            # what the run scores its targets' class maps by: retraining's promotion gate scores the same way
            "palette": self.method.palette.to_json() if self.method.palette is not None else None,
            "generators": {d: spec.to_dict() for d, spec in self.method.generators().items()},
        }
        if self.world is not None:  # the other processes', for an exact resume on as many
            state["extra_ranks"], state["rng_ranks"] = extras[1:], rngs[1:]
        path = ckpt_dir / f"step_{self.step:08d}.pt"
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        for name in ("latest", "best") if best else ("latest",):
            with atomic_path(ckpt_dir / f"{name}.pt") as tmp:
                tmp.unlink()
                os.link(path, tmp)
        if best:
            write_text_atomic(self.run_dir / BEST_RECORD, json.dumps(self.best, indent=1) + "\n")
        numbered = sorted(ckpt_dir.glob("step_*.pt"))
        for old in numbered[: max(0, len(numbered) - self.config.keep_checkpoints)]:
            old.unlink()
        if self.storage is not None:  # the run's files, then the checkpoint, then its marker
            self.storage.upload_checkpoint(path, self.config.keep_checkpoints)
        return path

    # ---------------------------------------------------------------- logging
    def _open_logs(self):
        from torch.utils.tensorboard import SummaryWriter

        metrics_path = self.run_dir / "metrics.jsonl"
        if self.step and metrics_path.exists():  # drop what a crashed run logged after its last checkpoint
            keep = [ln for ln in metrics_path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= self.step]
            write_text_atomic(metrics_path, "".join(ln + "\n" for ln in keep))
        self.metrics_file = open(metrics_path, "a", buffering=1)
        self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step or None)

    def log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        record = {"step": self.step, **record}
        self.metrics_file.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                self.tb.add_scalar(k, v, self.step)

    # ------------------------------------------------------------ validation
    def _fixed_batch(self, n: int = 4) -> dict:
        items = [self.val_set[i] for i in range(min(n, dataset_size(self.val_set)))]
        return torch.utils.data.default_collate(items)

    @torch.no_grad()
    def validate(self) -> Validation:
        """The method's validation, its metrics named 'val/...' (the task's score among them)."""
        v = self.method.validation(self.val_set, self.config.max_val_images)
        return Validation({f"val/{k}": float(x) for k, x in v.metrics.items()}, v.score)

    def keep_if_best(self, score: Score | None) -> bool:
        """Whether ``score`` beats the run's best so far (then it is the best, at this step)."""
        if score is None or not math.isfinite(score.value):
            return False
        best = self.best
        if best is not None and best["score"] == score.name and \
                not score.better_than(Score(best["score"], best["value"], best["higher_is_better"])):
            return False
        self.best = best_record(self.step, score)
        return True

    @torch.no_grad()
    def write_samples(self, batch: dict) -> Path:
        grid = self.method.sample_grid(to_device(batch, self.device)).float().cpu().clamp(0, 1)
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        save_image(tensor_to_array(grid * 2 - 1), path)
        self.tb.add_image("samples", grid, self.step)
        return path

    # ------------------------------------------------------------------- run
    def fit(self, stop_after: int | None = None) -> Path:
        """Train to the configured length; ``stop_after`` stops cleanly (with a checkpoint)
        after that many steps in this call, as an interruption would."""
        c = self.config
        total = self.total_steps
        main = self.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "config.json", c.dumps() + "\n")
        schedulers = self._make_schedulers()
        if self.checkpoint is not None:
            for k, sd in self.checkpoint["schedulers"].items():
                schedulers[k].load_state_dict(sd)
                # a new LambdaLR resets the optimizer's rate; put back the decayed one
                for group, lr in zip(self.method.optimizers[k].param_groups, schedulers[k].get_last_lr(), strict=True):
                    group["lr"] = lr
            self._restore_rng(self.checkpoint)
        if main:
            self._open_logs()
        fixed = self._fixed_batch()
        by_step = resolved(c.steps) > 0
        batch_size = resolved(c.batch_size)
        stop = {"now": False}

        def on_sigint(signum, frame):
            if stop["now"]:
                raise KeyboardInterrupt
            stop["now"] = True
            log.warning("interrupted: finishing this step and writing a checkpoint (Ctrl-C again to abort)")

        # Ctrl-C and SIGTERM (docker stop, systemd): finish the step, write a checkpoint, stop
        old_handlers = {sig: signal.signal(sig, on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)} \
            if _main_thread() else {}
        started = time.monotonic()
        first_step = self.step
        sums: dict[str, float] = {}
        count = 0
        t_log = time.perf_counter()
        # a data-parallel run's progress is shown by its driver (training.distributed), from metrics.jsonl
        pbar = _progress(total, self.step, c.progress and self.world is None,
                         desc=f"{self.method.name} {self.run_dir.name}")
        data_iter = iter(self._loader())
        try:
            while self.step < total:
                batch = to_device(next(data_iter), self.device)
                lr = next(iter(self.method.optimizers.values())).param_groups[0]["lr"]  # the rate this step used
                self.method.steps_done = self.step
                losses = self.method.step(batch)
                self.step += 1
                self.samples_seen += batch_size * self.processes
                if by_step or self.step % self.steps_per_epoch == 0:
                    for s in schedulers.values():
                        s.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
                pbar.update(1)
                last = self.step == total
                if self.step % c.log_every == 0 or last:
                    now = time.perf_counter()
                    means = {k: v / count for k, v in sums.items()}
                    if self.world is not None:  # the mean over every process's samples, as one process would log
                        means = self.world.mean(means)
                    self.log({"epoch": self.step // self.steps_per_epoch, "lr": lr, **means,
                              "it_per_s": count / max(now - t_log, 1e-9)})
                    pbar.set_postfix({k: f"{v:.3g}" for k, v in means.items()}, refresh=False)
                    sums, count, t_log = {}, 0, now
                improved = False
                if (c.val_every and self.step % c.val_every == 0) or last:
                    if main:
                        validation = self.validate()
                        improved = self.keep_if_best(validation.score)
                        if validation.metrics:
                            self.log(validation.metrics)
                            self.last_val = validation.metrics
                            pbar.write(f"step {self.step}: " + ", ".join(
                                f"{k} {x:.4g}" for k, x in validation.metrics.items()) + (" (best)" if improved else ""))
                    if self.world is not None:  # every process writes the best's checkpoint with rank 0
                        improved = self.world.any(improved)
                if main and (self.step % c.sample_every == 0 or last):
                    self.write_samples(fixed)
                halt = (stop["now"] or (c.time_limit > 0 and time.monotonic() - started > c.time_limit * 60)
                        or (stop_after is not None and self.step - first_step >= stop_after)
                        or (main and self.world is not None and self._stop_requested()))
                if self.world is not None:  # every process stops at the same step
                    halt = self.world.any(halt)
                halt = halt and not last
                if self.step % c.checkpoint_every == 0 or last or halt or improved:
                    self.save_checkpoint(schedulers, best=improved)
                if halt:
                    pbar.write(f"stopped at step {self.step}/{total}; resume with: translate train "
                               f"{self.method.name} --resume {self.storage.url if self.storage else self.run_dir}")
                    break
        finally:
            pbar.close()
            del data_iter
            if main:
                self.metrics_file.close()
                self.tb.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        skipped = getattr(self.train_set, "skipped", {})
        if skipped and main:
            log.warning("%d unreadable files were skipped during training", len(skipped))
        if self.step == total and c.export and main:
            self.method.export(self.run_dir, verbose=c.progress)
        if main and self.storage is not None:  # the exported models, and anything written since the checkpoint
            self.storage.upload_files()
        if self.world is not None:
            self.world.barrier()  # the run is whole (exported) before any process reports done
        return self.run_dir

    def _stop_requested(self) -> bool:
        """The driver's request to stop: in the run's object storage, or a file in its directory."""
        return self.storage.stop_requested() if self.storage is not None else stop_requested(self.run_dir)

    def _restore_rng(self, ckpt: dict[str, Any]) -> None:
        rank = self.world.rank if self.world is not None else 0
        states = [ckpt["rng"], *ckpt.get("rng_ranks", [])]
        if rank < len(states):
            _set_rng_state(states[rank])
        else:  # a process the checkpoint did not have: its own streams, from the step it starts at
            _seed_everything(self.config.seed + 1_000_003 * rank + self.step)


def best_record(step: int, score: Score) -> dict[str, Any]:
    """What a run records of its best checkpoint (in its checkpoints and ``best.json``)."""
    return {"step": step, "score": score.name, "value": score.value, "higher_is_better": score.higher_is_better,
            "checkpoint": "checkpoints/best.pt"}


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / "latest.pt"
    if not path.exists():
        raise ConfigError("resume", f"{run_dir} has no checkpoints/latest.pt to resume from")
    return path


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="step", dynamic_ncols=True)


__all__ = ["OpenRun", "open_run", "ProcessLoop", "lr_lambda", "resolve_device", "best_record", "latest_checkpoint",
           "RESUMABLE_OVERRIDES"]
