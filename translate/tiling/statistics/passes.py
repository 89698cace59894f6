"""Modes that run the whole rewritten graph over the tiles, pass by pass: no cut, no held maps.

Each pass runs every tile once; per layer it says whether the layer normalises by the tile's own
statistics or by those found so far, which layers' sums it pools, and whether it renders. The tiles
are fixed-size (:func:`translate.tiling.geometry.plan_tiles`) and the render blends them with linear
ramps in the middle of each overlap.

What tiling cannot give back here is context beyond a tile: a U-Net's deepest layers see the whole
input, so on this path a U-Net tile differs from the whole image even with exact statistics (bigger
tiles shrink that; the split modes, :mod:`.split`, run those layers on the whole image instead).
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Callable, ClassVar, NamedTuple

import numpy as np

from ..band import Band, Emit
from ..geometry import TilePlan, plan_tiles
from ..graph.cut import Prefixes
from .base import Network, Read, Statistics, run
from .moments import Moments


class Pass(NamedTuple):
    own: list[float]  # per layer: 1 = normalise by the tile's own statistics, 0 = by those found before
    measure: list[int]  # the layers whose sums this pass pools over the tiles
    renders: bool  # this pass's outputs are the result


class TilePasses(Statistics):
    """A schedule of passes over the tiles, on one session of the statistics graph (see the module doc)."""

    counted: ClassVar[str | None] = None  # which of ``last_info``'s layer counts this mode's layers fall under

    def __init__(self, net: Network, graph: bytes):
        super().__init__(net, net.make_session(graph))

    @abstractmethod
    def schedule(self) -> list[Pass]:
        """The passes, in order."""

    def batch(self) -> int:
        return self.net.config.batch

    def weight(self, plan: TilePlan, weights: list[np.ndarray]) -> np.ndarray:
        """The ``tile_weight`` input of a batch of tiles: each tile's share of each pixel."""
        return np.stack(weights)[:, None]

    def sessions(self) -> Callable[[Pass], object]:
        """For one image: the session each pass runs on."""
        return lambda p: self.session

    def plan(self, canvas: tuple[int, int]) -> TilePlan:
        H, W = canvas
        (th, tw), rows, cols, _, overlap = plan_tiles(H, W, self.net.config, self.net.align, self.net.min_size)
        return TilePlan((H, W), (th, tw), rows, cols, overlap, len(self.schedule()), len(self.layers))

    def render(self, plan: TilePlan, read: Read, emit: Emit) -> dict:
        (th, tw), batch, blend = plan.tile, self.batch(), plan.blend()
        stats = self.start()
        session_for = self.sessions()
        for p in self.schedule():
            moments = {k: Moments(self.layers[k].channels) for k in p.measure}
            session = None  # the last pass's sub-graph session goes before the next one is made
            session = session_for(p)
            band = Band(plan.canvas[1], emit) if p.renders else None
            for i, y0 in enumerate(plan.rows):
                if band:
                    band.next_row(y0)
                jobs = [(x0, blend.weight(i, j)) for j, x0 in enumerate(plan.cols)]
                for b in range(0, len(jobs), batch):
                    chunk = jobs[b:b + batch]
                    x = np.concatenate([read(y0, y0 + th, x0, x0 + tw) for x0, _ in chunk])
                    outs = run(session, self.feeds(x, self.weight(plan, [wt for _, wt in chunk]), p.own, stats))
                    for k in p.measure:
                        moments[k].add_outputs(outs, self.layers[k].outputs)
                    if band:
                        for (x0, wt), yi in zip(chunk, outs[self.output_name], strict=True):
                            band.add(yi, x0, wt)
            if band:
                band.close()
            for k in p.measure:
                stats[k] = moments[k].found
        counts = {"exact": 0, "estimated": 0, "per_tile": 0}
        if self.counted:
            counts[self.counted] = len(self.layers)
        return self.info(plan, None, counts)


class Plain(TilePasses):
    """A model without image-dependent normalisation (no norm, or running statistics): one plain pass."""

    name = "none"

    def schedule(self) -> list[Pass]:
        return [Pass([], [], True)]


class PerTile(TilePasses):
    """``per_tile`` (naive): every tile normalised by its own statistics, one pass."""

    name, counted = "per_tile", "per_tile"

    def schedule(self) -> list[Pass]:
        return [Pass([1.0] * len(self.layers), [], True)]

    def batch(self) -> int:
        return 1  # per-tile statistics are reduced over the batch too

    def weight(self, plan: TilePlan, weights: list[np.ndarray]) -> np.ndarray:
        return np.ones((1, 1, *plan.tile), np.float32)  # the whole tile counts for its own statistics


class Estimate(TilePasses):
    """``estimate``: every layer's statistics from one pass of tiles normalised by their own, then the render.

    One layer normalised per tile already moves the statistics of the layers after it, so this
    only partly closes the gap to the whole image. Refining the estimates with fixed statistics
    diverges, and so does starting from a downscaled image (statistics change with scale); see
    benchmarks/tiling.py.
    """

    name, counted = "estimate", "estimated"

    def schedule(self) -> list[Pass]:
        n = len(self.layers)
        return [Pass([1.0] * n, list(range(n)), False), Pass([0.0] * n, [], True)]


class ExactByLayer(TilePasses):
    """``exact`` on a graph without a cut (ResNets): one pass per normalisation layer, then the render.

    Pass ``p`` fixes layers ``< p`` to the statistics found before and sums layer ``p``'s input over
    every tile, which is then exactly the whole image's (up to context beyond the overlap); layers
    after ``p`` normalise by their own statistics in that pass, which keeps their inputs sane. A pass
    that measures one layer runs only the graph up to it.
    """

    name, counted = "exact", "exact"

    def __init__(self, net: Network, graph: bytes):
        import onnx

        super().__init__(net, graph)
        self.graph = onnx.load_from_string(graph)  # kept parsed, to cut the per-layer sub-graphs from

    def schedule(self) -> list[Pass]:
        n = len(self.layers)
        return [Pass([float(k >= p) for k in range(n)], [p], False) for p in range(n)] + [Pass([0.0] * n, [], True)]

    def sessions(self) -> Callable[[Pass], object]:
        prefixes = Prefixes(self.graph)

        def session(p: Pass):
            if len(p.measure) == 1:  # one layer's sums need only the graph up to it
                return self.net.make_session(prefixes.ending_at(self.layers[p.measure[0]].outputs))
            return self.session
        return session
