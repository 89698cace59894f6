"""Data for the unconditional / class-conditional GAN family, and the mixture protocol.

Built-in sets (nothing downloads):

* ``ring8``: 8 Gaussians evenly spaced on a circle of radius 1, std 0.01;
* ``grid25``: 25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05
  (the 2-D mixtures of VEEGAN, Srivastava et al. 2017, and PacGAN, Lin et al. 2018);
* ``digits``: scikit-learn's bundled handwritten digits (1,797 labelled 8x8 images,
  ``sklearn.datasets.load_digits``), upscaled to ``size`` px.

Image folders: a flat folder of images is unlabelled; one subfolder per class is
labelled (classes are the sorted subfolder names). Files are read through
:mod:`translate.imageio`.

Datasets are indexed with ``(index, seed)`` tuples (see :class:`translate.data.EpochSampler`)
or plain ints, and return ``{'x': tensor, 'label': int64}`` (label -1 when unlabelled);
images are CHW float in [-1, 1], points are float (2,).

The mixture protocol (PacGAN / VEEGAN): draw 2,500 samples; a sample is *high quality*
when it lies within 3 standard deviations of its nearest centre; a mode is *captured*
when at least one high-quality sample is nearest to it. Reported: modes captured,
percentage of high-quality samples, and the reverse KL divergence KL(p || uniform) of the
histogram of high-quality samples over the modes (0 when every mode gets the same share;
log(K / k) when k of K modes get equal shares and the rest none).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .. import imageio
from ..data import split_holdout
from ..errors import ConfigError, DataError, ImageError
from ..object_storage import ObjectPath, data_path
from .metrics import reverse_kl_uniform

log = logging.getLogger(__name__)

MIXTURES: tuple[str, ...] = ("ring8", "grid25")
BUILTIN: tuple[str, ...] = (*MIXTURES, "digits")
EVAL_SAMPLES = 2500  # samples drawn by the mixture protocol
HQ_STDS = 3.0  # a sample within this many stds of its nearest centre is high quality


# ----------------------------------------------------------------- mixtures
def mixture_centres(name: str) -> np.ndarray:
    """The (K, 2) float64 centres of a built-in mixture."""
    if name == "ring8":
        angles = 2 * np.pi * np.arange(8) / 8
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == "grid25":
        g = np.arange(-4.0, 5.0, 2.0)
        return np.array([(x, y) for x in g for y in g], dtype=np.float64)
    raise ConfigError("data", f"unknown mixture {name!r}; expected one of {MIXTURES}")


def mixture_std(name: str) -> float:
    mixture_centres(name)  # validates the name
    return 0.01 if name == "ring8" else 0.05


def sample_mixture(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (float32, (n, 2)) of an equal-weight mixture and their component labels."""
    centres, std = mixture_centres(name), mixture_std(name)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(centres), n)
    points = centres[labels] + std * rng.standard_normal((n, 2))
    return points.astype(np.float32), labels.astype(np.int64)


def evaluate_mixture(samples: np.ndarray | torch.Tensor, name: str) -> dict:
    """The PacGAN / VEEGAN statistics of (N, 2) samples of mixture ``name`` (see module doc).

    Returns ``modes`` (captured), ``modes_total``, ``high_quality`` (percent of samples),
    ``reverse_kl`` (KL of the high-quality mode histogram against uniform; ``inf`` when no
    sample is high quality), ``histogram`` (high-quality samples per mode) and ``samples``.
    """
    x = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    x = x.astype(np.float64).reshape(-1, 2)
    centres, std = mixture_centres(name), mixture_std(name)
    d = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
    nearest = d.argmin(1)
    good = d[np.arange(len(x)), nearest] <= HQ_STDS * std
    good &= np.isfinite(x).all(1)
    hist = np.bincount(nearest[good], minlength=len(centres))
    return {"modes": int((hist > 0).sum()), "modes_total": len(centres),
            "high_quality": 100.0 * float(good.mean()) if len(x) else 0.0,
            "reverse_kl": reverse_kl_uniform(hist), "histogram": hist.tolist(), "samples": int(len(x))}


