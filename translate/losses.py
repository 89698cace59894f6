"""GAN losses, the WGAN-GP gradient penalty, reconstruction losses and the CycleGAN image pool.

All image tensors are NCHW floats in [-1, 1]. Discriminator outputs (``prediction``) may have any
shape (a scalar per image or a PatchGAN map); losses are averaged over all elements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "GAN_MODES",
    "GANLoss",
    "ImagePool",
    "cycle_loss",
    "gradient_penalty",
    "identity_loss",
    "l1_loss",
    "minimax_generator_loss",
    "non_saturating_generator_loss",
]

GAN_MODES: tuple[str, ...] = ("vanilla", "lsgan", "wgan", "wgangp", "hinge")
GP_KINDS: tuple[str, ...] = ("mixed", "real", "fake")


class GANLoss(nn.Module):
    """Adversarial loss for one of :data:`GAN_MODES`.

    * ``vanilla``: BCE on logits (Goodfellow et al. 2014). Used for the generator with
      ``target_is_real=True`` this is the *non-saturating* generator loss ``-log D(G(z))``.
    * ``lsgan``: least squares to the targets (Mao et al. 2017).
    * ``wgan`` / ``wgangp``: ``-mean(pred)`` for real, ``+mean(pred)`` for fake (Arjovsky et al.
      2017); the gradient penalty of WGAN-GP is separate, see :func:`gradient_penalty`.
    * ``hinge``: discriminator ``mean(relu(1 - pred))`` for real and ``mean(relu(1 + pred))`` for
      fake; generator ``-mean(pred)`` (Lim & Ye 2017, Miyato et al. 2018).

    ``target_real`` / ``target_fake`` are the labels for ``vanilla`` and ``lsgan`` (e.g.
    ``target_real=0.9`` for one-sided label smoothing); the other modes ignore them.
    ``for_discriminator`` only matters for ``hinge``.
    """

    def __init__(self, mode: str, target_real: float = 1.0, target_fake: float = 0.0) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN mode {mode!r}; expected one of {GAN_MODES}")
        self.mode = mode
        self.target_real = float(target_real)
        self.target_fake = float(target_fake)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, target_real={self.target_real}, target_fake={self.target_fake}"

    def _target(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        value = self.target_real if target_is_real else self.target_fake
        return torch.full_like(prediction, value)

    def loss(self, prediction: Tensor, target_is_real: bool, for_discriminator: bool = True) -> Tensor:
        """Scalar loss of ``prediction`` against the real (``True``) or fake (``False``) label."""
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(prediction, self._target(prediction, target_is_real))
        if self.mode == "lsgan":
            return F.mse_loss(prediction, self._target(prediction, target_is_real))
        if self.mode in ("wgan", "wgangp"):
            return -prediction.mean() if target_is_real else prediction.mean()
        # hinge
        if for_discriminator:
            if target_is_real:
                return F.relu(1.0 - prediction).mean()
            return F.relu(1.0 + prediction).mean()
        if not target_is_real:
            raise ValueError("hinge generator loss is defined only for target_is_real=True")
        return -prediction.mean()

    def forward(self, prediction: Tensor, target_is_real: bool, for_discriminator: bool = True) -> Tensor:
        return self.loss(prediction, target_is_real, for_discriminator)


def non_saturating_generator_loss(logits_fake: Tensor) -> Tensor:
    """Non-saturating generator loss ``E[-log D(G(z))] = mean(softplus(-l))``.

    Identical to ``GANLoss('vanilla')(logits_fake, True)`` with the default targets.
    """
    return F.softplus(-logits_fake).mean()


def minimax_generator_loss(logits_fake: Tensor) -> Tensor:
    """Original minimax generator loss ``E[log(1 - D(G(z)))]`` with ``D = sigmoid(l)``.

    Computed stably as ``mean(-softplus(l))`` (since ``log(1 - sigmoid(l)) = -softplus(l)``),
    i.e. minus the BCE of the fakes labelled fake. The generator *minimises* it; its gradient
    ``-sigmoid(l)`` vanishes when D confidently rejects the fakes (``l -> -inf``), which is why
    the non-saturating loss is used in practice.
    """
    return -F.softplus(logits_fake).mean()


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
