"""The adversarial objectives (one table every trainer uses), the WGAN-GP gradient penalty,
reconstruction losses and the CycleGAN image pool.

All image tensors are NCHW floats in [-1, 1]. Discriminator outputs (``prediction``) may have any
shape (a scalar per image or a PatchGAN map); losses are averaged over all elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ALIASES",
    "OBJECTIVES",
    "OBJECTIVE_NAMES",
    "Objective",
    "ObjectiveSettings",
    "ImagePool",
    "clip_weights",
    "cycle_loss",
    "feature_matching_loss",
    "get_objective",
    "gradient_penalty",
    "identity_loss",
    "l1_loss",
]

GP_KINDS: tuple[str, ...] = ("mixed", "real", "fake")


class ObjectiveSettings(Protocol):
    """What a trainer's config reads of an objective: its paper's training settings (an :class:`Objective`, or
    one of the GAN family's objectives over sets of samples, :mod:`translate.gan.objectives`)."""

    @property
    def optimizer(self) -> str: ...
    @property
    def lr(self) -> float: ...
    @property
    def betas(self) -> tuple[float, float]: ...
    @property
    def n_critic(self) -> int: ...
    @property
    def clip(self) -> float: ...
    @property
    def gradient_penalty(self) -> float: ...


@dataclass(frozen=True)
class Objective:
    """One adversarial objective, as every trainer uses it.

    ``real`` / ``fake``: D's loss on its outputs (logits or critic values, any shape, averaged) for
    real and generated samples; D minimises ``real + fake`` (:meth:`discriminator_loss`; the
    image-to-image trainers halve it, as pix2pix and CycleGAN do). ``generator``: G's loss on D's
    outputs for generated samples. The rest are the paper's training settings, which a trainer
    applies unless the user overrides them: the optimizer and its rate and betas, D updates per G
    update (``n_critic``), weight clipping after every D update (``clip`` > 0, WGAN) and the
    gradient penalty's weight (``gradient_penalty`` > 0, WGAN-GP; :func:`gradient_penalty`).
    """

    name: str
    real: Callable[[Tensor], Tensor]
    fake: Callable[[Tensor], Tensor]
    generator: Callable[[Tensor], Tensor]
    reference: str
    optimizer: str = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    n_critic: int = 1
    clip: float = 0.0
    gradient_penalty: float = 0.0

    def discriminator_loss(self, real_pred: Tensor, fake_pred: Tensor) -> Tensor:
        return self.real(real_pred) + self.fake(fake_pred)


def _bce(target: float) -> Callable[[Tensor], Tensor]:
    def loss(logits: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))
    return loss


def _squared(target: float) -> Callable[[Tensor], Tensor]:
    def loss(pred: Tensor) -> Tensor:
        return F.mse_loss(pred, torch.full_like(pred, target))
    return loss


def _mean(pred: Tensor) -> Tensor:
    return pred.mean()


def _neg_mean(pred: Tensor) -> Tensor:
    return -pred.mean()


def _hinge_real(pred: Tensor) -> Tensor:
    return F.relu(1.0 - pred).mean()


def _hinge_fake(pred: Tensor) -> Tensor:
    return F.relu(1.0 + pred).mean()


def _minimax_generator(logits: Tensor) -> Tensor:
    # E[log(1 - D(G(z)))] with D = sigmoid(l) is mean(-softplus(l)): stable for any l. Its gradient
    # -sigmoid(l) vanishes when D confidently rejects the fakes, hence the non-saturating loss.
    return -F.softplus(logits).mean()


