"""The output accumulator: tile outputs blended into a band of canvas rows, finished rows handed on."""
from __future__ import annotations

from typing import Callable

import numpy as np

Emit = Callable[[int, np.ndarray], None]  # emit(y0, rows): finished output rows (C, n, W) from canvas row y0


class Band:
    """Blends tile outputs into a band of canvas rows and hands finished rows on: memory for one
    tile row of output, not the canvas."""

    def __init__(self, width: int, emit: Emit):
        self.width, self.emit = width, emit
        self.rows: np.ndarray | None = None
        self.top = 0

    def next_row(self, y0: int) -> None:
        """The tile row starting at ``y0`` begins: every row above it is final."""
        if self.rows is None:
            self.top = y0
            return
        done = y0 - self.top
        self.emit(self.top, self.rows[:, :done])
        self.rows = np.concatenate([self.rows[:, done:], np.zeros((self.rows.shape[0], done, self.width), np.float32)],
                                   axis=1)
        self.top = y0

    def add(self, y: np.ndarray, x0: int, weight: np.ndarray) -> None:
        """One tile's output (C, th, tw), weighted, at column ``x0`` of the current tile row."""
        if self.rows is None:
            self.rows = np.zeros((y.shape[0], y.shape[1], self.width), np.float32)
        self.rows[:, :, x0:x0 + y.shape[2]] += y * weight

    def close(self) -> None:
        if self.rows is not None:
            self.emit(self.top, self.rows)
