"""The variational autoencoder's parts (Kingma & Welling 2014): a convolutional encoder to a diagonal Gaussian
q(z|x), the reparameterisation trick, a discretised Gaussian likelihood p(x|z), the ELBO and bits per dimension,
and the even grid of the latent plane the paper draws.

The decoder is the GAN family's DCGAN generator (:func:`translate.gan.networks.build_generator`): latents in, an
image in [-1, 1] out, so it loads, exports and samples as a GAN generator does. The encoder is the DCGAN
discriminator's strided convolutions (:func:`translate.gan.networks.dcgan_down_layers`) ending in 2 x nz numbers:
the mean and log-variance of q(z|x).

The likelihood is a Gaussian with the decoder's output as its mean and a learnt scale per channel, integrated over
each pixel's 8-bit bin (width 2/255 in [-1, 1]; the end bins reach to infinity), as PixelCNN++ does with the
logistic. So p(x|z) is a probability of the 8-bit image, the ELBO a lower bound on log p(x) in nats, and
bits/dim = -ELBO / (D ln 2) the number papers report; a continuous density (or a Bernoulli on grey levels) would
give neither. Images are quantised to their 256 levels first (digits are upscaled to non-integer levels).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.special import log_ndtr, ndtri

from .gan.networks import dcgan_down_layers

LEVELS = 256  # 8-bit pixels
HALF_BIN = 1.0 / (LEVELS - 1)  # half a bin's width in [-1, 1]


class Encoder(nn.Module):
    """images (N, nc, size, size) -> (mean, log-variance) of q(z|x), each (N, nz)."""

    def __init__(self, nz: int = 2, nc: int = 1, size: int = 16, ndf: int = 32, norm: str = "batch"):
        super().__init__()
        self.nz, self.nc, self.size = nz, nc, size
        layers, channels = dcgan_down_layers(nc, size, ndf, norm)
        self.main = nn.Sequential(*layers, nn.Conv2d(channels, 2 * nz, 4, 1, 0))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.main(x).reshape(x.shape[0], 2, self.nz).unbind(1)
        return mu, logvar


class GaussianLikelihood(nn.Module):
    """The learnt log standard deviation of p(x|z), one per channel (the mean is the decoder's output)."""

    def __init__(self, nc: int = 1, log_scale: float = math.log(0.1)):
        super().__init__()
        self.log_scale = nn.Parameter(torch.full((nc,), float(log_scale)))

    def forward(self, x: Tensor, mean: Tensor) -> Tensor:
        """log p(x|z) per image, in nats, summed over its pixels: (N,)."""
        return discretized_gaussian_log_prob(x, mean, self.log_scale.reshape(1, -1, 1, 1)).flatten(1).sum(1)


def quantize(x: Tensor) -> Tensor:
    """``x`` in [-1, 1] on the 256 levels of an 8-bit image."""
    return torch.round((x.clamp(-1, 1) + 1) * (LEVELS - 1) / 2) * (2 / (LEVELS - 1)) - 1


def _log_diff_cdf(a: Tensor, b: Tensor) -> Tensor:
    """log(Phi(b) - Phi(a)) for a < b, computed in the tail where both lie (no cancellation of 1 - 1)."""
    flip = a > 0  # both in the upper tail: Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi = log_ndtr(hi)
    return log_hi + torch.log(-torch.expm1((log_ndtr(lo) - log_hi).clamp(max=-1e-12)))


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) per element for 8-bit ``x`` in [-1, 1] under N(mean, exp(log_scale)^2) integrated over x's bin;
    the bins of -1 and 1 take the tails, so the 256 probabilities sum to one."""
    x = quantize(x)
    inv = torch.exp(-log_scale)
    lower, upper = (x - HALF_BIN - mean) * inv, (x + HALF_BIN - mean) * inv
    inner = _log_diff_cdf(lower, upper)
    return torch.where(x <= -1 + 1e-6, log_ndtr(upper), torch.where(x >= 1 - 1e-6, log_ndtr(-lower), inner))


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor | None = None) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) (drawn here unless given): a sample of q(z|x) that gradients
    flow through to mu and log-variance."""
    eps = torch.randn_like(mu) if eps is None else eps
    return mu + torch.exp(0.5 * logvar) * eps


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, in closed form: 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def elbo_terms(x: Tensor, encoder: nn.Module, decoder: nn.Module, likelihood: GaussianLikelihood,
               eps: Tensor | None = None) -> dict[str, Tensor]:
    """One-sample ELBO per image (N,): ``elbo`` = ``log_likelihood`` (E_q log p(x|z), estimated with one z) -
    ``kl`` (exact); all in nats. ``eps`` fixes the reparameterisation noise."""
    mu, logvar = encoder(x)
    z = reparameterize(mu.float(), logvar.float(), eps)
    log_likelihood = likelihood(x.float(), decoder(z).float())
    kl = kl_to_standard_normal(mu.float(), logvar.float())
    return {"elbo": log_likelihood - kl, "log_likelihood": log_likelihood, "kl": kl}


def bits_per_dim(elbo: Tensor | float, dims: int) -> Tensor | float:
    """-ELBO (nats per image of ``dims`` numbers) in bits per number: an upper bound on -log2 p(x) / D."""
    return -elbo / (dims * math.log(2))


def latent_grid(side: int) -> Tensor:
    """(side^2, 2) points of the latent plane: an even grid of the unit square, (i + 1/2) / side on each axis,
    through the Gaussian's inverse CDF (Kingma & Welling 2014, fig. 4), so each point stands for an equal
    share of the prior. Row-major, the first coordinate along a row, the second down the columns."""
    q = ndtri((torch.arange(side, dtype=torch.float64) + 0.5) / side).float()
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")  # top row: the highest second coordinate
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], 1)


__all__ = ["Encoder", "GaussianLikelihood", "quantize", "discretized_gaussian_log_prob", "reparameterize",
           "kl_to_standard_normal", "elbo_terms", "bits_per_dim", "latent_grid", "LEVELS"]
