"""The networks of the image-to-image trainers, built from their config: U-Net or ResNet generators
and PatchGAN discriminators (translate.networks), the memory layout their inputs take, and the spec
under which a generator is checkpointed and exported."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from translate.checkpoint import GeneratorSpec
from translate.errors import ConfigError
from translate.networks import define_D, define_G

from .config import SegmenterConfig, TranslationConfig, resolved

# The built-in sets' tested networks and sizes (translate data make maps|sketches), the presets of the paired
# trainers (pix2pix.PRESETS, bicyclegan.PRESETS) and measured in BENCHMARKS.md: small enough to learn visibly in a
# few CPU-minutes at 128 px. Instance norm keeps train-time and test-time normalisation the same at batch 4 (batch
# norm's running statistics lag behind in a short run).
CPU_128: dict[str, Any] = dict(size=128, netG="unet_128", ngf=32, ndf=32, norm="instance", batch_size=4)


def generator(c: TranslationConfig | SegmenterConfig, input_nc: int | None = None, output_nc: int | None = None
              ) -> tuple[dict[str, Any], nn.Module]:
    """(arch, network) of a ``--netG`` generator from ``input_nc`` to ``output_nc`` channels (default: the
    config's A to B), initialised as ``--init-type`` says; the arch is what checkpoints record to rebuild it.
    A ConfigError when ``--size`` does not fit the generator."""
    arch: dict[str, Any] = dict(name=c.netG, input_nc=c.input_nc if input_nc is None else input_nc,
                                output_nc=c.output_nc if output_nc is None else output_nc, ngf=c.ngf, norm=c.norm,
                                use_dropout=c.dropout, init_type=c.init_type, init_gain=c.init_gain)
    G = define_G(**arch)
    c.check_size(getattr(G, "size_multiple", 1))
    return arch, G


def discriminator(c: TranslationConfig, input_nc: int) -> nn.Module:
    """A ``--netD`` discriminator of images with ``input_nc`` channels (``--num-d`` of them at halved scales),
    initialised as ``--init-type`` says. A ConfigError when its coarsest scale is too small for ``--netD``."""
    D = define_D(c.netD, input_nc, ndf=resolved(c.ndf), n_layers=c.n_layers_D, norm=resolved(c.norm),
                 init_type=c.init_type, init_gain=c.init_gain, spectral_norm=c.spectral_norm, num_d=c.num_d)
    if c.num_d > 1:
        size = resolved(c.size)
        try:
            with torch.no_grad():
                D.eval()(torch.zeros(1, input_nc, size, size))
        except (RuntimeError, ValueError):  # a convolution's output of no pixels; a normalisation of one
            coarsest = size >> (c.num_d - 1)
            raise ConfigError("num_d", f"{c.num_d} scales of {size} px leave about {coarsest} px for the coarsest "
                                       f"discriminator, too small for netD {c.netD}: use fewer, or a larger --size") from None
        finally:
            D.train()
    return D


def in_layout(c: TranslationConfig | SegmenterConfig, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A step's input images in the networks' memory layout (channels-last when the run uses it)."""
    if not c.channels_last:
        return images
    return tuple(x.contiguous(memory_format=torch.channels_last) for x in images)


def generator_spec(c: TranslationConfig, method: str, network: str, arch: dict[str, Any],
                   direction: str, kind: str = "translation") -> GeneratorSpec:
    """How the checkpoint describes the generator ``network`` translating in ``direction``, for export and loading
    (``kind``: its entry in translate.kinds.KINDS)."""
    return GeneratorSpec(network=network, arch=arch, batch_stats=c.batch_stats, direction=direction, method=method,
                         extra={"train_size": c.size, "data": c.data}, kind=kind)


__all__ = ["CPU_128", "generator", "discriminator", "in_layout", "generator_spec"]
