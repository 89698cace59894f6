"""The tiled runner: an image from a tile source, through the chosen statistics mode, to a tile sink.

The image is reflect-padded once to the network's multiple (as the whole-image path does). The
padding is virtual: windows of the padded canvas are read from the source (:mod:`translate.windows`),
so memory is bounded by what the mode runs at once, a float band one tile high, and what the source
and sink hold (the uint8 image and result for an array, a few windows for a raster file,
:mod:`translate.raster`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .. import imageio
from ..padding import crop_padding, pad_to_multiple
from ..windows import ArraySink, ArraySource, PaddedSource, TileSink, TileSource
from .config import TileConfig
from .geometry import TilePlan
from .graph.norms import statistics_graph
from .statistics import Network, choose

EMIT_ROWS = 64  # finished rows are converted to uint8 and handed to the sink this many at a time


class TiledRunner:
    """Runs an exported generator tile by tile with whole-image normalisation statistics.

    ``make_session(model_bytes)`` builds an ONNX Runtime session (the predictor's options
    and providers); ``size_multiple`` / ``min_size`` are the predictor's. ``mode`` is the
    statistics mode chosen for the model (:mod:`translate.tiling.statistics`), ``statistics``
    its name (``"none"`` for a model without image-dependent normalisation). After each image,
    ``last_plan`` holds its tiles and ``last_info`` what was done (for the output's metadata).
    """

    def __init__(self, model_bytes: bytes, input_nc: int, size_multiple: int, min_size: int,
                 make_session: Callable[[bytes], object], config: TileConfig | None = None):
        self.config = config or TileConfig()
        self.min_size = max(min_size, size_multiple)
        probe_side = -(-max(2 * self.min_size, 64) // size_multiple) * size_multiple
        graph, layers = statistics_graph(model_bytes, input_nc, probe_side)
        strides = {layer.stride for layer in layers}
        self.align = int(np.lcm.reduce([size_multiple, *strides])) if strides else size_multiple
        net = Network(layers, self.config, self.align, self.min_size, input_nc, probe_side, make_session)
        self.mode = choose(self.config.statistics, net, model_bytes, graph)
        del graph
        self.last_plan: TilePlan | None = None
        self.last_info: dict | None = None

    @property
    def statistics(self) -> str:
        """The mode used (``auto`` resolved)."""
        return self.mode.name

    def translate_array(self, a: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """uint8 H x W x input_nc -> uint8 H x W x output_nc, tiled (``progress`` as in :meth:`translate_source`)."""
        sink = ArraySink(*a.shape[:2])
        self.translate_source(ArraySource(a), sink, progress)
        assert sink.array is not None  # every row was written
        return sink.array

    def translate_source(self, source: TileSource, sink: TileSink,
                         progress: Callable[[int, int], None] | None = None) -> None:
        """Tiles read from ``source`` (uint8 windows with ``input_nc`` channels), finished uint8 rows
        written to ``sink`` top to bottom (see :mod:`translate.windows`): no whole image is held.
        ``progress(done, total)`` counts tile runs (tiles x passes) as they are read; an exception it
        raises stops the work (the service's cancelled jobs)."""
        h, w = source.height, source.width
        canvas = PaddedSource(source, self.align, self.min_size)
        top, left = canvas.pads[0], canvas.pads[2]
        done = 0

        def tile(y0: int, y1: int, x0: int, x1: int, count: bool = True) -> np.ndarray:
            nonlocal done
            x = imageio.to_network(canvas.read(y0, y1, x0, x1))
            if not count:  # hybrid's sample windows: not one of the plan's tile runs
                return x
            done += 1
            if progress is not None and self.last_plan is not None:
                progress(done, self.last_plan.count * self.last_plan.passes)
            return x

        def emit(y0: int, rows: np.ndarray) -> None:  # rows: (C, n, W_canvas) float from canvas row y0
            # converted a few rows at a time: a wide image's band is large, its float temporaries need not be
            for lo in range(max(y0, top), min(y0 + rows.shape[1], top + h), EMIT_ROWS):
                hi = min(lo + EMIT_ROWS, y0 + rows.shape[1], top + h)
                sink.write(lo - top, imageio.from_network(rows[None, :, lo - y0:hi - y0, left:left + w])[0])

        self._render((canvas.height, canvas.width), tile, emit)

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW in [-1, 1] -> output of the same H and W, each image tiled."""
        return np.stack([self._run_one(xi) for xi in x])

    def _run_one(self, xi: np.ndarray) -> np.ndarray:
        canvas, pads = pad_to_multiple(np.ascontiguousarray(xi[None], np.float32), self.align, self.min_size)
        rows: list[np.ndarray] = []
        self._render(canvas.shape[2:], lambda y0, y1, x0, x1, count=True: canvas[:, :, y0:y1, x0:x1],
                     lambda y0, r: rows.append(r))
        return crop_padding(np.concatenate(rows, axis=1), pads)

    def _render(self, hw, read: Callable, emit: Callable) -> None:
        """Plan the tiles of a padded canvas of ``hw`` (the plan is known before the first tile run,
        for progress), then run the mode's passes; ``read(y0, y1, x0, x1)`` gives network input,
        ``emit(y0, rows)`` takes finished output rows (C, n, W)."""
        self.last_plan = self.mode.plan((int(hw[0]), int(hw[1])))
        self.last_info = self.mode.render(self.last_plan, read, emit)
