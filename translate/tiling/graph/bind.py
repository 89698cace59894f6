"""A graph input fixed to a constant: a multimodal model's latent code made part of the graph, so the
tiled runner, which feeds a graph one image input, runs every tile of one sample with the same code."""
from __future__ import annotations

import numpy as np


def bind_input(model_bytes: bytes, name: str, value: np.ndarray) -> bytes:
    """``model_bytes`` with its input ``name`` replaced by the constant ``value`` (an initializer)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    kept = [i for i in model.graph.input if i.name != name]
    if len(kept) == len(model.graph.input):
        raise ValueError(f"the graph has no input {name!r}")
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return model.SerializeToString()
