"""Import weights saved by junyanz/pytorch-CycleGAN-and-pix2pix.

The reference saves each network as ``torch.save(net.state_dict(), path)``
(``latest_net_G.pth``, ``latest_net_D.pth``, ``latest_net_G_A.pth``, ...).
Because :mod:`translate.networks` keeps the reference's module layout, such a
file loads with ``load_state_dict(strict=True)`` once its keys are cleaned:

* a ``module.`` prefix (``DataParallel``) is stripped;
* ``running_mean`` / ``running_var`` / ``num_batches_tracked`` entries that old
  PyTorch versions stored for InstanceNorm layers are dropped (what the
  reference's ``__patch_instance_norm_state_dict`` does);
* a missing ``num_batches_tracked`` on a BatchNorm layer (PyTorch < 0.4.1) is
  filled with 0.

The architecture is inferred from key names and tensor shapes
(:func:`infer_generator_config`, :func:`infer_discriminator_config`).

Normalisation inference: BatchNorm layers carry ``weight`` and running stats.
The reference's InstanceNorm has ``affine=False`` and so no parameters (only
running stats in old files), and ``norm='none'`` layers are parameter-free
``Identity`` placeholders. Those two are told apart by the convolution feeding
the norm layer: the reference gives it a bias only for InstanceNorm. A norm
layer without parameters after a conv *with* bias is therefore reported as
``'instance'`` (also the choice whenever the layout would fit both); pass
``norm='none'`` as an override to force otherwise.

U-Net dropout leaves no trace in the state dict (the ``Dropout`` is appended
after the last indexed layer), so ``use_dropout`` is reported as ``False``; it
has no effect in ``eval()`` anyway. ResNet dropout shifts the second conv of
each block from ``conv_block.5`` to ``conv_block.6`` and is detected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from translate.networks import define_D, define_G

__all__ = [
    "clean_state_dict",
    "infer_generator_config",
    "infer_discriminator_config",
    "load_reference_generator",
    "load_reference_discriminator",
]

StateDictSource = Union[str, os.PathLike, Mapping[str, torch.Tensor]]

_DP_PREFIX = "module."
_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")
_MAX_LISTED = 6


# --------------------------------------------------------------------------- #
# Reading and cleaning
# --------------------------------------------------------------------------- #
def _label(source: StateDictSource) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<state dict>"


def _read(source: StateDictSource) -> tuple[dict[str, torch.Tensor], str]:
    """Load ``source`` (a path or a mapping) into a cleaned plain dict."""
    label = _label(source)
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise FileNotFoundError(f"{label}: no such file")
        try:
            obj = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupted / not a torch file / unsafe pickle
            raise ValueError(f"{label}: cannot be read as a PyTorch state dict ({type(exc).__name__}: {exc})") from exc
    else:
        obj = source
    if not isinstance(obj, Mapping):
        raise ValueError(f"{label}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise ValueError(
            f"{label}: expected a state dict (mapping of names to tensors); "
            f"non-tensor entries: {_summarise([str(k) for k in bad])}"
        )
    if not obj:
        raise ValueError(f"{label}: the state dict is empty")
    return clean_state_dict(obj), label


def clean_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return a plain-dict copy with any ``module.`` (DataParallel) prefix stripped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        while key.startswith(_DP_PREFIX):
            key = key[len(_DP_PREFIX):]
        out[key] = value
    return out


def _summarise(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else shown


# --------------------------------------------------------------------------- #
# Architecture inference
# --------------------------------------------------------------------------- #
def _get(sd: Mapping[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in sd:
        raise ValueError(f"cannot infer {what}: key {key!r} not found")
    return sd[key]


def _norm_kind(sd: Mapping[str, torch.Tensor], norm_prefix: str, conv_prefix: str) -> str:
    """Classify the norm layer at ``norm_prefix`` that follows the conv at ``conv_prefix``."""
    if norm_prefix + "weight" in sd:
        return "batch"
    if norm_prefix + "running_mean" in sd:  # old InstanceNorm with running stats
        return "instance"
    if conv_prefix + "bias" in sd:
        return "instance"
    return "none"


def _resnet_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    first = _get(sd, "model.1.weight", "the ResNet input conv")
    ngf, input_nc = int(first.shape[0]), int(first.shape[1])
    block_idx = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    n_blocks = len(block_idx)
    if block_idx and block_idx != list(range(10, 10 + n_blocks)):
        raise ValueError(f"unexpected ResNet block indices {block_idx} (expected 10..{9 + n_blocks})")
    use_dropout = False
    if n_blocks:
        if "model.10.conv_block.0.weight" in sd:
            raise ValueError("ResNet blocks with padding_type='zero' are not supported (the reference uses 'reflect')")
        # [pad, conv, norm, relu, (dropout), pad, conv, norm]: the 2nd conv is at 5, or 6 with dropout.
        # (With BatchNorm, conv_block.6.weight also exists without dropout: the 1-D norm weight.)
        second = sd.get("model.10.conv_block.6.weight")
        use_dropout = second is not None and second.dim() == 4
    last = _get(sd, f"model.{17 + n_blocks}.weight", "the ResNet output conv")
    return {
        "name": "resnet",
        "n_blocks": n_blocks,
        "input_nc": input_nc,
        "output_nc": int(last.shape[0]),
        "ngf": ngf,
        "norm": _norm_kind(sd, "model.2.", "model.1."),
        "use_dropout": use_dropout,
    }


def _unet_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    down = _get(sd, "model.model.0.weight", "the U-Net input conv")
    up = _get(sd, "model.model.3.weight", "the U-Net output transposed conv")
    # Walk down the nested blocks: outermost -> .1.model. -> .3.model. -> ...
    level = "model.model.1.model."
    depth = 2
    while any(k.startswith(level + "3.model.") for k in sd):
        level += "3.model."
        depth += 1
    return {
        "name": "unet",
        "num_downs": depth,
        "input_nc": int(down.shape[1]),
        "output_nc": int(up.shape[1]),  # ConvTranspose2d weight: (in, out, kh, kw)
        "ngf": int(down.shape[0]),
        "norm": _norm_kind(sd, "model.model.1.model.2.", "model.model.1.model.1."),
        "use_dropout": False,  # not recoverable from the keys; irrelevant in eval()
    }


def infer_generator_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Infer :func:`~translate.networks.define_G` kwargs from a reference generator state dict.

    Returns ``{'name': 'unet', 'num_downs', ...}`` or ``{'name': 'resnet', 'n_blocks', ...}``
    plus ``input_nc``, ``output_nc``, ``ngf``, ``norm`` and ``use_dropout``.
    Raises ``ValueError`` if the keys match no known generator layout.
    """
    sd = clean_state_dict(state_dict)
    if any(k.startswith("model.model.") for k in sd):
        return _unet_config(sd)
    if "model.1.weight" in sd and "model.0.weight" not in sd:
        return _resnet_config(sd)
    if "model.0.weight" in sd or "net.0.weight" in sd:
        raise ValueError("the state dict looks like a discriminator, not a generator")
    raise ValueError(f"keys match no known generator layout (first keys: {_summarise(list(sd))})")


