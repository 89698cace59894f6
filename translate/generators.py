"""Rebuilding an inference generator from any model file, by the kind its spec names.

A checkpoint of this project lists its generators as :class:`~translate.checkpoint.GeneratorSpec`
records; :func:`load_generator` rebuilds one in its test-time form through its kind's ``load``
(:mod:`translate.kinds`): a ``"translation"`` generator with ``networks.define_G`` (dropout off, batch
norm by the recorded policy, exactly what export writes), a ``"gan"`` generator with
``gan.networks.build_generator`` (eval mode, the EMA weights when the run kept them), a ``"multimodal"``
one with ``networks.define_latent_G`` (an image and a latent code in). A reference
``latest_net_G.pth`` is a translation generator. :func:`generator_kind` tells the kinds apart without
loading the weights, so a command can ask the registry what to do (``translate export`` / ``evaluate``
/ ``sample``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import (
    CHECKPOINT_FORMAT,
    GeneratorSpec,
    generator_specs,
    generator_state,
    resolve_checkpoint,
    torch_load,
    torch_load_any,
)
from .errors import ModelError
from .gan.networks import build_generator
from .kinds import kind
from .networks import define_G, define_latent_G, to_inference
from .reference import load_reference_generator


def generator_kind(path: str | os.PathLike) -> str:
    """``"onnx"``, ``"translation"`` or ``"gan"`` for a model file or run directory (``"translation"`` for
    anything else that loads: a reference state dict). Reads a checkpoint memory-mapped, not into memory."""
    p = Path(path)
    if p.is_dir():
        ckpt = p / "checkpoints" / "latest.pt"
        if not ckpt.exists():
            return "onnx" if (p / "model.onnx").exists() else "translation"
        p = ckpt
    if p.suffix == ".onnx":
        return "onnx"
    try:
        raw = torch_load(p, mmap=True)
    except Exception:
        return "translation"  # not ours: the loaders below give the precise error
    if isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT:
        specs = generator_specs(raw)
        if specs:
            return next(iter(specs.values())).kind
    return "translation"


def pick_spec(specs: dict[str, GeneratorSpec], path: Path, direction: str | None) -> GeneratorSpec:
    if not specs:
        raise ModelError(f"{path}: the checkpoint lists no exportable generator")
    if direction is None:
        if len(specs) > 1:
            raise ModelError(f"{path}: holds generators {sorted(specs)}; choose one with --direction")
        return next(iter(specs.values()))
    if direction not in specs:
        raise ModelError(f"{path}: no generator for direction {direction!r} (has {sorted(specs)})")
    return specs[direction]


def load_generator(path: str | os.PathLike, direction: str | None = None,
                   use_ema: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """(inference-ready generator, metadata) from a checkpoint, run directory or reference .pth.

    Metadata: ``kind``, ``method``, ``direction``, ``arch``, ``step``, ``config`` and the spec's extra
    fields (translation: ``batch_stats``; gan: ``classes``, ``data``, ``name``, ``data_kind``, ``ema``,
    ``gan_mode``). ``use_ema=False`` takes a GAN's raw G weights instead of their moving average.
    """
    path = resolve_checkpoint(path)
    if path.suffix == ".onnx":
        raise ModelError(f"{path}: an ONNX model, not a PyTorch checkpoint")
    raw = torch_load_any(path)
    if not (isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT):
        return _reference_generator(path, direction)
    spec = pick_spec(generator_specs(raw), path, direction)
    meta = {"kind": spec.kind, "method": spec.method, "direction": spec.direction, "arch": spec.arch,
            "step": raw.get("step"), "config": raw.get("config", {}), **spec.extra}
    return kind(spec.kind).call("load")(raw, spec, meta, use_ema)


def load_translation_generator(raw: dict, spec: GeneratorSpec, meta: dict, use_ema: bool) -> tuple[nn.Module, dict]:
    """The ``"translation"`` kind's loader: ``define_G`` in its test-time form (``use_ema`` does not apply)."""
    G = define_G(**spec.arch)
    G.load_state_dict(generator_state(raw, spec))
    meta["batch_stats"] = spec.batch_stats
    return to_inference(G, batch_stats=spec.batch_stats), meta


def load_multimodal_generator(raw: dict, spec: GeneratorSpec, meta: dict, use_ema: bool) -> tuple[nn.Module, dict]:
    """The ``"multimodal"`` kind's loader: ``define_latent_G`` (an image and a latent code in) in its test-time form."""
    G = define_latent_G(**spec.arch)
    G.load_state_dict(generator_state(raw, spec))
    meta["batch_stats"] = spec.batch_stats
    return to_inference(G, batch_stats=spec.batch_stats), meta


def load_gan_generator(raw: dict, spec: GeneratorSpec, meta: dict, use_ema: bool) -> tuple[nn.Module, dict]:
    """The ``"gan"`` kind's loader: ``build_generator`` in eval mode, the EMA weights unless ``use_ema`` is off."""
    if not use_ema and spec.network == "G_ema":
        spec = GeneratorSpec(**{**spec.to_dict(), "network": "G"})
    G = build_generator(**spec.arch)
    G.load_state_dict(generator_state(raw, spec))
    G.eval().requires_grad_(False)
    meta.update(ema=spec.network == "G_ema", gan_mode=meta["config"].get("gan_mode"))
    return G, meta


def _reference_generator(path: Path, direction: str | None) -> tuple[nn.Module, dict]:
    """A pytorch-CycleGAN-and-pix2pix generator state dict; it tests batch-norm models without
    eval(), i.e. with per-image statistics, which is the policy kept here."""
    try:
        G, arch = load_reference_generator(path)
    except ValueError as e:
        raise ModelError(str(e)) from None
    batch_stats = arch.get("norm") == "batch"
    meta = {"kind": "translation", "method": "reference", "direction": direction or "AtoB", "arch": arch,
            "batch_stats": batch_stats, "source": str(path)}
    return to_inference(G, batch_stats=batch_stats), meta
