"""Modes on a graph cut where its maps are small: the deep part runs once on the whole image.

A U-Net's deep levels are small: from some stride on, the maps hold a float or two per input pixel.
The graph is cut there (:func:`translate.tiling.graph.cut.find_split`); tiles compute the maps at the
cut (one encoder pass), the deep part runs once on the whole image's maps (so its statistics and its
context are the whole image's), and the render pass reads the deep part's output for its tile from
the held maps. Only the outer layers need statistics from the tiles, and what a tile's output depends
on reaches less far than on the whole graph, inside the overlap. Tiles are fitted to the image
(:func:`translate.tiling.geometry.fit_tiles`: the fewest that cover it, shrunk) and start at
multiples of the cut's stride.

``hybrid`` (what ``auto`` picks for graphs that split): the leading outer layers that cost little get
exact statistics, a pass each; the others come from a sample: small windows on an even grid,
``sample`` of the image (at least one tile's area), run a tile's worth at a time, each run normalising
by the joint statistics of its windows (a band along window edges, which lacks its context, is not
counted). What is left is the sample's variance, no more near seams than elsewhere. On graphs without
a cut (ResNets: every normalised layer at a shallow stride) ``auto`` is ``exact`` layer by layer
(:mod:`.passes`); ``hybrid`` asked of them samples every layer but the cheap leading ones, and small
windows miss a ResNet's wide context, so ``auto`` never picks it there.

``exact`` on a split graph measures every outer layer exactly, a pass each (growing prefixes of the
graph), then renders: it equals the whole image, at a pass per outer layer.

Memory: one tile's activations, plus the held maps and the deep part's run on them. The measured
cost and error of each mode are in BENCHMARKS.md ("Tiling large images").
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..band import Band, Emit
from ..geometry import TilePlan, fit_tiles, sample_windows
from ..graph.cut import Cut, Split, extract
from ..graph.norms import affine_graph
from .base import Network, Read, Statistics, run
from .moments import Moments

EXACT_BUDGET = 0.1  # hybrid: exact passes for the leading outer layers while they cost <= this of the network
SAMPLE_WINDOW, SAMPLE_HALO = 128, 16  # hybrid: sample window side and the edge band it does not count


@dataclass
class Costs:
    """Network-equivalents per input pixel (Conv / ConvTranspose multiply-adds) of each part of the
    work: ``encode`` a tile's maps at the cut, ``middle`` the deep part on the held maps, ``render``
    a tile, ``exact`` a pass measuring each exact layer, ``sample_pre`` / ``sample_post`` a window
    of the sample on each side of the cut."""

    encode: float
    middle: float
    render: float
    exact: dict[int, float]
    sample_pre: float
    sample_post: float


@dataclass
class Sample:
    """Hybrid's statistics sample of one canvas: windows (y0, y1, x0, x1), their weights
    (N, 1, h, w) and the windows of each run (a tile's worth, spread over the image)."""

    windows: list[tuple[int, int, int, int]]
    weights: np.ndarray
    groups: list[list[int]]


class _Image:
    """One image's run: its tiles, the statistics found so far and the maps held at the cut."""

    def __init__(self, plan: TilePlan, read: Read, stats: list, stride: int, batch: int):
        self.plan, self.read, self.stats, self.stride = plan, read, stats, stride
        self.blend = plan.blend()
        self.tiles = [(i, j) for i in range(len(plan.rows)) for j in range(len(plan.cols))]
        self.held: dict[str, np.ndarray] = {}
        self.size = max(1, batch)

    def batches(self, items: list) -> list[list]:
        return [items[i:i + self.size] for i in range(0, len(items), self.size)]

    def inputs(self, chunk) -> tuple[np.ndarray, list[np.ndarray]]:
        """Network input and blend weights of a batch of tiles (each read counts as a tile run)."""
        x = np.concatenate([self.read(*self.plan.window(i, j)) for i, j in chunk])
        return x, [self.blend.weight(i, j) for i, j in chunk]

    def maps(self, names: Sequence[str], windows: Sequence[tuple[int, int, int, int]]) -> dict:
        """The held maps under canvas windows, batched, by name."""
        S = self.stride
        return {t: np.concatenate([self.held[t][:, :, y0 // S:y1 // S, x0 // S:x1 // S] for y0, y1, x0, x1 in windows])
                for t in names}


class SplitStatistics(Statistics):
    """The passes of a split graph (see the module doc); subclasses choose the outer layers measured
    exactly, the rest come from the sample."""

    def __init__(self, net: Network, graph: bytes, cut: Cut):
        import onnx

        self.split, self.inner, self.pre, self.post = cut.split, cut.inner, cut.pre, cut.post
        self.held, self.output = cut.held, cut.output
        self.exact = self.choose_exact(cut)
        self.sampled = [k for k in cut.outer if k not in self.exact]
        self.costs = Costs(
            encode=cut.cost(self.split.inputs) if self.split else 0.0,
            middle=1.0 - cut.cost([self.output]) if self.split else 0.0,
            render=cut.cost([self.output]),
            exact={k: cut.layer_cost(k) for k in self.exact},
            sample_pre=cut.cost([cut.norm_inputs[k] for k in self.pre if k in self.sampled]),
            sample_post=cut.cost([cut.norm_inputs[k] for k in self.post if k in self.sampled]),
        )
        # the sessions: an exact layer's runs the graph up to its sums, the sample's up to theirs; the
        # encoder up to the cut, the deep part on the held maps, the render with every layer fixed
        layers, held, split = net.layers, self.held, self.split
        stats = onnx.load_from_string(graph)
        affine = affine_graph(cut.model)
        stat_in = [i.name for i in stats.graph.input]
        aff_in = [i.name for i in affine.graph.input]

        def session(g, inputs, outputs):
            return net.make_session(extract(g, inputs, outputs).SerializeToString())

        def sums(ks):
            return [o for k in ks for o in layers[k].outputs]

        self.prefix = {k: session(stats, stat_in + (held if k in self.post else []), sums([k])) for k in self.exact}
        self.sample_pre = session(stats, stat_in, sums(self.pre_sampled)) if self.pre_sampled else None
        self.sample_post = session(stats, stat_in + held, sums(self.post_sampled)) if self.post_sampled else None
        self.encode = session(affine, aff_in, split.inputs) if split else None
        self.middle = session(cut.model, split.inputs, split.outputs) if split else None
        super().__init__(net, session(affine, aff_in + held, [self.output]))

    @abstractmethod
    def choose_exact(self, cut: Cut) -> list[int]:
        """The outer layers measured exactly, a pass each, in the order they are measured."""

    @property
    def pre_sampled(self) -> list[int]:
        return [k for k in self.pre if k in self.sampled]

    @property
    def post_sampled(self) -> list[int]:
        return [k for k in self.post if k in self.sampled]

    @property
    def align(self) -> int:
        """Tiles and windows start at multiples of this: the cut's stride on a split graph (every
        tiled layer's grid lines up; the layers inside the cut run on the whole image), else the
        network's alignment."""
        return self.split.stride if self.split else self.net.align

    # ------------------------------------------------------------ one image
    def plan(self, canvas: tuple[int, int]) -> TilePlan:
        """Fitted tiles; a pass per exact layer, one for the maps at the cut, the render (the sample's
        runs are not passes over the tiles)."""
        cfg, (H, W) = self.net.config, canvas
        (th, rows), (tw, cols) = (fit_tiles(n, max(cfg.tile, self.net.min_size), cfg.overlap, self.align)
                                  for n in (H, W))
        overlap = min(cfg.overlap, th // 2, tw // 2)
        return TilePlan((H, W), (th, tw), rows, cols, overlap, len(self.exact) + bool(self.split) + 1,
                        len(self.layers))

    def render(self, plan: TilePlan, read: Read, emit: Emit) -> dict:
        image = _Image(plan, read, self.start(), self.split.stride if self.split else 1, self.net.config.batch)
        sample = self.sample(plan.canvas) if self.sampled else None
        # 1. layers before the cut: exact ones pass by pass, then the others from the sample
        for k in self.pre:
            if k in self.exact:
                self.measure_exact(image, k)
        if sample and self.pre_sampled:
            self.measure_sample(image, sample, self.sample_pre, self.pre_sampled)
        # 2. the maps at the cut, tile by tile, then the deep part on the whole image
        if self.split:
            self.hold_maps(image, self.split)
        # 3. layers after the cut: exact ones, then the sample
        for k in self.post:
            if k in self.exact:
                self.measure_exact(image, k)
        if sample and self.post_sampled:
            self.measure_sample(image, sample, self.sample_post, self.post_sampled)
        # 4. the tiles, every layer fixed
        self.render_tiles(image, emit)
        return self.describe(plan, sample)

    def sample(self, canvas: tuple[int, int]) -> Sample:
        """The statistics sample: windows over ``sample`` of the canvas (at least a tile's worth), or
        the whole canvas in one run when it fits in one tile."""
        cfg, (H, W) = self.net.config, canvas
        budget = cfg.tile * cfg.tile  # pixels a run may hold: one tile's worth
        if H * W <= budget:  # the statistics of the whole canvas, in one run
            windows, weights = [(0, H, 0, W)], np.ones((1, 1, H, W), np.float32)
        else:  # at least a tile's worth of windows
            windows, weights = sample_windows(H, W, min(1.0, max(cfg.sample, budget / (H * W))), SAMPLE_WINDOW,
                                              SAMPLE_HALO, self.align, budget)
        per_run = max(1, budget // (weights.shape[2] * weights.shape[3]))
        runs = -(-len(windows) // per_run)
        return Sample(windows, weights, [list(range(g, len(windows), runs)) for g in range(runs)])

    def measure_exact(self, image: _Image, k: int) -> None:
        """One pass over the tiles, measuring layer ``k`` (the layers before it fixed)."""
        layer = self.layers[k]
        m = Moments(layer.channels)
        own = [float(j == k) for j in range(len(self.layers))]
        held = self.held if k in self.post else []
        for chunk in image.batches(image.tiles):
            x, wts = image.inputs(chunk)
            feeds = self.feeds(x, np.stack(wts)[:, None], own, image.stats)
            feeds.update(image.maps(held, [image.plan.window(i, j) for i, j in chunk]))
            m.add_outputs(run(self.prefix[k], feeds, layer.outputs), layer.outputs)
        image.stats[k] = m.found

    def measure_sample(self, image: _Image, sample: Sample, session, ks: list[int]) -> None:
        """Statistics of layers ``ks`` over the sample: each run normalises by the joint statistics of
        its windows (spread over the image); the runs' moments are pooled."""
        own = [float(j in ks) for j in range(len(self.layers))]
        held = self.held if ks[0] in self.post else []
        moments = {k: Moments(self.layers[k].channels) for k in ks}
        for group in sample.groups:
            windows = [sample.windows[i] for i in group]
            x = np.concatenate([image.read(*w, count=False) for w in windows])
            feeds = self.feeds(x, sample.weights[group], own, image.stats)
            feeds.update(image.maps(held, windows))
            outs = run(session, feeds, [o for k in ks for o in self.layers[k].outputs])
            for k in ks:
                moments[k].add_outputs(outs, self.layers[k].outputs)
        for k in ks:
            image.stats[k] = moments[k].found

    def hold_maps(self, image: _Image, split: Split) -> None:
        """The maps at the cut, tile by tile, blended like the output (weights pooled to the map's
        grid); then the deep part on the whole image's maps, whose outputs are held."""
        plan, S = image.plan, image.stride
        (H, W), (th, tw) = plan.canvas, plan.tile
        sums: dict[str, np.ndarray] = {}
        for chunk in image.batches(image.tiles):
            x, wts = image.inputs(chunk)
            outs = run(self.encode, self.feeds(x, None, [0.0] * len(self.layers), image.stats), split.inputs)
            for t, v in outs.items():
                if t not in sums:
                    sums[t] = np.zeros((1, v.shape[1], H // S, W // S), np.float32)
                for (i, j), wt, vi in zip(chunk, wts, v, strict=True):
                    pooled = wt.reshape(th // S, S, tw // S, S).mean(axis=(1, 3))
                    y0, x0 = plan.rows[i], plan.cols[j]
                    sums[t][0, :, y0 // S:(y0 + th) // S, x0 // S:(x0 + tw) // S] += vi * pooled
        image.held.update(run(self.middle, sums, split.outputs))

    def render_tiles(self, image: _Image, emit: Emit) -> None:
        """The render pass: tiles with every layer fixed (and the held maps), blended into rows."""
        plan = image.plan
        band = Band(plan.canvas[1], emit)
        fixed = [0.0] * len(self.layers)
        for i, y0 in enumerate(plan.rows):
            band.next_row(y0)
            for chunk in image.batches([(i, j) for j in range(len(plan.cols))]):
                x, wts = image.inputs(chunk)
                feeds = self.feeds(x, None, fixed, image.stats)
                feeds.update(image.maps(self.held, [plan.window(i, j) for i, j in chunk]))
                for (_, j), wt, yi in zip(chunk, wts, run(self.session, feeds, [self.output])[self.output], strict=True):
                    band.add(yi, plan.cols[j], wt)
        band.close()

    def describe(self, plan: TilePlan, sample: Sample | None) -> dict:
        """``last_info``: the network-equivalents computed, how many layers got their statistics how,
        the cut's stride and the sample's size."""
        H, W = plan.canvas
        c = self.costs
        sampled_px = len(sample.windows) * sample.weights.shape[2] * sample.weights.shape[3] / (H * W) if sample else 0.0
        cost = (plan.area * (sum(c.exact.values()) + c.encode + c.render) + c.middle
                + sampled_px * (c.sample_pre + c.sample_post))
        return self.info(plan, cost, {"whole_image": len(self.inner), "exact": len(self.exact),
                                      "sampled": len(self.sampled)},
                         cut_stride=self.split.stride if self.split else None,
                         sample_windows=len(sample.windows) if sample else 0,
                         sample_share=round(float(sample.weights.sum() / (H * W)), 4) if sample else 0.0)


class Hybrid(SplitStatistics):
    """``hybrid``: the leading outer layers of each side of the cut exactly while their passes cost at
    most ``EXACT_BUDGET`` of the network (their inputs are fixed by then), the others from the sample."""

    name = "hybrid"

    def choose_exact(self, cut: Cut) -> list[int]:
        exact: list[int] = []
        spent = 0.0
        for group in (cut.pre, cut.post):
            for k in group:
                c = cut.layer_cost(k)
                if spent + c > EXACT_BUDGET:
                    break
                spent += c
                exact.append(k)
        return exact


class ExactSplit(SplitStatistics):
    """``exact`` on a split graph: every outer layer measured exactly, a pass each."""

    name = "exact"

    def choose_exact(self, cut: Cut) -> list[int]:
        return cut.pre + cut.post
