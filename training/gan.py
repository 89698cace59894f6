"""The unconditional / class-conditional GAN family on one loop: a generator G(z[, class]) and a
discriminator (or critic) D(x[, class]) trained with one of eight objectives: the six every adversarial trainer
takes (translate.losses) and two over sets of samples (translate.gan.objectives).

Objectives (D loss on logits / critic values of real and generated samples; G loss):

* ``minimax``: BCE, G minimises E[log(1 - D(G(z)))] (Goodfellow et al. 2014);
* ``nonsaturating`` (alias ``vanilla``): BCE, G minimises -E[log D(G(z))];
* ``lsgan``: 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]; G: 1/2 E[(D(G(z)) - 1)^2] (Mao et al. 2017);
* ``wgan``: -E[D(x)] + E[D(G(z))], critic weights clipped to [-c, c] (Arjovsky et al. 2017);
* ``wgangp``: the same critic loss + lambda E[(||grad D(x_hat)|| - 1)^2] (Gulrajani et al. 2017);
* ``hinge``: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G: -E[D(G(z))] (Lim & Ye 2017, Miyato et al. 2018);
* ``contrastive``: D picks the real sample among N (``--contrastive-n``; one real, N - 1 generated) by an N-way
  softmax cross-entropy; G's loss is the cross-entropy with its samples as the answer (N = 2: the relativistic
  standard GAN, Jolicoeur-Martineau 2019);
* ``mmd``: G minimises, D maximises the unbiased MMD^2 between real and generated samples in D's last hidden
  layer under a mixture of Gaussian kernels (bandwidths 1, 2, 4, 8, 16; MMD GAN, Li et al. 2017).

Per-objective defaults, applied to the fields the user leaves at their "auto" value: Adam 2e-4
(0.5, 0.999) and one D step per G step for minimax / non-saturating / LSGAN / hinge (DCGAN,
LSGAN and SNGAN's DCGAN-sized setting); RMSprop 5e-5, c = 0.01, n_critic 5 for WGAN; Adam 1e-4
(0, 0.9), lambda 10, n_critic 5 for WGAN-GP. One loop step is one D update; G is updated every
``n_critic`` steps (so ``--steps 5000`` with n_critic 5 gives 1,000 G updates).

Data: the 2-D mixtures ``ring8`` / ``grid25`` (MLP G and D), ``digits`` or an image folder (DCGAN).
Validation: the PacGAN / VEEGAN mode statistics for mixtures; for labelled images the class
histogram of samples by a small classifier trained on the data (and the accuracy of conditional
samples, and FID in that classifier's features, labelled ``fid_<data>_classifier``).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from translate.checkpoint import GeneratorSpec, gan_spec_extra, resolve_checkpoint
from translate.errors import ConfigError
from translate.gan import data as gan_data
from translate.gan import metrics as gan_metrics
from translate.gan.networks import (
    D_NORMS,
    Classifier,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    build_discriminator,
    build_generator,
    generate,
    sample_labels,
    sample_latents,
)
from translate.gan.objectives import SET_OBJECTIVES, SetObjective
from translate.generators import load_generator
from translate.imageio import image_to_tensor
from translate.kinds import kind
from translate.losses import ALIASES, OBJECTIVE_NAMES, Objective, ObjectiveSettings
from translate.networks import to_inference
from translate.options import opt

from .adversarial import (
    constrain,
    generator_updates_before,
    objective,
    optimizers,
    penalty,
    set_requires_grad,
    updates_generator,
)
from .classifier import CLASSIFIER_FILE, classifier_for_data, load_classifier
from .config import AdversarialConfig, Preset, resolved
from .method_base import Method

# The tested settings of the built-in sets (BENCHMARKS.md): what `translate train gan --data ring8 --gan-mode wgangp`
# runs with unless told otherwise. On the 2-D mixtures the MLPs, batch and schedule are shared by the objectives and
# each objective has its optimiser settings: Adam 1e-3 (0.5, 0.999) for the BCE, LSGAN and hinge losses (and the
# contrastive and MMD losses, where it trains in a short run: tests/training/test_gan_set_objectives.py); WGAN-GP with
# the authors' toy penalty weight 0.1, Adam 2e-3 (0.5, 0.9) and 2 critic steps; WGAN keeps its paper's RMSprop.
_ADAM_TOY = dict(lr=1e-3, beta1=0.5, beta2=0.999)
_MIXTURE_OBJECTIVES = {"minimax": _ADAM_TOY, "nonsaturating": _ADAM_TOY, "lsgan": _ADAM_TOY, "hinge": _ADAM_TOY,
                       "contrastive": _ADAM_TOY, "mmd": _ADAM_TOY,
                       "wgangp": dict(lr=2e-3, beta1=0.5, beta2=0.9, lambda_gp=0.1, n_critic=2)}
_MIXTURE = dict(mlp_width=128, nz=16, batch_size=256, decay_fraction=0.5, ema_decay=0.999, threads=1)
PRESETS: dict[str, Preset] = {
    "ring8": Preset({**_MIXTURE, "steps": 15000}, _MIXTURE_OBJECTIVES,
                    source="BENCHMARKS.md, GAN objectives on ring8: wgangp 8/8 modes, 97 % high quality, 5 of 5 seeds"),
    "grid25": Preset({**_MIXTURE, "steps": 20000}, _MIXTURE_OBJECTIVES,
                     source="BENCHMARKS.md, GAN objectives on grid25: wgangp 25/25 modes, >= 91 % high quality, "
                            "5 of 5 seeds"),
    "digits": Preset(dict(size=16, ngf=32, ndf=32, nz=32, decay_fraction=0.5, ema_decay=0.999,
                          steps=3000, threads=1), {"nonsaturating": dict(lr=5e-4)},
                     source="BENCHMARKS.md, truncation trade-off on digits: 10 of 10 classes, classifier "
                            "confidence 0.86 unconditional, accuracy 0.99 conditional"),
}


@dataclass
class GANConfig(AdversarialConfig):
    data: str = opt("", "built-in set (ring8, grid25, digits) or an image folder (flat = unlabelled, "
                    "one subfolder per class = labelled)")
    steps: int | None = opt(5000, "total steps, each one discriminator update (G is updated every n_critic steps); "
                            "0: use --epochs", preset=True)
    decay_fraction: float | None = opt(0.0, "fraction of the run over which the learning rate decays linearly to 0",
                                       preset=True)
    batch_size: int | None = opt(64, "samples per step", preset=True)
    workers: int = opt(0, "data loading worker processes (0: load in the main process)")
    log_every: int = opt(50, "write losses to metrics.jsonl / TensorBoard every N steps")
    val_every: int = opt(1000, "validate (mode statistics / class histogram) every N steps; 0 = only at the end")
    sample_every: int = opt(1000, "write a sample grid (or scatter plot) every N steps")
    checkpoint_every: int = opt(1000, "write a checkpoint every N steps (and always at the end)")
    size: int | None = opt(32, "image side (a power of two >= 8); digits are upscaled from 8x8", preset=True)
    channels: int | None = opt(None, "image channels: 1 or 3 (auto: 1 for digits, 3 for folders)")
    points: int = opt(100_000, "training points drawn from a 2-D mixture")
    arch: str | None = opt(None, "networks: mlp (2-D points), dcgan (images) (auto: by the data)",
                           choices=("mlp", "dcgan"))
    nz: int | None = opt(None, "latent dimension (auto: 100 for images as in DCGAN, 16 for points)")
    ngf: int | None = opt(64, "DCGAN generator filters of the last layer", preset=True)
    ndf: int | None = opt(64, "DCGAN discriminator filters of the first layer", preset=True)
    mlp_width: int | None = opt(256, "MLP hidden units (2-D data)", preset=True)
    mlp_layers: int = opt(3, "MLP hidden layers (2-D data)")
    d_norm: str | None = opt(None, "DCGAN discriminator normalisation (auto: batch, or layer norm when D has a "
                             "gradient penalty, which is per sample)", choices=D_NORMS)
    spectral_norm: bool = opt(False, "spectral normalisation of every D layer")
    conditional: bool = opt(False, "class-conditional G and D (needs labelled data)")
    gan_mode: str = opt("nonsaturating", "adversarial objective: the trainers' (vanilla = nonsaturating), or the GAN "
                        "family's over sets of samples: contrastive (D picks the real sample among N), mmd (kernel "
                        "MMD on D's features)", choices=(*OBJECTIVE_NAMES, *SET_OBJECTIVES))
    contrastive_n: int = opt(8, "contrastive objective: N, the samples of each set D picks the real one from (one "
                             "real, N - 1 generated; 2 <= N <= batch size + 1)")
    eval_samples: int = opt(gan_data.EVAL_SAMPLES, "samples drawn for validation (2,500 in the mixture protocol)")
    val_classifier: bool = opt(True, "labelled images: train a small classifier (RUN/classifier.pt) at the first "
                               "validation for the class histogram of samples")
    classifier_steps: int = opt(600, "training steps of that classifier")
    threads: int | None = opt(0, "CPU threads for torch in this process (0: torch's default); the small networks "
                              "here run fastest on 1 (a 16 px digits step: 18 ms on 1 thread, 55 ms on 2)",
                              preset=True)

    presets: ClassVar[dict[str, Preset]] = PRESETS


    def __post_init__(self) -> None:
        self.gan_mode = ALIASES.get(self.gan_mode, self.gan_mode)  # the GAN family's own name for it
        super().__post_init__()
        legacy = {"nz": 0, "channels": 0, "arch": "auto", "d_norm": "auto"}  # "auto" in configs before None
        for name, old in legacy.items():
            if getattr(self, name) == old:
                setattr(self, name, None)
        if not self.data:
            return  # resolved when there is data (a resumed run's config is already resolved)
        points = self.data in gan_data.MIXTURES
        self.arch = self.arch or ("mlp" if points else "dcgan")
        self.nz = self.nz or (16 if points else 100)
        if self.channels is None and not points:
            self.channels = 1 if self.data == "digits" else 3
        self.d_norm = self.d_norm or ("layer" if self.lambda_gp else "batch")

    def objective_settings(self) -> ObjectiveSettings:
        return SET_OBJECTIVES.get(self.gan_mode) or super().objective_settings()

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data", "give --data: ring8, grid25, digits, or an image folder")
        super().validate()
        if self.gan_mode == "contrastive" and not 2 <= self.contrastive_n <= resolved(self.batch_size) + 1:
            raise ConfigError("contrastive_n", f"must be in [2, batch size + 1 = {resolved(self.batch_size) + 1}] "
                              f"(each set holds N - 1 different generated samples of the batch), got "
                              f"{self.contrastive_n}")
        if self.gan_mode == "mmd" and self.lambda_gp:
            raise ConfigError("lambda_gp", "mmd compares D's features, not its scores, which the gradient penalty "
                              "constrains: leave it at 0")
        if self.eval_samples <= 0:
            raise ConfigError("eval_samples", f"must be > 0, got {self.eval_samples}")
        if self.lambda_gp and self.d_norm == "batch":
            raise ConfigError("d_norm", "batch norm makes each critic value depend on the whole batch, which the "
                              "per-sample gradient penalty forbids: use layer, instance or none")


class GAN(Method):
    """GAN family: unconditional / class-conditional, six objectives, 2-D mixtures or images."""

    name = "gan"
    config_class = GANConfig
    config: GANConfig
    exact_settings = None  # each process draws its own latents
    average_buffers = False  # G_ema takes G's batch norm statistics as they are (its measured presets were so)

    def __init__(self, config: GANConfig, device: torch.device):
        super().__init__(config, device)
        c = config
        threads, nz = resolved(c.threads), resolved(c.nz)
        if threads > 0:
            torch.set_num_threads(threads)
        if resolved(c.n_critic) > 1:  # G's scheduler steps with the loop before G's first update: expected here
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        self.data = gan_data.open_gan_data(c.data, size=resolved(c.size), channels=c.channels or 0, seed=c.seed,
                                           val_fraction=c.val_fraction, points=c.points, strict=c.strict_data,
                                           cache_bytes=int(c.data_cache_gb * 2**30))
        points = self.data.kind == "points"
        if (c.arch == "mlp") != points:
            raise ConfigError("arch", f"{c.arch} does not fit {self.data.kind} ({c.data}): use mlp for 2-D mixtures, "
                              "dcgan for images")
        if c.conditional and not self.data.labelled:
            raise ConfigError("conditional", f"{c.data} is unlabelled (use one subfolder per class)")
        k = self.data.num_classes if c.conditional else 0
        self.nz, self.num_classes = nz, k  # G's latents and classes (typed: G is any nn.Module)
        # the networks' recipes, as checkpoints record them
        self.arch_G: dict[str, Any]
        self.arch_D: dict[str, Any]
        if points:
            self.arch_G = dict(arch="mlp", nz=c.nz, num_classes=k, out_dim=2, width=c.mlp_width, layers=c.mlp_layers)
            self.arch_D = dict(arch="mlp", num_classes=k, in_dim=2, width=c.mlp_width, layers=c.mlp_layers,
                               spectral_norm=c.spectral_norm)
        else:
            self.arch_G = dict(arch="dcgan", nz=c.nz, num_classes=k, nc=self.data.channels, size=c.size, ngf=c.ngf)
            self.arch_D = dict(arch="dcgan", num_classes=k, nc=self.data.channels, size=c.size, ndf=c.ndf,
                               norm=c.d_norm, spectral_norm=c.spectral_norm)
        self.G = build_generator(**self.arch_G)
        self.D = build_discriminator(**self.arch_D)
        self.place({"G": self.G, "D": self.D})
        self.optimizers = optimizers(c, G=self.G.parameters(), D=self.D.parameters())
        self.objective: Objective | SetObjective = SET_OBJECTIVES.get(c.gan_mode) or objective(c)
        self.keep_averages(resolved(c.ema_decay), "G")  # G_ema: checkpointed with the others; the one exported
        self.G_ema = self.networks.get("G_ema")
        self.last_G: dict[str, float] = {}
        self.classifier: Classifier | None = None
        g = torch.Generator().manual_seed(c.seed + 12345)
        # the sample grid: fixed latents, 8 x 8 (conditional: one row of 8 per class)
        self.grid_labels = torch.arange(k).repeat_interleave(8) if k else None
        self.grid_z = sample_latents(8 * k if k else 64, nz, generator=g)

    # ------------------------------------------------------------- the hooks
    @classmethod
    def tiny_config(cls, data: str, out: str, **overrides) -> GANConfig:
        """On ring8 whatever ``data`` is, without its preset (which would replace an objective's optimiser settings),
        with WGAN-GP: the step with the most parts (a penalty's double backward, G waiting for n_critic D updates)."""
        return GANConfig(**{**dict(data="ring8", out=str(out), points=512, batch_size=16, mlp_width=16, mlp_layers=2,
                                   eval_samples=100, preset="none", gan_mode="wgangp", steps=6, progress=False,
                                   export=False), **overrides})

    def datasets(self):
        return self.data.train, self.data.val

    def step(self, batch: dict) -> dict[str, float]:
        c: GANConfig = self.config
        real = batch["x"]
        y = batch["label"] if self.G.num_classes else None
        n = real.shape[0]
        opt_G, opt_D = self.optimizers["G"], self.optimizers["D"]
        with torch.no_grad(), self.autocast():
            fake = self.G(torch.randn(n, self.nz, device=self.device), y).float()
        with self.autocast():
            d_real, d_fake = self.d_outputs(real, y), self.d_outputs(fake, y)
            if isinstance(self.objective, SetObjective):
                loss_D = self.objective.discriminator(d_real, d_fake, c.contrastive_n)
            else:
                loss_D = self.objective.discriminator_loss(d_real, d_fake)
        out = {"D": loss_D.item(), "D_real": d_real.mean().item(), "D_fake": d_fake.mean().item()}
        gp = penalty(c, lambda x: self.D(x, y), real, fake)
        if gp is not None:
            loss_D = loss_D + gp
            out["GP"] = gp.item()
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        constrain(c, self.D)
        iteration = self.steps_done + 1  # one loop step is one D update
        if updates_generator(iteration, c):
            set_requires_grad(self.D, False)
            with self.autocast():
                fake = self.G(torch.randn(n, self.nz, device=self.device), y)
                if isinstance(self.objective, SetObjective):
                    loss_G = self.objective.generator(self.d_outputs(real, y), self.d_outputs(fake, y),
                                                      c.contrastive_n)
                else:
                    loss_G = self.objective.generator(self.D(fake, y).float())
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()
            set_requires_grad(self.D, True)
            self.update_averages(generator_updates_before(iteration, c))
            self.last_G = {"G": loss_G.item()}
        return {**out, **self.last_G}

    def d_outputs(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """What the objective reads of D: its scores, or its last hidden layer for an objective on features."""
        if isinstance(self.objective, SetObjective) and self.objective.features:
            assert isinstance(self.D, (DCGANDiscriminator, MLPDiscriminator))  # what build_discriminator makes
            return self.D.features(x, y).float()
        return self.D(x, y).float()

    def generators(self) -> dict[str, GeneratorSpec]:
        """G (its moving average when kept) as a ``"gan"`` generator: latents in, samples out."""
        return {"G": GeneratorSpec(network=self.averaged_name("G"), arch=self.arch_G,
                                   direction="", method=self.name, kind="gan",
                                   extra=gan_spec_extra(self.data.classes if self.G.num_classes else [],
                                                        self.config.data, self.data.name, self.data.kind,
                                                        self.G_ema is not None))}

    def eval_generators(self) -> dict[str, nn.Module]:
        return {}

    def eval_G(self) -> nn.Module:
        """The generator as sampled and exported: the EMA weights when kept, eval mode, a copy."""
        return to_inference(self.averaged("G"), batch_stats=False)

    @torch.no_grad()
    def samples(self, n: int, seed: int = 0, G: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        G = G or self.eval_G()
        y = sample_labels(n, self.num_classes)
        return generate(G, sample_latents(n, self.nz, generator=torch.Generator().manual_seed(seed)), y), y

    def get_classifier(self) -> Classifier:
        if self.classifier is None:
            c: GANConfig = self.config
            path = Path(c.out) / CLASSIFIER_FILE if c.out else None
            self.classifier, _ = classifier_for_data(self.data, path, steps=c.classifier_steps, seed=c.seed)
        return self.classifier

    @torch.no_grad()
    def validate(self, val_set, max_images: int) -> dict[str, float]:
        c: GANConfig = self.config
        x, y = self.samples(c.eval_samples, seed=c.seed + 1)
        if self.data.kind == "points":
            stats = gan_data.evaluate_mixture(x, self.data.name)
            out = {k: stats[k] for k in ("modes", "high_quality", "reverse_kl")}
            if y is not None:
                out["conditional_accuracy"] = _mixture_conditional_accuracy(x, y, self.data.name)
            return out
        if not (self.data.labelled and c.val_classifier):
            return {}
        C = self.get_classifier()
        stats = image_sample_stats(C, x, y, self.data, gan_metrics.classifier_features(C, self.data.name),
                                   kid_subsets=0)
        return {k: v for k, v in stats.items() if isinstance(v, (int, float))}

    @torch.no_grad()
    def sample_grid(self, batch: dict) -> torch.Tensor:
        G = self.eval_G()
        if self.data.kind == "points":
            x, _ = self.samples(self.config.eval_samples, seed=self.config.seed + 1, G=G)
            return (image_to_tensor(gan_data.render_points(x, self.data.name)) + 1) / 2
        y = None if self.grid_labels is None else self.grid_labels.to(self.device)
        return image_grid(G(self.grid_z.to(self.device), y))

    def extra_state(self) -> dict[str, Any]:
        return {"gan": {"arch_D": self.arch_D, "data_classes": self.data.classes, "last_G": self.last_G}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        s = state.get("gan", {})
        self.last_G = dict(s.get("last_G", {}))
        if self.G_ema is not None and s.get("G_ema") is not None:  # written before G_ema was a network
            self.G_ema.load_state_dict(s["G_ema"])


# ---------------------------------------------------------------------- helpers
def image_grid(x: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """(3, H, W) in [0, 1] from NCHW samples in [-1, 1]."""
    import torchvision.utils as vutils

    x = x.detach().float().cpu().clamp(-1, 1)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    return vutils.make_grid(x, nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))


def _mixture_conditional_accuracy(x: torch.Tensor, y: torch.Tensor, name: str) -> float:
    centres = torch.from_numpy(gan_data.mixture_centres(name)).float()
    return float((torch.cdist(x.float(), centres).argmin(1) == y).float().mean())


@torch.no_grad()
def image_sample_stats(C: nn.Module | None, x: torch.Tensor, y: torch.Tensor | None, data: gan_data.GanData,
                       features: gan_metrics.FeatureNetwork | None, real: torch.Tensor | None = None,
                       kid_subsets: int = 100) -> dict[str, Any]:
    """Class histogram of samples ``x`` by classifier ``C`` (and conditional accuracy when ``y``),
    FID (and KID when ``kid_subsets``) against ``real`` (default: the validation images)."""
    out: dict[str, Any] = {}
    if C is not None:
        pred, probs = gan_metrics.predict(C, x)
        hist = gan_metrics.class_histogram(pred, data.num_classes)
        out.update({"classes_covered": hist["classes_covered"], "class_reverse_kl": hist["class_reverse_kl"],
                    "confidence": float(probs.max(1).values.mean())})
        if y is not None:
            out["conditional_accuracy"] = float((pred == y).float().mean())
    if features is not None:
        if real is None:
            real, _ = gan_data.stack_images(data.val)
        fr, ff = features(real), features(x)
        out[f"fid{features.label}"] = gan_metrics.fid_from_features(fr, ff)
        if kid_subsets:
            out[f"kid{features.label}"], out[f"kid{features.label}_std"] = gan_metrics.kid_from_features(
                fr, ff, subsets=kid_subsets)
    if C is not None:
        out["class_histogram"] = hist["histogram"]
    return out


@torch.no_grad()
def evaluate_gan(model: str | os.PathLike, data: str | None = None, samples: int = 0, inception: str | None = None,
                 classifier: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Sample-quality report of a GAN run, as a JSON-able dict.

    Mixtures: the PacGAN / VEEGAN statistics of ``samples`` (default 2,500) points. Images: FID and
    KID against the data's training images in the features of the Inception weights at ``inception``
    (keys ``fid``, ``kid``) or else of the data's classifier (``fid_<data>_classifier``...), and the
    class histogram of the samples (labelled data). ``data`` overrides the run's data set.
    """
    ckpt_path = resolve_checkpoint(model)
    G, meta = load_generator(ckpt_path)
    if not kind(meta["kind"]).samples:
        raise ConfigError("model", f"{model}: not a GAN run (a {meta['kind']} generator)")
    assert isinstance(G, (DCGANGenerator, MLPGenerator))  # what the "gan" kind loads
    cfg = meta["config"]
    name = data or cfg["data"]
    out: dict[str, Any] = {"model": str(model), "step": meta["step"], "gan_mode": meta["gan_mode"], "ema": meta["ema"],
                           "data": name}
    g = torch.Generator().manual_seed(seed)
    if meta["data_kind"] == "points":
        n = samples or gan_data.EVAL_SAMPLES
        y = sample_labels(n, G.num_classes)
        x = generate(G, sample_latents(n, G.nz, generator=g), y)
        out.update(gan_data.evaluate_mixture(x, meta["name"] if data is None else data))
        if y is not None:
            out["conditional_accuracy"] = _mixture_conditional_accuracy(x, y, meta["name"])
        return _finite(out)
    assert isinstance(G, DCGANGenerator)  # images
    d = gan_data.open_gan_data(name, size=G.size, channels=G.nc, seed=cfg.get("seed", 0),
                               val_fraction=cfg.get("val_fraction", 0.05))
    real, _ = gan_data.stack_images(d.train)
    n = samples or max(len(real), 1000)
    y = sample_labels(n, G.num_classes)
    if y is not None:
        y = y[torch.randperm(n, generator=g)]
    x = generate(G, sample_latents(n, G.nz, generator=g), y)
    C = None
    if d.labelled:
        if classifier:
            C, info = load_classifier(classifier)
        else:
            run_dir = Path(model) if Path(model).is_dir() else ckpt_path.parent.parent
            C, info = classifier_for_data(d, run_dir / CLASSIFIER_FILE if data is None else None,
                                          steps=cfg.get("classifier_steps", 600), seed=cfg.get("seed", 0))
        out["classifier_val_accuracy"] = info.get("val_accuracy")
    if inception:
        feats = gan_metrics.inception_features(inception)
    elif C is not None:
        feats = gan_metrics.classifier_features(C, d.name)
    else:
        raise ConfigError("inception", f"{name} is unlabelled: give --inception WEIGHTS for FID/KID "
                          "(or labelled data, one subfolder per class, for a classifier's features)")
    out.update({"feature_network": feats.name, "samples": n, "real": len(real)})
    out.update(image_sample_stats(C, x, y if G.num_classes else None, d, feats, real=real))
    return _finite(out)


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: non-finite floats become None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


__all__ = ["GAN", "GANConfig", "image_grid", "image_sample_stats", "evaluate_gan"]
