"""The metadata an exported model carries (ONNX ``metadata_props``), written and read in one place.

Every key is ``translate.<name>`` and every value JSON (plain strings stay strings), so the
predictor, the service and ``translate models list`` read what export wrote: the normalisation,
the size multiple, channels, the test-time policy, the training config, the tiling mode.
It imports ``onnx`` only when writing or reading a model.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

from .errors import ModelError

META_PREFIX = "translate."
OPSET = 17
TOLERANCE = 1e-3  # max abs difference on [-1, 1] outputs between PyTorch and ONNX Runtime


def encode_metadata(props: Mapping[str, Any]) -> dict[str, str]:
    """``{name: value}`` -> ``{"translate.name": JSON or the string itself}``."""
    return {META_PREFIX + k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in props.items()}


def decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """The inverse of :func:`encode_metadata` over a model's metadata map (other keys ignored)."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if k.startswith(META_PREFIX):
            try:
                out[k[len(META_PREFIX):]] = json.loads(v)
            except ValueError:
                out[k[len(META_PREFIX):]] = v
    return out


def add_metadata(model_bytes: bytes, props: Mapping[str, str]) -> bytes:
    """The serialised model with its metadata replaced by ``props`` (already encoded)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model.SerializeToString()


def read_metadata(model: str | os.PathLike | bytes) -> dict[str, Any]:
    """The decoded metadata of a serialised model or an .onnx file, without starting a runtime (a tool
    that must know a model's kind before running it, such as the model store, reads it here)."""
    import onnx

    source = "model" if isinstance(model, bytes) else os.fspath(model)
    try:
        proto = (onnx.load_from_string(model) if isinstance(model, bytes)
                 else onnx.load(os.fspath(model), load_external_data=False))
    except Exception as e:  # onnx raises protobuf's DecodeError, OSError or its own errors
        raise ModelError(f"{source}: not a readable ONNX model ({e.__class__.__name__}: {e})") from None
    return decode_metadata({p.key: p.value for p in proto.metadata_props})
