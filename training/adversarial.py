"""What the adversarial trainers share around their objective: the optimizers it asks for, D frozen
while G learns, and D's constraint after its update (WGAN's weight clipping) or in its loss
(WGAN-GP's gradient penalty). The objectives themselves are translate.losses.OBJECTIVES."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from translate.losses import Objective, clip_weights, get_objective, gradient_penalty

from .config import AdversarialConfig, resolved


def objective(config: AdversarialConfig) -> Objective:
    return get_objective(config.gan_mode)


def make_optimizer(params: Iterable[nn.Parameter], config: AdversarialConfig, fused: bool = False
                   ) -> torch.optim.Optimizer:
    """The config's optimizer for ``params`` (fused Adam: one kernel per step, faster on CPU and GPU)."""
    lr = resolved(config.lr)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    betas = (resolved(config.beta1), resolved(config.beta2))
    return torch.optim.Adam(params, lr=lr, betas=betas, **({"fused": True} if fused else {}))


def optimizers(config: AdversarialConfig, fused: bool = False, **params: Iterable[nn.Parameter]
               ) -> dict[str, torch.optim.Optimizer]:
    """The config's optimizer for each group of parameters, by name (``G=..., D=...``)."""
    return {name: make_optimizer(p, config, fused=fused) for name, p in params.items()}


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    """Freeze (False) or unfreeze a network: D is frozen while G's loss backpropagates through it."""
    for p in net.parameters():
        p.requires_grad_(flag)


def penalty(config: AdversarialConfig, D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor | None:
    """The gradient penalty to add to D's loss (None when ``lambda_gp`` is 0). Computed in float32."""
    if not config.lambda_gp:
        return None
    return gradient_penalty(D, real.float(), fake.float(), lambda_gp=config.lambda_gp)[0]


def backward_D(config: AdversarialConfig, objective: Objective, D: nn.Module, real: Tensor, fake: Tensor,
               autocast: Callable[[], AbstractContextManager]) -> tuple[float, float | None]:
    """An unconditional D's loss on ``real`` and (detached) ``fake`` images, halved as in the image-to-image
    papers, plus its penalty if any, backpropagated: (loss, penalty). ``autocast``: the method's."""
    with autocast():
        loss_D = 0.5 * (objective.real(D(real)) + objective.fake(D(fake.detach())))
    gp = penalty(config, D, real, fake)
    if gp is not None:
        loss_D = loss_D + gp
    loss_D.backward()
    return loss_D.item(), None if gp is None else gp.item()


def constrain(config: AdversarialConfig, D: nn.Module) -> None:
    """After D's update: clip its weights when the config asks for it (WGAN)."""
    if config.clip:
        clip_weights(D, config.clip)


def updates_generator(iteration: int, config: AdversarialConfig) -> bool:
    """Whether the D update numbered ``iteration`` (from 1) is followed by a G update."""
    return iteration % resolved(config.n_critic) == 0
