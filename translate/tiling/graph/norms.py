"""InstanceNormalization rewritten for tiling: statistics as inputs, weighted sums as outputs.

A generator with InstanceNorm (or batch norm frozen as per-image statistics, which is exported as
InstanceNorm, see :mod:`translate.export`) normalises every feature map by the statistics of the
whole image; a tile alone would normalise by its own. :func:`statistics_graph` rewrites every
``InstanceNormalization`` so that it normalises either by given per-channel mean and variance or by
its own input's, and reports the weighted sums of its input over the part of the tile that the tile
owns (the weights: :mod:`translate.tiling.geometry`'s blend weights, pooled to the layer's grid).
:func:`affine_graph` is the rendering form: fixed statistics, two elementwise ops, no reductions.

Only ``InstanceNormalization`` nodes are understood: a graph that normalises by other arithmetic
(e.g. ReduceMean from another exporter) is tiled with per-tile statistics for those layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...errors import ModelError

WEIGHT_INPUT = "tile_weight"  # (N, 1, H, W): the tile's share of each pixel, for the statistics


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
                   sess.run(None, {name: np.zeros((1, input_nc, side, side), np.float32)}), strict=True))
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
    for k, (n, (channels, stride)) in enumerate(zip(norms, shapes, strict=True)):
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



def affine_graph(model):
    """A copy of ``model`` whose k-th InstanceNormalization normalises by the inputs
    ``norm{k}.mean`` / ``norm{k}.var`` (C): two elementwise ops, no reductions."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(model.SerializeToString())
    g = model.graph
    shape4 = "affine/shape4"
    nodes = [helper.make_node("Constant", [], [shape4], value=onnx.numpy_helper.from_array(
        np.asarray([1, -1, 1, 1], np.int64), shape4))]
    k = 0
    for n in g.node:
        if n.op_type != "InstanceNormalization":
            nodes.append(n)
            continue
        x, scale, bias = n.input[:3]
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        p, mean, var = f"affine/n{k}/", f"norm{k}.mean", f"norm{k}.var"
        nodes += [
            helper.make_node("Constant", [], [p + "eps"], value=onnx.numpy_helper.from_array(
                np.asarray(eps, np.float32), p + "eps")),
            helper.make_node("Add", [var, p + "eps"], [p + "var_eps"]),
            helper.make_node("Sqrt", [p + "var_eps"], [p + "std"]),
            helper.make_node("Div", [scale, p + "std"], [p + "inv"]),
            helper.make_node("Mul", [mean, p + "inv"], [p + "mean_inv"]),
            helper.make_node("Sub", [bias, p + "mean_inv"], [p + "shift"]),
            helper.make_node("Reshape", [p + "inv", shape4], [p + "inv4"]),
            helper.make_node("Reshape", [p + "shift", shape4], [p + "shift4"]),
            helper.make_node("Mul", [x, p + "inv4"], [p + "scaled"]),
            helper.make_node("Add", [p + "scaled", p + "shift4"], [n.output[0]]),
        ]
        g.input.append(helper.make_tensor_value_info(mean, TensorProto.FLOAT, [None]))
        g.input.append(helper.make_tensor_value_info(var, TensorProto.FLOAT, [None]))
        k += 1
    del g.node[:]
    g.node.extend(nodes)
    return model
