"""The statistics accumulator: one layer's per-channel moments, pooled over the runs that measure it."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


class Moments:
    """Per-channel weighted count, mean and sum of squared deviations, merged stably (Chan et al.)."""

    def __init__(self, channels: int):
        self.n = 0.0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)

    def add(self, used, s1, s2, cnt) -> None:
        """Merge one run's weighted sums: s1 = sum w(x - used), s2 = sum w(x - used)^2, cnt = sum w."""
        if cnt <= 0:
            return
        mean_b = used + s1 / cnt
        m2_b = np.maximum(s2 - s1 * s1 / cnt, 0.0)
        n = self.n + cnt
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (cnt / n)
        self.m2 = self.m2 + m2_b + delta * delta * (self.n * cnt / n)
        self.n = n

    def add_outputs(self, outs: Mapping[str, np.ndarray], names: Sequence[str]) -> None:
        """Merge one run's sums fetched by name (a layer's ``NormLayer.outputs``), in float64."""
        self.add(*(np.asarray(outs[o], np.float64) for o in names))

    @property
    def var(self) -> np.ndarray:
        return self.m2 / self.n

    @property
    def found(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, variance): the statistics the layer normalises by from here on."""
        return self.mean, self.var