def render_points(points: np.ndarray | torch.Tensor, name: str | None = None, size: int = 384,
                  extent: float | None = None) -> np.ndarray:
    """A scatter plot as a uint8 (size, size, 3) image: samples as blue dots over the real
    centres of mixture ``name`` (red, ringed at the 3-std high-quality radius). No matplotlib."""
    from PIL import ImageDraw

    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    pts = pts.astype(np.float64).reshape(-1, 2)
    centres = mixture_centres(name) if name else np.zeros((0, 2))
    if extent is None:
        ref = centres if len(centres) else pts[np.isfinite(pts).all(1)]
        extent = 1.25 * float(np.abs(ref).max(initial=1.0)) + 0.25
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    scale = (size - 1) / (2 * extent)

    def px(xy):  # y up
        return (xy[..., 0] + extent) * scale, (extent - xy[..., 1]) * scale

    cx, cy = px(centres)
    r_hq = max(2.0, HQ_STDS * mixture_std(name) * scale) if name else 0.0
    for x, y in zip(cx, cy, strict=True):
        draw.ellipse((x - r_hq, y - r_hq, x + r_hq, y + r_hq), outline=(230, 150, 150), width=1)
    a = np.asarray(img).copy()
    sx, sy = px(pts[np.isfinite(pts).all(1)])
    ix, iy = np.rint(sx).astype(np.int64), np.rint(sy).astype(np.int64)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        ok = (ix + dx >= 0) & (ix + dx < size) & (iy + dy >= 0) & (iy + dy < size)
        a[iy[ok] + dy, ix[ok] + dx] = (40, 90, 200)
    img = Image.fromarray(a)
    draw = ImageDraw.Draw(img)
    for x, y in zip(cx, cy, strict=True):
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(210, 30, 30))
    return np.asarray(img)


# ---------------------------------------------------------------- datasets
class TensorSet(Dataset):
    """In-memory items ``{'x': x[i], 'label': labels[i]}``; accepts ``(index, seed)`` keys."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor | None = None, classes: Sequence[str] = ()):
        if len(x) == 0:
            raise DataError("empty dataset")
        self.x = x
        self.labels = labels if labels is not None else torch.full((len(x),), -1, dtype=torch.int64)
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key) -> dict:
        index = key[0] if isinstance(key, tuple) else key
        return {"x": self.x[index], "label": self.labels[index]}

    def __getitems__(self, keys) -> list[dict]:  # DataLoader's batched fetch: one gather instead of N
        idx = torch.tensor([k[0] if isinstance(k, tuple) else k for k in keys])
        xs, ys = self.x[idx], self.labels[idx]
        return [{"x": a, "label": b} for a, b in zip(xs.unbind(0), ys.unbind(0), strict=True)]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def mixture_dataset(name: str, n: int, seed: int = 0) -> TensorSet:
    """``n`` fixed points of a mixture (labelled by component) as a dataset."""
    pts, labels = sample_mixture(name, n, seed)
    return TensorSet(torch.from_numpy(pts), torch.from_numpy(labels), [f"mode{i}" for i in range(len(mixture_centres(name)))])


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to ``size`` x ``size`` (bicubic)."""
    w, h = img.size
    s = min(w, h)
    if (w, h) != (s, s):
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    return img if s == size else img.resize((size, size), Image.Resampling.BICUBIC)


