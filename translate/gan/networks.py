"""Networks of the unconditional / class-conditional GAN family, their sampling and ONNX export.

* DCGAN (Radford et al. 2016): the generator maps z (N, nz) through transposed convolutions
  with batch norm and ReLU to a tanh image; the discriminator is strided convolutions with
  LeakyReLU(0.2) and, by default, batch norm. Used as a WGAN-GP critic it takes no batch norm
  (the penalty is per sample): ``norm`` 'layer', 'instance' or 'none'.
* MLPs for 2-D data (the mixtures of :mod:`translate.gan.data`).
* Class conditioning (``num_classes > 0``): G gets the class one-hot concatenated to z; a
  convolutional D gets one constant one-hot plane per class appended to its input channels,
  an MLP D the one-hot concatenated to its input. Labels are class indices (int64).
* Spectral norm on D (Miyato et al. 2018) through :func:`translate.networks.apply_spectral_norm`
  (convolutions), extended here to linear layers.
* :class:`Classifier`: a small CNN / MLP over the same data, used for the controllable
  latent edit, conditional-accuracy checks and as the feature network of FID / KID when no
  Inception weights are given.

Networks are described by an ``arch`` dict (:func:`build_generator` / :func:`build_discriminator`
/ :func:`build_classifier` keyword arguments) that checkpoints carry, so this library
rebuilds them without the training code. :func:`export_generator_onnx` writes
``z[, label] -> output`` with a dynamic batch, verified against PyTorch.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import ConfigError
from ..networks import apply_spectral_norm, init_weights

ARCHS: tuple[str, ...] = ("dcgan", "mlp")
D_NORMS: tuple[str, ...] = ("batch", "layer", "instance", "none")


def one_hot(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """(N,) int64 -> (N, num_classes) float; written as a comparison so it exports to ONNX as Equal."""
    return (labels.reshape(-1, 1) == torch.arange(num_classes, device=labels.device)).to(dtype)


def _check_labels(y: torch.Tensor | None, num_classes: int, n: int) -> None:
    if num_classes and y is None:
        raise ValueError(f"this network is class-conditional ({num_classes} classes): give labels")
    if y is not None and not num_classes:
        raise ValueError("this network is unconditional: labels are not accepted")
    if y is not None and not torch.jit.is_tracing() and y.shape[0] != n:
        raise ValueError(f"{y.shape[0]} labels for {n} inputs")


def _up_layers(size: int) -> int:
    """Number of stride-2 upsamplings from 4x4 to ``size`` (a power of two >= 8)."""
    if size < 8 or size & (size - 1):
        raise ConfigError("size", f"DCGAN images must be a power of two >= 8, got {size}")
    return size.bit_length() - 3  # 8 -> 1, 16 -> 2, 32 -> 3, 64 -> 4


def _d_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "layer":  # layer norm over (C, H, W), as the WGAN-GP paper suggests for critics
        return nn.GroupNorm(1, channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ConfigError("d_norm", f"must be one of {D_NORMS}, got {norm!r}")


def dcgan_down_layers(nc: int, size: int, ndf: int, norm: str) -> tuple[list[nn.Module], int]:
    """DCGAN's strided convolutions from ``nc`` channels at ``size`` px down to 4 x 4: (layers, channels out).
    LeakyReLU(0.2) after each, ``norm`` after all but the first (DCGAN leaves the input layer unnormalised)."""
    n_down = _up_layers(size)
    layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for _ in range(n_down - 1):
        layers += [nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=norm == "none"),
                   _d_norm(norm, ndf * mult * 2), nn.LeakyReLU(0.2, True)]
        mult *= 2
    return layers, ndf * mult


class DCGANGenerator(nn.Module):
    """z (N, nz) [+ labels (N,)] -> images (N, nc, size, size) in [-1, 1]."""

    def __init__(self, nz: int = 100, nc: int = 3, size: int = 64, ngf: int = 64, num_classes: int = 0):
        super().__init__()
        self.nz, self.nc, self.size, self.num_classes = nz, nc, size, num_classes
        n_up = _up_layers(size)
        mult = 2 ** (n_up - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz + num_classes, ngf * mult, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(ngf * mult), nn.ReLU(True)]
        for _ in range(n_up - 1):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ngf * mult // 2), nn.ReLU(True)]
            mult //= 2
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels(y, self.num_classes, z.shape[0])
        if y is not None:  # given exactly when the network is conditional (checked above)
            z = torch.cat([z, one_hot(y, self.num_classes, z.dtype)], 1)
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """images (N, nc, size, size) [+ labels] -> one logit / critic value per image, (N,); :meth:`features` gives
    the last hidden layer (the MMD objective's feature map)."""

    def __init__(self, nc: int = 3, size: int = 64, ndf: int = 64, num_classes: int = 0, norm: str = "batch"):
        super().__init__()
        self.nc, self.size, self.num_classes, self.norm = nc, size, num_classes, norm
        layers, channels = dcgan_down_layers(nc + num_classes, size, ndf, norm)
        self.main = nn.Sequential(*layers, nn.Conv2d(channels, 1, 4, 1, 0))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(self._inputs(x, y)).reshape(-1)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden layer (the 4 x 4 maps before the scoring convolution), flattened: (N, F)."""
        return self.main[:-1](self._inputs(x, y)).flatten(1)

    def _inputs(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        _check_labels(y, self.num_classes, x.shape[0])
        if y is not None:  # given exactly when the network is conditional (checked above)
            planes = one_hot(y, self.num_classes, x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, planes], 1)
        return x


def _mlp(sizes: list[int], act: nn.Module) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(a, b), copy.deepcopy(act)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return layers


class MLPGenerator(nn.Module):
    """z (N, nz) [+ labels] -> points (N, out_dim); ``layers`` hidden layers of ``width`` with ReLU."""

    def __init__(self, nz: int = 2, out_dim: int = 2, width: int = 128, layers: int = 3, num_classes: int = 0):
        super().__init__()
        self.nz, self.out_dim, self.num_classes = nz, out_dim, num_classes
        self.main = nn.Sequential(*_mlp([nz + num_classes] + [width] * layers + [out_dim], nn.ReLU()))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels(y, self.num_classes, z.shape[0])
        if y is not None:  # given exactly when the network is conditional (checked above)
            z = torch.cat([z, one_hot(y, self.num_classes, z.dtype)], 1)
        return self.main(z)


class MLPDiscriminator(nn.Module):
    """points (N, in_dim) [+ labels] -> (N,) logits; LeakyReLU(0.2) hidden layers, no norm; :meth:`features`
    gives the last hidden layer."""

    def __init__(self, in_dim: int = 2, width: int = 128, layers: int = 3, num_classes: int = 0):
        super().__init__()
        self.in_dim, self.num_classes = in_dim, num_classes
        self.main = nn.Sequential(*_mlp([in_dim + num_classes] + [width] * layers + [1], nn.LeakyReLU(0.2)))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(self._inputs(x, y)).reshape(-1)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden layer, after its activation: (N, width)."""
        return self.main[:-1](self._inputs(x, y))

    def _inputs(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        _check_labels(y, self.num_classes, x.shape[0])
        if y is not None:  # given exactly when the network is conditional (checked above)
            x = torch.cat([x, one_hot(y, self.num_classes, x.dtype)], 1)
        return x


class Classifier(nn.Module):
    """A small classifier: images -> 3 strided convs -> ``feature_dim`` features -> logits;
    points (``size`` 0) -> an MLP. :meth:`features` gives the penultimate layer (FID / KID)."""

    def __init__(self, nc: int = 1, size: int = 16, num_classes: int = 10, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.nc, self.size, self.num_classes, self.feature_dim = nc, size, num_classes, feature_dim
        if size:
            self.body = nn.Sequential(
                nn.Conv2d(nc, width, 3, 1, 1), nn.ReLU(True),
                nn.Conv2d(width, width * 2, 3, 2, 1), nn.ReLU(True),
                nn.Conv2d(width * 2, width * 2, 3, 2, 1), nn.ReLU(True),
                nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(width * 8, feature_dim), nn.ReLU(True))
        else:
            self.body = nn.Sequential(nn.Linear(nc, width), nn.ReLU(True), nn.Linear(width, feature_dim), nn.ReLU(True))
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# ------------------------------------------------------------------ factories
def build_generator(arch: str, nz: int, num_classes: int = 0, *, nc: int = 3, size: int = 64, ngf: int = 64,
                    out_dim: int = 2, width: int = 128, layers: int = 3) -> nn.Module:
    """G from an arch dict: 'dcgan' (images, DCGAN init N(0, 0.02)) or 'mlp' (points, PyTorch init)."""
    if arch == "dcgan":
        return init_weights(DCGANGenerator(nz, nc, size, ngf, num_classes), "normal", 0.02)
    if arch == "mlp":
        return MLPGenerator(nz, out_dim, width, layers, num_classes)
    raise ConfigError("arch", f"must be one of {ARCHS}, got {arch!r}")


def build_discriminator(arch: str, num_classes: int = 0, *, nc: int = 3, size: int = 64, ndf: int = 64,
                        norm: str = "batch", in_dim: int = 2, width: int = 128, layers: int = 3,
                        spectral_norm: bool = False) -> nn.Module:
    """D from an arch dict; ``spectral_norm`` wraps every conv and linear layer."""
    if arch == "dcgan":
        D: nn.Module = init_weights(DCGANDiscriminator(nc, size, ndf, num_classes, norm), "normal", 0.02)
    elif arch == "mlp":
        D = MLPDiscriminator(in_dim, width, layers, num_classes)
    else:
        raise ConfigError("arch", f"must be one of {ARCHS}, got {arch!r}")
    return spectral_normalize(D) if spectral_norm else D


def build_classifier(**arch) -> Classifier:
    return Classifier(**arch)


def spectral_normalize(net: nn.Module) -> nn.Module:
    """Spectral norm on every conv (``translate.networks.apply_spectral_norm``) and linear layer."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm

    apply_spectral_norm(net)
    for m in list(net.modules()):
        if isinstance(m, nn.Linear) and not parametrize.is_parametrized(m, "weight"):
            spectral_norm(m)
    return net


# ------------------------------------------------------------------- sampling
def sample_latents(n: int, nz: int, truncation: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """z ~ N(0, I) of shape (n, nz); with ``truncation`` T > 0 every component with |z| > T is
    redrawn until it falls inside (the truncation trick of BigGAN, Brock et al. 2019)."""
    z = torch.randn(n, nz, generator=generator)
    if truncation and truncation > 0:
        for _ in range(1000):
            bad = z.abs() > truncation
            if not bad.any():
                break
            z[bad] = torch.randn(int(bad.sum()), generator=generator)
        else:  # tiny T: what is left is clamped
            z = z.clamp(-truncation, truncation)
    elif truncation < 0:
        raise ConfigError("truncation", f"must be > 0 (or 0 for none), got {truncation}")
    return z


def sample_labels(n: int, num_classes: int, cls: int | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor | None:
    """Class indices for ``n`` samples: all ``cls`` when given, else cycling 0..K-1; None when unconditional."""
    if not num_classes:
        if cls is not None:
            raise ConfigError("class", "this generator is unconditional: --class is not accepted")
        return None
    if cls is not None:
        if not 0 <= cls < num_classes:
            raise ConfigError("class", f"must be in [0, {num_classes - 1}], got {cls}")
        return torch.full((n,), int(cls), dtype=torch.int64)
    return torch.arange(n, dtype=torch.int64) % num_classes


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 500) -> torch.Tensor:
    """G(z, y) in chunks of ``batch_size``, on G's device, returned on the CPU as float."""
    device = next(G.parameters()).device
    return torch.cat([G(z[i:i + batch_size].to(device), None if y is None else y[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(z), batch_size)])


__all__ = ["ARCHS", "D_NORMS", "dcgan_down_layers", "DCGANGenerator", "DCGANDiscriminator", "MLPGenerator",
           "MLPDiscriminator",
           "Classifier", "build_generator", "build_discriminator", "build_classifier", "spectral_normalize",
           "one_hot", "sample_latents", "sample_labels", "generate"]
