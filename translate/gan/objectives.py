"""The GAN family's objectives over sets of samples, beside the per-sample table of :mod:`translate.losses`: each
loss reads D's outputs for the real and the generated samples together, so only the GAN family's trainer runs them.

* ``contrastive``: the discriminator must pick the real sample among N (noise-contrastive estimation with D as
  the classifier): each real sample with N - 1 generated ones is one N-way softmax over D's scores, D minimises
  its cross-entropy with the real one as the answer, G minimises the cross-entropy with each of its samples as the
  answer. With N = 2 it is the relativistic standard GAN (Jolicoeur-Martineau 2019): D's loss
  -log sigmoid(D(x) - D(G(z))), G's the same with the two swapped.
* ``mmd``: the squared maximum mean discrepancy between the real and generated samples in D's features (its last
  hidden layer), with a mixture of Gaussian kernels of several bandwidths; G minimises it and D, the feature map,
  maximises it (MMD GAN, Li et al. 2017; the kernel mixture of Li et al. 2015). The unbiased estimator of Gretton
  et al. (2012).

A :class:`SetObjective` carries its paper's training settings under the same names as an ``Objective``, so the
trainer's config takes its defaults the same way.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

#: Bandwidths (standard deviations) of the kernel mixture, in units of D's features: MMD GAN's (Li et al. 2017).
MMD_BANDWIDTHS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)


def contrastive_sets(real: Tensor, fake: Tensor, n_way: int) -> Tensor:
    """(n, N) scores: row i is real sample i's score, then the scores of generated samples i, i + 1, ...,
    i + N - 2 (cyclically), so each row holds N - 1 different generated samples. ``real``, ``fake``: (n,)."""
    n = real.shape[0]
    if not 2 <= n_way <= n + 1:
        raise ValueError(f"an N-way set needs 2 <= N <= batch + 1 (N - 1 distinct generated samples), got N = "
                         f"{n_way} for a batch of {n}")
    idx = (torch.arange(n, device=fake.device)[:, None] + torch.arange(n_way - 1, device=fake.device)) % n
    return torch.cat([real.reshape(n, 1), fake.reshape(-1)[idx]], 1)


def contrastive_discriminator_loss(real: Tensor, fake: Tensor, n_way: int) -> Tensor:
    """D's N-way cross-entropy: pick the real sample (column 0) in each set."""
    logits = contrastive_sets(real.reshape(-1), fake.reshape(-1), n_way)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def contrastive_generator_loss(real: Tensor, fake: Tensor, n_way: int) -> Tensor:
    """G's loss: the cross-entropy with each generated sample of a set as the answer, averaged over them."""
    logits = contrastive_sets(real.reshape(-1), fake.reshape(-1), n_way)
    return -(logits.log_softmax(1)[:, 1:]).mean()


def gaussian_kernel_mixture(a: Tensor, b: Tensor, bandwidths: tuple[float, ...] = MMD_BANDWIDTHS) -> Tensor:
    """k(a_i, b_j) = sum over sigma of exp(-||a_i - b_j||^2 / (2 sigma^2)): (len(a), len(b))."""
    d2 = torch.cdist(a.flatten(1), b.flatten(1)).pow(2)
    return sum((torch.exp(-d2 / (2.0 * s * s)) for s in bandwidths), torch.zeros_like(d2))


def mmd2(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = MMD_BANDWIDTHS) -> Tensor:
    """The unbiased estimate of MMD^2 between samples ``x`` (n, ...) and ``y`` (m, ...) under the kernel mixture:
    mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean k(x_i, y_j)."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs two samples or more on each side, got {n} and {m}")
    kxx, kyy, kxy = (gaussian_kernel_mixture(a, b, bandwidths) for a, b in ((x, x), (y, y), (x, y)))
    off = len(bandwidths)  # k(a, a) on the diagonal
    return ((kxx.sum() - off * n) / (n * (n - 1)) + (kyy.sum() - off * m) / (m * (m - 1)) - 2 * kxy.mean())


def _mmd_discriminator(real: Tensor, fake: Tensor, n_way: int) -> Tensor:
    return -mmd2(real, fake)


def _mmd_generator(real: Tensor, fake: Tensor, n_way: int) -> Tensor:
    return mmd2(real, fake)


@dataclass(frozen=True)
class SetObjective:
    """An objective over sets of samples: ``discriminator(real, fake, n_way)`` and ``generator(real, fake, n_way)``
    take D's outputs for a batch of real and of generated samples (its scores, or with ``features`` its last
    hidden layer); ``n_way`` is the contrastive set's size (the other objectives ignore it). The rest are the
    training settings, as an ``Objective`` names them."""

    name: str
    discriminator: Callable[[Tensor, Tensor, int], Tensor]
    generator: Callable[[Tensor, Tensor, int], Tensor]
    reference: str
    features: bool = False
    optimizer: str = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    n_critic: int = 1
    clip: float = 0.0
    gradient_penalty: float = 0.0


SET_OBJECTIVES: dict[str, SetObjective] = {o.name: o for o in (
    SetObjective("contrastive", contrastive_discriminator_loss, contrastive_generator_loss,
                 "N-way noise-contrastive D; N = 2: relativistic standard GAN, Jolicoeur-Martineau 2019"),
    SetObjective("mmd", _mmd_discriminator, _mmd_generator,
                 "MMD GAN, Li et al. 2017 (Gaussian kernel mixture on D's features)", features=True),
)}


__all__ = ["MMD_BANDWIDTHS", "SET_OBJECTIVES", "SetObjective", "contrastive_sets", "contrastive_discriminator_loss",
           "contrastive_generator_loss", "gaussian_kernel_mixture", "mmd2"]
