"""What the adversarial trainers share around their objective: the optimizers it asks for (D's own rate with
``--lr-d``), D frozen while G learns, D's constraint after its update (WGAN's weight clipping) or in its loss
(WGAN-GP's gradient penalty), and the image-to-image trainers' :class:`Critic`: D behind DiffAugment, at one or
more scales, with its feature-matching loss. The objectives themselves are translate.losses.OBJECTIVES."""
from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from translate.diffaugment import diff_augment
from translate.losses import Objective, clip_weights, feature_matching_loss, get_objective, gradient_penalty
from translate.networks import FeatureDiscriminator

from .config import AdversarialConfig, TranslationConfig, resolved


def objective(config: AdversarialConfig) -> Objective:
    return get_objective(config.gan_mode)


def make_optimizer(params: Iterable[nn.Parameter], config: AdversarialConfig, fused: bool = False,
                   lr: float | None = None) -> torch.optim.Optimizer:
    """The config's optimizer for ``params`` at ``lr`` (default: the config's) (fused Adam: one kernel per step,
    faster on CPU and GPU)."""
    lr = resolved(config.lr) if lr is None else lr
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    betas = (resolved(config.beta1), resolved(config.beta2))
    return torch.optim.Adam(params, lr=lr, betas=betas, **({"fused": True} if fused else {}))


def optimizers(config: AdversarialConfig, fused: bool = False, **params: Iterable[nn.Parameter]
               ) -> dict[str, torch.optim.Optimizer]:
    """The config's optimizer for each group of parameters, by name (``G=..., D=...``); D's at ``lr_d``."""
    return {name: make_optimizer(p, config, fused=fused, lr=resolved(config.lr_d) if name == "D" else None)
            for name, p in params.items()}


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    """Freeze (False) or unfreeze a network: D is frozen while G's loss backpropagates through it."""
    for p in net.parameters():
        p.requires_grad_(flag)


def penalty(config: AdversarialConfig, D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor | None:
    """The gradient penalty to add to D's loss (None when ``lambda_gp`` is 0). Computed in float32."""
    if not config.lambda_gp:
        return None
    return gradient_penalty(lambda x: _joined(D(x)), real.float(), fake.float(), lambda_gp=config.lambda_gp)[0]


def _joined(prediction: Tensor | list[Tensor]) -> Tensor:
    """A multi-scale D's outputs as one tensor (the penalty differentiates their sum); a single output as it is."""
    return torch.cat([p.flatten() for p in prediction]) if isinstance(prediction, list) else prediction


def backward_D(critic: Critic, real: Tensor, fake: Tensor,
               autocast: Callable[[], AbstractContextManager]) -> tuple[float, float | None]:
    """An unconditional critic's loss on ``real`` and (detached) ``fake`` images, halved as in the image-to-image
    papers, plus its penalty if any, backpropagated: (loss, penalty). ``autocast``: the method's."""
    objective = critic.objective
    with autocast():
        loss_D = 0.5 * (critic.judge(objective.real, real) + critic.judge(objective.fake, fake.detach()))
    gp = penalty(critic.config, critic.D, real, fake)
    if gp is not None:
        loss_D = loss_D + gp
    loss_D.backward()
    return loss_D.item(), None if gp is None else gp.item()


def update_critics(optimizer: torch.optim.Optimizer, judged: dict[str, tuple[Critic, Tensor, Tensor]],
                   autocast: Callable[[], AbstractContextManager]) -> dict[str, float]:
    """One step of unconditional critics sharing ``optimizer``: ``judged`` maps a loss name to (critic, real images,
    generated images); returns each loss by its name, with ``GP`` (their penalties' sum) when the config has one.
    Each critic's D is trained (requires_grad on) and constrained after the step (WGAN's clipping)."""
    for critic, _, _ in judged.values():
        set_requires_grad(critic.D, True)
    optimizer.zero_grad(set_to_none=True)
    out: dict[str, float] = {}
    penalties = []
    for name, (critic, real, fake) in judged.items():
        out[name], gp = backward_D(critic, real, fake, autocast)
        if gp is not None:
            penalties.append(gp)
    if penalties:  # all or none: one config
        out["GP"] = sum(penalties)
    optimizer.step()
    for critic, _, _ in judged.values():
        constrain(critic.config, critic.D)
    return out


def constrain(config: AdversarialConfig, D: nn.Module) -> None:
    """After D's update: clip its weights when the config asks for it (WGAN)."""
    if config.clip:
        clip_weights(D, config.clip)


def updates_generator(iteration: int, config: AdversarialConfig) -> bool:
    """Whether the D update numbered ``iteration`` (from 1) is followed by a G update."""
    return iteration % resolved(config.n_critic) == 0


def generator_updates_before(iteration: int, config: AdversarialConfig) -> int:
    """How many G updates came before the one that follows the D update numbered ``iteration`` (from 1)."""
    return iteration // resolved(config.n_critic) - 1


def scales(prediction: Tensor | list[Tensor]) -> list[Tensor]:
    """A discriminator's outputs as a list: one per scale of a multi-scale D, else the one."""
    return prediction if isinstance(prediction, list) else [prediction]


def _summed(terms: Iterable[Tensor]) -> Tensor:
    return functools.reduce(operator.add, terms)  # a Tensor, never sum()'s 0


class Critic:
    """A discriminator as the image-to-image trainers call it: ``--diffaugment`` in front of it (on real and
    generated images alike), ``--num-d`` scales whose objective terms are summed (pix2pixHD), and
    ``--feature-matching``. ``groups``: the channel counts of the images its input holds side by side (a
    conditional pair: ``(input_nc, output_nc)``), augmented as one with the colour of each taken apart;
    ``paired``: whether a generated image has its real counterpart (translate.losses.feature_matching_loss)."""

    def __init__(self, config: TranslationConfig, D: nn.Module, objective: Objective,
                 groups: Sequence[int] | None = None, paired: bool = True):
        self.config, self.D, self.objective, self.groups, self.paired = config, D, objective, groups, paired

    def augment(self, *xs: Tensor) -> tuple[Tensor, ...]:
        """``xs`` under one draw of the run's DiffAugment policy (as they are without one)."""
        return diff_augment(self.config.diffaugment, *xs, groups=self.groups)

    def judge(self, loss: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """An objective's term (``objective.real`` / ``.fake``) on D's outputs for the augmented ``x``."""
        (x,) = self.augment(x)
        return _summed(loss(p) for p in scales(self.D(x)))

    def generator_loss(self, fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor | None]:
        """G's adversarial loss on ``fake``, and with ``--feature-matching`` its weighted feature-matching loss
        against ``real`` (both under the same augmentation, so like is compared with like), else None."""
        weight = self.config.feature_matching
        if not weight:
            return self.judge(self.objective.generator, fake), None
        fake, real = self.augment(fake, real)
        D: FeatureDiscriminator = self.D  # type: ignore[assignment]  # what translation_networks builds
        fake_features = D.features(fake)
        with torch.no_grad():
            real_features = D.features(real)
        loss = _summed(self.objective.generator(f[-1]) for f in fake_features)
        return loss, feature_matching_loss(fake_features, real_features, paired=self.paired) * weight
