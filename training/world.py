"""A process's place in a data-parallel run, and the collectives the loop needs from it.

A :class:`World` is what the loop knows of the other processes: its rank and their number,
whether it is the one that writes the run directory, and the few collectives a step needs
(gradients averaged before each optimizer step, the mean of logged values, a shared decision to
stop, a barrier). It runs over an initialised ``torch.distributed`` process group and knows
nothing of what started the processes: ``training.distributed`` starts them on Ray Train, builds
each one's World and runs the loop in it; a script may make a one-process World over its own
process group (benchmarks/gpu_check.py does).

The driver that started a run asks its processes to stop by a file in the run directory
(:data:`STOP_FILE`), which rank 0 checks after every step (:func:`stop_requested`) and the World
turns into one decision for all.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

STOP_FILE = ".stop"  # in the run directory: the driver's request to stop after the current step


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run, and the collectives the loop needs."""

    rank: int
    size: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that writes the run directory (config, metrics, samples, checkpoints, export)."""
        return self.rank == 0

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the processes (one flat all-reduce)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def hook_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Average the gradients of ``optimizer``'s parameters across processes before each of its steps."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.average_gradients(params))

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere (the processes start from one network)."""
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    @staticmethod
    def _device() -> torch.device:
        """Where the small tensors of collectives live: NCCL reduces only CUDA tensors, gloo CPU ones."""
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over the processes (same keys everywhere)."""
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return {k: float(v) / self.size for k, v in zip(keys, t.tolist(), strict=True)}

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one."""
        t = torch.tensor([1 if flag else 0], device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (on every process)."""
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()


def stop_requested(run_dir: str | Path) -> bool:
    """Whether the driver asked the run's processes to stop after the current step."""
    return (Path(run_dir) / STOP_FILE).exists()


__all__ = ["World", "STOP_FILE", "stop_requested"]
