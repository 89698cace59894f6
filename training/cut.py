"""CUT and FastCUT (Park et al. 2020, Contrastive Unpaired Translation): unpaired translation A -> B with one
generator and one discriminator. In place of CycleGAN's second generator and cycle, PatchNCE
(translate/patchnce.py) keeps the content: each patch of G's output, read by G's own encoder, must pick the input
patch at its location among the other sampled patches of the same image.

``--mode cut`` (the paper's CUT): PatchNCE weight 1, plus the identity term, PatchNCE between B images and G's
output for them (G should leave a B image as it is), the two averaged. ``--mode fastcut``: weight 10, no identity
term, flip equivariance (half of the steps, chosen at random, G translates the mirrored input and its encoder maps
are mirrored back before they are compared), so G runs on one batch a step instead of two. ``--lambda-nce``,
``--nce-idt`` and ``--flip-equivariance`` override the mode's values.

Other defaults are the reference code's: resnet_9blocks, basic PatchGAN, instance norm, xavier init, LSGAN with
weight 1, Adam 2e-4 (0.5, 0.999) for G with its heads and for D, 256 patches per layer at the paper's five layers
(the input pixels, both down-sampling convolutions, the first and the fifth residual block), heads 256 wide,
temperature 0.07. Two differences: the down-sampling is this library's plain strided convolution (the reference
blurs before it by default), and the schedule is the shared one (``--epochs``, ``--decay-fraction``). No image
pool: D sees this step's outputs. The step updates G first and then D on the same outputs, as CycleGAN does here.

Data: exactly what CycleGAN takes (``trainA``/``trainB``, or a paired folder made unpaired; training/
translation_data.py). Each side's images are read with its channel count (``--input-nc`` for A, ``--output-nc`` for
B), so a greyscale folder beside a colour one is read as three equal channels. G's output goes back through G's
encoder, so the two counts must be the same: other counts are refused naming the folders and the flags.
Validation on paired data scores G's outputs (L1, PSNR, SSIM); on unpaired data there is nothing to score.

Export: the one generator, as ``model.onnx``, an ordinary translation model (named by its direction; with
``--direction BtoA`` the sides swap before training).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from translate import data as tdata
from translate.checkpoint import GeneratorSpec
from translate.errors import ConfigError
from translate.networks import ResnetGenerator, to_inference
from translate.options import opt, redefault
from translate.patchnce import (
    HEAD_WIDTH,
    NUM_PATCHES,
    TEMPERATURE,
    PatchHeads,
    encoder_layers,
    feature_channels,
    patchnce,
)

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
from .method_base import Method, Validation
from .translation_data import target_palette, unpaired_sets
from .translation_networks import discriminator, generator, generator_spec, in_layout

#: What each mode sets among the options left at auto.
MODES: dict[str, dict[str, Any]] = {
    "cut": dict(lambda_NCE=1.0, nce_idt=True, flip_equivariance=False),
    "fastcut": dict(lambda_NCE=10.0, nce_idt=False, flip_equivariance=True),
}


@dataclass
class CUTConfig(TranslationConfig):
    netG: str = redefault(TranslationConfig, "netG", "resnet_9blocks")
    norm: str = redefault(TranslationConfig, "norm", "instance")
    dropout: bool = opt(False, "dropout in the generator's residual blocks (train time only)")
    gan_mode: str = redefault(TranslationConfig, "gan_mode", "lsgan")
    init_type: str = redefault(TranslationConfig, "init_type", "xavier")
    mode: str = opt("cut", "cut: PatchNCE weight 1 with the identity term; fastcut: weight 10, no identity term, "
                    "flip equivariance (the options below left at auto take the mode's values)", choices=tuple(MODES))
    lambda_GAN: float = opt(1.0, "weight of G's adversarial loss")
    lambda_NCE: float | None = opt(None, "weight of the PatchNCE loss (auto: the mode's: cut 1, fastcut 10)")
    nce_idt: bool | None = opt(None, "identity PatchNCE on B images, averaged with the A term (auto: on for cut)")
    flip_equivariance: bool | None = opt(None, "translate the mirrored input half of the steps and compare its maps "
                                         "mirrored back (auto: on for fastcut)")
    num_patches: int = opt(NUM_PATCHES, "locations sampled per encoder layer and image (all when there are fewer)")
    nce_T: float = opt(TEMPERATURE, "temperature of the PatchNCE softmax")
    netF_nc: int = opt(HEAD_WIDTH, "width of the MLP head of each encoder layer")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, value in MODES.get(self.mode, {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def validate(self) -> None:
        super().validate()
        if self.mode not in MODES:
            raise ConfigError("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not resolved(self.netG).startswith("resnet"):
            raise ConfigError("netG", f"PatchNCE reads a ResNet generator's encoder: pass --netG resnet_9blocks (or "
                                      f"another resnet_<K>blocks), not {self.netG}")
        for name in ("lambda_GAN", "lambda_NCE"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("num_patches", "netF_nc"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.nce_T <= 0:
            raise ConfigError("nce_T", f"must be > 0, got {self.nce_T}")
        if self.input_nc != self.output_nc:
            a, b = _sides(self.data, self.direction)
            raise ConfigError("output_nc", f"{a} are read with {self.input_nc} channels (--input-nc) and {b} with "
                                           f"{self.output_nc} (--output-nc), but CUT reads its outputs with its "
                                           f"input's encoder: pass the same to both (a greyscale folder read with "
                                           f"3 loses nothing)")


def _sides(data: str, direction: str) -> tuple[str, str]:
    """How an error names the input and the output images of ``data``: its folders, or the halves of its pairs."""
    root = Path(data)
    if tdata.has_unaligned_split(root, "train"):
        a, b = str(root / "trainA"), str(root / "trainB")
    else:
        a, b = f"the A sides of {root}'s pairs", f"the B sides of {root}'s pairs"
    return (b, a) if direction == "BtoA" else (a, b)


class CUT(Method):
    """CUT / FastCUT: unpaired translation with one generator, one discriminator and PatchNCE."""

    name = "cut"
    config_class = CUTConfig
    config: CUTConfig
    # one generator, exported as model.onnx: the service fine-tunes it on uploaded pairs (made unpaired for training,
    # as any paired folder is) and scores it on the held-out pairs like Pix2Pix
    retrain_on_pairs = True
    # a step draws its patch locations (and FastCUT's flips); with every location taken it draws none and is a mean
    # over images, but the temperature (logits 1/0.07 times the similarities) and Adam's first steps carry the
    # float noise of another summation order past the suite's tolerance within its six steps (2e-4 relative in
    # NCE at step 6, two processes against one): two processes only have to complete the run
    exact_settings = None

    def __init__(self, config: CUTConfig, device: torch.device):
        super().__init__(config, device)
        c = config
        self.arch, G = generator(c)
        if not isinstance(G, ResnetGenerator):  # CUTConfig.validate refuses other --netG before a run starts
            raise ConfigError("netG", f"PatchNCE reads a ResNet generator's encoder, not {c.netG}'s")
        self.G = G
        self.D = discriminator(c, c.output_nc)
        self.layers = encoder_layers(self.G)
        self.F = PatchHeads(feature_channels(self.G, self.layers), c.netF_nc, c.init_type, c.init_gain)
        self.place({"G": self.G, "F": self.F, "D": self.D}, channels_last=resolved(c.channels_last))
        self.optimizers = optimizers(c, fused=True, G=itertools.chain(self.G.parameters(), self.F.parameters()),
                                     D=self.D.parameters())
        self.objective = objective(c)
        self.critic = Critic(c, self.D, self.objective, paired=False)
        self.keep_averages(resolved(c.ema_decay), "G")
        self.last_G: dict[str, float] = {}

    @classmethod
    def tiny_config(cls, data: str, out: str, **overrides) -> CUTConfig:
        return CUTConfig(**{**dict(data=str(data), out=str(out), size=32, load_size=36, netG="resnet_1blocks", ngf=4,
                                   ndf=4, netF_nc=8, num_patches=16, batch_size=2, steps=6, workers=0, progress=False,
                                   export=False), **overrides})

    def datasets(self):
        self.palette = target_palette(self.config)
        return unpaired_sets(self.config)

    # ------------------------------------------------------------------ step
    def step(self, batch: dict) -> dict[str, float]:
        c: CUTConfig = self.config
        real_A, real_B = in_layout(c, batch["A"], batch["B"])
        if updates_generator(self.steps_done + 1, c):
            fake_B = self._generator_step(real_A, real_B)
        else:  # n_critic > 1: D trains on this step's outputs, G waits
            with torch.no_grad(), self.autocast():
                fake_B = self.G(real_A)
        return {**self.last_G, **update_critics(self.optimizers["D"], {"D": (self.critic, real_B, fake_B)}, self.autocast)}

    def _generator_step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> torch.Tensor:
        """G and its heads: fool the (frozen) D, keep each output patch's content (PatchNCE); returns G(real_A)."""
        c: CUTConfig = self.config
        set_requires_grad(self.D, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        flipped = bool(c.flip_equivariance) and torch.rand(()).item() < 0.5
        real = torch.cat((real_A, real_B)) if c.nce_idt else real_A  # one pass of G for both terms
        with self.autocast():
            fake = self.G(real.flip(3) if flipped else real)
            fake_B = fake[: len(real_A)]
            loss_GAN, fm = self.critic.generator_loss(fake_B, real_B)
            loss_GAN = loss_GAN.float() * c.lambda_GAN
            nce = {"NCE": self._nce(real_A, fake_B, flipped)}
            if c.nce_idt:
                nce["NCE_Y"] = self._nce(real_B, fake[len(real_A):], flipped)
        loss_NCE = torch.stack(list(nce.values())).mean()
        total = loss_GAN + loss_NCE
        if fm is not None:
            total = total + fm
        total.backward()
        self.optimizers["G"].step()
        self.update_averages(generator_updates_before(self.steps_done + 1, c))
        self.last_G = {"G_GAN": loss_GAN.item(), **{k: v.item() for k, v in nce.items()},
                       **({} if fm is None else {"FM": fm.item()})}
        return fake_B.detach()  # mirrored or not, an output for D to judge (as in the reference)

    def _nce(self, source: torch.Tensor, output: torch.Tensor, flipped: bool) -> torch.Tensor:
        c: CUTConfig = self.config
        return resolved(c.lambda_NCE) * patchnce(self.G, self.F, source, output, self.layers, c.num_patches, c.nce_T,
                                                 flipped)

    # ------------------------------------------------------- test-time views
    def generators(self) -> dict[str, GeneratorSpec]:
        c: CUTConfig = self.config
        return {c.direction: generator_spec(c, self.name, self.averaged_name("G"), self.arch, c.direction)}

    def eval_generators(self):
        return {self.config.direction: to_inference(self.averaged("G"), batch_stats=self.config.batch_stats)}

    def sample_columns(self, batch, gens):
        """real_A | G(real_A) | real_B | G(real_B) (the last: what the identity term asks to keep)."""
        G = gens[self.config.direction]
        return [batch["A"], G(batch["A"]), batch["B"], G(batch["B"])]

    def validation_pairs(self, batch, gens):
        return gens[self.config.direction](batch["A"]), batch["B"]

    @torch.no_grad()
    def validation(self, val_set, max_images: int) -> Validation:
        """L1/PSNR/SSIM of G's outputs and the task's score on paired validation data; nothing on unpaired data
        (no targets)."""
        return super().validation(val_set, max_images) if isinstance(val_set, tdata.PairedImages) else Validation({})
