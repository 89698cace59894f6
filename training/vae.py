"""A variational autoencoder (Kingma & Welling 2014) on images: a convolutional encoder to q(z|x) = N(mu,
diag(sigma^2)), z by the reparameterisation trick, the DCGAN generator as the decoder, trained to maximise the ELBO
E_q[log p(x|z)] - KL(q(z|x) || N(0, I)) with Adam.

p(x|z) is a Gaussian around the decoder's output with a learnt scale per channel, integrated over each pixel's
8-bit bin (:mod:`translate.vae`), so the ELBO bounds the log-probability of the 8-bit images and the bits per
dimension it gives are honest. Data: ``digits`` or an image folder (as the GAN family opens them). With
``--latent-dim 2`` the decoder's outputs over an even grid of the latent plane are the sample image (and
``translate sample RUN --grid``). The decoder is exported as a generator of kind ``"vae"``: latents in, images out.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from translate.checkpoint import GeneratorSpec, gan_spec_extra, load_checkpoint, resolve_checkpoint
from translate.errors import ConfigError
from translate.gan import data as gan_data
from translate.gan.networks import DCGANGenerator, build_generator, sample_latents
from translate.generators import load_generator
from translate.kinds import kind
from translate.networks import to_inference
from translate.options import opt
from translate.vae import Encoder, GaussianLikelihood, bits_per_dim, elbo_terms, latent_grid

from .config import TrainConfig
from .method_base import Method

GRID_SIDE = 10  # the sample image's latent grid, 10 x 10 points of the plane


@dataclass
class VAEConfig(TrainConfig):
    data: str = opt("", "digits, or an image folder (flat, or one subfolder per class: the classes are ignored)")
    steps: int | None = opt(3000, "total optimizer steps; 0: use --epochs")
    decay_fraction: float | None = opt(0.0, "fraction of the run over which the learning rate decays linearly to 0")
    batch_size: int | None = opt(64, "images per step")
    workers: int = opt(0, "data loading worker processes (0: load in the main process)")
    log_every: int = opt(50, "write losses to metrics.jsonl / TensorBoard every N steps")
    val_every: int = opt(500, "the ELBO on the held-out images every N steps; 0 = only at the end")
    sample_every: int = opt(500, "write a sample image every N steps (the latent grid for a 2-D latent)")
    checkpoint_every: int = opt(1000, "write a checkpoint every N steps (and always at the end)")
    latent_dim: int = opt(2, "dimension of z; 2 gives the latent plane (`translate sample RUN --grid`)")
    size: int = opt(16, "image side (a power of two >= 8); digits are upscaled from 8x8")
    channels: int | None = opt(None, "image channels: 1 or 3 (auto: 1 for digits, 3 for folders)")
    ngf: int = opt(32, "decoder (DCGAN generator) filters of the last layer")
    ndf: int = opt(32, "encoder filters of the first layer")
    lr: float = opt(1e-3, "Adam learning rate")
    eval_samples: int = opt(1, "z drawn per held-out image for its ELBO (the mean of the one-sample bounds)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channels is None and self.data:
            self.channels = 1 if self.data == "digits" else 3

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data", "give --data: digits, or an image folder")
        if self.data in gan_data.MIXTURES:
            raise ConfigError("data", f"{self.data} is a set of 2-D points: the VAE takes images (digits or a folder)")
        super().validate()
        for name in ("latent_dim", "eval_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}")


class VAE(Method):
    """Encoder, decoder and the likelihood's scale, trained on the negative ELBO per dimension."""

    name = "vae"
    config_class = VAEConfig
    config: VAEConfig
    exact_settings = None  # each step draws the reparameterisation noise

    def __init__(self, config: VAEConfig, device: torch.device):
        super().__init__(config, device)
        c = config
        self.data = gan_data.open_gan_data(c.data, size=c.size, channels=c.channels or 0, seed=c.seed,
                                           val_fraction=c.val_fraction, strict=c.strict_data)
        self.dims = self.data.channels * c.size * c.size  # D of bits per dimension
        self.arch_decoder: dict[str, Any] = dict(arch="dcgan", nz=c.latent_dim, nc=self.data.channels, size=c.size, ngf=c.ngf)
        self.arch_encoder: dict[str, Any] = dict(nz=c.latent_dim, nc=self.data.channels, size=c.size, ndf=c.ndf)
        self.encoder = Encoder(**self.arch_encoder)
        self.decoder = build_generator(**self.arch_decoder)
        self.likelihood = GaussianLikelihood(self.data.channels)
        self.place({"encoder": self.encoder, "decoder": self.decoder, "likelihood": self.likelihood})
        params = [p for n in (self.encoder, self.decoder, self.likelihood) for p in n.parameters()]
        self.optimizers = {"VAE": torch.optim.Adam(params, lr=c.lr)}
        self.prior_z = sample_latents(8, c.latent_dim, generator=torch.Generator().manual_seed(c.seed + 12345))

    @classmethod
    def tiny_config(cls, data: str, out: str, **overrides) -> VAEConfig:
        """On digits whatever ``data`` is: 8 px, a few filters, batches of 8."""
        return VAEConfig(**{**dict(data="digits", out=str(out), size=8, ngf=4, ndf=4, batch_size=8, steps=6,
                                   max_val_images=16, progress=False, export=False), **overrides})

    def datasets(self):
        return self.data.train, self.data.val

    def step(self, batch: dict) -> dict[str, float]:
        with self.autocast():
            terms = elbo_terms(batch["x"], self.encoder, self.decoder, self.likelihood)
        elbo = terms["elbo"].mean()
        loss = -elbo / self.dims  # nats per dimension: the rate means the same at any image size
        opt = self.optimizers["VAE"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"elbo": elbo.item(), "kl": terms["kl"].mean().item(),
                "bits_per_dim": float(bits_per_dim(elbo.item(), self.dims))}

    def generators(self) -> dict[str, GeneratorSpec]:
        """The decoder as a ``"vae"`` generator (a DCGAN generator: latents in, images out), with the encoder's
        recipe, which ``translate evaluate`` needs for the ELBO."""
        extra = gan_spec_extra([], self.config.data, self.data.name, self.data.kind, False)
        return {"decoder": GeneratorSpec(network="decoder", arch=self.arch_decoder, direction="", method=self.name,
                                         kind="vae", extra={**extra, "encoder": self.arch_encoder})}

    def eval_generators(self) -> dict[str, nn.Module]:
        return {}

    @torch.no_grad()
    def validate(self, val_set, max_images: int) -> dict[str, float]:
        E, G = (to_inference(n, batch_stats=False) for n in (self.encoder, self.decoder))
        assert isinstance(G, DCGANGenerator)  # what build_generator made for images
        x = torch.cat([b["x"] for b in self.validation_batches(val_set, max_images)])
        return heldout_elbo(E, G, self.likelihood, x, self.config.eval_samples, seed=self.config.seed + 1)

    @torch.no_grad()
    def sample_grid(self, batch: dict) -> torch.Tensor:
        """The decoder over the latent grid for a 2-D latent; else rows of inputs, their reconstructions (the
        decoder at the mean of q(z|x)) and samples of the prior."""
        import torchvision.utils as vutils

        E, G = (to_inference(n, batch_stats=False) for n in (self.encoder, self.decoder))
        if self.config.latent_dim == 2:
            x, nrow = G(latent_grid(GRID_SIDE).to(self.device)), GRID_SIDE
        else:
            real = batch["x"][:8]
            x = torch.cat([real, G(E(real)[0]), G(self.prior_z.to(self.device))])
            nrow = len(real)
        x = x.float().cpu().clamp(-1, 1)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return vutils.make_grid(x, nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))


