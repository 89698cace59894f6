"""Generator and discriminator architectures of Pix2Pix / CycleGAN.

The modules below re-implement the networks of
junyanz/pytorch-CycleGAN-and-pix2pix (``models/networks.py``) layer for layer.
Module nesting and attribute names are kept identical on purpose, so that the
``state_dict()`` keys match the reference exactly, e.g.

* U-Net:    ``model.model.0.weight``, ``model.model.1.model.1.weight``, ...
* ResNet:   ``model.1.weight``, ``model.10.conv_block.5.weight``, ...
* PatchGAN: ``model.0.weight``, ``model.2.weight``, ...
* PixelGAN: ``net.0.weight``, ``net.2.weight``, ...

This lets :mod:`translate.reference` load checkpoints written by the reference
code with ``load_state_dict(strict=True)``.

Differences from the reference (none of them changes the state-dict layout):

* ``define_G`` / ``define_D`` never move the network to a device nor wrap it in
  ``DataParallel``; they only build and initialise it.
* Generators validate that the input height/width is a multiple of
  ``size_multiple`` (the reference either crashes inside ``torch.cat`` (U-Net)
  or silently returns an output of a different size (ResNet)).
* Optional spectral normalisation of every convolution.
* Multi-scale discriminators (pix2pixHD) and every discriminator's intermediate features
  (``features``), for the feature-matching loss.
* :func:`to_inference` for deterministic, batch-independent inference.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Sequence
from typing import Any, Callable, Optional, Protocol

import torch
from torch import nn
from torch.nn import init

from .conv import MatmulConv2d, MatmulConvTranspose2d

__all__ = [
    "G_NAMES",
    "D_NAMES",
    "NORM_TYPES",
    "INIT_TYPES",
    "FeatureDiscriminator",
    "NormLayer",
    "get_norm_layer",
    "init_weights",
    "apply_spectral_norm",
    "UnetSkipConnectionBlock",
    "UnetGenerator",
    "ResnetBlock",
    "ResnetGenerator",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "MultiscaleDiscriminator",
    "define_G",
    "define_D",
    "LatentInputGenerator",
    "LatentEncoder",
    "define_latent_G",
    "define_E",
    "to_inference",
]

#: Generator names accepted by :func:`define_G`.
G_NAMES: tuple[str, ...] = ("unet_128", "unet_256", "unet", "resnet_6blocks", "resnet_9blocks", "resnet")
#: Discriminator names accepted by :func:`define_D`.
D_NAMES: tuple[str, ...] = ("basic", "n_layers", "pixel")
#: Normalisation names accepted by :func:`get_norm_layer`.
NORM_TYPES: tuple[str, ...] = ("batch", "instance", "none")
#: Initialisation schemes accepted by :func:`init_weights`.
INIT_TYPES: tuple[str, ...] = ("normal", "xavier", "kaiming", "orthogonal")
#: Padding types accepted by :class:`ResnetBlock`.
PADDING_TYPES: tuple[str, ...] = ("reflect", "replicate", "zero")

#: A factory ``num_features -> normalisation module``.
NormLayer = Callable[[int], nn.Module]

_UNET_DEPTHS = {"unet_128": 7, "unet_256": 8}
_RESNET_BLOCKS = {"resnet_6blocks": 6, "resnet_9blocks": 9}
_MIN_UNET_DOWNS = 5  # the reference always builds 5 blocks besides the ngf*8 ones


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _no_norm(num_features: int) -> nn.Module:
    """Norm factory for ``norm='none'``: an identity placeholder.

    Like the reference's ``Identity``, it still occupies an index in the
    surrounding ``nn.Sequential`` (so key indices are unchanged) and holds no
    parameters.
    """
    return nn.Identity()


def get_norm_layer(norm: str) -> NormLayer:
    """Return the normalisation-layer factory for ``norm``.

    * ``'batch'``: ``BatchNorm2d(affine=True, track_running_stats=True)``
    * ``'instance'``: ``InstanceNorm2d(affine=False, track_running_stats=False)``
    * ``'none'``: an ``nn.Identity`` factory (the reference's ``Identity``).
    """
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        return _no_norm
    raise ValueError(f"unknown normalisation {norm!r}; expected one of {NORM_TYPES}")


def _resolve_norm(norm_layer: Optional[NormLayer]) -> NormLayer:
    return _no_norm if norm_layer is None else norm_layer


def _uses_conv_bias(norm_layer: Optional[NormLayer]) -> bool:
    """Reference rule: convolutions followed by a norm get a bias only for InstanceNorm.

    (BatchNorm has its own shift; with ``norm='none'`` the reference also drops
    the bias, since its ``Identity`` factory is not InstanceNorm.)
    """
    factory = norm_layer.func if isinstance(norm_layer, functools.partial) else norm_layer
    return isinstance(factory, type) and issubclass(factory, nn.InstanceNorm2d)


def _check_spatial(x: torch.Tensor, multiple: int, what: str) -> None:
    """Raise a clear error if ``x``'s H/W are not multiples of ``multiple``.

    Skipped while tracing/exporting, so that dynamic shapes stay unconstrained.
    """
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    h, w = x.shape[-2], x.shape[-1]
    if h % multiple or w % multiple:
        raise ValueError(
            f"{what} needs input height and width that are multiples of {multiple}, got {h}x{w}"
        )


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Initialise ``net`` in place exactly as the reference does; returns ``net``.

    Conv / ConvTranspose / Linear weights follow ``init_type`` (``'normal'``:
    N(0, gain); ``'xavier'``: xavier_normal(gain); ``'kaiming'``:
    kaiming_normal(a=0, fan_in), gain ignored; ``'orthogonal'``: orthogonal(gain))
    and their biases are set to 0. BatchNorm2d weights ~ N(1, gain), biases 0.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init_type {init_type!r}; expected one of {INIT_TYPES}")

    def init_module(m: nn.Module) -> None:
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            if init_type == "normal":
                init.normal_(m.weight.data, 0.0, init_gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight.data, gain=init_gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight.data, a=0, mode="fan_in")
            else:  # orthogonal
                init.orthogonal_(m.weight.data, gain=init_gain)
            if m.bias is not None:
                init.constant_(m.bias.data, 0.0)
        elif isinstance(m, nn.BatchNorm2d):
            init.normal_(m.weight.data, 1.0, init_gain)
            init.constant_(m.bias.data, 0.0)

    net.apply(init_module)
    return net


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Wrap every Conv2d / ConvTranspose2d of ``net`` with spectral normalisation.

    Uses ``torch.nn.utils.parametrizations.spectral_norm`` (power iteration on
    the ``weight``; dim 1 for transposed convolutions). Changes the state-dict
    keys (``weight`` -> ``parametrizations.weight.original`` + ``_u``/``_v``).
    """
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(net.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and not parametrize.is_parametrized(m, "weight"):
            spectral_norm(m)
    return net


# --------------------------------------------------------------------------- #
# U-Net
# --------------------------------------------------------------------------- #
class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: ``x -> [down -> submodule -> up]``, concatenated with ``x``.

    ``self.model`` is an ``nn.Sequential`` laid out as in the reference:

    * outermost: ``[downconv, submodule, ReLU, upconv, Tanh]`` (no skip concat)
    * innermost: ``[LeakyReLU, downconv, ReLU, upconv, upnorm]``
    * otherwise: ``[LeakyReLU, downconv, downnorm, submodule, ReLU, upconv, upnorm]``
      plus ``Dropout(0.5)`` when ``use_dropout``.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: Optional[int] = None,
        submodule: Optional[nn.Module] = None,
        outermost: bool = False,
        innermost: bool = False,
        norm_layer: Optional[NormLayer] = nn.BatchNorm2d,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if outermost and innermost:
            raise ValueError("a U-Net block cannot be both outermost and innermost")
        if not innermost and submodule is None:
            raise ValueError("a non-innermost U-Net block needs a submodule")
        self.outermost = outermost
        self.innermost = innermost
        norm_layer_ = _resolve_norm(norm_layer)
        use_bias = _uses_conv_bias(norm_layer)
        if input_nc is None:
            input_nc = outer_nc

        downconv = MatmulConv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        layers: list[nn.Module]
        if outermost:
            assert submodule is not None  # checked above
            upconv = MatmulConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = MatmulConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv, norm_layer_(outer_nc)]
        else:
            assert submodule is not None  # checked above
            upconv = MatmulConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                downconv,
                norm_layer_(inner_nc),
                submodule,
                nn.ReLU(True),
                upconv,
                norm_layer_(outer_nc),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net generator with ``num_downs`` down-samplings (reference layout).

    With ``num_downs=8`` a 256x256 image reaches 1x1 at the bottleneck. Input
    height/width must be multiples of ``size_multiple = 2 ** num_downs``.
    Dropout (p=0.5), when enabled, sits in the ``num_downs - 5`` innermost
    non-bottleneck ``ngf*8`` decoder levels, as in the reference.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm_layer: Optional[NormLayer] = nn.BatchNorm2d,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < _MIN_UNET_DOWNS:
            raise ValueError(f"UnetGenerator needs num_downs >= {_MIN_UNET_DOWNS}, got {num_downs}")
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.ngf = ngf
        self.num_downs = num_downs
        self.size_multiple: int = 2**num_downs

        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm_layer=norm_layer, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm_layer=norm_layer)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm_layer=norm_layer
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_spatial(x, self.size_multiple, f"UnetGenerator(num_downs={self.num_downs})")
        return self.model(x)


