"""How the predictor tiles large images: :class:`TileConfig`."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

# the statistics= names: "auto" picks one of the others for the graph (see translate.tiling.statistics)
STATISTICS = ("auto", "hybrid", "exact", "estimate", "per_tile")


@dataclass(frozen=True)
class TileConfig:
    """How the predictor tiles large images.

    ``tile``: tile side in pixels (rounded up to the network's size multiple; ``hybrid``
    shrinks it to the fewest tiles that cover the image);
    ``overlap``: at least this much overlap, at most half a tile (the step is rounded down to the multiple);
    ``threshold``: images with more pixels than this are tiled (0: always, None: never);
    ``statistics``: ``"auto"`` (the default: ``hybrid`` for graphs that split, such as U-Nets,
    else ``exact``), ``"hybrid"`` (the deep layers on the whole image, the others from exact
    passes or a sample; see :mod:`translate.tiling.statistics.split`), ``"exact"`` (whole-image
    statistics: on split graphs a pass per outer layer; otherwise layer by layer, one pass per
    normalisation layer; then the rendering pass), ``"estimate"`` (one
    estimate pass, then the rendering pass) or ``"per_tile"`` (naive: each tile its own statistics);
    ``batch``: tiles per ONNX Runtime call (memory grows with it);
    ``sample``: hybrid: the share of the image in the statistics sample (an image that fits in
    one tile is measured whole).
    """

    tile: int = 768
    overlap: int = 128
    threshold: int | None = 2048 * 2048
    statistics: str = "auto"
    batch: int = 1
    sample: float = 0.15

    def __post_init__(self):
        for name in ("tile", "batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"tiling.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.overlap < 0:
            raise ConfigError("tiling.overlap", f"must be >= 0, got {self.overlap}")
        if not 0 < self.sample <= 1:
            raise ConfigError("tiling.sample", f"must be in (0, 1], got {self.sample}")
        if self.threshold is not None and self.threshold < 0:
            raise ConfigError("tiling.threshold", f"must be >= 0 or None, got {self.threshold}")
        if self.statistics not in STATISTICS:
            raise ConfigError("tiling.statistics", f"expected one of {STATISTICS}, got {self.statistics!r}")

    def wants(self, h: int, w: int) -> bool:
        return self.threshold is not None and h * w > self.threshold