@torch.no_grad()
def heldout_elbo(encoder: nn.Module, decoder: DCGANGenerator, likelihood: GaussianLikelihood, x: torch.Tensor,
                 samples: int = 1, seed: int = 0, batch_size: int = 256) -> dict[str, float]:
    """The mean ELBO of images ``x`` (nats per image; each image's the mean of ``samples`` one-sample bounds, with
    noise from ``seed``), its two terms and its bits per dimension, by networks in test-time form."""
    device = next(decoder.parameters()).device
    g = torch.Generator().manual_seed(seed)
    sums = {"elbo": 0.0, "log_likelihood": 0.0, "kl": 0.0}
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        for _ in range(samples):
            eps = torch.randn(len(xb), decoder.nz, generator=g).to(device)
            for k, v in elbo_terms(xb, encoder, decoder, likelihood, eps).items():
                sums[k] += v.sum().item() / samples
    out = {k: v / len(x) for k, v in sums.items()}
    dims = x[0].numel()
    out["bits_per_dim"] = float(bits_per_dim(out["elbo"], dims))
    return out


@torch.no_grad()
def evaluate_vae(model: str | os.PathLike, data: str | None = None, samples: int = 0, seed: int = 0
                 ) -> dict[str, Any]:
    """The ELBO (nats per image), its terms and bits per dimension of a VAE run on held-out images: the run's
    validation images, or every image of ``data`` when given. ``samples`` z per image (0: the run's setting)."""
    path = resolve_checkpoint(model)
    decoder, meta = load_generator(path)
    if meta["kind"] != "vae":
        raise ConfigError("model", f"{model}: not a VAE run (a {kind(meta['kind']).name} generator)")
    assert isinstance(decoder, DCGANGenerator)  # what the "vae" kind loads
    cfg = meta["config"]
    nets = load_checkpoint(path)["networks"]
    encoder = Encoder(**meta["encoder"])
    encoder.load_state_dict(nets["encoder"])
    likelihood = GaussianLikelihood(decoder.nc)
    likelihood.load_state_dict(nets["likelihood"])
    if data is None:
        d = gan_data.open_gan_data(cfg["data"], size=decoder.size, channels=decoder.nc, seed=cfg.get("seed", 0),
                                   val_fraction=cfg.get("val_fraction", 0.05))
        x, _ = gan_data.stack_images(d.val)
    else:
        d = gan_data.open_gan_data(data, size=decoder.size, channels=decoder.nc, val_fraction=0.0)
        x, _ = gan_data.stack_images(d.train)
    samples = samples or int(cfg.get("eval_samples", 1))
    out = {"model": str(model), "step": meta["step"], "data": data or cfg["data"], "images": len(x),
           "latent_dim": decoder.nz, "samples_per_image": samples, "dims": x[0].numel(),
           "likelihood": "Gaussian, discretised to 8-bit bins"}
    out.update(heldout_elbo(encoder.eval(), decoder, likelihood, x, samples, seed))
    return out


__all__ = ["VAE", "VAEConfig", "heldout_elbo", "evaluate_vae"]