# --------------------------------------------------------------------------- #
# ResNet
# --------------------------------------------------------------------------- #
class ResnetBlock(nn.Module):
    """Residual block ``x + conv_block(x)`` (reference layout).

    ``conv_block`` with reflect/replicate padding is
    ``[pad, conv, norm, ReLU, (Dropout), pad, conv, norm]``; with ``'zero'``
    padding the pad layers are absent and the convs pad by 1 themselves.
    """

    def __init__(
        self,
        dim: int,
        padding_type: str,
        norm_layer: Optional[NormLayer],
        use_dropout: bool,
        use_bias: bool,
    ) -> None:
        super().__init__()
        if padding_type not in PADDING_TYPES:
            raise ValueError(f"unknown padding_type {padding_type!r}; expected one of {PADDING_TYPES}")
        self.conv_block = self.build_conv_block(dim, padding_type, _resolve_norm(norm_layer), use_dropout, use_bias)

    @staticmethod
    def _padding(padding_type: str) -> tuple[list[nn.Module], int]:
        if padding_type == "reflect":
            return [nn.ReflectionPad2d(1)], 0
        if padding_type == "replicate":
            return [nn.ReplicationPad2d(1)], 0
        return [], 1  # zero padding inside the conv

    def build_conv_block(
        self, dim: int, padding_type: str, norm_layer: NormLayer, use_dropout: bool, use_bias: bool
    ) -> nn.Sequential:
        pad, p = self._padding(padding_type)
        layers: list[nn.Module] = [*pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = self._padding(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet generator (Johnson et al.): 2 down-samplings, ``n_blocks`` residual
    blocks, 2 transposed-conv up-samplings (reference layout, all in ``self.model``).

    Input height/width must be multiples of ``size_multiple = 4``.
    """

    n_downsampling = 2

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm_layer: Optional[NormLayer] = nn.BatchNorm2d,
        use_dropout: bool = False,
        n_blocks: int = 6,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.ngf = ngf
        self.n_blocks = n_blocks
        self.size_multiple: int = 2**self.n_downsampling
        norm = _resolve_norm(norm_layer)
        use_bias = _uses_conv_bias(norm_layer)

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(self.n_downsampling):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                norm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**self.n_downsampling
        for _ in range(n_blocks):
            layers.append(
                ResnetBlock(ngf * mult, padding_type=padding_type, norm_layer=norm_layer,
                            use_dropout=use_dropout, use_bias=use_bias)
            )
        for i in range(self.n_downsampling):
            mult = 2 ** (self.n_downsampling - i)
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2,
                                   padding=1, output_padding=1, bias=use_bias),
                norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_spatial(x, self.size_multiple, "ResnetGenerator")
        return self.model(x)

    def features(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """The outputs of ``self.model[i]`` for each ``i`` in ``layers`` (ascending), computing no further than
        the last: the encoder's maps that CUT's PatchNCE compares (translate/patchnce.py). A method beside
        ``forward``, so the traced and exported graph stays the generator's alone."""
        _check_spatial(x, self.size_multiple, "ResnetGenerator")
        wanted, out = set(layers), []
        for i, layer in enumerate(self.model[: max(layers) + 1]):
            x = layer(x)
            if i in wanted:
                out.append(x)
        return out


# --------------------------------------------------------------------------- #
# Discriminators
# --------------------------------------------------------------------------- #
class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator; ``n_layers=3`` is the 70x70 PatchGAN ('basic').

    Outputs a 1-channel map of raw logits (no sigmoid, as in the current reference).
    """

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm_layer: Optional[NormLayer] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        self.input_nc = input_nc
        self.ndf = ndf
        self.n_layers = n_layers
        norm = _resolve_norm(norm_layer)
        use_bias = _uses_conv_bias(norm_layer)
        kw, padw = 4, 1

        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, True),
        ]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw, bias=use_bias),
                norm(ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw, bias=use_bias),
            norm(ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """[[each block's activations..., the output]]: one scale, as :class:`MultiscaleDiscriminator` gives."""
        return [_block_outputs(self.model, x)]


def _block_outputs(layers: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The activations after each block of a discriminator (each LeakyReLU), then its output (pix2pixHD's
    ``getIntermFeat``, from the reference's layer list)."""
    out = []
    for layer in layers:
        x = layer(x)
        if isinstance(layer, nn.LeakyReLU):
            out.append(x)
    return [*out, x]


class PixelDiscriminator(nn.Module):
    """1x1 PixelGAN discriminator (per-pixel logits, no sigmoid). Layers live in ``self.net``."""

    def __init__(self, input_nc: int, ndf: int = 64, norm_layer: Optional[NormLayer] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.input_nc = input_nc
        self.ndf = ndf
        norm = _resolve_norm(norm_layer)
        use_bias = _uses_conv_bias(norm_layer)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
            norm(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def features(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """[[each block's activations..., the output]]: one scale, as :class:`MultiscaleDiscriminator` gives."""
        return [_block_outputs(self.net, x)]


class FeatureDiscriminator(Protocol):
    """A discriminator that also gives its blocks' activations (feature matching): each of this module's."""

    def __call__(self, x: torch.Tensor) -> Any: ...

    def features(self, x: torch.Tensor) -> list[list[torch.Tensor]]: ...


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD's multi-scale discriminator: ``len(scales)`` discriminators of one architecture, the k-th judging
    the image average-pooled k times (3x3, stride 2, padding not counted, as pix2pixHD), so the coarse ones see
    the global structure and the fine one the texture. ``forward`` gives their outputs, finest first."""

    def __init__(self, scales: list[nn.Module]) -> None:
        super().__init__()
        self.scales = nn.ModuleList(scales)
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def _inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        xs = [x]
        for _ in range(len(self.scales) - 1):
            xs.append(self.downsample(xs[-1]))
        return xs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [D(xi) for D, xi in zip(self.scales, self._inputs(x), strict=True)]

    def features(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale, finest first: each block's activations, then the output."""
        scales: list[FeatureDiscriminator] = list(self.scales)  # type: ignore[arg-type]  # NLayer or Pixel
        return [D.features(xi)[0] for D, xi in zip(scales, self._inputs(x), strict=True)]


# --------------------------------------------------------------------------- #
# Factories
# --------------------------------------------------------------------------- #
def _finish(net: nn.Module, init_type: str, init_gain: float, spectral_norm: bool) -> nn.Module:
    init_weights(net, init_type, init_gain)
    if spectral_norm:
        apply_spectral_norm(net)
    return net


def parse_generator_name(name: str, num_downs: Optional[int] = None,
                         n_blocks: Optional[int] = None) -> tuple[str, Optional[int], Optional[int]]:
    """Resolve sized names: ``unet_<N>`` (N a power of two >= 32, input multiple N) and
    ``resnet_<K>blocks`` map to the generic 'unet' / 'resnet' with their depth."""
    m = re.fullmatch(r"unet_(\d+)", name)
    if m and name not in _UNET_DEPTHS:
        size = int(m.group(1))
        if size < 32 or size & (size - 1):
            raise ValueError(f"generator {name!r}: the size must be a power of two >= 32")
        depth = size.bit_length() - 1
        if num_downs is not None and num_downs != depth:
            raise ValueError(f"{name!r} has num_downs={depth}, got num_downs={num_downs}")
        return "unet", depth, n_blocks
    m = re.fullmatch(r"resnet_(\d+)blocks", name)
    if m and name not in _RESNET_BLOCKS:
        blocks = int(m.group(1))
        if n_blocks is not None and n_blocks != blocks:
            raise ValueError(f"{name!r} has n_blocks={blocks}, got n_blocks={n_blocks}")
        return "resnet", num_downs, blocks
    if name not in G_NAMES:
        raise ValueError(f"unknown generator {name!r}; expected one of {G_NAMES}, unet_<N> (N = 32, 64, ...) "
                         "or resnet_<K>blocks")
    return name, num_downs, n_blocks


def define_G(
    name: str,
    input_nc: int = 3,
    output_nc: int = 3,
    ngf: int = 64,
    norm: str = "batch",
    use_dropout: bool = False,
    init_type: str = "normal",
    init_gain: float = 0.02,
    spectral_norm: bool = False,
    num_downs: Optional[int] = None,
    n_blocks: Optional[int] = None,
) -> nn.Module:
    """Build and initialise a generator (on CPU; no device move, no DataParallel).

    ``name`` is one of :data:`G_NAMES`: ``'unet_128'`` (7 downs), ``'unet_256'``
    (8 downs), ``'unet'`` (needs ``num_downs`` >= 5), ``'resnet_6blocks'``,
    ``'resnet_9blocks'``, ``'resnet'`` (needs ``n_blocks``). ``num_downs`` /
    ``n_blocks`` may also be given with a fixed-size name if they agree with it.
    Spectral norm, if requested, is applied after initialisation.
    """
    name, num_downs, n_blocks = parse_generator_name(name, num_downs, n_blocks)
    norm_layer = get_norm_layer(norm)
    is_unet = name.startswith("unet")

    if is_unet:
        if n_blocks is not None:
            raise ValueError(f"n_blocks is a ResNet option, not valid for generator {name!r}")
        if name in _UNET_DEPTHS:
            if num_downs is not None and num_downs != _UNET_DEPTHS[name]:
                raise ValueError(f"{name!r} has num_downs={_UNET_DEPTHS[name]}, got num_downs={num_downs}")
            num_downs = _UNET_DEPTHS[name]
        elif num_downs is None:
            raise ValueError("generator 'unet' needs num_downs")
        net: nn.Module = UnetGenerator(input_nc, output_nc, num_downs, ngf, norm_layer=norm_layer,
                                       use_dropout=use_dropout)
    else:
        if num_downs is not None:
            raise ValueError(f"num_downs is a U-Net option, not valid for generator {name!r}")
        if name in _RESNET_BLOCKS:
            if n_blocks is not None and n_blocks != _RESNET_BLOCKS[name]:
                raise ValueError(f"{name!r} has n_blocks={_RESNET_BLOCKS[name]}, got n_blocks={n_blocks}")
            n_blocks = _RESNET_BLOCKS[name]
        elif n_blocks is None:
            raise ValueError("generator 'resnet' needs n_blocks")
        net = ResnetGenerator(input_nc, output_nc, ngf, norm_layer=norm_layer, use_dropout=use_dropout,
                              n_blocks=n_blocks)
    return _finish(net, init_type, init_gain, spectral_norm)


def define_D(
    name: str,
    input_nc: int,
    ndf: int = 64,
    n_layers: int = 3,
    norm: str = "batch",
    init_type: str = "normal",
    init_gain: float = 0.02,
    spectral_norm: bool = False,
    num_d: int = 1,
) -> nn.Module:
    """Build and initialise a discriminator (on CPU; no device move, no DataParallel).

    ``name`` is one of :data:`D_NAMES`: ``'basic'`` (70x70 PatchGAN, always 3
    layers; ``n_layers`` is ignored as in the reference), ``'n_layers'``
    (PatchGAN with ``n_layers``), ``'pixel'`` (1x1 PixelGAN). ``num_d`` > 1: a
    :class:`MultiscaleDiscriminator` of that many, each built and initialised so.
    """
    if name not in D_NAMES:
        raise ValueError(f"unknown discriminator {name!r}; expected one of {D_NAMES}")
    if num_d > 1:
        return MultiscaleDiscriminator([define_D(name, input_nc, ndf, n_layers, norm, init_type, init_gain,
                                                 spectral_norm) for _ in range(num_d)])
    norm_layer = get_norm_layer(norm)
    if name == "basic":
        net: nn.Module = NLayerDiscriminator(input_nc, ndf, n_layers=3, norm_layer=norm_layer)
    elif name == "n_layers":
        net = NLayerDiscriminator(input_nc, ndf, n_layers=n_layers, norm_layer=norm_layer)
    else:
        net = PixelDiscriminator(input_nc, ndf, norm_layer=norm_layer)
    return _finish(net, init_type, init_gain, spectral_norm)


# --------------------------------------------------------------------------- #
# Multimodal translation (BicycleGAN, Zhu et al. 2017)
# --------------------------------------------------------------------------- #
class LatentInputGenerator(nn.Module):
    """A generator of one image and a latent code: ``z`` (N, nz) is broadcast over the image and
    concatenated to it as ``nz`` more input channels (BicycleGAN's "add_to_input"), then ``self.G``,
    a :func:`define_G` network, translates. A code of batch 1 serves every image of the batch (one
    sample's code for every tile of a large image)."""

    def __init__(self, G: nn.Module, nz: int) -> None:
        super().__init__()
        self.G = G
        self.nz = nz
        self.size_multiple: int = getattr(G, "size_multiple", 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        maps = z.to(x.dtype).reshape(z.shape[0], self.nz, 1, 1).expand(x.shape[0], self.nz, x.shape[2], x.shape[3])
        return self.G(torch.cat([x, maps], 1))


def define_latent_G(nz: int, input_nc: int = 3, **arch: Any) -> LatentInputGenerator:
    """A :class:`LatentInputGenerator`: :func:`define_G` with ``arch`` over ``input_nc + nz`` channels.
    ``input_nc`` is the image's channels, as a checkpoint's spec records it."""
    return LatentInputGenerator(define_G(input_nc=input_nc + nz, **arch), nz)


class _EncoderBlock(nn.Module):
    """BicycleGAN's residual encoder block: norm, LeakyReLU, 3x3 conv, norm, LeakyReLU, 3x3 conv and a 2x2
    mean pool, beside a shortcut of a mean pool and a 1x1 conv; half the size, ``out_nc`` channels."""

    def __init__(self, in_nc: int, out_nc: int, norm_layer: NormLayer) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            norm_layer(in_nc), nn.LeakyReLU(0.2, True), nn.Conv2d(in_nc, in_nc, 3, padding=1),
            norm_layer(in_nc), nn.LeakyReLU(0.2, True), nn.Conv2d(in_nc, out_nc, 3, padding=1), nn.AvgPool2d(2))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(in_nc, out_nc, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class LatentEncoder(nn.Module):
    """BicycleGAN's ResNet encoder (``E_ResNet``, its ``vaeLike`` form): an image -> the mean and
    log-variance of a Gaussian over ``nz`` latent numbers. A 4x4 stride-2 conv, ``n_blocks - 1``
    residual blocks each halving the size (channels ``nef * min(4, k)``), LeakyReLU, then a global
    average (the reference's fixed 8x8 pool, for any input size) and two linear heads."""

    def __init__(self, input_nc: int, nz: int, nef: int = 64, n_blocks: int = 5, norm: str = "instance") -> None:
        super().__init__()
        norm_layer = get_norm_layer(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, nef, kernel_size=4, stride=2, padding=1)]
        out_nc = nef
        for n in range(1, n_blocks):
            in_nc, out_nc = nef * min(4, n), nef * min(4, n + 1)
            layers.append(_EncoderBlock(in_nc, out_nc, norm_layer))
        layers += [nn.LeakyReLU(0.2, True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(out_nc, nz)
        self.fcVar = nn.Linear(out_nc, nz)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x)
        return self.fc(h), self.fcVar(h)


def define_E(input_nc: int, nz: int, nef: int = 64, n_blocks: int = 5, norm: str = "instance",
             init_type: str = "normal", init_gain: float = 0.02) -> LatentEncoder:
    """Build and initialise a :class:`LatentEncoder` (on CPU)."""
    net = LatentEncoder(input_nc, nz, nef, n_blocks, norm)
    init_weights(net, init_type, init_gain)
    return net


# --------------------------------------------------------------------------- #
# Inference
# --------------------------------------------------------------------------- #
def _batchnorm_as_instancenorm(bn: nn.modules.batchnorm._BatchNorm) -> nn.InstanceNorm2d:
    """InstanceNorm2d normalising with per-image statistics, carrying ``bn``'s affine params."""
    ref = bn.weight if bn.weight is not None else bn.running_mean
    kwargs: dict[str, Any] = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
    inorm = nn.InstanceNorm2d(bn.num_features, eps=bn.eps, affine=bn.affine, track_running_stats=False, **kwargs)
    if bn.affine:
        with torch.no_grad():
            inorm.weight.copy_(bn.weight)
            inorm.bias.copy_(bn.bias)
    return inorm


def _replace_batchnorm(module: nn.Module) -> int:
    """Swap every BatchNorm2d / SyncBatchNorm child (recursively) for an InstanceNorm2d."""
    count = 0
    for child_name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            setattr(module, child_name, _batchnorm_as_instancenorm(child))
            count += 1
        else:
            count += _replace_batchnorm(child)
    return count


def to_inference(G: nn.Module, batch_stats: bool) -> nn.Module:
    """Return a frozen deep copy of ``G`` in ``eval()`` mode for inference / export.

    Dropout is off (eval). With ``batch_stats=True`` every BatchNorm2d becomes an
    ``InstanceNorm2d(num_features, eps=bn.eps, affine=True, track_running_stats=False)``
    carrying the BN's weight and bias: each image is normalised with its own
    statistics. That is exactly what the reference computes at test time for a
    model trained at batch size 1 without ``--eval`` (BN in train mode on a
    batch of one), but deterministic, side-effect free (no running-stat
    updates) and independent of the other images in a batch. With
    ``batch_stats=False`` BN uses its running statistics (plain ``eval()``).

    The policy is recorded on the returned module as ``inference_norm``
    (``'batch_stats'`` or ``'running_stats'``) and ``batch_stats`` (bool).
    ``G`` itself is not modified; all parameters of the copy have
    ``requires_grad=False``. A copy of a network compiled in place (``nn.Module.compile``,
    as ``--compile`` does) runs eagerly: a test-time copy is made per validation, and
    compiling each one would cost more than it saves.
    """
    net = copy.deepcopy(G)
    for m in net.modules():
        m._compiled_call_impl = None
    if batch_stats:
        _replace_batchnorm(net)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    # nn.Module.__setattr__ keeps any value as a plain attribute; its annotation says Tensor | Module
    net.batch_stats = bool(batch_stats)  # type: ignore[assignment]
    net.inference_norm = "batch_stats" if batch_stats else "running_stats"  # type: ignore[assignment]
    return net
