"""Checkpoints as files: the format tag, weights-only loading, finding a run's files, and the
:class:`GeneratorSpec` that describes each exportable generator.

A training checkpoint (``RUN/checkpoints/*.pt``) holds everything exact resumption
needs (see ``training.process_loop``) plus, under ``generators``, a :class:`GeneratorSpec` per
generator: enough for this library alone (no training code) to rebuild it for export,
prediction and sampling (:mod:`translate.generators`).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, ModelError
from .kinds import kind

CHECKPOINT_FORMAT = "i2i-translate/checkpoint/1"
BEST_RECORD = "best.json"  # in a run directory: the step and validation score of checkpoints/best.pt
CHECKPOINT_CHOICES = "latest, best or a step number"


@dataclass
class GeneratorSpec:
    """How to rebuild one exportable generator from a checkpoint.

    ``kind`` names its entry in :data:`translate.kinds.KINDS`, which says how every tool treats it
    (``"translation"``: ``networks.define_G(**arch)``, an image in, an image out; ``"gan"``:
    ``gan.networks.build_generator(**arch)``, latents (and a class) in, a sample out).
    """

    network: str  # key in the checkpoint's ``networks``
    arch: dict[str, Any]  # keyword arguments of the kind's builder
    batch_stats: bool = False  # translation: test-time policy for batch norm, see networks.to_inference
    direction: str = "AtoB"  # translation: AtoB or BtoA; gan: ""
    method: str = "pix2pix"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. training size, data set name, classes
    kind: str = "translation"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorSpec":
        spec = cls(**d)  # a spec written before kinds existed is a translation generator (the default)
        kind(spec.kind)  # a ModelError naming the known kinds for one this version does not know
        return spec


def generator_specs(ckpt: dict[str, Any]) -> dict[str, GeneratorSpec]:
    """The checkpoint's generators by name. GAN runs written before generators had a kind kept
    theirs in ``extra["gan"]`` and listed none: their spec is rebuilt from there."""
    specs = {k: GeneratorSpec.from_dict(v) for k, v in ckpt.get("generators", {}).items()}
    legacy = ckpt.get("extra", {}).get("gan")
    if not specs and ckpt.get("method") == "gan" and legacy and "arch_G" in legacy:
        ema = legacy.get("G_ema") is not None
        specs["G"] = GeneratorSpec(network="G_ema" if ema else "G", arch=legacy["arch_G"], direction="", method="gan",
                                   kind="gan", extra=gan_spec_extra(legacy.get("classes", []), legacy.get("data", ""),
                                                                    legacy.get("name", ""), legacy.get("kind", ""), ema))
    return specs


def gan_spec_extra(classes: list, data: str, name: str, data_kind: str, ema: bool) -> dict[str, Any]:
    """What a GAN generator's spec records besides its architecture."""
    return {"classes": list(classes), "data": data, "name": name, "data_kind": data_kind, "ema": ema}


def generator_state(ckpt: dict[str, Any], spec: GeneratorSpec) -> dict[str, Any]:
    """The state dict of ``spec``'s network (GAN checkpoints before kinds kept the EMA copy in extra)."""
    if spec.network in ckpt["networks"]:
        return ckpt["networks"][spec.network]
    legacy = ckpt.get("extra", {}).get("gan", {})
    if spec.network == "G_ema" and legacy.get("G_ema") is not None:
        return legacy["G_ema"]
    raise ModelError(f"checkpoint has no network {spec.network!r} (has {sorted(ckpt['networks'])})")


def _numpy_rng_globals() -> list:
    """What a pickled ``np.random.get_state()`` (saved in training checkpoints) needs besides plain data."""
    import numpy as np
    from numpy._core.multiarray import _reconstruct

    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def torch_load(path: str | os.PathLike, mmap: bool = False) -> Any:
    """``torch.load`` in weights-only mode: tensors, containers, numbers, strings and numpy arrays,
    never arbitrary pickled code, so a model file from anywhere (a reference ``.pth`` off the web, an
    upload) cannot run code when it is opened. Raises what torch.load raises."""
    import torch  # lazy: torch (resolving a model path, on the way to an ONNX file, needs none)

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


def run_checkpoint(run_dir: str | os.PathLike, which: str | None = None) -> Path:
    """One of a run directory's checkpoints: ``"latest"``, ``"best"`` (the best validation score, kept when the run
    had a score to validate by) or a step number (a numbered checkpoint the run kept); None: the best when the run
    kept one, else the latest. A ConfigError for ``--checkpoint`` names what the run holds."""
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints"
    if which is None:
        which = "best" if (folder / "best.pt").exists() else "latest"
    if which in ("latest", "best"):
        path = folder / f"{which}.pt"
        if not path.exists():
            raise ConfigError("checkpoint", f"{run_dir} has no checkpoints/{which}.pt (it holds: {_kept(folder)})")
        return path
    if not which.isdigit():
        raise ConfigError("checkpoint", f"must be {CHECKPOINT_CHOICES}, got {which!r}")
    path = folder / f"step_{int(which):08d}.pt"
    if not path.exists():
        raise ConfigError("checkpoint", f"{run_dir} kept no checkpoint of step {int(which)} (it holds: {_kept(folder)})")
    return path


def _kept(folder: Path) -> str:
    """What a run's checkpoints folder holds, as ``--checkpoint`` names them."""
    names = [n for n in ("latest", "best") if (folder / f"{n}.pt").exists()]
    names += [str(int(p.stem.removeprefix("step_"))) for p in sorted(folder.glob("step_*.pt"))]
    return ", ".join(names) or "no checkpoints"


def torch_load_any(path: Path) -> Any:
    """:func:`torch_load`, with a ModelError naming the file when it cannot be read."""
    try:
        return torch_load(path)
    except Exception as e:
        raise ModelError(f"{path}: not a readable PyTorch file ({e.__class__.__name__}: {e})") from None
