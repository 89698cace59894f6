"""Large images by tiling, with normalisation statistics kept consistent across tiles.

A generator with InstanceNorm (or batch norm frozen as per-image statistics, which is
exported as InstanceNorm, see :mod:`translate.export`) normalises every feature map by
the statistics of the whole image. Run tile by tile, each tile would normalise by its
own statistics and the result changes (naive tiling). Here the ONNX graph is rewritten
(:func:`statistics_graph`) so that every ``InstanceNormalization`` normalises either by
given per-channel mean and variance or by its own input's, and reports the weighted
sums of its input over the part of the tile that the tile owns.

``statistics="exact"`` (the default) streams over the tiles once per normalisation
layer: pass ``p`` fixes layers ``< p`` to the statistics found before and sums layer
``p``'s input over every tile, which is then exactly the whole image's (up to context
beyond the overlap); layers after ``p`` normalise by their own statistics in that pass,
which keeps their inputs sane. A last pass renders the tiles with every layer fixed,
blended with linear ramps in the middle of each overlap. Cost: layers + 1 passes.

``statistics="estimate"`` takes all layers from one pass of tiles normalised by their
own statistics (2 passes). Measured, it only halves the naive error: one layer
normalised per tile already moves the statistics of the layers after it. Refining the
estimates with fixed statistics diverges, and so does starting from a downscaled image
(statistics change with scale) or from a sample of tiles; see benchmarks/tiling.py.

The blend weights are a partition of unity, and the same weights, average-pooled to
each layer's resolution, say which tile owns what for the sums. The image is
reflect-padded once to the network's multiple (as the whole-image path does); tiles are
multiples of it and start at multiples of it, so every layer's grid lines up across
tiles. The image comes from a tile source and the result goes to a tile sink
(:mod:`translate.windows`): the padding is virtual (windows of the padded canvas are read
from the source), so memory is bounded by one tile's activations, a float band one tile
high, and what the source and sink hold: the uint8 image and result for an array, a few
windows for a raster file (:mod:`translate.raster`). Models without image-dependent normalisation (no
norm, or running statistics) run one plain tiled pass.

What tiling cannot give back is context beyond a tile: a U-Net's deepest layers see the
whole input, so a U-Net tile differs from the whole image even with exact statistics;
bigger tiles shrink that. Only ``InstanceNormalization`` nodes are understood: a graph
that normalises by other arithmetic (e.g. ReduceMean from another exporter) is tiled
with per-tile statistics for those layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from . import imageio
from .errors import ConfigError, ModelError
from .padding import crop_padding, pad_to_multiple
from .windows import ArraySink, ArraySource, PaddedSource, TileSink, TileSource

WEIGHT_INPUT = "tile_weight"  # (N, 1, H, W): the tile's share of each pixel, for the statistics
STATISTICS = ("exact", "estimate", "per_tile")
EMIT_ROWS = 64  # finished rows are converted to uint8 and handed to the sink this many at a time


@dataclass(frozen=True)
class TileConfig:
    """How the predictor tiles large images.

    ``tile``: tile side in pixels (rounded up to the network's size multiple);
    ``overlap``: at least this much overlap, at most half a tile (the step is rounded down to the multiple);
    ``threshold``: images with more pixels than this are tiled (0: always, None: never);
    ``statistics``: ``"exact"`` (whole-image statistics, layer by layer: one pass per
    normalisation layer, then the rendering pass), ``"estimate"`` (one estimate pass, then
    the rendering pass) or ``"per_tile"`` (naive: each tile its own statistics);
    ``batch``: tiles per ONNX Runtime call (memory grows with it).
    """

    tile: int = 768
    overlap: int = 128
    threshold: int | None = 2048 * 2048
    statistics: str = "exact"
    batch: int = 1

    def __post_init__(self):
        for name in ("tile", "batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"tiling.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.overlap < 0:
            raise ConfigError("tiling.overlap", f"must be >= 0, got {self.overlap}")
        if self.threshold is not None and self.threshold < 0:
            raise ConfigError("tiling.threshold", f"must be >= 0 or None, got {self.threshold}")
        if self.statistics not in STATISTICS:
            raise ConfigError("tiling.statistics", f"expected one of {STATISTICS}, got {self.statistics!r}")

    def wants(self, h: int, w: int) -> bool:
        return self.threshold is not None and h * w > self.threshold


@dataclass(frozen=True)
class NormLayer:
    """One rewritten InstanceNormalization: its new inputs/outputs and grid stride."""

    index: int
    channels: int
    stride: int  # input pixels per feature-map pixel

    @property
    def mean(self) -> str:
        return f"norm{self.index}.mean"

    @property
    def var(self) -> str:
        return f"norm{self.index}.var"

    @property
    def own(self) -> str:  # scalar: 1 = normalise by this input's own (weighted) statistics, 0 = by mean/var
        return f"norm{self.index}.own"

    @property
    def outputs(self) -> tuple[str, str, str, str]:  # (mean used, sum of w(x - m), sum of w(x - m)^2, sum of w)
        return tuple(f"norm{self.index}.{k}" for k in ("used", "sum", "sumsq", "count"))  # type: ignore[return-value]


@dataclass
class TilePlan:
    """The tiles used for one image (padded canvas coordinates)."""

    canvas: tuple[int, int]
    tile: tuple[int, int]
    rows: list[int]
    cols: list[int]
    passes: int
    layers: int = 0

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)


# ------------------------------------------------------------------ graph rewrite
def _probe_layers(model, norms, input_nc: int, side: int) -> list[tuple[int, int]]:
    """(channels, stride) of every InstanceNormalization input, by running the graph once."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for n in norms:
        if n.input[0] not in known:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(n.input[0]))
            known.add(n.input[0])
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = dict(zip([o.name for o in sess.get_outputs()],
                   sess.run(None, {name: np.zeros((1, input_nc, side, side), np.float32)})))
    out = []
    for n in norms:
        a = got[n.input[0]]
        if a.ndim != 4 or side % a.shape[2] or side % a.shape[3] or a.shape[2] != a.shape[3]:
            raise ModelError(f"cannot tile: normalisation input {n.input[0]} has shape {a.shape} for a {side}px input")
        out.append((int(a.shape[1]), side // int(a.shape[2])))
    return out


def statistics_graph(model_bytes: bytes, input_nc: int, probe_side: int) -> tuple[bytes, list[NormLayer]]:
    """Rewrite every InstanceNormalization to take its statistics as inputs (see module doc).

    New inputs: ``tile_weight`` (N, 1, H, W), ``own_stats`` (scalar) and per layer
    ``norm{k}.mean`` / ``norm{k}.var`` (C). New outputs per layer: ``norm{k}.used`` (the
    mean used), ``.sum`` and ``.sumsq`` (weighted sums of x - used and its square, over
    N, H, W) and ``.count`` (sum of the weights). ``probe_side`` is a square input side
    the network accepts (a multiple of its size multiple).
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(model_bytes)
    g = model.graph
    norms = [n for n in g.node if n.op_type == "InstanceNormalization"]
    if not norms:
        return model_bytes, []
    shapes = _probe_layers(model, norms, input_nc, probe_side)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    new_nodes: list = []
    consts: dict = {}

    def const(name, value, dtype=np.float32):
        if name not in consts:
            consts[name] = helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(
                np.asarray(value, dtype=dtype), name))
            new_nodes.append(consts[name])
        return name

    def node(op, inputs, out, **attrs):
        new_nodes.append(helper.make_node(op, inputs, [out], name=f"tiling/{out}", **attrs))
        return out

    def reduce_sum(x, out, axes):
        if opset >= 13:
            return node("ReduceSum", [x, const(f"tiling/axes{''.join(map(str, axes))}", axes, np.int64)], out,
                        keepdims=0)
        return node("ReduceSum", [x], out, axes=list(axes), keepdims=0)

    shape4 = const("tiling/shape4", [1, -1, 1, 1], np.int64)
    pooled: dict[int, str] = {}
    layers = []
    for k, (n, (channels, stride)) in enumerate(zip(norms, shapes)):
        layer = NormLayer(k, channels, stride)
        layers.append(layer)
        x, scale, bias = n.input[0], n.input[1], n.input[2]
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        p = f"tiling/n{k}/"
        if stride not in pooled:
            pooled[stride] = WEIGHT_INPUT if stride == 1 else node(
                "AveragePool", [WEIGHT_INPUT], f"tiling/weight_s{stride}", kernel_shape=[stride, stride],
                strides=[stride, stride])
        w = pooled[stride]
        used, s1, s2, cnt = layer.outputs
        node("ReduceSum", [w], cnt, keepdims=0)  # all axes: a scalar
        wx = reduce_sum(node("Mul", [x, w], p + "wx"), p + "wx_sum", (0, 2, 3))
        own_mean = node("Div", [wx, cnt], p + "own_mean")
        node("Add", [layer.mean, node("Mul", [layer.own, node("Sub", [own_mean, layer.mean], p + "dm")], p + "odm")],
             used)
        d = node("Sub", [x, node("Reshape", [used, shape4], p + "used4")], p + "d")
        reduce_sum(node("Mul", [node("Mul", [d, d], p + "d2"), w], p + "wd2"), s2, (0, 2, 3))
        node("Sub", [wx, node("Mul", [used, cnt], p + "used_cnt")], s1)
        m1 = node("Div", [s1, cnt], p + "m1")
        own_var = node("Sub", [node("Div", [s2, cnt], p + "m2"), node("Mul", [m1, m1], p + "m1sq")], p + "own_var")
        var = node("Add", [layer.var, node("Mul", [layer.own, node("Sub", [own_var, layer.var], p + "dv")],
                                           p + "odv")], p + "var")
        inv = node("Div", [scale, node("Sqrt", [node("Add", [var, const(p + "eps", eps)], p + "var_eps")],
                                       p + "std")], p + "inv")
        node("Add", [node("Mul", [d, node("Reshape", [inv, shape4], p + "inv4")], p + "dn"),
                                        node("Reshape", [bias, shape4], p + "bias4")], n.output[0])
    kept = [nd for nd in g.node if nd.op_type != "InstanceNormalization"]
    ordered = _toposort(kept + new_nodes, [i.name for i in g.input] + [t.name for t in g.initializer]
                        + [WEIGHT_INPUT] + [n for lyr in layers for n in (lyr.mean, lyr.var, lyr.own)])
    del g.node[:]
    g.node.extend(ordered)
    f32 = TensorProto.FLOAT
    g.input.append(helper.make_tensor_value_info(WEIGHT_INPUT, f32, ["batch", 1, "height", "width"]))
    for layer in layers:
        g.input.append(helper.make_tensor_value_info(layer.mean, f32, [layer.channels]))
        g.input.append(helper.make_tensor_value_info(layer.var, f32, [layer.channels]))
        g.input.append(helper.make_tensor_value_info(layer.own, f32, []))
        used, s1, s2, cnt = layer.outputs
        for name, shape in ((used, [layer.channels]), (s1, [layer.channels]), (s2, [layer.channels]), (cnt, [])):
            g.output.append(helper.make_tensor_value_info(name, f32, shape))
    onnx.checker.check_model(model)
    return model.SerializeToString(), layers


def _toposort(nodes: list, available: Sequence[str]) -> list:
    """Order nodes so every input is produced before use (stable for already-ordered graphs)."""
    have = set(available) | {""}
    remaining = list(nodes)
    out = []
    while remaining:
        progress = []
        for nd in remaining:
            if all(i in have for i in nd.input):
                out.append(nd)
                have.update(nd.output)
            else:
                progress.append(nd)
        if len(progress) == len(remaining):
            missing = sorted({i for nd in progress for i in nd.input if i not in have})[:3]
            raise ModelError(f"cannot tile: graph inputs {missing} are never produced")
        remaining = progress
    return out


# ------------------------------------------------------------------ tile geometry
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
    for o, r in zip(origins, raw):
        total[o:o + tile] += r
    return [(r / total[o:o + tile]).astype(np.float32) for o, r in zip(origins, raw)]


def plan_tiles(h: int, w: int, config: TileConfig, align: int,
               min_size: int) -> tuple[tuple[int, int], list[int], list[int], int, int]:
    """((tile_h, tile_w), rows, cols, step, overlap) for a canvas of h x w (multiples of ``align``)."""
    side = max(-(-max(config.tile, min_size) // align) * align, align)
    step = max(align, (side - min(config.overlap, side // 2)) // align * align)  # overlap: at most half a tile
    th, tw = min(side, h), min(side, w)
    return (th, tw), tile_origins(h, th, step, align), tile_origins(w, tw, step, align), step, side - step


# ------------------------------------------------------------------ the tiled runner
class _Moments:
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

    @property
    def var(self) -> np.ndarray:
        return self.m2 / self.n


class _Prefixes:
    """Sub-graphs of the statistics graph that end at one layer's sums."""

    def __init__(self, graph):
        from onnx.utils import Extractor

        self.extractor = Extractor(graph)
        self.inputs = [i.name for i in graph.graph.input]

    def up_to(self, layer: NormLayer) -> bytes:
        sub = self.extractor.extract_model(self.inputs, list(layer.outputs))
        used = {name for node in sub.graph.node for name in node.input}
        keep = [i for i in sub.graph.input if i.name in used]
        del sub.graph.input[:]
        sub.graph.input.extend(keep)
        return sub.SerializeToString()


class TiledRunner:
    """Runs an exported generator tile by tile with whole-image normalisation statistics.

    ``make_session(model_bytes)`` builds an ONNX Runtime session (the predictor's options
    and providers); ``size_multiple`` / ``min_size`` are the predictor's.
    """

    def __init__(self, model_bytes: bytes, input_nc: int, size_multiple: int, min_size: int,
                 make_session: Callable[[bytes], object], config: TileConfig | None = None):
        self.config = config or TileConfig()
        self.input_nc = input_nc
        self.min_size = max(min_size, size_multiple)
        probe_side = -(-max(2 * self.min_size, 64) // size_multiple) * size_multiple
        graph, self.layers = statistics_graph(model_bytes, input_nc, probe_side)
        strides = {layer.stride for layer in self.layers}
        self.align = int(np.lcm.reduce([size_multiple, *strides])) if strides else size_multiple
        self.make_session = make_session
        self.session = make_session(graph)
        self.graph = None  # exact statistics: kept parsed, to cut the per-layer sub-graphs from
        if self.layers and self.config.statistics == "exact":
            import onnx

            self.graph = onnx.load_from_string(graph)
        del graph
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.last_plan: TilePlan | None = None

    # ---------------------------------------------------------------- public
    def translate_array(self, a: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """uint8 H x W x input_nc -> uint8 H x W x output_nc, tiled (``progress`` as in :meth:`translate_source`)."""
        sink = ArraySink(*a.shape[:2])
        self.translate_source(ArraySource(a), sink, progress)
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

        def tile(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            nonlocal done
            x = imageio.to_network(canvas.read(y0, y1, x0, x1))
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
        results = []
        for xi in x:
            canvas, pads = pad_to_multiple(np.ascontiguousarray(xi[None], np.float32), self.align, self.min_size)
            rows: list[np.ndarray] = []
            self._render(canvas.shape[2:], lambda y0, y1, x0, x1: canvas[:, :, y0:y1, x0:x1],
                         lambda y0, r: rows.append(r))
            results.append(crop_padding(np.concatenate(rows, axis=1), pads))
        return np.stack(results)

    # ---------------------------------------------------------------- core
    def schedule(self) -> list[tuple[list[float], list[int], bool]]:
        """The passes as (own-statistics flag per layer, layers whose statistics the pass measures, renders)."""
        n, how = len(self.layers), self.config.statistics
        if not n or how == "per_tile":
            return [([1.0] * n, [], True)]
        if how == "estimate":
            return [([1.0] * n, list(range(n)), False), ([0.0] * n, [], True)]
        # exact: layer p's input depends only on layers < p, fixed by the passes before; the
        # layers after it normalise by their own statistics, which keeps their inputs sane
        return [([float(k >= p) for k in range(n)], [p], False) for p in range(n)] + [([0.0] * n, [], True)]

    def _feeds(self, x: np.ndarray, weight: np.ndarray, own: list[float], stats: list) -> dict:
        feeds = {self.input_name: x}
        if self.layers:
            feeds[WEIGHT_INPUT] = weight
            for layer, flag, (m, v) in zip(self.layers, own, stats):
                feeds[layer.mean], feeds[layer.var] = m.astype(np.float32), v.astype(np.float32)
                feeds[layer.own] = np.asarray(flag, np.float32)
        return feeds

    def _render(self, hw, tile: Callable, emit: Callable) -> None:
        """Run the schedule over the tiles of a padded canvas of ``hw``; ``tile(y0, y1, x0, x1)``
        gives network input, ``emit(y0, rows)`` takes finished output rows (C, n, W)."""
        cfg = self.config
        H, W = int(hw[0]), int(hw[1])
        (th, tw), rows, cols, step, overlap = plan_tiles(H, W, cfg, self.align, self.min_size)
        per_tile = cfg.statistics == "per_tile"
        batch = 1 if per_tile else cfg.batch  # per-tile statistics are reduced over the batch too
        passes = self.schedule()
        self.last_plan = TilePlan((H, W), (th, tw), rows, cols, len(passes), len(self.layers))
        wy = blend_weights(H, th, rows, overlap // 2)
        wx = blend_weights(W, tw, cols, overlap // 2)
        stats = [(np.zeros(layer.channels), np.ones(layer.channels)) for layer in self.layers]
        prefixes = _Prefixes(self.graph) if self.graph is not None else None
        for own, measure, render in passes:
            moments = {k: _Moments(self.layers[k].channels) for k in measure}
            session = None  # the last pass's sub-graph session goes before the next one is made
            if prefixes and len(measure) == 1:  # one layer's sums need only the graph up to it
                session = self.make_session(prefixes.up_to(self.layers[measure[0]]))
            else:
                session = self.session
            names = [i.name for i in session.get_inputs()]
            band, band_top = None, rows[0]
            for i, y0 in enumerate(rows):
                if band is not None:  # the rows above this tile row are finished
                    done = y0 - band_top
                    emit(band_top, band[:, :done])
                    band = np.concatenate([band[:, done:], np.zeros((band.shape[0], done, W), np.float32)], axis=1)
                    band_top = y0
                jobs = [(x0, wy[i][:, None] * wx[j][None, :]) for j, x0 in enumerate(cols)]
                for b in range(0, len(jobs), batch):
                    chunk = jobs[b:b + batch]
                    x = np.concatenate([tile(y0, y0 + th, x0, x0 + tw) for x0, _ in chunk])
                    weight = (np.ones((1, 1, th, tw), np.float32) if per_tile
                              else np.stack([wt for _, wt in chunk])[:, None])
                    feeds = self._feeds(x, weight, own, stats)
                    outs = dict(zip([o.name for o in session.get_outputs()],
                                    session.run(None, {n: feeds[n] for n in names})))
                    for k in measure:
                        moments[k].add(*(np.asarray(outs[o], np.float64) for o in self.layers[k].outputs))
                    if render:
                        y = outs[self.output_name]
                        if band is None:
                            band = np.zeros((y.shape[1], th, W), np.float32)
                        for (x0, wt), yi in zip(chunk, y):
                            band[:, :, x0:x0 + tw] += yi * wt
            if render:
                emit(band_top, band)
            for k in measure:
                stats[k] = (moments[k].mean, moments[k].var)
