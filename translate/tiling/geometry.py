"""Tile geometry: where the tiles of a canvas start, how their outputs blend, where the sample windows lie.

The blend weights are a partition of unity, and the same weights, average-pooled to each layer's
resolution, say which tile owns what for the statistics' sums. Tiles are multiples of the deepest
tiled stride and start at multiples of it, so every layer's grid lines up across tiles.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .config import TileConfig


@dataclass
class TilePlan:
    """The tiles used for one image (padded canvas coordinates), and the passes made over them."""

    canvas: tuple[int, int]
    tile: tuple[int, int]
    rows: list[int]
    cols: list[int]
    overlap: int
    passes: int
    layers: int = 0

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def area(self) -> float:
        """Pixels the tiles compute per canvas pixel (1 + what the overlaps compute twice)."""
        return self.count * self.tile[0] * self.tile[1] / (self.canvas[0] * self.canvas[1])

    def window(self, i: int, j: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of the tile in row ``i``, column ``j``."""
        return self.rows[i], self.rows[i] + self.tile[0], self.cols[j], self.cols[j] + self.tile[1]

    def blend(self) -> "Blend":
        return Blend(blend_weights(self.canvas[0], self.tile[0], self.rows, self.overlap // 2),
                     blend_weights(self.canvas[1], self.tile[1], self.cols, self.overlap // 2))


@dataclass
class Blend:
    """The 1-D blend weights of a plan's tile rows and columns (see :func:`blend_weights`)."""

    rows: list[np.ndarray]
    cols: list[np.ndarray]

    def weight(self, i: int, j: int) -> np.ndarray:
        """(th, tw) weights of the tile in row ``i``, column ``j``."""
        return self.rows[i][:, None] * self.cols[j][None, :]


def tile_origins(length: int, tile: int, step: int, align: int = 1) -> list[int]:
    """Starts of tiles of ``tile`` covering ``length``: evenly spread multiples of ``align``,
    at most ``step`` apart, the first at 0 and the last flush with the end
    (``length - tile`` must be a multiple of ``align``)."""
    if tile >= length:
        return [0]
    units, per = (length - tile) // align, max(1, step // align)
    gaps = -(-units // per)
    return [i * units // gaps * align for i in range(gaps + 1)]


def blend_weights(length: int, tile: int, origins: Sequence[int], ramp: int) -> list[np.ndarray]:
    """1-D weights per tile that sum to 1 at every position: linear ramps over ``ramp`` pixels
    in the middle of each overlap, flat 1 where only one tile is; tile edges at the image
    border are not ramped."""
    pos = np.arange(tile, dtype=np.float64) + 0.5
    raw = []
    for o in origins:
        lo = pos if o > 0 else np.full(tile, np.inf)
        hi = tile - pos if o + tile < length else np.full(tile, np.inf)
        d = np.minimum(lo, hi)
        # skip the outer quarter of the overlap (the tile's worst pixels), ramp across the middle half
        r = max(ramp, 1)
        raw.append(np.clip((d - r / 2) / r, 1e-6, 1.0))
    total = np.zeros(length)
    for o, w in zip(origins, raw, strict=True):
        total[o:o + tile] += w
    return [(w / total[o:o + tile]).astype(np.float32) for o, w in zip(origins, raw, strict=True)]


def plan_tiles(h: int, w: int, config: TileConfig, align: int,
               min_size: int) -> tuple[tuple[int, int], list[int], list[int], int, int]:
    """((tile_h, tile_w), rows, cols, step, overlap) for a canvas of h x w (multiples of ``align``)."""
    side = max(-(-max(config.tile, min_size) // align) * align, align)
    step = max(align, (side - min(config.overlap, side // 2)) // align * align)  # overlap: at most half a tile
    th, tw = min(side, h), min(side, w)
    return (th, tw), tile_origins(h, th, step, align), tile_origins(w, tw, step, align), step, side - step


def fit_tiles(length: int, tile: int, overlap: int, align: int) -> tuple[int, list[int]]:
    """(side, origins): the fewest tiles of at most ``tile`` (rounded up to ``align``) that cover
    ``length`` with at least ``overlap``, shrunk to the smallest multiple of ``align`` that still
    covers it with that many: less overlap computed twice than fixed-size tiles."""
    side = max(-(-tile // align) * align, align)
    if side >= length:
        return length, [0]
    overlap = min(overlap, side // 2)
    count = -(-(length - overlap) // max(side - overlap, align))
    fitted = -(-(length + (count - 1) * overlap) // count)
    fitted = min(side, max(-(-fitted // align) * align, align))
    while True:
        step = max(align, (fitted - overlap) // align * align)
        origins = tile_origins(length, fitted, step, align)
        if len(origins) <= count or fitted >= side:
            return fitted, origins
        fitted += align


def sample_windows(h: int, w: int, share: float, window: int, halo: int, align: int,
                   budget: int | None = None) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Windows (y0, y1, x0, x1) on an even grid over an h x w canvas, about ``share`` of it in
    all, and their weights (N, 1, side, side): 1 inside, 0 in a ``halo`` along edges inside the
    canvas (pixels there lack their context). Sides are multiples of ``align``, at most
    ``window``, small enough for about 16 windows and for one to fit ``budget`` pixels."""
    window = min(window, int(np.sqrt(share * h * w / 16)), int(np.sqrt(budget or h * w)))
    side = max(align, window // align * align)
    halo = min(halo, side // 4)
    sh, sw = min(side, h), min(side, w)
    count = max(1, int(round(share * h * w / (sh * sw))))
    nx = int(max(1, min(w // sw, round(np.sqrt(count * w / h)))))
    ny = int(max(1, min(h // sh, round(count / nx))))

    def starts(length, n, size):
        return sorted({min(length - size, max(0, int(round(((i + 0.5) * length / n - size / 2) / align)) * align))
                       for i in range(n)})

    wins = [(y0, y0 + sh, x0, x0 + sw) for y0 in starts(h, ny, sh) for x0 in starts(w, nx, sw)]
    weights = np.ones((len(wins), 1, sh, sw), np.float32)
    for k, (y0, y1, x0, x1) in enumerate(wins):
        if y0 > 0:
            weights[k, :, :halo] = 0
        if y1 < h:
            weights[k, :, sh - halo:] = 0
        if x0 > 0:
            weights[k, :, :, :halo] = 0
        if x1 < w:
            weights[k, :, :, sw - halo:] = 0
    return wins, weights
