"""CycleGAN (Zhu et al. 2017): unpaired translation with two generators, G_A: A -> B and
G_B: B -> A, two PatchGAN discriminators, D_A (judges B images: real_B vs fake_B) and D_B
(judges A images), and cycle consistency G_B(G_A(a)) ~ a, G_A(G_B(b)) ~ b.

Defaults are the paper's / reference code's: resnet_9blocks, basic PatchGAN, instance norm,
LSGAN, lambda_A = lambda_B = 10, identity 0.5 (the identity loss weighs lambda_identity *
lambda), image pools of 50, Adam 2e-4 (0.5, 0.999), load 286 -> crop 256, 200 epochs with
linear decay over the second half. The step follows the reference: G_A and G_B with the
discriminators frozen, then D_A and D_B on pooled fakes, each D loss halved.

Data (``--data DIR``): ``DIR/trainA`` + ``DIR/trainB``, validated on ``valA``/``valB`` or
``testA``/``testB``, else on a held-out part of each side. A paired layout (``DIR/train/*.png``
A|B side by side, as ``translate data make`` writes) is accepted too: its pairs are shuffled
and split in halves, A sides from one half and B sides from the other, so no pair is ever
seen together (see ``translate.data.unpair``); it validates on ``DIR/val`` or a held-out part
of the pairs, as pix2pix does.

Validation reports the cycle-consistency L1 both ways (``cycle_A_l1`` = |G_B(G_A(a)) - a|,
``cycle_B_l1``, on the [-1, 1] scale, without the lambda weights); when the validation data
is paired it adds L1 / PSNR / SSIM of G_A's outputs against the true B images.

Directions: the run's generators are exported as ``AtoB.onnx`` and ``BtoA.onnx``, named by the
data set's A and B. With ``--direction BtoA`` the sides swap before training (as in the
reference), so G_A then translates the data set's B to A and is exported as ``BtoA``.
"""
from __future__ import annotations

import functools
import itertools
import operator
from dataclasses import dataclass
from typing import Any

import torch

from translate import data as tdata
from translate import metrics as qmetrics
from translate.checkpoint import GeneratorSpec
from translate.errors import ConfigError
from translate.losses import ImagePool, cycle_loss, identity_loss
from translate.networks import to_inference
from translate.options import opt, redefault

from .adversarial import (
    Critic,
    generator_updates_before,
    objective,
    optimizers,
    set_requires_grad,
    update_critics,
    updates_generator,
)
from .config import TranslationConfig, resolved
from .method_base import Method, Validation, scored
from .translation_data import target_palette, unpaired_sets
from .translation_networks import discriminator, generator, generator_spec, in_layout


