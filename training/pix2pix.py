"""Pix2Pix (Isola et al. 2017): U-Net generator, PatchGAN discriminator on (input, output)
pairs, conditional GAN loss + lambda_L1 * L1. Defaults are the paper's / reference code's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from translate.checkpoint import GeneratorSpec
from translate.networks import to_inference
from translate.options import opt

from .adversarial import (
    Critic,
    constrain,
    generator_updates_before,
    objective,
    optimizers,
    penalty,
    set_requires_grad,
    updates_generator,
)
from .config import Preset, TranslationConfig, resolved
from .method_base import Method
from .translation_data import paired_sets, target_palette
from .translation_networks import CPU_128, discriminator, generator, generator_spec, in_layout

# The tested settings of the built-in sets (translation_networks.CPU_128), used by `translate demo`. Other folders
# get the paper's settings; `--preset sketches` gives a folder these. With the paper's objective, G and D learn at
# eight times its 2e-4 (1.6e-3): at these networks and batch, class IoU on maps 1.48x and the sketches' Fréchet
# distance 0.63x the paper's rate's at 240 steps; at 1,600 maps 1.37x, sketches no worse. Rates of 3x and 5x gained
# less on maps and the same on sketches (BENCHMARKS.md, the training recipe: the learning rate).
PRESETS: dict[str, Preset] = {
    name: Preset(CPU_128, by_objective={"nonsaturating": {"lr": 1.6e-3}},  # the paper's BCE (--gan-mode vanilla)
                 source="BENCHMARKS.md, demo training curve; the training recipe, part by part (lr)")
    for name in ("maps", "sketches")
}


@dataclass
class Pix2PixConfig(TranslationConfig):
    lambda_L1: float = opt(100.0, "weight of the L1 term")

    presets: ClassVar[dict[str, Preset]] = PRESETS


class Pix2Pix(Method):
    """Pix2Pix: paired translation with a U-Net and a conditional PatchGAN (L1 + adversarial loss)."""

    name = "pix2pix"
    config_class = Pix2PixConfig
    config: Pix2PixConfig
    retrain_on_pairs = True
    amp_on_cpu = True  # bf16 on CPUs with native bf16: measured faster, loss curve within tolerance (BENCHMARKS.md)
    exact_settings = dict(norm="instance", dropout=False, amp=False)  # batch norm and dropout differ per process

    def __init__(self, config: Pix2PixConfig, device: torch.device):
        super().__init__(config, device)
        c = config
        self.arch, self.G = generator(c)
        self.D = discriminator(c, c.input_nc + c.output_nc)  # judges (input, output) pairs
        self.place({"G": self.G, "D": self.D}, channels_last=resolved(c.channels_last))
        self.optimizers = optimizers(c, fused=True, G=self.G.parameters(), D=self.D.parameters())
        self.objective = objective(c)
        self.critic = Critic(c, self.D, self.objective, groups=(c.input_nc, c.output_nc))  # pairs augmented as one
        self.keep_averages(resolved(c.ema_decay), "G")
        self.last_G: dict[str, float] = {}

    @classmethod
    def tiny_config(cls, data: str, out: str, **overrides) -> Pix2PixConfig:
        return Pix2PixConfig(**{**dict(data=str(data), out=str(out), size=32, load_size=36, netG="unet_32", ngf=4, ndf=4,
                                       batch_size=2, steps=6, workers=0, progress=False, export=False), **overrides})

    def datasets(self):
        self.palette = target_palette(self.config)
        return paired_sets(self.config)

    def step(self, batch: dict) -> dict[str, float]:
        c: Pix2PixConfig = self.config
        real_A, real_B = in_layout(c, batch["A"], batch["B"])
        opt_G, opt_D = self.optimizers["G"], self.optimizers["D"]
        obj = self.objective
        with self.autocast():
            fake_B = self.G(real_A)
        # D: real pairs -> real, generated pairs -> fake; its loss halved, as in the paper
        set_requires_grad(self.D, True)
        opt_D.zero_grad(set_to_none=True)
        with self.autocast():
            fake_AB = torch.cat((real_A, fake_B.detach()), 1)
            real_AB = torch.cat((real_A, real_B), 1)
            loss_D_fake = self.critic.judge(obj.fake, fake_AB)
            loss_D_real = self.critic.judge(obj.real, real_AB)
            loss_D = 0.5 * (loss_D_fake + loss_D_real)
        gp = penalty(c, self.D, real_AB, fake_AB)  # the reference's wgangp never applied it; here it does
        if gp is not None:
            loss_D = loss_D + gp
        loss_D.backward()
        opt_D.step()
        constrain(c, self.D)
        out = {"D_real": loss_D_real.item(), "D_fake": loss_D_fake.item(), **({"GP": gp.item()} if gp is not None else {})}
        if not updates_generator(self.steps_done + 1, c):
            return {**out, **self.last_G}
        # G: fool D, stay close to the target in L1
        set_requires_grad(self.D, False)
        opt_G.zero_grad(set_to_none=True)
        with self.autocast():
            loss_G_GAN, loss_G_FM = self.critic.generator_loss(torch.cat((real_A, fake_B), 1), real_AB)
            loss_G_L1 = torch.nn.functional.l1_loss(fake_B.float(), real_B) * c.lambda_L1
            loss_G = loss_G_GAN + loss_G_L1 if loss_G_FM is None else loss_G_GAN + loss_G_L1 + loss_G_FM
        loss_G.backward()
        opt_G.step()
        self.update_averages(generator_updates_before(self.steps_done + 1, c))
        self.last_G = {"G_GAN": loss_G_GAN.item(), "G_L1": loss_G_L1.item(),
                       **({"G_FM": loss_G_FM.item()} if loss_G_FM is not None else {})}
        return {**self.last_G, **out}

    def generators(self) -> dict[str, GeneratorSpec]:
        c: Pix2PixConfig = self.config
        return {c.direction: generator_spec(c, self.name, self.averaged_name("G"), self.arch, c.direction)}

    def eval_generators(self):
        return {self.config.direction: to_inference(self.averaged("G"), batch_stats=self.config.batch_stats)}

    def validation_pairs(self, batch, gens):
        return gens[self.config.direction](batch["A"]), batch["B"]

    def sample_columns(self, batch, gens):
        return [batch["A"], gens[self.config.direction](batch["A"]), batch["B"]]