def infer_discriminator_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Infer :func:`~translate.networks.define_D` kwargs from a reference discriminator state dict.

    Returns ``name`` ('basic' for a 3-layer PatchGAN, 'n_layers' otherwise, or
    'pixel'), ``input_nc``, ``ndf``, ``norm`` and, for PatchGANs, ``n_layers``.
    """
    sd = clean_state_dict(state_dict)
    if "net.0.weight" in sd:
        first = sd["net.0.weight"]
        return {
            "name": "pixel",
            "input_nc": int(first.shape[1]),
            "ndf": int(first.shape[0]),
            "norm": _norm_kind(sd, "net.3.", "net.2."),
        }
    if "model.0.weight" in sd and not any(k.startswith("model.model.") for k in sd):
        first = sd["model.0.weight"]
        ndf = int(first.shape[0])
        conv_idx = sorted(
            int(m.group(1)) for k, v in sd.items() if (m := re.fullmatch(r"model\.(\d+)\.weight", k)) and v.dim() == 4
        )
        n_convs = len(conv_idx)
        if n_convs < 3:
            raise ValueError(f"a PatchGAN has at least 3 convolutions, found {n_convs}")
        n_layers = n_convs - 2
        # n_layers=0 and n_layers=1 both have 3 convs; only the width of the 2nd tells them apart.
        if n_layers == 1 and int(_get(sd, "model.2.weight", "PatchGAN depth").shape[0]) == ndf:
            n_layers = 0
        return {
            "name": "basic" if n_layers == 3 else "n_layers",
            "input_nc": int(first.shape[1]),
            "ndf": ndf,
            "n_layers": n_layers,
            "norm": _norm_kind(sd, "model.3.", "model.2."),
        }
    if any(k.startswith("model.model.") for k in sd) or "model.1.weight" in sd:
        raise ValueError("the state dict looks like a generator, not a discriminator")
    raise ValueError(f"keys match no known discriminator layout (first keys: {_summarise(list(sd))})")


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #
def _patch_norm_entries(sd: dict[str, torch.Tensor], net: nn.Module) -> None:
    """Drop InstanceNorm running stats the model doesn't have; add missing BN counters."""
    for name, module in net.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.modules.instancenorm._InstanceNorm):
            for stat in _NORM_STATS:
                if getattr(module, stat, None) is None:
                    sd.pop(prefix + stat, None)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            if prefix + "running_mean" in sd and prefix + "num_batches_tracked" not in sd:
                sd[prefix + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def _load_into(net: nn.Module, sd: dict[str, torch.Tensor], label: str, config: Mapping[str, Any]) -> None:
    _patch_norm_entries(sd, net)
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summarise(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (file vs model): {_summarise(mismatched)}")
    if problems:
        raise ValueError(f"{label}: does not match the architecture {dict(config)}: " + "; ".join(problems))
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{label}: failed to load into {dict(config)}: {exc}") from exc


def _build_and_load(source: StateDictSource, kind: str, overrides: Mapping[str, Any]) -> tuple[nn.Module, dict]:
    sd, label = _read(source)
    infer, define = (infer_generator_config, define_G) if kind == "generator" else (infer_discriminator_config, define_D)
    try:
        config = infer(sd)
    except ValueError as exc:
        raise ValueError(f"{label}: cannot infer the {kind} architecture: {exc}") from exc
    config.update(overrides)
    try:
        net = define(**config)
    except ValueError as exc:
        raise ValueError(f"{label}: cannot build {kind} {config}: {exc}") from exc
    _load_into(net, sd, label, config)
    net.eval()
    return net, config


def load_reference_generator(source: StateDictSource, **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Build a generator matching a reference checkpoint and load its weights (strict).

    ``source`` is a path to a ``.pth`` file (``latest_net_G.pth``,
    ``latest_net_G_A.pth``, ...) or an already loaded state dict. ``overrides``
    replace inferred :func:`~translate.networks.define_G` kwargs (e.g.
    ``use_dropout=True`` or ``norm='none'``). Returns ``(net, config)`` with
    ``net`` in ``eval()`` mode and ``config`` the kwargs used for ``define_G``.
    Raises ``ValueError`` naming the file if it cannot be read or does not match.
    """
    return _build_and_load(source, "generator", overrides)


def load_reference_discriminator(source: StateDictSource, **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Discriminator counterpart of :func:`load_reference_generator` (``define_D`` kwargs)."""
    return _build_and_load(source, "discriminator", overrides)