@dataclass
class CycleGANConfig(TranslationConfig):
    netG: str = redefault(TranslationConfig, "netG", "resnet_9blocks")
    norm: str = redefault(TranslationConfig, "norm", "instance")
    dropout: bool = opt(False, "dropout in the generator's residual blocks (train time only)")
    gan_mode: str = redefault(TranslationConfig, "gan_mode", "lsgan")
    lambda_A: float = opt(10.0, "weight of the cycle loss A -> B -> A")
    lambda_B: float = opt(10.0, "weight of the cycle loss B -> A -> B")
    lambda_identity: float = opt(0.5, "identity loss |G_A(b) - b| + |G_B(a) - a|, weighted lambda_identity x "
                                 "lambda_B / lambda_A (0: off; needs input_nc == output_nc)")
    pool_size: int = opt(50, "generated images kept per discriminator and replayed at random (0: no pool)")

    def validate(self) -> None:
        super().validate()
        for name in ("lambda_A", "lambda_B", "lambda_identity", "pool_size"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.lambda_identity > 0 and self.input_nc != self.output_nc:
            raise ConfigError("lambda_identity", f"the identity loss compares G_A(b) with b, which needs input_nc == "
                              f"output_nc (got {self.input_nc} and {self.output_nc}); use --lambda-identity 0")


def _other(direction: str) -> str:
    return "BtoA" if direction == "AtoB" else "AtoB"


def _interleave(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x0, y0, x1, y1, ... along the batch, both as 3 channels."""
    x, y = (t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t for t in (x, y))
    return torch.stack((x, y), dim=1).flatten(0, 1)


class CycleGAN(Method):
    """CycleGAN: unpaired translation both ways (two generators, two discriminators, cycle loss)."""

    name = "cyclegan"
    config_class = CycleGANConfig
    config: CycleGANConfig
    amp_on_cpu = True  # bf16 on CPUs with native bf16: measured faster, loss curve within tolerance (BENCHMARKS.md)
    exact_settings = dict(pool_size=0, amp=False)  # a pool replays each process's own fakes

    def __init__(self, config: CycleGANConfig, device: torch.device):
        super().__init__(config, device)
        c = config
        # the reference's creation order: G_A, G_B, D_A, D_B
        self.arch_A, self.G_A = generator(c)
        self.arch_B, self.G_B = generator(c, input_nc=c.output_nc, output_nc=c.input_nc)
        self.D_A = discriminator(c, c.output_nc)  # real_B vs fake_B
        self.D_B = discriminator(c, c.input_nc)  # real_A vs fake_A
        self.place({"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B},
                   channels_last=resolved(c.channels_last))
        self.optimizers = optimizers(c, fused=True, G=itertools.chain(self.G_A.parameters(), self.G_B.parameters()),
                                     D=itertools.chain(self.D_A.parameters(), self.D_B.parameters()))
        self.objective = objective(c)
        # each judges one domain, augmented per domain; a fake has no real counterpart to match features with
        self.critic_A = Critic(c, self.D_A, self.objective, paired=False)
        self.critic_B = Critic(c, self.D_B, self.objective, paired=False)
        self.keep_averages(resolved(c.ema_decay), "G_A", "G_B")
        self.last_G: dict[str, float] = {}
        self.fake_A_pool = ImagePool(c.pool_size, seed=c.seed + 1)
        self.fake_B_pool = ImagePool(c.pool_size, seed=c.seed + 2)

    @classmethod
    def tiny_config(cls, data: str, out: str, **overrides) -> CycleGANConfig:
        return CycleGANConfig(**{**dict(data=str(data), out=str(out), size=32, load_size=36, netG="resnet_1blocks", ngf=4,
                                        ndf=4, batch_size=2, pool_size=4, steps=6, workers=0, progress=False,
                                        export=False), **overrides})

    def datasets(self):
        self.palette = target_palette(self.config)
        return unpaired_sets(self.config)

    # ------------------------------------------------------------------ step
    def step(self, batch: dict) -> dict[str, float]:
        c: CycleGANConfig = self.config
        real_A, real_B = in_layout(c, batch["A"], batch["B"])
        if updates_generator(self.steps_done + 1, c):
            fake_A, fake_B = self._generator_step(real_A, real_B)
        else:  # n_critic > 1: D trains on this step's fakes, G waits
            with torch.no_grad(), self.autocast():
                fake_B, fake_A = self.G_A(real_A), self.G_B(real_B)
        # D_A and D_B: real images -> real, generated ones (replayed from the pools) -> fake
        return {**self.last_G, **update_critics(
            self.optimizers["D"], {"D_A": (self.critic_A, real_B, self.fake_B_pool.query(fake_B)),
                                   "D_B": (self.critic_B, real_A, self.fake_A_pool.query(fake_A))}, self.autocast)}

    def _generator_step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G_A and G_B: fool the (frozen) discriminators, come back around the cycle, keep identity."""
        c: CycleGANConfig = self.config
        set_requires_grad(self.D_A, False)
        set_requires_grad(self.D_B, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            fake_B = self.G_A(real_A)
            rec_A = self.G_B(fake_B)
            fake_A = self.G_B(real_B)
            rec_B = self.G_A(fake_A)
            loss_G_A, fm_A = self.critic_A.generator_loss(fake_B, real_B)
            loss_G_B, fm_B = self.critic_B.generator_loss(fake_A, real_A)
        losses = {"G_A": loss_G_A, "G_B": loss_G_B,
                  "cycle_A": cycle_loss(rec_A.float(), real_A, c.lambda_A),
                  "cycle_B": cycle_loss(rec_B.float(), real_B, c.lambda_B)}
        if fm_A is not None and fm_B is not None:  # both or neither: one config
            losses.update(FM_A=fm_A, FM_B=fm_B)
        if c.lambda_identity > 0:
            with self.autocast():
                idt_A, idt_B = self.G_A(real_B), self.G_B(real_A)
            losses["idt_A"] = identity_loss(idt_A.float(), real_B, c.lambda_B * c.lambda_identity)
            losses["idt_B"] = identity_loss(idt_B.float(), real_A, c.lambda_A * c.lambda_identity)
        functools.reduce(operator.add, losses.values()).backward()  # their sum: a Tensor, never sum()'s 0
        self.optimizers["G"].step()
        self.update_averages(generator_updates_before(self.steps_done + 1, c))
        self.last_G = {k: v.item() for k, v in losses.items()}
        return fake_A, fake_B

    def extra_state(self) -> dict[str, Any]:
        return {"fake_A_pool": self.fake_A_pool.state_dict(), "fake_B_pool": self.fake_B_pool.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for name in ("fake_A_pool", "fake_B_pool"):
            if name in state:
                getattr(self, name).load_state_dict(state[name])

    # ------------------------------------------------------- test-time views
    def generators(self) -> dict[str, GeneratorSpec]:
        c: CycleGANConfig = self.config
        return {direction: generator_spec(c, self.name, self.averaged_name(network), arch, direction)
                for network, arch, direction in
                (("G_A", self.arch_A, c.direction), ("G_B", self.arch_B, _other(c.direction)))}

    def eval_generators(self):
        bs, d = self.config.batch_stats, self.config.direction
        return {d: to_inference(self.averaged("G_A"), batch_stats=bs), _other(d): to_inference(self.averaged("G_B"),
                                                                                                 batch_stats=bs)}

    def _cycle(self, batch: dict, gens: dict) -> dict[str, torch.Tensor]:
        """real, fake and reconstructed images both ways, with the test-time generators."""
        G_A, G_B = gens[self.config.direction], gens[_other(self.config.direction)]
        real_A, real_B = batch["A"], batch["B"]
        fake_B, fake_A = G_A(real_A), G_B(real_B)
        return {"real_A": real_A, "fake_B": fake_B, "rec_A": G_B(fake_B),
                "real_B": real_B, "fake_A": fake_A, "rec_B": G_A(fake_A)}

    def sample_columns(self, batch, gens):
        """Rows real_A | fake_B | rec_A and real_B | fake_A | rec_B, alternating."""
        v = self._cycle(batch, gens)
        return [_interleave(v["real_A"], v["real_B"]), _interleave(v["fake_B"], v["fake_A"]),
                _interleave(v["rec_A"], v["rec_B"])]

    @torch.no_grad()
    def validation(self, val_set, max_images: int) -> Validation:
        """Cycle L1 both ways; with paired validation data also L1/PSNR/SSIM of A -> B and the task's score."""
        gens = self.eval_generators()
        paired = isinstance(val_set, tdata.PairedImages)
        acc = qmetrics.MeanMetrics()
        cycle: dict[str, list[torch.Tensor]] = {"cycle_A_l1": [], "cycle_B_l1": []}
        outputs, targets = [], []
        for batch in self.validation_batches(val_set, max_images):
            v = self._cycle(batch, gens)
            cycle["cycle_A_l1"].append(qmetrics.l1(v["rec_A"].float(), v["real_A"]))
            cycle["cycle_B_l1"].append(qmetrics.l1(v["rec_B"].float(), v["real_B"]))
            if paired:
                output, target = v["fake_B"].float().clamp(-1, 1), v["real_B"].float()
                acc.update(output, target)
                outputs.append(output.cpu())
                targets.append(target.cpu())
        out = {k: torch.cat(vals).mean().item() for k, vals in cycle.items()}
        if not paired:
            return Validation(out)
        return scored({**out, **acc.compute()}, outputs, targets, self.palette)
