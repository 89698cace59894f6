"""Large images by tiling, with normalisation statistics kept consistent across tiles.

A generator with InstanceNorm (or batch norm frozen as per-image statistics, exported as
InstanceNorm) normalises every feature map by the statistics of the whole image. Run tile by tile,
each tile would normalise by its own statistics and the result changes (naive tiling). The package:

- :mod:`.config`: :class:`TileConfig`, what the predictor is asked for;
- :mod:`.geometry`: where tiles and sample windows lie, and the blend weights (a partition of unity,
  which also says which tile owns which pixel for the statistics' sums);
- :mod:`.graph`: the ONNX rewriting: every ``InstanceNormalization`` takes its statistics as inputs
  and reports weighted sums (:mod:`.graph.norms`), and a U-Net is cut where its maps are small
  (:mod:`.graph.cut`);
- :mod:`.statistics`: the ``statistics=`` modes, one class each (``hybrid``, ``exact``, ``estimate``,
  ``per_tile``; ``auto`` picks hybrid or exact), chosen once per model;
- :mod:`.band`: tile outputs blended into rows; :mod:`.runner`: :class:`TiledRunner`, from a tile
  source to a tile sink, the image reflect-padded virtually to the network's multiple.

Models without image-dependent normalisation (no norm, or running statistics) run one plain tiled
pass. After each image ``TiledRunner.last_info`` says what was done (mode, tiles, passes, how each
layer got its statistics), for the output's metadata. Measured costs and errors: BENCHMARKS.md.
"""
from .config import TileConfig
from .runner import TiledRunner

__all__ = ["TileConfig", "TiledRunner"]
