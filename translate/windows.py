"""Where a tiled run reads its input and writes its output: tile sources and tile sinks.

The tiled runner (:mod:`translate.tiling`) never needs a whole image: it asks a *source* for
windows (uint8 H x W x C) and gives a *sink* its finished rows, top to bottom. An in-memory array
is one source and one sink (:class:`ArraySource`, :class:`ArraySink`); a raster file read and
written window by window is another (:mod:`translate.raster`), so a 20000 x 20000 GeoTIFF
translates holding a band of tiles, never the raster. :class:`PaddedSource` puts the network's
reflect padding around any source without copying it, and records the largest window it read.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from .padding import padded_indices, padding_for


class TileSource(Protocol):
    """An image read by windows."""

    height: int
    width: int
    channels: int

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """uint8 ``(y1 - y0, x1 - x0, channels)``; the window lies inside the image."""


class TileSink(Protocol):
    """An image written by rows."""

    def write(self, y0: int, rows: np.ndarray) -> None:
        """uint8 ``(n, width, C)`` rows starting at row ``y0``; calls come top to bottom, without gaps."""


class ArraySource:
    """A uint8 H x W x C array as a source."""

    def __init__(self, a: np.ndarray):
        self.array = a if a.ndim == 3 else a[:, :, None]
        self.height, self.width, self.channels = self.array.shape

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.array[y0:y1, x0:x1]


class ArraySink:
    """Rows collected into one uint8 array (``.array``, allocated at the first write)."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.array: np.ndarray | None = None

    def write(self, y0: int, rows: np.ndarray) -> None:
        if self.array is None:
            self.array = np.empty((self.height, self.width, rows.shape[2]), np.uint8)
        self.array[y0:y0 + len(rows)] = rows


class MappedSource:
    """Every window of ``source`` passed through ``fn`` (a per-pixel change, e.g. of channels)."""

    def __init__(self, source: TileSource, fn: Callable[[np.ndarray], np.ndarray], channels: int):
        self.source, self.fn = source, fn
        self.height, self.width, self.channels = source.height, source.width, channels

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.fn(self.source.read(y0, y1, x0, x1))


class PaddedSource:
    """``source`` reflect-padded to ``multiple`` (and ``min_size``) exactly as
    :func:`translate.padding.pad_to_multiple` pads an array, read by windows of the padded
    canvas: only the source pixels a window needs are read. ``pads`` is (top, bottom, left,
    right); ``largest_read`` the most source pixels one read asked for, ``reads`` how many."""

    def __init__(self, source: TileSource, multiple: int, min_size: int = 0):
        self.source = source
        h, w = source.height, source.width
        self.pads = padding_for(h, w, multiple, min_size)
        self.height, self.width, self.channels = h + sum(self.pads[:2]), w + sum(self.pads[2:]), source.channels
        self._edge = min(h, w) <= 1  # as pad_to_multiple: a 1-pixel side cannot be reflected
        self.largest_read = 0
        self.reads = 0

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        top, _, left, _ = self.pads
        h, w = self.source.height, self.source.width
        rows = padded_indices(y0, y1, top, h, self._edge)
        cols = padded_indices(x0, x1, left, w, self._edge)
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        block = self.source.read(r0, r1, c0, c1)
        self.reads += 1
        self.largest_read = max(self.largest_read, (r1 - r0) * (c1 - c0))
        if r1 - r0 == y1 - y0 and c1 - c0 == x1 - x0 and rows[0] == r0 and cols[0] == c0:
            return block  # inside the image: no padding to make
        return block[(rows - r0)[:, None], (cols - c0)[None, :]]
