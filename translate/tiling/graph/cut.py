"""Where to cut a generator's graph, and the sub-graphs cut from it (see :mod:`translate.tiling.statistics.split`).

A generator's tensors each live at one resolution: ``stride`` input pixels per feature-map
pixel. A U-Net's deep levels are small enough to hold for the whole image, a few channels'
worth per input pixel. :func:`find_split` cuts the graph there: the *inner* part (every node
whose 4-D inputs and outputs are all at stride >= S) runs once on the whole image's feature
maps, so its normalisation statistics and its context are the whole image's; the *outer* part
runs tile by tile and reads the inner part's output for its tile from the stored maps.
:func:`probe` measures every tensor's channels and stride; :func:`macs_per_pixel` what each
convolution costs; :class:`Cut` is the cut chosen for a model and its parts' costs; :func:`extract`
and :class:`Prefixes` cut sub-graphs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ...errors import ModelError

MAX_HELD = 2.0  # float32 values per input pixel the held maps at the cut may take


@dataclass(frozen=True)
class Tensor:
    channels: int
    stride: int  # input pixels per feature-map pixel (the nearest power of two for padded maps)
    exact: bool = True  # the map is exactly input / stride (not padded)


def probe(model, input_nc: int, side: int) -> dict[str, Tensor]:
    """(channels, stride) of every 4-D tensor of ``model`` (an onnx ModelProto), by running it once
    on a ``side`` x ``side`` input with every node output fetched."""
    import onnx
    import onnxruntime as ort

    graph = onnx.ModelProto()
    graph.CopyFrom(model)
    known = {o.name for o in graph.graph.output}
    for n in graph.graph.node:
        for o in n.output:
            if o and o not in known:
                graph.graph.output.append(onnx.helper.make_empty_tensor_value_info(o))
                known.add(o)
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = sess.run(None, {name: np.zeros((1, input_nc, side, side), np.float32)})
    out = {name: Tensor(input_nc, 1)}
    for o, a in zip((o.name for o in sess.get_outputs()), got, strict=True):
        if np.ndim(a) != 4 or a.shape[2] != a.shape[3] or not a.shape[2]:
            continue
        ratio = side / a.shape[2]
        stride = 2 ** int(round(np.log2(ratio)))
        if abs(ratio - stride) <= 0.25 * stride:  # padded maps (reflection padding) count at their stride
            out[o] = Tensor(int(a.shape[1]), stride, side % a.shape[2] == 0)
    return out


def macs_per_pixel(model, tensors: dict[str, Tensor]) -> dict[str, float]:
    """Multiply-adds per input pixel of every Conv / ConvTranspose node (by its first output's name)."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity" and n.input[0] in shapes}
    out = {}
    for n in model.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose") or len(n.input) < 2:
            continue
        w = shapes.get(alias.get(n.input[1], n.input[1]))
        src, dst = tensors.get(n.input[0]), tensors.get(n.output[0])
        if w is None or src is None or dst is None:
            continue
        # Conv: every output position costs prod(w); ConvTranspose: every input position does
        out[n.output[0]] = float(np.prod(w)) / (dst.stride if n.op_type == "Conv" else src.stride) ** 2
    return out


def extract(model, inputs: Sequence[str], outputs: Sequence[str]):
    """The sub-graph of ``model`` that computes ``outputs`` from ``inputs`` (graph inputs or inner
    tensors, which become float inputs); inputs it does not use are dropped."""
    import onnx

    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name for t in g.initializer}
    stop, seen, need, stack = set(inputs), set(), set(), list(outputs)
    while stack:
        t = stack.pop()
        if t in stop or t in inits or t in seen or not t:
            continue
        seen.add(t)
        n = producer.get(t)
        if n is None:
            raise ModelError(f"cannot tile: {t} is not computable from {sorted(stop)[:4]}")
        if id(n) not in need:
            need.add(id(n))
            stack.extend(n.input)
    nodes = [n for n in g.node if id(n) in need]  # graph order is topological
    used = {i for n in nodes for i in n.input} | set(outputs)
    declared = {i.name: i for i in g.input}
    if any(t in used and t not in declared for t in inputs):  # inner tensors: typed with their rank where
        # shape inference knows it (OpenVINO's ONNX reader, unlike ONNX Runtime, needs the rank of every input)
        declared = {i.name: i for i in onnx.shape_inference.infer_shapes(model).graph.value_info} | declared
    ins = [declared.get(t) or onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
           for t in inputs if t in used]
    outs = [onnx.helper.make_empty_tensor_value_info(t) for t in outputs]
    sub = onnx.helper.make_graph(nodes, g.name, ins, outs, [t for t in g.initializer if t.name in used])
    return onnx.helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)


class Prefixes:
    """Sub-graphs of a graph that end at given outputs (one layer's sums: the graph up to that layer)."""

    def __init__(self, graph):
        from onnx.utils import Extractor

        self.extractor = Extractor(graph)
        self.inputs = [i.name for i in graph.graph.input]

    def ending_at(self, outputs: Sequence[str]) -> bytes:
        sub = self.extractor.extract_model(self.inputs, list(outputs))
        used = {name for node in sub.graph.node for name in node.input}
        keep = [i for i in sub.graph.input if i.name in used]
        del sub.graph.input[:]
        sub.graph.input.extend(keep)
        return sub.SerializeToString()


