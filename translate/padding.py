"""Padding an image to a network's size multiple and cropping the result back.

A U-Net needs sides that are multiples of 2^depth and the ResNet generator of 4 (and at least
twice that); every path (the predictor, tiling, export's verification) pads the same way: reflect
padding split evenly around the image, so a border pixel sees mirrored context, not zeros.
A leaf module: numpy only.
"""
from __future__ import annotations

import numpy as np


def pad_to_multiple(x: np.ndarray, multiple: int, min_size: int = 0,
                    axes: tuple[int, int] = (-2, -1)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Reflect-pad NCHW ``x`` so H and W are multiples of ``multiple`` and at least ``min_size``.

    Returns (padded, (top, bottom, left, right)). Padding is split evenly around the image.
    ``axes`` names the H and W axes (``(0, 1)`` for an HWC image).
    """
    ax = [a % x.ndim for a in axes]
    h, w = x.shape[ax[0]], x.shape[ax[1]]
    least = max(multiple, min_size)
    th, tw = (max(least, -(-n // multiple) * multiple) for n in (h, w))
    top, left = (th - h) // 2, (tw - w) // 2
    pads = (top, th - h - top, left, tw - w - left)
    if not any(pads):
        return x, pads
    width = [(0, 0)] * x.ndim
    width[ax[0]], width[ax[1]] = (pads[0], pads[1]), (pads[2], pads[3])
    mode = "reflect" if min(h, w) > 1 else "edge"  # a 1-pixel side cannot be reflected
    return np.pad(x, width, mode=mode), pads


def crop_padding(y: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = pads
    return y[..., top: y.shape[-2] - bottom, left: y.shape[-1] - right]