#: Every objective by name. Defaults: DCGAN's Adam 2e-4 (0.5, 0.999) for the BCE, least-squares and
#: hinge objectives (also pix2pix's and CycleGAN's); RMSprop 5e-5 with n_critic 5 and c = 0.01 for
#: WGAN; Adam 1e-4 (0, 0.9) with n_critic 5 and lambda 10 for WGAN-GP.
OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("minimax", _bce(1.0), _bce(0.0), _minimax_generator, "Goodfellow et al. 2014, minimax G"),
    Objective("nonsaturating", _bce(1.0), _bce(0.0), _bce(1.0), "Goodfellow et al. 2014, G maximises log D(G(z))"),
    Objective("lsgan", _squared(1.0), _squared(0.0), _squared(1.0), "Mao et al. 2017, as in CycleGAN"),
    Objective("wgan", _neg_mean, _mean, _neg_mean, "Arjovsky et al. 2017", optimizer="rmsprop", lr=5e-5,
              betas=(0.0, 0.0), n_critic=5, clip=0.01),
    Objective("wgangp", _neg_mean, _mean, _neg_mean, "Gulrajani et al. 2017", lr=1e-4, betas=(0.0, 0.9),
              n_critic=5, gradient_penalty=10.0),
    Objective("hinge", _hinge_real, _hinge_fake, _neg_mean, "Lim & Ye 2017, Miyato et al. 2018"),
)}
ALIASES = {"vanilla": "nonsaturating"}  # the reference code's name for the BCE objective
OBJECTIVE_NAMES: tuple[str, ...] = (*OBJECTIVES, *ALIASES)


def get_objective(name: str) -> Objective:
    """The objective called ``name`` (or an alias of it); ValueError for an unknown name."""
    try:
        return OBJECTIVES[ALIASES.get(name, name)]
    except KeyError:
        raise ValueError(f"unknown GAN objective {name!r}; expected one of {OBJECTIVE_NAMES}") from None


def clip_weights(net: nn.Module, c: float) -> None:
    """WGAN's Lipschitz constraint: every parameter clamped to [-c, c] in place."""
    with torch.no_grad():
        for p in net.parameters():
            p.clamp_(-c, c)


