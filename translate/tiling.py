"""Large images by tiling, with normalisation statistics kept consistent across tiles.

A generator with InstanceNorm (or batch norm frozen as per-image statistics, which is
exported as InstanceNorm, see :mod:`translate.export`) normalises every feature map by
the statistics of the whole image. Run tile by tile, each tile would normalise by its
own statistics and the result changes (naive tiling). Here the ONNX graph is rewritten
(:func:`statistics_graph`) so that every ``InstanceNormalization`` normalises either by
given per-channel mean and variance or by its own input's, and reports the weighted
sums of its input over the part of the tile that the tile owns.

Split graphs (:mod:`translate.tiling_graph`). A U-Net's deep levels are small: from
stride 32 on, unet_256's maps hold 1.5 float32 values per input pixel. The graph is cut
there; tiles compute the maps at the cut (one encoder pass), the deep part runs once on
the whole image's maps (so its statistics and its context are the whole image's), and
the render pass reads the deep part's output for its tile from the held maps. Only the
outer layers (7 of unet_256's 13 normalisation layers) need statistics from the tiles,
and what a tile's output depends on reaches about 100 px, inside the overlap.

``statistics="hybrid"`` (what ``"auto"``, the default, picks for graphs that split): the leading
outer layers that cost little (unet_256: the first, at stride 4, ~10 % of a pass) get
exact statistics, a pass each; the others come from a sample: 128 px windows on an even
grid, ``sample`` of the image (at least one tile's area), run a tile's worth at a time,
each run normalising by the joint statistics of its windows (a 16 px band along window
edges is not counted). Cost at 4096^2, unet_256 ngf 64: 1.8 (tiles of 1536) to 2.2 (768)
networks' worth of multiply-adds (the render with its overlap, the encoder 0.33, the sample
0.18, the exact layer 0.1); measured on 2 quiet CPUs, 2.1x the CPU time (2.0x the wall
time) of four 2048^2 whole-image passes, 0.0097 mean abs diff from the whole image's result,
no more near seams than elsewhere (what is left is the sample's variance; estimate: 0.017).
On graphs without a cut (ResNets: every normalised layer at stride <= 4) ``auto`` is
``exact``; ``hybrid`` asked of them samples every layer but the cheap leading ones and
measures worse than ``estimate`` (small windows miss a ResNet's wide context), so auto
never picks it there.

``statistics="exact"`` on split graphs measures every outer layer exactly, a pass each
(unet_256: 7 passes of growing prefixes, then the render), and equals the whole image
(4.4-4.9x the CPU time of four 2048^2 whole passes at 4096^2: over the 4x asked for).
Without a split it streams over the tiles once per normalisation layer: pass ``p``
fixes layers ``< p`` to the statistics found before and sums layer ``p``'s input over
every tile, which is then exactly the whole image's (up to context beyond the overlap);
layers after ``p`` normalise by their own statistics in that pass, which keeps their
inputs sane. A last pass renders the tiles with every layer fixed, blended with linear
ramps in the middle of each overlap. Cost: layers + 1 passes.

``statistics="estimate"`` takes all layers from one pass of tiles normalised by their
own statistics (2 passes). Measured, it only halves the naive error: one layer
normalised per tile already moves the statistics of the layers after it. Refining the
estimates with fixed statistics diverges, and so does starting from a downscaled image
(statistics change with scale); see benchmarks/tiling.py.

The blend weights are a partition of unity, and the same weights, average-pooled to
each layer's resolution, say which tile owns what for the sums. The image is
reflect-padded once to the network's multiple (as the whole-image path does); tiles are
multiples of the deepest tiled stride and start at multiples of it, so every layer's grid
lines up across tiles. The image comes from a tile source and the result goes to a tile sink
(:mod:`translate.windows`): the padding is virtual (windows of the padded canvas are read
from the source), so memory is bounded by one tile's activations, a float band one tile
high, what the source and sink hold (the uint8 image and result for an array, a few
windows for a raster file, :mod:`translate.raster`), and on split graphs the held maps
(unet_256: 6 bytes per input pixel) and the deep part's run on them. Models without
image-dependent normalisation (no norm, or running statistics) run one plain tiled pass.
After each image ``TiledRunner.last_info`` says what was done (mode, tiles, passes, how each
layer got its statistics), for the output's metadata.

What tiling cannot give back without a split is context beyond a tile: a U-Net's deepest
layers see the whole input, so without the split a U-Net tile differs from the whole
image even with exact statistics; bigger tiles shrink that. Only
``InstanceNormalization`` nodes are understood: a graph that normalises by other
arithmetic (e.g. ReduceMean from another exporter) is tiled with per-tile statistics for
those layers.
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
STATISTICS = ("auto", "hybrid", "exact", "estimate", "per_tile")
EMIT_ROWS = 64  # finished rows are converted to uint8 and handed to the sink this many at a time
MAX_HELD = 2.0  # hybrid: float32 values per input pixel the held maps at the cut may take
EXACT_BUDGET = 0.1  # hybrid: exact passes for the leading outer layers while they cost <= this of the network
SAMPLE_WINDOW, SAMPLE_HALO = 128, 16  # hybrid: sample window side and the edge band it does not count


@dataclass(frozen=True)
class TileConfig:
    """How the predictor tiles large images.

    ``tile``: tile side in pixels (rounded up to the network's size multiple; ``hybrid``
    shrinks it to the fewest tiles that cover the image);
    ``overlap``: at least this much overlap, at most half a tile (the step is rounded down to the multiple);
    ``threshold``: images with more pixels than this are tiled (0: always, None: never);
    ``statistics``: ``"auto"`` (the default: ``hybrid`` for graphs that split, such as U-Nets,
    else ``exact``), ``"hybrid"`` (the deep layers on the whole image, the others from exact
    passes or a sample; see the module doc), ``"exact"`` (whole-image statistics: on split
    graphs a pass per outer layer; otherwise layer by layer, one pass per normalisation
    layer; then the rendering pass), ``"estimate"`` (one
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


def _area(plan: TilePlan, h: int, w: int) -> float:
    """Pixels the tiles compute per canvas pixel (1 + what the overlaps compute twice)."""
    return plan.count * plan.tile[0] * plan.tile[1] / (h * w)


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


class _Band:
    """Blends tile outputs into a band of canvas rows and hands finished rows on: memory for one
    tile row of output, not the canvas."""

    def __init__(self, width: int, emit: Callable):
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


class _Hybrid:
    """The plan and sessions of split statistics (see the module doc).

    The graph is cut at the shallowest stride whose held maps stay within ``MAX_HELD``
    float32 values per input pixel; without such a cut (e.g. a ResNet, whose normalised
    layers all sit at stride <= 4) every layer is outer. Outer layers get exact statistics
    (a pass each) while those passes cost at most ``EXACT_BUDGET`` of the network, or all of
    them with ``exact_only``; the rest come from the sample. :meth:`build` makes the sessions.
    """

    def __init__(self, runner: "TiledRunner", model_bytes: bytes, exact_only: bool = False):
        import onnx

        from .tiling_graph import find_split, macs_per_pixel, probe

        self.runner = runner
        self.model = model = onnx.load_from_string(model_bytes)
        tensors = probe(model, runner.input_nc, runner.probe_side)
        macs = macs_per_pixel(model, tensors)
        total = sum(macs.values()) or 1.0
        self.split = None
        for stride in sorted({t.stride for t in tensors.values() if t.stride > 1}):
            split = find_split(model, tensors, stride)
            if split is not None and split.floats_per_pixel <= MAX_HELD:
                self.split = split
                break
        split = self.split
        inner = set(split.inner) if split else set()
        outer = [k for k in range(len(runner.layers)) if k not in inner]
        self.inner = sorted(inner)
        self.pre = [k for k in outer if split and k in split.pre]
        self.post = [k for k in outer if k not in self.pre]
        self.held = list(split.outputs) if split else []
        self.output = model.graph.output[0].name
        producer = {o: nd for nd in model.graph.node for o in nd.output}
        self.norm_inputs = [nd.input[0] for nd in model.graph.node if nd.op_type == "InstanceNormalization"]

        def cost(names) -> float:  # MACs per input pixel of the tiled part that ``names`` need
            seen, stack, c = set(), list(names), 0.0
            while stack:
                t = stack.pop()
                if t in seen or t in self.held or t not in producer:
                    continue
                seen.add(t)
                c += macs.get(t, 0.0)
                stack.extend(producer[t].input)
            return c / total

        self.exact: list[int] = []
        spent = 0.0
        for group in (self.pre, self.post):  # the leading layers of each: their inputs are fixed by then
            for k in group:
                c = cost([self.norm_inputs[k]])
                if not exact_only and spent + c > EXACT_BUDGET:
                    break
                spent += c
                self.exact.append(k)
        self.sampled = [k for k in outer if k not in self.exact]
        self.costs = {  # network-equivalents per input pixel (Conv / ConvTranspose multiply-adds)
            "encode": cost(split.inputs) if split else 0.0,
            "middle": 1.0 - cost([self.output]) if split else 0.0,
            "render": cost([self.output]),
            "exact": {k: cost([self.norm_inputs[k]]) for k in self.exact},
            "sample_pre": cost([self.norm_inputs[k] for k in self.pre if k in self.sampled]),
            "sample_post": cost([self.norm_inputs[k] for k in self.post if k in self.sampled]),
        }

    def build(self, stats_bytes: bytes) -> "_Hybrid":
        import onnx

        from .tiling_graph import affine_graph, extract

        model, split, held, layers = self.model, self.split, self.held, self.runner.layers
        stats = onnx.load_from_string(stats_bytes)
        affine = affine_graph(model)
        stat_in = [i.name for i in stats.graph.input]
        aff_in = [i.name for i in affine.graph.input]

        def session(graph, inputs, outputs):
            return self.runner.make_session(extract(graph, inputs, outputs).SerializeToString())

        def sums(ks):
            return [o for k in ks for o in layers[k].outputs]

        pre_sampled = [k for k in self.pre if k in self.sampled]
        post_sampled = [k for k in self.post if k in self.sampled]
        # an exact layer: the graph up to its sums; sampled layers: up to theirs
        self.prefix = {k: session(stats, stat_in + (held if k in self.post else []), sums([k])) for k in self.exact}
        self.sample_pre = session(stats, stat_in, sums(pre_sampled)) if pre_sampled else None
        self.sample_post = session(stats, stat_in + held, sums(post_sampled)) if post_sampled else None
        self.encode = session(affine, aff_in, split.inputs) if split else None
        self.middle = session(model, split.inputs, split.outputs) if split else None
        self.render = session(affine, aff_in + held, [self.output])
        del self.model
        return self


class TiledRunner:
    """Runs an exported generator tile by tile with whole-image normalisation statistics.

    ``make_session(model_bytes)`` builds an ONNX Runtime session (the predictor's options
    and providers); ``size_multiple`` / ``min_size`` are the predictor's. After each image,
    ``last_plan`` holds its tiles and ``last_info`` what was done (for the output's metadata).
    """

    def __init__(self, model_bytes: bytes, input_nc: int, size_multiple: int, min_size: int,
                 make_session: Callable[[bytes], object], config: TileConfig | None = None):
        self.config = config or TileConfig()
        self.input_nc = input_nc
        self.size_multiple = size_multiple
        self.min_size = max(min_size, size_multiple)
        self.probe_side = -(-max(2 * self.min_size, 64) // size_multiple) * size_multiple
        graph, self.layers = statistics_graph(model_bytes, input_nc, self.probe_side)
        strides = {layer.stride for layer in self.layers}
        self.align = int(np.lcm.reduce([size_multiple, *strides])) if strides else size_multiple
        self.make_session = make_session
        self.graph = None  # exact statistics: kept parsed, to cut the per-layer sub-graphs from
        self.hybrid: _Hybrid | None = None
        how = self.config.statistics if self.layers else "none"
        if how in ("auto", "hybrid", "exact"):  # split graphs; exact without a split: layer by layer
            plan = _Hybrid(self, model_bytes, exact_only=how == "exact")
            if plan.split is not None or how == "hybrid":
                self.hybrid = plan.build(graph)
            how = ("hybrid" if plan.split is not None else "exact") if how == "auto" else how
            del plan
        self.statistics = how  # the mode used, "none" for a model without image-dependent normalisation
        if self.hybrid is not None:
            self.session = self.hybrid.render
        else:
            self.session = make_session(graph)
            if how == "exact":
                import onnx

                self.graph = onnx.load_from_string(graph)
        del graph
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.last_plan: TilePlan | None = None
        self.last_info: dict | None = None

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
        results = []
        for xi in x:
            canvas, pads = pad_to_multiple(np.ascontiguousarray(xi[None], np.float32), self.align, self.min_size)
            rows: list[np.ndarray] = []
            self._render(canvas.shape[2:], lambda y0, y1, x0, x1, count=True: canvas[:, :, y0:y1, x0:x1],
                         lambda y0, r: rows.append(r))
            results.append(crop_padding(np.concatenate(rows, axis=1), pads))
        return np.stack(results)

    # ---------------------------------------------------------------- core
    def schedule(self) -> list[tuple[list[float], list[int], bool]]:
        """The passes as (own-statistics flag per layer, layers whose statistics the pass measures, renders)."""
        n, how = len(self.layers), self.statistics
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

    def _run(self, session, feeds: dict, fetch: list[str] | None = None) -> dict:
        """Run ``session`` on the feeds it takes; the fetched outputs (all by default) by name."""
        names = [o.name for o in session.get_outputs()] if fetch is None else fetch
        return dict(zip(names, session.run(names, {i.name: feeds[i.name] for i in session.get_inputs()})))

    def _render(self, hw, tile: Callable, emit: Callable) -> None:
        """Run the schedule over the tiles of a padded canvas of ``hw``; ``tile(y0, y1, x0, x1)``
        gives network input, ``emit(y0, rows)`` takes finished output rows (C, n, W)."""
        if self.hybrid is not None:
            return self._render_hybrid(hw, tile, emit)
        cfg = self.config
        H, W = int(hw[0]), int(hw[1])
        (th, tw), rows, cols, step, overlap = plan_tiles(H, W, cfg, self.align, self.min_size)
        per_tile = self.statistics == "per_tile"
        batch = 1 if per_tile else cfg.batch  # per-tile statistics are reduced over the batch too
        passes = self.schedule()
        self.last_plan = TilePlan((H, W), (th, tw), rows, cols, len(passes), len(self.layers))
        n = len(self.layers)
        how = self.statistics
        self.last_info = self._info(how, self.last_plan, overlap, None, layers={
            "exact": n if how == "exact" else 0, "estimated": n if how == "estimate" else 0,
            "per_tile": n if how == "per_tile" else 0})
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
            band = _Band(W, emit) if render else None
            for i, y0 in enumerate(rows):
                if band:
                    band.next_row(y0)
                jobs = [(x0, wy[i][:, None] * wx[j][None, :]) for j, x0 in enumerate(cols)]
                for b in range(0, len(jobs), batch):
                    chunk = jobs[b:b + batch]
                    x = np.concatenate([tile(y0, y0 + th, x0, x0 + tw) for x0, _ in chunk])
                    weight = (np.ones((1, 1, th, tw), np.float32) if per_tile
                              else np.stack([wt for _, wt in chunk])[:, None])
                    outs = self._run(session, self._feeds(x, weight, own, stats))
                    for k in measure:
                        moments[k].add(*(np.asarray(outs[o], np.float64) for o in self.layers[k].outputs))
                    if band:
                        for (x0, wt), yi in zip(chunk, outs[self.output_name]):
                            band.add(yi, x0, wt)
            if band:
                band.close()
            for k in measure:
                stats[k] = (moments[k].mean, moments[k].var)

    def _info(self, how: str, plan: TilePlan, overlap: int, cost: float | None, layers: dict, **extra) -> dict:
        """What was done for one image, for the output's metadata: ``statistics`` is the mode used,
        ``asked`` the configured one (``auto`` resolves to ``hybrid`` or ``exact``)."""
        return {"statistics": how, "asked": self.config.statistics, "tile": list(plan.tile), "overlap": int(overlap),
                "tiles": plan.count, "passes": plan.passes, "cost": None if cost is None else round(float(cost), 3),
                "layers": layers, **extra}

    # ---------------------------------------------------------------- hybrid statistics
    def _render_hybrid(self, hw, tile: Callable, emit: Callable) -> None:
        hy, cfg = self.hybrid, self.config
        H, W = int(hw[0]), int(hw[1])
        align = hy.split.stride if hy.split else self.align
        (th, rows), (tw, cols) = (fit_tiles(n, max(cfg.tile, self.min_size), cfg.overlap, align) for n in (H, W))
        overlap = min(cfg.overlap, th // 2, tw // 2)
        wy, wx = blend_weights(H, th, rows, overlap // 2), blend_weights(W, tw, cols, overlap // 2)
        n = len(self.layers)
        stats = [(np.zeros(layer.channels), np.ones(layer.channels)) for layer in self.layers]
        budget = cfg.tile * cfg.tile  # pixels a run may hold: one tile's worth
        if H * W <= budget:  # the statistics of the whole canvas, in one run
            windows, wweight = [(0, H, 0, W)], np.ones((1, 1, H, W), np.float32)
        else:  # at least a tile's worth of windows
            windows, wweight = sample_windows(H, W, min(1.0, max(cfg.sample, budget / (H * W))), SAMPLE_WINDOW,
                                              SAMPLE_HALO, align, budget)
        per_run = max(1, budget // (wweight.shape[2] * wweight.shape[3]))
        groups = [list(range(g, len(windows), -(-len(windows) // per_run)))
                  for g in range(-(-len(windows) // per_run))]
        tiles = [(i, j) for i in range(len(rows)) for j in range(len(cols))]

        def inputs(chunk):  # network input and blend weights of a batch of tiles
            x = np.concatenate([tile(rows[i], rows[i] + th, cols[j], cols[j] + tw) for i, j in chunk])
            return x, [wy[i][:, None] * wx[j][None, :] for i, j in chunk]
        held: dict[str, np.ndarray] = {}
        S = hy.split.stride if hy.split else 1

        def region(names, y0, y1, x0, x1):  # the held maps under a canvas region
            return {t: held[t][:, :, y0 // S:y1 // S, x0 // S:x1 // S] for t in names}

        def batches(items):
            b = max(1, cfg.batch)
            return [items[i:i + b] for i in range(0, len(items), b)]

        def exact(k, extra_names):  # one pass over the tiles, measuring layer k (layers before it fixed)
            m = _Moments(self.layers[k].channels)
            own = [float(j == k) for j in range(n)]
            for chunk in batches(tiles):
                x, wts = inputs(chunk)
                feeds = self._feeds(x, np.stack(wts)[:, None], own, stats)
                for t in extra_names:
                    feeds[t] = np.concatenate([region([t], rows[i], rows[i] + th, cols[j], cols[j] + tw)[t]
                                               for i, j in chunk])
                outs = self._run(hy.prefix[k], feeds, list(self.layers[k].outputs))
                m.add(*(np.asarray(outs[o], np.float64) for o in self.layers[k].outputs))
            stats[k] = (m.mean, m.var)

        def sample(session, ks, extra_names):
            """Statistics of layers ``ks`` over the windows: each run normalises by the joint statistics
            of its windows (spread over the image); the runs' moments are pooled."""
            own = [float(j in ks) for j in range(n)]
            moments = {k: _Moments(self.layers[k].channels) for k in ks}
            for group in groups:
                x = np.concatenate([tile(*windows[i], count=False) for i in group])
                feeds = self._feeds(x, wweight[group], own, stats)
                for t in extra_names:
                    feeds[t] = np.concatenate([region([t], *windows[i])[t] for i in group])
                outs = self._run(session, feeds, [o for k in ks for o in self.layers[k].outputs])
                for k in ks:
                    moments[k].add(*(np.asarray(outs[o], np.float64) for o in self.layers[k].outputs))
            for k in ks:
                stats[k] = (moments[k].mean, moments[k].var)

        # the plan is known before the first pass (for progress reports): a pass per exact layer, the maps
        # at the cut, the render; the sample's runs are not passes over the tiles
        self.last_plan = TilePlan((H, W), (th, tw), rows, cols, len(hy.exact) + bool(hy.split) + 1, n)
        passes = 0
        # 1. layers before the cut: exact ones pass by pass, then the others from the sample
        for k in hy.pre:
            if k in hy.exact:
                exact(k, [])
                passes += 1
        pre_sampled = [k for k in hy.pre if k in hy.sampled]
        if pre_sampled:
            sample(hy.sample_pre, pre_sampled, [])
        # 2. the maps at the cut, tile by tile, then the deep part on the whole image
        if hy.split:
            sums: dict[str, np.ndarray] = {}
            for chunk in batches(tiles):
                x, wts = inputs(chunk)
                outs = self._run(hy.encode, self._feeds(x, None, [0.0] * n, stats), hy.split.inputs)
                for t, v in outs.items():
                    if t not in sums:
                        sums[t] = np.zeros((1, v.shape[1], H // S, W // S), np.float32)
                    for (i, j), wt, vi in zip(chunk, wts, v):  # blended like the output: weights pooled to the map
                        pooled = wt.reshape(th // S, S, tw // S, S).mean(axis=(1, 3))
                        sums[t][0, :, rows[i] // S:(rows[i] + th) // S, cols[j] // S:(cols[j] + tw) // S] += vi * pooled
            held.update(self._run(hy.middle, sums, hy.split.outputs))
            del sums
            passes += 1
        # 3. layers after the cut: exact ones, then the sample
        for k in hy.post:
            if k in hy.exact:
                exact(k, hy.split.outputs if hy.split else [])
                passes += 1
        post_sampled = [k for k in hy.post if k in hy.sampled]
        if post_sampled:
            sample(hy.sample_post, post_sampled, hy.split.outputs if hy.split else [])
        # 4. render
        passes += 1
        assert passes == self.last_plan.passes
        band = _Band(W, emit)
        names = hy.split.outputs if hy.split else []
        for i, y0 in enumerate(rows):
            band.next_row(y0)
            for chunk in batches([(i, j) for j in range(len(cols))]):
                x, wts = inputs(chunk)
                feeds = self._feeds(x, None, [0.0] * n, stats)
                for t in names:
                    feeds[t] = np.concatenate([region([t], y0, y0 + th, cols[j], cols[j] + tw)[t] for _, j in chunk])
                for (_, j), wt, yi in zip(chunk, wts, self._run(hy.render, feeds, [hy.output])[hy.output]):
                    band.add(yi, cols[j], wt)
        band.close()
        area = _area(self.last_plan, H, W)
        c = hy.costs
        sampled_px = len(windows) * wweight.shape[2] * wweight.shape[3] / (H * W) if hy.sampled else 0.0
        cost = (area * (sum(c["exact"].values()) + c["encode"] + c["render"]) + c["middle"]
                + sampled_px * (c["sample_pre"] + c["sample_post"]))
        self.last_info = self._info(self.statistics, self.last_plan, overlap, cost, layers={
            "whole_image": len(hy.inner), "exact": len(hy.exact), "sampled": len(hy.sampled)},
            cut_stride=hy.split.stride if hy.split else None, sample_windows=len(windows) if hy.sampled else 0,
            sample_share=round(float(wweight.sum() / (H * W)), 4) if hy.sampled else 0.0)
