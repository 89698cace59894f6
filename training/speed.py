"""How a run uses the machine it is on: bf16 autocast, memory format, torch.compile.

Each choice is "auto" (None) in the configs and resolved here once the device is known, so
``config.json`` records what the run used; a flag overrides it. The rules follow the measurements
in BENCHMARKS.md ("CPU speed against the reference"), not assumptions:

* bf16 autocast (``--amp``): on CUDA, and for Pix2Pix and CycleGAN on CPUs that compute bf16 in
  hardware (AVX512-BF16 or AMX); off elsewhere (bf16 is emulated on other CPUs, and the GAN
  family's small networks were not measured). Losses, the exported ONNX model and
  validation stay float32 either way.
* channels-last memory (``--channels-last``): on CUDA for U-Nets; off on CPU, where it measured
  slower for both architectures (ResNets' instance norm and reflection padding; for U-Nets fused
  Adam runs 2.7x slower over channels-last weights, 83 against 31 ms a step for unet_256, more
  than the layout saves in the convolutions), and off for ResNets everywhere.
* ``torch.compile`` (``--compile``): off unless asked for; it compiles each network in place
  (``nn.Module.compile``), so state-dict keys, checkpoints and export are unchanged.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil

import torch
from torch import nn

from translate.errors import ConfigError

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (AVX512-BF16 or AMX tiles)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)  # private probes, present since torch 2.1
        try:
            if check is not None and check():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails means "not known to be there"
            pass
    return False


def resolve_amp(amp: bool | None, device: torch.device, cpu: bool = True) -> bool:
    """bf16 autocast for this run: ``amp`` when given, else on for CUDA, and for CPUs with native bf16
    when ``cpu`` (the method was measured faster there and within its tolerance of float32)."""
    if amp is None:
        if device.type == "cuda":
            return True
        return cpu and device.type == "cpu" and cpu_has_native_bf16()
    if amp and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("bf16 autocast on a CPU without native bf16 (AVX512-BF16 / AMX): it runs emulated, "
                    "likely slower than float32 (--no-amp turns it off)")
    return bool(amp)


def resolve_channels_last(channels_last: bool | None, netG: str, device: torch.device) -> bool:
    """Channels-last memory for this run: ``channels_last`` when given, else on for U-Nets on CUDA only."""
    if channels_last is None:
        return device.type == "cuda" and netG.startswith("unet")
    return bool(channels_last)


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile``'s default backend (inductor) cannot work here, or None.

    Checked before a run starts: without it the failure comes at the first step, from deep inside
    the compiler, after the data is loaded."""
    try:
        from torch._dynamo.eval_frame import is_dynamo_supported

        supported = is_dynamo_supported()
    except Exception:  # noqa: BLE001 - an older or newer torch without the probe: let compile say
        supported = True
    if not supported:
        return f"torch {torch.__version__} cannot compile on this Python (torch._dynamo is not supported here)"
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "it compiles CUDA kernels with Triton, which is not installed (pip install triton)"
        return None
    cxx = os.environ.get("CXX") or "g++"
    if not any(shutil.which(c) for c in (cxx, "g++", "c++", "clang++")):
        return f"on the CPU it compiles C++ and finds no compiler ({cxx}, g++, c++ or clang++ on PATH)"
    return None


def compile_networks(networks: dict[str, nn.Module], device: torch.device | None = None, **options) -> None:
    """``torch.compile`` each network in place (its state dict, hence checkpoints, unchanged);
    ``options`` go to ``torch.compile`` (e.g. ``backend="eager"`` to check tracing quickly). With the
    default backend, a ``device`` that cannot compile is a ConfigError naming what is missing."""
    if device is not None and options.get("backend", "inductor") == "inductor":
        problem = compile_problem(device)
        if problem:
            raise ConfigError("compile", f"torch.compile cannot run here: {problem}; train without --compile")
    for net in networks.values():
        net.compile(**options)