def gradient_penalty(
    D: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    lambda_gp: float = 10.0,
    kind: str = "mixed",
    constant: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """WGAN-GP gradient penalty (Gulrajani et al. 2017).

    ``penalty = lambda_gp * mean_i((||grad_x D(x_i)||_2 - constant)^2)`` where ``x`` is
    ``eps * real + (1 - eps) * fake`` with ``eps ~ U(0, 1)`` per sample (``kind='mixed'``),
    or ``real`` / ``fake`` themselves (``kind='real'`` / ``'fake'``). ``real`` and ``fake`` are
    detached; the graph is kept (``create_graph=True``) so the penalty backpropagates into D's
    parameters. ``D`` is any callable (wrap conditional discriminators in a lambda); its
    output may have any shape and is summed. ``generator`` draws ``eps`` reproducibly.

    Returns ``(penalty, gradients)`` with ``gradients`` shaped like ``real``; for
    ``lambda_gp == 0`` returns ``(0., None)`` without calling D.
    """
    if kind not in GP_KINDS:
        raise ValueError(f"unknown gradient penalty kind {kind!r}; expected one of {GP_KINDS}")
    if real.shape != fake.shape:
        raise ValueError(f"real and fake shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
    if lambda_gp == 0.0:
        return torch.zeros((), device=real.device, dtype=real.dtype), None

    real, fake = real.detach(), fake.detach()
    if kind == "real":
        x = real.clone()
    elif kind == "fake":
        x = fake.clone()
    else:
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        device = generator.device if generator is not None else real.device
        eps = torch.rand(shape, generator=generator, device=device).to(real)
        x = eps * real + (1.0 - eps) * fake
    x.requires_grad_(True)

    out = D(x)
    (gradients,) = torch.autograd.grad(
        outputs=out,
        inputs=x,
        grad_outputs=torch.ones_like(out),
        create_graph=True,
        retain_graph=True,
    )
    # The tiny offset keeps the norm differentiable where the gradient is exactly zero.
    norms = (gradients.flatten(1) + 1e-16).norm(2, dim=1)
    penalty = lambda_gp * ((norms - constant) ** 2).mean()
    return penalty, gradients


def l1_loss(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute error over all elements."""
    return F.l1_loss(a, b)


def cycle_loss(rec: Tensor, real: Tensor, lambda_: float) -> Tensor:
    """CycleGAN cycle-consistency loss ``lambda_ * ||F(G(x)) - x||_1`` (mean)."""
    return lambda_ * l1_loss(rec, real)


def feature_matching_loss(fake: list[list[Tensor]], real: list[list[Tensor]], paired: bool = True) -> Tensor:
    """pix2pixHD's feature-matching loss: the L1 between D's activations on generated and on real images, per
    scale and per block, the output excluded (``features`` of translate.networks' discriminators, finest scale
    first), each block weighted 4 / (blocks) and each scale 1 / (scales) as there. ``paired``: image i of
    ``fake`` is meant to be image i of ``real``; unpaired, only each channel's mean over the batch and the image
    is matched (Salimans et al. 2016), as two unrelated images need not share their activations. ``real`` is
    detached: the loss moves G toward D's picture of real images, not D. Zero for identical features."""
    terms = []
    for f_fake, f_real in zip(fake, real, strict=True):
        blocks = len(f_fake) - 1
        for a, b in zip(f_fake[:-1], f_real[:-1], strict=True):
            a, b = a.float(), b.detach().float()
            if not paired:
                a, b = a.mean(dim=(0, 2, 3)), b.mean(dim=(0, 2, 3))
            terms.append(F.l1_loss(a, b) * (4.0 / blocks / len(fake)))
    return torch.stack(terms).sum()


def identity_loss(idt: Tensor, real: Tensor, lambda_: float) -> Tensor:
    """CycleGAN identity loss ``lambda_ * ||G(y) - y||_1`` (mean).

    ``lambda_`` is the total weight; CycleGAN uses ``lambda_idt * lambda_cycle`` (e.g. 0.5 * 10).
    """
    return lambda_ * l1_loss(idt, real)


class ImagePool:
    """CycleGAN history of generated images (Shrivastava et al. 2017), ``pool_size`` images.

    :meth:`query` handles each image of the batch in turn: while the pool is not full the image
    is stored and returned; once full, with probability 0.5 a random stored image is returned
    and replaced by the new one, otherwise the new image is returned. ``pool_size == 0`` returns
    the input unchanged. Returned images are detached. Randomness comes from a private
    ``torch.Generator`` (``seed=None``: nondeterministic); :meth:`state_dict` /
    :meth:`load_state_dict` save and restore the stored images (as CPU tensors) and the RNG
    state, so a resumed run gives the same outputs.
    """

    def __init__(self, pool_size: int = 50, seed: int | None = None) -> None:
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = int(pool_size)
        self.images: list[Tensor] = []
        self._rng = torch.Generator()
        if seed is None:
            self._rng.seed()
        else:
            self._rng.manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: Tensor) -> Tensor:
        """Return a batch (same shape as ``images``) drawn from the new images and the history."""
        if self.pool_size == 0:
            return images
        out: list[Tensor] = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(1, generator=self._rng).item() < 0.5:
                idx = int(torch.randint(0, self.pool_size, (1,), generator=self._rng).item())
                old = self.images[idx].to(device=image.device, dtype=image.dtype)
                self.images[idx] = image.clone()
                out.append(old)
            else:
                out.append(image)
        if not out:
            return images.detach()
        return torch.cat(out, dim=0)

    def state_dict(self) -> dict[str, Any]:
        """Pool size, stored images (CPU copies) and RNG state."""
        return {
            "pool_size": self.pool_size,
            "images": [img.detach().cpu().clone() for img in self.images],
            "rng_state": self._rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the pool size must match."""
        if int(state["pool_size"]) != self.pool_size:
            raise ValueError(f"pool_size mismatch: state has {state['pool_size']}, pool has {self.pool_size}")
        images = list(state["images"])
        if len(images) > self.pool_size:
            raise ValueError(f"state holds {len(images)} images, more than pool_size {self.pool_size}")
        self.images = [img.detach().clone() for img in images]
        self._rng.set_state(state["rng_state"])
