"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): random colour,
translation and cutout applied to every image the discriminator sees, real and generated, by differentiable
tensor operations, so G's gradient flows back through them. D then cannot memorise a small training set, and G
is not taught to make augmented images (the augmentation is on D's side only).

The operations follow the authors' PyTorch code (mit-han-lab/data-efficient-gans, ``DiffAugment_pytorch.py``):
``color`` (brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5]), ``translation`` (up to 1/8 of each
side, zero-padded), ``cutout`` (a square of half each side set to 0). Each draws its random parameters once per
image and applies them to every tensor passed, so a conditional pair (input and output concatenated on the
channels) or a real and a generated image moves together; ``groups`` splits the channels into the images they
hold, so saturation and contrast take each image's own mean.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["POLICIES", "parse_policy", "diff_augment"]


def _chunks(x: Tensor, groups: Sequence[int] | None) -> list[Tensor]:
    return [x] if groups is None else list(torch.split(x, list(groups), dim=1))


def _per_image(n: int, like: Tensor) -> Tensor:
    """Uniform [0, 1) per image, shaped to broadcast over (C, H, W)."""
    return torch.rand(n, 1, 1, 1, dtype=like.dtype, device=like.device)


def _color(xs: list[Tensor], groups: Sequence[int] | None) -> list[Tensor]:
    n, like = xs[0].shape[0], xs[0]
    brightness, saturation, contrast = _per_image(n, like) - 0.5, _per_image(n, like) * 2, _per_image(n, like) + 0.5

    def one(x: Tensor) -> Tensor:
        x = x + brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * saturation + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * contrast + mean

    return [torch.cat([one(c) for c in _chunks(x, groups)], 1) for x in xs]


def _translation(xs: list[Tensor], groups: Sequence[int] | None, ratio: float = 0.125) -> list[Tensor]:
    n, _, h, w = xs[0].shape
    device = xs[0].device
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, size=(n, 1, 1), device=device)
    tx = torch.randint(-sw, sw + 1, size=(n, 1, 1), device=device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=device), torch.arange(h, device=device),
                                torch.arange(w, device=device), indexing="ij")
    gy = torch.clamp(gy + ty + 1, 0, h + 1)
    gx = torch.clamp(gx + tx + 1, 0, w + 1)

    def one(x: Tensor) -> Tensor:
        padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # a zero border the shifted image takes from
        return padded[gb, gy, gx].permute(0, 3, 1, 2)

    return [one(x) for x in xs]


def _cutout(xs: list[Tensor], groups: Sequence[int] | None, ratio: float = 0.5) -> list[Tensor]:
    n, _, h, w = xs[0].shape
    device = xs[0].device
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), size=(n, 1, 1), device=device)
    ox = torch.randint(0, w + (1 - cw % 2), size=(n, 1, 1), device=device)
    gb, gy, gx = torch.meshgrid(torch.arange(n, device=device), torch.arange(ch, device=device),
                                torch.arange(cw, device=device), indexing="ij")
    gy = torch.clamp(gy + oy - ch // 2, min=0, max=h - 1)
    gx = torch.clamp(gx + ox - cw // 2, min=0, max=w - 1)
    mask = torch.ones(n, h, w, dtype=xs[0].dtype, device=device)
    mask[gb, gy, gx] = 0
    return [x * mask.unsqueeze(1).to(x.dtype) for x in xs]


#: The operations by policy name, in the order a policy applies them.
POLICIES: dict[str, Callable[[list[Tensor], Sequence[int] | None], list[Tensor]]] = {
    "color": _color, "translation": _translation, "cutout": _cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
    """The operation names of a policy string (``"color,translation,cutout"``; empty: none); ValueError naming an
    unknown one and the known ones."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    for name in names:
        if name not in POLICIES:
            raise ValueError(f"unknown DiffAugment operation {name!r} in {policy!r}; known: {', '.join(POLICIES)}")
    return names


def diff_augment(policy: str, *xs: Tensor, groups: Sequence[int] | None = None) -> tuple[Tensor, ...]:
    """``xs`` (NCHW, the same batch size and image size) augmented by ``policy``, the same random transform for
    the same image of every tensor; ``groups``: the channel counts of the images each tensor holds side by side
    (e.g. ``(3, 3)`` for a conditional pair), for the colour operations. Differentiable; the inputs as they are
    for an empty policy."""
    out = list(xs)
    for name in parse_policy(policy):
        out = POLICIES[name](out, groups)
    return tuple(out)
