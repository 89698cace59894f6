"""A small classifier of the data's classes, and the latent edit that steers a generator with it.

Uses: the class histogram of a GAN's samples (a collapse diagnostic), the accuracy of
class-conditional samples, the feature network of FID / KID when no Inception weights are
given (scores labelled '<data>_classifier'), and the controllable edit
``z <- z + eta * d log p(class | G(z)) / dz``.

A GAN run keeps its classifier in ``RUN/classifier.pt`` (trained on the run's training split on
first use, written atomically; its held-out accuracy is recorded in the file).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from translate.checkpoint import torch_load_any
from translate.errors import ConfigError, ModelError
from translate.files import atomic_path
from translate.gan.data import GanData, open_gan_data, stack_images
from translate.gan.metrics import predict
from translate.gan.networks import Classifier, build_classifier

CLASSIFIER_FILE = "classifier.pt"
FORMAT = "i2i-translate/classifier/1"


def train_classifier(x: torch.Tensor, labels: torch.Tensor, num_classes: int, *, steps: int = 600,
                     batch_size: int = 128, lr: float = 2e-3, seed: int = 0, val: tuple[torch.Tensor, torch.Tensor] | None = None,
                     noise: float = 0.1, width: int = 32, feature_dim: int = 64) -> tuple[Classifier, dict[str, Any]]:
    """Train a :class:`Classifier` with Adam on (x, labels); images get small random shifts and
    Gaussian noise (``noise``, on [-1, 1]) so that generated images are judged fairly.
    Returns (classifier in eval mode, info with train/validation accuracy)."""
    if len(x) < 2 or num_classes < 2:
        raise ConfigError("data", f"a classifier needs labelled data with >= 2 classes (got {num_classes} classes, {len(x)} items)")
    images = x.dim() == 4
    arch = dict(nc=x.shape[1], size=x.shape[-1] if images else 0, num_classes=num_classes, width=width,
                feature_dim=feature_dim)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        C = build_classifier(**arch)
    opt = torch.optim.Adam(C.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    C.train()
    with torch.enable_grad():  # callers may be inside no_grad (validation)
        _fit(C, x, labels, opt, sched, steps, batch_size, noise, images, g)
    C.eval()
    info: dict[str, Any] = {"arch": arch, "steps": steps, "train_accuracy": accuracy(C, x, labels)}
    if val is not None and len(val[0]):
        info["val_accuracy"] = accuracy(C, *val)
    return C, info


def _fit(C, x, labels, opt, sched, steps, batch_size, noise, images, g) -> None:
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=g)
        xb, yb = x[idx], labels[idx]
        if images:
            dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
        xb = xb + noise * torch.randn(xb.shape, generator=g)
        loss = F.cross_entropy(C(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


@torch.no_grad()
def accuracy(C: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predict(C, x)[0] == labels).float().mean())


def save_classifier(C: Classifier, info: dict[str, Any], path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "state_dict": C.state_dict(), **info}, tmp)


def load_classifier(path: str | os.PathLike) -> tuple[Classifier, dict[str, Any]]:
    raw = torch_load_any(Path(path))
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelError(f"{path}: not a classifier written by this project")
    C = build_classifier(**raw["arch"])
    C.load_state_dict(raw["state_dict"])
    C.eval()
    for p in C.parameters():
        p.requires_grad_(False)
    return C, {k: v for k, v in raw.items() if k not in ("state_dict", "format")}


def classifier_for_data(data: GanData, path: str | os.PathLike | None = None, steps: int = 600,
                        seed: int = 0) -> tuple[Classifier, dict[str, Any]]:
    """The classifier cached at ``path``, else one trained on ``data``'s training split (and
    saved to ``path`` when given)."""
    if path is not None and Path(path).exists():
        return load_classifier(path)
    if not data.labelled:
        raise ConfigError("data", f"{data.name} is unlabelled: class-based checks and features need labelled data "
                          "(one subfolder per class), or give Inception weights for FID")
    x, y = stack_images(data.train)
    vx, vy = stack_images(data.val)
    C, info = train_classifier(x, y, data.num_classes, steps=steps, seed=seed, val=(vx, vy))
    info.update({"data": data.name, "classes": data.classes})
    if path is not None:
        save_classifier(C, info, path)
    for p in C.parameters():
        p.requires_grad_(False)
    return C, info


def classifier_for_run(run_dir: str | os.PathLike, config: dict[str, Any] | None = None,
                       path: str | os.PathLike | None = None) -> tuple[Classifier, dict[str, Any]]:
    """``path``, else ``RUN/classifier.pt``, else a classifier trained on the run's data and saved there."""
    if path is not None:
        return load_classifier(path)
    run_dir = Path(run_dir if Path(run_dir).is_dir() else Path(run_dir).parent.parent)
    cached = run_dir / CLASSIFIER_FILE
    if cached.exists():
        return load_classifier(cached)
    if config is None:
        raise ModelError(f"{run_dir}: no {CLASSIFIER_FILE} and no config to train one from")
    data = open_gan_data(config["data"], size=config.get("size", 16), channels=config.get("channels", 0),
                         seed=config.get("seed", 0), val_fraction=config.get("val_fraction", 0.05),
                         points=config.get("points", 100_000))
    return classifier_for_data(data, cached, steps=config.get("classifier_steps", 600), seed=config.get("seed", 0))


def edit_toward(G: nn.Module, C: Classifier, z: torch.Tensor, target: int, steps: int = 20, eta: float = 0.5,
                y: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Gradient ascent in latent space: ``z <- z + eta * d log p_C(target | G(z)) / dz``.

    Returns (outputs G(z) after 0..steps updates, classifier probabilities of ``target`` for each);
    both lists have ``steps + 1`` entries of batch size ``len(z)``.
    """
    if not 0 <= target < C.num_classes:
        raise ConfigError("toward", f"must be a class in [0, {C.num_classes - 1}], got {target}")
    if steps < 0:
        raise ConfigError("steps", f"must be >= 0, got {steps}")
    G.eval()
    C.eval()
    z = z.detach().clone()
    outs, scores = [], []
    with torch.enable_grad():
        for i in range(steps + 1):
            z.requires_grad_(True)
            x = G(z, y)
            logp = C(x).log_softmax(1)[:, target]
            outs.append(x.detach())
            scores.append(logp.detach().exp())
            if i == steps:
                break
            (grad,) = torch.autograd.grad(logp.sum(), z)
            z = (z + eta * grad).detach()
    return outs, scores


__all__ = ["CLASSIFIER_FILE", "train_classifier", "accuracy", "save_classifier", "load_classifier",
           "classifier_for_data", "classifier_for_run", "edit_toward"]
