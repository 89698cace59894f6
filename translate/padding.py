"""Padding an image to a network's size multiple and cropping the result back.

A U-Net needs sides that are multiples of 2^depth and the ResNet generator of 4 (and at least
twice that); every path (the predictor, tiling, export's verification) pads the same way: reflect
padding split evenly around the image, so a border pixel sees mirrored context, not zeros.
A leaf module: numpy only.
"""
from __future__ import annotations

from typing import Literal

import numpy as np


def padding_for(h: int, w: int, multiple: int, min_size: int = 0) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): the padding that makes h x w multiples of ``multiple`` and at
    least ``min_size``, split evenly around the image."""
    least = max(multiple, min_size)
    th, tw = (max(least, -(-n // multiple) * multiple) for n in (h, w))
    top, left = (th - h) // 2, (tw - w) // 2
    return top, th - h - top, left, tw - w - left


def pad_to_multiple(x: np.ndarray, multiple: int, min_size: int = 0,
                    axes: tuple[int, int] = (-2, -1)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Reflect-pad NCHW ``x`` so H and W are multiples of ``multiple`` and at least ``min_size``.

    Returns (padded, (top, bottom, left, right)). Padding is split evenly around the image.
    ``axes`` names the H and W axes (``(0, 1)`` for an HWC image).
    """
    ax = [a % x.ndim for a in axes]
    h, w = x.shape[ax[0]], x.shape[ax[1]]
    pads = padding_for(h, w, multiple, min_size)
    if not any(pads):
        return x, pads
    width = [(0, 0)] * x.ndim
    width[ax[0]], width[ax[1]] = (pads[0], pads[1]), (pads[2], pads[3])
    mode: Literal["reflect", "edge"] = "reflect" if min(h, w) > 1 else "edge"  # a 1-pixel side cannot be reflected
    return np.pad(x, width, mode=mode), pads


def crop_padding(y: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = pads
    return y[..., top: y.shape[-2] - bottom, left: y.shape[-1] - right]


def padded_indices(start: int, stop: int, before: int, length: int, edge: bool = False) -> np.ndarray:
    """The source indices of padded positions ``start:stop`` when ``before`` positions of padding
    precede an axis of ``length``: the same as :func:`pad_to_multiple`'s reflect padding (or edge
    padding, as it uses for a 1-pixel side), so a window of the padded image can be read from the
    image without padding all of it."""
    i = np.arange(start, stop) - before
    if edge or length == 1:
        return np.clip(i, 0, length - 1)
    period = 2 * (length - 1)
    m = np.abs(i) % period
    return np.where(m < length, m, period - m)
