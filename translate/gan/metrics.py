"""Sample-quality metrics of generators: FID and KID from a feature network, and the class
histogram of samples (a mode-collapse diagnostic).

Feature networks (images NCHW in [-1, 1] -> (N, F) features):

* :func:`inception_features`: the standard FID Inception-v3 (the TF 2015-12-05 graph ported by
  torch-fidelity, as torchmetrics uses it), 2048-d pool features, from a weights file the user
  gives by path (torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``). Nothing
  downloads; this path needs the ``torch-fidelity`` package. Scores are labelled ``fid`` / ``kid``.
* :func:`classifier_features`: the penultimate layer of a small classifier trained on the data's
  own classes (:class:`translate.gan.networks.Classifier`). Its scores are labelled with the
  network's name, e.g. ``fid_digits_classifier``, so they are never mistaken for a published FID:
  they rank models on one data set, nothing more.

FID (Heusel et al. 2017) and KID (Binkowski et al. 2018: unbiased MMD^2 with the cubic
polynomial kernel, mean over random subsets) are computed by torchmetrics on the features.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .networks import Classifier

Features = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FeatureNetwork:
    """A feature extractor and the label its scores carry ('inception' or '<data>_classifier')."""

    name: str
    extract: Features
    batch_size: int = 256

    @property
    def label(self) -> str:
        return "" if self.name == "inception" else f"_{self.name}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = [self.extract(images[i:i + self.batch_size]).double().cpu() for i in range(0, len(images), self.batch_size)]
        return torch.cat(out)


def classifier_features(classifier: Classifier, name: str) -> FeatureNetwork:
    """Penultimate-layer features of a :class:`translate.gan.networks.Classifier`."""
    classifier.eval()
    return FeatureNetwork(f"{name}_classifier", classifier.features)


def inception_features(weights_path: str | os.PathLike) -> FeatureNetwork:
    """The FID Inception-v3 (2048-d pool features) loaded from ``weights_path``; no download."""
    path = Path(weights_path)
    if not path.is_file():
        raise ConfigError("inception", f"{path}: no such weights file (give torch-fidelity's "
                          "weights-inception-2015-12-05-6726825d.pth; nothing is downloaded)")
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                 feature_extractor_weights_path=str(path))
    except ModuleNotFoundError as e:
        raise ConfigError("inception", f"the Inception feature network needs the torch-fidelity package ({e})") from None
    except Exception as e:  # a file of the wrong kind
        raise ConfigError("inception", f"{path}: not FID Inception weights ({e.__class__.__name__}: {e})") from None

    def extract(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # what the FID graph was fed: 0..255
        return net(u8).reshape(len(x), -1)

    return FeatureNetwork("inception", extract, batch_size=64)


class _Given(nn.Identity):
    """torchmetrics' FID/KID fed with features we computed ourselves."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two (N, F) feature sets."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError("FID needs at least 2 real and 2 generated samples")
    m = FrechetInceptionDistance(feature=_Given(real.shape[1]), reset_real_features=False)
    m.update(real.double(), real=True)
    m.update(fake.double(), real=False)
    return float(m.compute())


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD^2 over random subsets."""
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError("KID needs at least 2 real and 2 generated samples")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = KernelInceptionDistance(feature=_Given(real.shape[1]), subsets=subsets, subset_size=size)
    m.update(real.double(), real=True)
    m.update(fake.double(), real=False)
    state = torch.get_rng_state()
    torch.manual_seed(seed)  # torchmetrics draws the subsets with the global generator
    try:
        mean, std = m.compute()
    finally:
        torch.set_rng_state(state)
    return float(mean), float(std)


def fid_kid(features: FeatureNetwork, real_images: torch.Tensor, fake_images: torch.Tensor,
            kid_subsets: int = 100) -> dict[str, float]:
    """``{fid<label>, kid<label>, kid<label>_std}`` (label: '' for Inception, '_<name>' otherwise)."""
    fr, ff = features(real_images), features(fake_images)
    kid, kid_std = kid_from_features(fr, ff, subsets=kid_subsets)
    s = features.label
    return {f"fid{s}": fid_from_features(fr, ff), f"kid{s}": kid, f"kid{s}_std": kid_std}


def reverse_kl_uniform(hist: np.ndarray) -> float:
    """KL(p || uniform) of a histogram over K bins: 0 when balanced, log(K / k) for k equal
    bins and the rest empty, ``inf`` for an empty histogram."""
    hist = np.asarray(hist, dtype=np.float64)
    if hist.sum() <= 0:
        return math.inf
    p = hist / hist.sum()
    nz = p > 0
    return float((p[nz] * np.log(p[nz] * len(hist))).sum())


def class_histogram(labels: torch.Tensor | np.ndarray, num_classes: int) -> dict:
    """Counts of predicted classes of samples: ``histogram``, ``classes_covered``, and
    ``class_reverse_kl`` = KL(p || uniform) (0 = balanced; log K = a single class)."""
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64).reshape(-1)
    hist = np.bincount(y, minlength=num_classes)[:num_classes]
    return {"histogram": hist.tolist(), "classes_covered": int((hist > 0).sum()),
            "class_reverse_kl": reverse_kl_uniform(hist)}


@torch.no_grad()
def predict(classifier: nn.Module, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, softmax probabilities) of a classifier on images."""
    classifier.eval()
    probs = torch.cat([classifier(images[i:i + batch_size]).softmax(1) for i in range(0, len(images), batch_size)])
    return probs.argmax(1), probs


__all__ = ["FeatureNetwork", "classifier_features", "inception_features", "fid_from_features",
           "kid_from_features", "fid_kid", "class_histogram", "reverse_kl_uniform", "predict"]
