"""BicycleGAN (Zhu et al. 2017, "Toward Multimodal Image-to-Image Translation"): paired translation with
one input and many outputs. A U-Net translates an image and a latent code ``z`` of ``nz`` numbers (broadcast
and concatenated to its input, "add_to_input"); different codes give different outputs.

Two cycles share G and train together, each against its own PatchGAN (judging B images alone, the
reference's default), as in the reference's ``bicycle_gan_model.py``; the batch is split in halves:

* cVAE-GAN (B -> z -> B'): an encoder E maps the first half's real B to the mean and log-variance of a
  Gaussian; ``z`` by reparameterisation; G(A, z) must match B in L1 (``lambda_L1``) and fool D; the KL
  term of the ELBO keeps E's codes near N(0, I) (``lambda_kl``, summed as in the reference);
* cLR-GAN (z -> B' -> z'): G(A, z) for ``z ~ N(0, I)`` must fool D2 (real: the second half's B), and
  E must find ``z`` again from it (latent regression, L1, ``lambda_z``; that term trains G only).

Defaults are the paper's: nz 8, lambda_L1 10, lambda_kl 0.01, lambda_z 0.5, LSGAN, instance norm,
Adam 2e-4 (0.5, 0.999), batch 2. D and D2 update before G and E (so the objectives' ``n_critic``
holds, as in the other trainers); each D loss is halved. The exported model (kind ``"multimodal"``)
takes an image and a latent; E stays in the checkpoint (training only). Validation and a plain
prediction use ``z = 0``, the prior's mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.nn import functional as F

from translate.checkpoint import GeneratorSpec
from translate.errors import ConfigError
from translate.networks import define_E, define_latent_G, to_inference
from translate.options import opt, redefault

from .adversarial import constrain, objective, optimizers, penalty, set_requires_grad, updates_generator
from .config import Preset, TranslationConfig, resolved
from .method_base import Method
from .translation_data import paired_sets
from .translation_networks import CPU_128, discriminator, generator_spec, in_layout

# The built-in sets' tested networks and sizes (Pix2Pix's), the encoder as wide as G; not measured for BicycleGAN
PRESETS: dict[str, Preset] = {name: Preset({**CPU_128, "nef": CPU_128["ngf"]}, source="Pix2Pix's (translation_networks)")
                              for name in ("maps", "sketches")}
SAMPLE_CODES = 3  # codes of the prior drawn per input in the sample grid (fixed: the same codes every time)


@dataclass
class BicycleGANConfig(TranslationConfig):
    norm: str | None = redefault(TranslationConfig, "norm", "instance")
    dropout: bool = opt(False, "dropout in the generator's decoder (train time only)")
    gan_mode: str = redefault(TranslationConfig, "gan_mode", "lsgan")
    batch_size: int | None = redefault(TranslationConfig, "batch_size", 2)
    nz: int = opt(8, "latent numbers fed to the generator (broadcast and concatenated to its input)")
    nef: int | None = opt(64, "encoder filters in its first conv layer", preset=True)
    e_blocks: int = opt(5, "residual blocks of the encoder, each halving the size")
    lambda_L1: float = opt(10.0, "weight of the L1 term |G(A, E(B)) - B|")
    lambda_kl: float = opt(0.01, "weight of the KL term of E's codes against N(0, I)")
    lambda_z: float = opt(0.5, "weight of the latent regression |E(G(A, z)) - z|")

    presets: ClassVar[dict[str, Preset]] = PRESETS

    def validate(self) -> None:
        super().validate()
        if self.nz < 1:
            raise ConfigError("nz", f"must be >= 1, got {self.nz}")
        if self.e_blocks < 1:
            raise ConfigError("e_blocks", f"must be >= 1, got {self.e_blocks}")
        for name in ("lambda_L1", "lambda_kl", "lambda_z"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")


class BicycleGAN(Method):
    """BicycleGAN: a U-Net of an image and a latent code, an encoder to the code, two PatchGANs."""

    name = "bicyclegan"
    config_class = BicycleGANConfig
    config: BicycleGANConfig
    exact_settings = None  # each step draws its codes: two processes only have to complete

    def __init__(self, config: BicycleGANConfig, device: torch.device):
        super().__init__(config, device)
        c = config
        self.arch: dict[str, Any] = dict(name=c.netG, nz=c.nz, input_nc=c.input_nc, output_nc=c.output_nc, ngf=c.ngf,
                                         norm=c.norm, use_dropout=c.dropout, init_type=c.init_type,
                                         init_gain=c.init_gain)
        self.G = define_latent_G(**self.arch)
        c.check_size(self.G.size_multiple)
        self.E = define_E(c.output_nc, c.nz, nef=resolved(c.nef), n_blocks=c.e_blocks, norm=resolved(c.norm),
                          init_type=c.init_type, init_gain=c.init_gain)
        self.D = discriminator(c, c.output_nc)  # cVAE-GAN's: B images, real or from an encoded code
        self.D2 = discriminator(c, c.output_nc)  # cLR-GAN's: B images, real or from a random code
        self.place({"G": self.G, "E": self.E, "D": self.D, "D2": self.D2}, channels_last=resolved(c.channels_last))
        self.optimizers = optimizers(c, fused=True, G=self.G.parameters(), E=self.E.parameters(),
                                     D=self.D.parameters(), D2=self.D2.parameters())
        self.objective = objective(c)
        self.last_G: dict[str, float] = {}

    @classmethod
    def tiny_config(cls, data: str, out: str, **overrides) -> BicycleGANConfig:
        return BicycleGANConfig(**{**dict(data=str(data), out=str(out), size=32, load_size=36, netG="unet_32", ngf=4,
                                          ndf=4, nef=4, e_blocks=3, nz=2, batch_size=2, steps=6, workers=0,
                                          progress=False, export=False), **overrides})

    def datasets(self):
        return paired_sets(self.config)

    def _d_loss(self, D, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, on real, on fake) of one discriminator, halved as in pix2pix; the penalty added when asked."""
        with self.autocast():
            loss_fake = self.objective.fake(D(fake.detach()))
            loss_real = self.objective.real(D(real))
        loss = 0.5 * (loss_fake + loss_real)
        return loss, loss_real, loss_fake

    def step(self, batch: dict) -> dict[str, float]:
        c: BicycleGANConfig = self.config
        real_A, real_B = in_layout(c, batch["A"], batch["B"])
        n = real_A.shape[0]
        half = max(1, n // 2)  # the first half is encoded, the second half is D2's real data
        A, B_encoded = real_A[:half], real_B[:half]
        B_random = real_B[half:] if n > 1 else real_B
        with self.autocast():
            mu, logvar = self.E(B_encoded)
        mu, logvar = mu.float(), logvar.float()
        z_encoded = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation
        z_random = torch.randn(half, c.nz, device=self.device)
        with self.autocast():
            fake_encoded = self.G(A, z_encoded)
            fake_random = self.G(A, z_random)
        # D and D2: real B images against those generated from an encoded and from a random code
        out: dict[str, float] = {}
        gps = []
        for key, D, real, fake in (("D", self.D, B_encoded, fake_encoded), ("D2", self.D2, B_random, fake_random)):
            set_requires_grad(D, True)
            self.optimizers[key].zero_grad(set_to_none=True)
            loss, loss_real, loss_fake = self._d_loss(D, real, fake)
            gp = penalty(c, D, real, fake.detach())
            if gp is not None:
                loss = loss + gp
                gps.append(gp.item())
            loss.backward()
            self.optimizers[key].step()
            constrain(c, D)
            out.update({f"{key}_real": loss_real.item(), f"{key}_fake": loss_fake.item()})
        if gps:
            out["GP"] = sum(gps)
        if not updates_generator(self.steps_done + 1, c):
            return {**out, **self.last_G}
        # G and E: fool both, reconstruct B from its code, codes near the prior; G alone: codes found again
        set_requires_grad(self.D, False)
        set_requires_grad(self.D2, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        self.optimizers["E"].zero_grad(set_to_none=True)
        set_requires_grad(self.E, False)  # the latent regression trains G only, as in the reference
        with self.autocast():
            loss_G_GAN = self.objective.generator(self.D(fake_encoded))
            loss_G_GAN2 = self.objective.generator(self.D2(fake_random))
            mu2, _ = self.E(fake_random)
        set_requires_grad(self.E, True)
        loss_kl = torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) * (-0.5 * c.lambda_kl)
        loss_L1 = F.l1_loss(fake_encoded.float(), B_encoded) * c.lambda_L1
        loss_z = F.l1_loss(mu2.float(), z_random) * c.lambda_z
        (loss_G_GAN.float() + loss_G_GAN2.float() + loss_kl + loss_L1 + loss_z).backward()
        self.optimizers["G"].step()
        self.optimizers["E"].step()
        self.last_G = {"G_GAN": loss_G_GAN.item(), "G_GAN2": loss_G_GAN2.item(), "G_L1": loss_L1.item(),
                       "kl": loss_kl.item(), "z_L1": loss_z.item()}
        return {**self.last_G, **out}

    def generators(self) -> dict[str, GeneratorSpec]:
        c: BicycleGANConfig = self.config
        return {c.direction: generator_spec(c, self.name, "G", self.arch, c.direction, kind="multimodal")}

    def eval_generators(self):
        return {self.config.direction: to_inference(self.G, batch_stats=self.config.batch_stats)}

    def _prior_mean(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(images.shape[0], self.config.nz, device=images.device)

    def validation_pairs(self, batch, gens):
        return gens[self.config.direction](batch["A"], self._prior_mean(batch["A"])), batch["B"]

    def sample_columns(self, batch, gens):
        """The input, the output for the prior's mean and for ``SAMPLE_CODES`` fixed random codes, the target
        (the codes come from a generator of their own: a sample grid leaves the run's random numbers alone)."""
        G, A = gens[self.config.direction], batch["A"]
        codes = torch.randn(SAMPLE_CODES, self.config.nz, generator=torch.Generator().manual_seed(0)).to(A.device)
        return [A, G(A, self._prior_mean(A)), *(G(A, z.expand(A.shape[0], -1)) for z in codes), batch["B"]]