@dataclass
class Split:
    """Where a graph is cut: tensors at ``stride`` and deeper run on the whole image.

    ``inputs``: tensors the tiles compute and the inner part reads (held for the whole image);
    ``outputs``: tensors the inner part computes and the tiles read; ``inner`` / ``pre`` /
    ``post``: indices of the InstanceNormalization nodes inside, before (the inputs depend on
    them) and after the cut; ``floats_per_pixel``: the held maps, float32 values per input pixel.
    """

    stride: int
    inputs: list[str]
    outputs: list[str]
    inner: list[int]
    pre: list[int]
    post: list[int]
    channels: dict[str, int] = field(default_factory=dict)
    floats_per_pixel: float = 0.0


def find_split(model, tensors: dict[str, Tensor], stride: int) -> Split | None:
    """Cut ``model`` at ``stride`` (see :class:`Split`); None if nothing normalised lies inside or
    the inner part is not a clean middle section (its inputs come from outside only by 4-D maps)."""
    g = model.graph
    norms = [n for n in g.node if n.op_type == "InstanceNormalization"]

    def data(names):
        return [t for t in names if t in tensors]

    inner = [n for n in g.node if data(n.input)
             and all(tensors[t].stride >= stride for t in data(n.input))
             and all(tensors[t].stride >= stride for t in data(n.output))]
    inner_ids = {id(n) for n in inner}
    made = {o for n in inner for o in n.output}
    ins = sorted({t for n in inner for t in data(n.input) if t not in made})
    outs = sorted({t for n in g.node if id(n) not in inner_ids for t in n.input if t in made}
                  | ({o.name for o in g.output} & made))
    inside = [k for k, n in enumerate(norms) if id(n) in inner_ids]
    if (not inside or not ins or not outs or any(o.name in made for o in g.output)
            or not all(t in tensors and tensors[t].exact and tensors[t].stride >= stride for t in ins + outs)):
        return None
    producer = {o: n for n in g.node for o in n.output}
    ancestors, stack = set(), list(ins)
    while stack:
        t = stack.pop()
        if t not in ancestors:
            ancestors.add(t)
            if t in producer:
                stack.extend(producer[t].input)
    outer = [k for k in range(len(norms)) if k not in inside]
    pre = [k for k in outer if norms[k].output[0] in ancestors]
    post = [k for k in outer if k not in pre]
    channels = {t: tensors[t].channels for t in ins + outs}
    fpp = sum(tensors[t].channels / tensors[t].stride ** 2 for t in ins + outs)
    return Split(stride, ins, outs, inside, pre, post, channels, fpp)


class Cut:
    """Where a model's graph is cut for tiling, and what its parts cost. Layers are numbered as
    :func:`translate.tiling.graph.norms.statistics_graph` numbers them: InstanceNormalization nodes
    in graph order.

    The cut is at the shallowest stride whose held maps stay within ``MAX_HELD`` float32 values per
    input pixel; without such a cut (e.g. a ResNet, whose normalised layers all sit at stride <= 4)
    ``split`` is None and every layer is outer. ``pre`` / ``post``: the outer layers before the cut
    (the maps at the cut depend on them) and after it.
    """

    def __init__(self, model_bytes: bytes, input_nc: int, probe_side: int):
        import onnx

        self.model = model = onnx.load_from_string(model_bytes)
        tensors = probe(model, input_nc, probe_side)
        self.macs = macs_per_pixel(model, tensors)
        self.total = sum(self.macs.values()) or 1.0
        self.split = None
        for stride in sorted({t.stride for t in tensors.values() if t.stride > 1}):
            split = find_split(model, tensors, stride)
            if split is not None and split.floats_per_pixel <= MAX_HELD:
                self.split = split
                break
        self.norm_inputs = [nd.input[0] for nd in model.graph.node if nd.op_type == "InstanceNormalization"]
        split = self.split
        inner = set(split.inner) if split else set()
        self.outer = [k for k in range(len(self.norm_inputs)) if k not in inner]
        self.inner = sorted(inner)
        self.pre = [k for k in self.outer if split and k in split.pre]
        self.post = [k for k in self.outer if k not in self.pre]
        self.held = list(split.outputs) if split else []
        self.output = model.graph.output[0].name
        self.producer = {o: nd for nd in model.graph.node for o in nd.output}

    def cost(self, names: Sequence[str]) -> float:
        """Network-equivalents per input pixel (Conv / ConvTranspose multiply-adds) of the tiled
        part that ``names`` need."""
        seen, stack, c = set(), list(names), 0.0
        while stack:
            t = stack.pop()
            if t in seen or t in self.held or t not in self.producer:
                continue
            seen.add(t)
            c += self.macs.get(t, 0.0)
            stack.extend(self.producer[t].input)
        return c / self.total

    def layer_cost(self, k: int) -> float:
        """What a pass measuring layer ``k`` costs: the graph up to its input."""
        return self.cost([self.norm_inputs[k]])
