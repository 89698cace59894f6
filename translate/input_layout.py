"""The layout of an exported translator's image input: float NCHW in [-1, 1] (the default), or uint8 NHWC.

A model of layout ``uint8-nhwc`` takes decoded pixels as they come (uint8, N x H x W x C) and does the
transpose and the normalisation (``x / 127.5 - 1``, as :func:`translate.imageio.to_network`) in its own graph:
a GPU replica copies a quarter of the bytes to the device and spends no CPU on the conversion.
:func:`to_uint8_nhwc` wraps a float model's graph in those nodes; :func:`to_float_nchw` takes them off again
(the tiled runner rewrites the float graph). The model's metadata names its layout (``translate.input_layout``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConfigError, ModelError

FLOAT_NCHW = "float-nchw"
UINT8_NHWC = "uint8-nhwc"
INPUT_LAYOUTS = (FLOAT_NCHW, UINT8_NHWC)
#: every node and tensor the wrapper adds is named with this prefix, so that it can be found and taken off
PREFIX = "uint8_nhwc_input/"


def layout_of(metadata: dict[str, Any]) -> str:
    """The input layout a model's decoded metadata names (models exported before there was a choice: float)."""
    layout = metadata.get("input_layout", FLOAT_NCHW)
    if layout not in INPUT_LAYOUTS:
        raise ModelError(f"the model's input layout {layout!r} is unknown here (known: {', '.join(INPUT_LAYOUTS)})")
    return layout


def check_layout(layout: str) -> str:
    if layout not in INPUT_LAYOUTS:
        raise ConfigError("input", f"must be one of {', '.join(INPUT_LAYOUTS)}, got {layout!r}")
    return layout


def to_uint8_nhwc(model_bytes: bytes, input_name: str = "input") -> bytes:
    """A float-NCHW model whose ``input_name`` takes uint8 NHWC instead (transpose, cast, / 127.5, - 1 in front)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    old = next((i for i in graph.input if i.name == input_name), None)
    if old is None:
        raise ModelError(f"the model has no input {input_name!r} to take uint8 NHWC")
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelError(f"input {input_name!r} has {len(dims)} dimensions, not NCHW")
    inner = PREFIX + "normalised"
    for node in graph.node:
        node.input[:] = [inner if name == input_name else name for name in node.input]
    n, c, h, w = dims
    new = helper.make_tensor_value_info(input_name, TensorProto.UINT8, [n, h, w, c])
    graph.input.remove(old)
    graph.input.insert(0, new)
    graph.initializer.extend([numpy_helper.from_array(np.array(127.5, np.float32), PREFIX + "scale"),
                              numpy_helper.from_array(np.array(1.0, np.float32), PREFIX + "one")])
    prefix = [
        helper.make_node("Transpose", [input_name], [PREFIX + "nchw"], name=PREFIX + "transpose", perm=[0, 3, 1, 2]),
        helper.make_node("Cast", [PREFIX + "nchw"], [PREFIX + "float"], name=PREFIX + "cast", to=TensorProto.FLOAT),
        helper.make_node("Div", [PREFIX + "float", PREFIX + "scale"], [PREFIX + "scaled"], name=PREFIX + "div"),
        helper.make_node("Sub", [PREFIX + "scaled", PREFIX + "one"], [inner], name=PREFIX + "sub"),
    ]
    nodes = prefix + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString()


def to_float_nchw(model_bytes: bytes, input_name: str = "input") -> bytes:
    """The inverse of :func:`to_uint8_nhwc`: the wrapper's nodes taken off, ``input_name`` float NCHW again."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    old = next((i for i in graph.input if i.name == input_name), None)
    if old is None or not any(node.name.startswith(PREFIX) for node in graph.node):
        raise ModelError(f"the model's input {input_name!r} is not a uint8 NHWC wrapper")
    n, h, w, c = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    kept = [node for node in graph.node if not node.name.startswith(PREFIX)]
    for node in kept:
        node.input[:] = [input_name if name == PREFIX + "normalised" else name for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)
    inits = [t for t in graph.initializer if not t.name.startswith(PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    graph.input.remove(old)
    graph.input.insert(0, helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [n, c, h, w]))
    return model.SerializeToString()
