"""Checkpoints as files, and rebuilding an inference generator from any model file.

A training checkpoint (``RUN/checkpoints/*.pt``) holds everything exact resumption
needs (see ``training.loop``) plus, under ``generators``, a :class:`GeneratorSpec` per
direction: enough for this library alone (no training code) to rebuild the generator
for export and prediction. Reference state dicts (``latest_net_G.pth``) load too.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelError

CHECKPOINT_FORMAT = "i2i-translate/checkpoint/1"


@dataclass
class GeneratorSpec:
    """How to rebuild one exportable generator from a checkpoint."""

    network: str  # key in the checkpoint's ``networks``
    arch: dict[str, Any]  # keyword arguments of translate.networks.define_G
    batch_stats: bool  # test-time policy for batch norm, see networks.to_inference
    direction: str = "AtoB"
    method: str = "pix2pix"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. training size, data set name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorSpec":
        return cls(**d)


def _numpy_rng_globals() -> list:
    """What a pickled ``np.random.get_state()`` (saved in training checkpoints) needs besides plain data."""
    import numpy as np

    return [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def torch_load(path: str | os.PathLike, mmap: bool = False) -> Any:
    """``torch.load`` in weights-only mode: tensors, containers, numbers, strings and numpy arrays,
    never arbitrary pickled code, so a model file from anywhere (a reference ``.pth`` off the web, an
    upload) cannot run code when it is opened. Raises what torch.load raises."""
    with torch.serialization.safe_globals(_numpy_rng_globals()):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        ckpt = torch_load(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such checkpoint") from None
    except Exception as e:
        raise ModelError(f"{path}: not a readable checkpoint ({e.__class__.__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path}: not a training checkpoint of this project (no '{CHECKPOINT_FORMAT}' format tag)")
    return ckpt


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A run directory means its exported model if present and current, else its latest checkpoint."""
    path = Path(path)
    if path.is_dir():
        onnx_path, ckpt = path / "model.onnx", path / "checkpoints" / "latest.pt"
        if onnx_path.exists() and (not ckpt.exists() or onnx_path.stat().st_mtime >= ckpt.stat().st_mtime):
            return onnx_path
        if ckpt.exists():
            return ckpt
        raise ModelError(f"{path}: a run directory with neither model.onnx nor checkpoints/latest.pt")
    if not path.exists():
        raise ModelError(f"{path}: no such model file or run directory")
    return path


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run directory means its latest checkpoint; a file is itself."""
    path = Path(path)
    if path.is_dir():
        ckpt = path / "checkpoints" / "latest.pt"
        if not ckpt.exists():
            raise ModelError(f"{path}: a run directory without checkpoints/latest.pt")
        return ckpt
    if not path.exists():
        raise ModelError(f"{path}: no such checkpoint")
    return path


def load_generator(path: str | os.PathLike, direction: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(inference-ready generator, metadata) from a checkpoint, run directory or reference .pth.

    The generator is in the test-time form that export uses (``networks.to_inference``),
    so PyTorch and ONNX Runtime give the same result.
    """
    from .networks import define_G, to_inference

    path = resolve_checkpoint(path)
    if path.suffix == ".onnx":
        raise ModelError(f"{path}: an ONNX model, not a PyTorch checkpoint")
    raw = _torch_load_any(path)
    if isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT:
        gens = {d: GeneratorSpec.from_dict(s) for d, s in raw["generators"].items()}
        if direction is None:
            if len(gens) > 1:
                raise ModelError(f"{path}: holds generators {sorted(gens)}; choose one with --direction")
            direction = next(iter(gens))
        if direction not in gens:
            raise ModelError(f"{path}: no generator for direction {direction!r} (has {sorted(gens)})")
        spec = gens[direction]
        G = define_G(**spec.arch)
        G.load_state_dict(raw["networks"][spec.network])
        meta = {"method": spec.method, "direction": spec.direction, "arch": spec.arch,
                "batch_stats": spec.batch_stats, "step": raw.get("step"), "config": raw.get("config", {}),
                **spec.extra}
        return to_inference(G, batch_stats=spec.batch_stats), meta
    # a reference (pytorch-CycleGAN-and-pix2pix) generator state dict
    from .reference import load_reference_generator

    try:
        G, arch = load_reference_generator(path)
    except ValueError as e:
        raise ModelError(str(e)) from None
    batch_stats = arch.get("norm") == "batch"  # the reference tests batch-norm models without eval()
    meta = {"method": "reference", "direction": direction or "AtoB", "arch": arch, "batch_stats": batch_stats,
            "source": str(path)}
    return to_inference(G, batch_stats=batch_stats), meta


def _torch_load_any(path: Path) -> Any:
    try:
        return torch_load(path)
    except Exception as e:
        raise ModelError(f"{path}: not a readable PyTorch file ({e.__class__.__name__}: {e})") from None