def load_digits_images(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (N, size, size, 1) images (white ink on black) and labels."""
    from sklearn.datasets import load_digits

    if size < 8:
        raise ConfigError("size", f"digits are 8x8; size must be >= 8, got {size}")
    d = load_digits()
    raw = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    out = np.stack([imageio.image_to_array(resize_square(imageio.array_to_image(a), size)) for a in raw])
    return out, d.target.astype(np.int64)


def digits_dataset(size: int = 16) -> TensorSet:
    imgs, labels = load_digits_images(size)
    return TensorSet(torch.from_numpy(imageio.to_network(imgs)), torch.from_numpy(labels), [str(i) for i in range(10)])


@dataclass(frozen=True)
class FolderInfo:
    files: list[Path | ObjectPath]
    labels: list[int]  # -1 for unlabelled
    classes: list[str]  # empty when unlabelled


def scan_image_folder(root: str | os.PathLike | ObjectPath) -> FolderInfo:
    """A flat folder of images (unlabelled) or one subfolder per class (labelled); a local folder, or an
    object-storage prefix listed once (:func:`translate.object_storage.data_path`)."""
    root = data_path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found (built-in sets: {', '.join(BUILTIN)})")
    flat = sorted(p for p in root.iterdir() if p.is_file() and imageio.is_image_file(p))
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if flat:
        if any(any(imageio.is_image_file(f) for f in d.iterdir()) for d in subdirs):
            raise DataError(f"{root}: holds images both at the top and in subfolders; use one layout "
                            "(flat = unlabelled, one subfolder per class = labelled)")
        return FolderInfo(flat, [-1] * len(flat), [])
    files, labels, classes = [], [], []
    for d in subdirs:
        imgs = sorted(p for p in d.rglob("*") if p.is_file() and imageio.is_image_file(p))
        if not imgs:
            continue
        classes.append(d.name)
        files += imgs
        labels += [len(classes) - 1] * len(imgs)
    if not files:
        raise DataError(f"{root}: no images (expected {root}/*.png, or {root}/<class>/*.png)")
    return FolderInfo(files, labels, classes)


class ImageFolderSet(Dataset):
    """Images of a folder (see :func:`scan_image_folder`) as CHW tensors in [-1, 1] at ``size`` px.

    A file that fails to decode is named in the error (``strict``) or skipped (the next
    readable file is used and the file is remembered in ``skipped``).
    """

    def __init__(self, info: FolderInfo, size: int, channels: int = 3, strict: bool = False,
                 indices: Sequence[int] | None = None):
        self.files = [info.files[i] for i in indices] if indices is not None else list(info.files)
        self.label_list = [info.labels[i] for i in indices] if indices is not None else list(info.labels)
        if not self.files:
            raise DataError("no images to read")
        self.classes, self.size, self.channels, self.strict = list(info.classes), size, channels, strict
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getitem__(self, key) -> dict:
        index = key[0] if isinstance(key, tuple) else key
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            try:
                img = imageio.read_image(self.files[i], channels=self.channels)
                break
            except ImageError as e:
                if self.strict:
                    raise
                if str(self.files[i]) not in self.skipped:
                    log.warning("skipping %s", e)
                self.skipped[str(self.files[i])] = e.reason
        else:
            raise DataError("every image failed to decode")
        x = imageio.image_to_tensor(resize_square(img, self.size))
        return {"x": x, "label": torch.tensor(self.label_list[i], dtype=torch.int64)}


@dataclass
class GanData:
    """What a GAN trains on: ``kind`` 'points' (2-D mixtures) or 'images'; train / validation sets;
    class names (empty when unlabelled); item shape."""

    name: str  # ring8, grid25, digits, or the folder's name
    kind: str
    train: TensorSet | ImageFolderSet
    val: TensorSet | ImageFolderSet
    classes: list[str]
    channels: int  # image channels (points: their dimension)
    size: int  # image side (0 for points)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labelled(self) -> bool:
        return bool(self.classes)


def open_gan_data(data: str, size: int = 16, channels: int = 0, seed: int = 0, val_fraction: float = 0.05,
                  points: int = 100_000, strict: bool = False, cache_bytes: int = 0) -> GanData:
    """Open a built-in set (``ring8``, ``grid25``, ``digits``) or an image folder.

    Mixtures: ``points`` fixed training points and :data:`EVAL_SAMPLES` validation points, both
    drawn from ``seed``. Images: a deterministic ``val_fraction`` of the files is held out.
    ``channels`` 0 means 1 for digits and 3 for folders. ``cache_bytes``: of a folder in object storage, how many
    bytes this node may keep (:class:`translate.object_storage.ObjectTree`).
    """

    if data in MIXTURES:
        train = mixture_dataset(data, points, seed)
        return GanData(data, "points", train, mixture_dataset(data, EVAL_SAMPLES, seed + 1), train.classes, 2, 0)
    if data == "digits":
        if channels not in (0, 1):
            raise ConfigError("channels", f"digits are grayscale (1 channel), got {channels}")
        full = digits_dataset(size)
        train_idx, val_idx = split_holdout(list(range(len(full))), val_fraction, seed)
        t, v = torch.tensor(train_idx), torch.tensor(val_idx)
        return GanData("digits", "images", TensorSet(full.x[t], full.labels[t], full.classes),
                       TensorSet(full.x[v], full.labels[v], full.classes), full.classes, 1, size)
    channels = channels or 3
    if channels not in (1, 3):
        raise ConfigError("channels", f"must be 1 or 3, got {channels}")
    root = data_path(data, cache_bytes)
    info = scan_image_folder(root)
    train_idx, val_idx = split_holdout(list(range(len(info.files))), val_fraction, seed)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in root.resolve().name) or "folder"
    return GanData(name, "images", ImageFolderSet(info, size, channels, strict, train_idx),
                   ImageFolderSet(info, size, channels, strict, val_idx or train_idx[:1]), info.classes, channels, size)


def stack_images(ds: TensorSet | ImageFolderSet, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, labels) of the first ``limit`` items (all when 0) of a dataset, stacked."""
    n = len(ds) if not limit else min(limit, len(ds))
    if isinstance(ds, TensorSet):
        return ds.x[:n], ds.labels[:n]
    items = [ds[i] for i in range(n)]
    return torch.stack([it["x"] for it in items]), torch.stack([torch.as_tensor(it["label"]) for it in items])


__all__ = ["MIXTURES", "BUILTIN", "EVAL_SAMPLES", "mixture_centres", "mixture_std", "sample_mixture",
           "evaluate_mixture", "render_points", "GanData", "open_gan_data", "TensorSet", "mixture_dataset", "load_digits_images", "digits_dataset",
           "scan_image_folder", "ImageFolderSet", "FolderInfo", "resize_square", "stack_images"]
