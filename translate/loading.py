"""From whatever model a user names to a :class:`~translate.predictor.Predictor`.

A model may be an ONNX file, a run directory (its exported model when current, else its latest
checkpoint), a training checkpoint or a reference ``latest_net_G.pth``. PyTorch models are exported
in memory first (:mod:`translate.export`), so every path runs the same ONNX graph and gives the
same pixels. This module sits above both the predictor and the exporter.
"""
from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import resolve_model_path
from .errors import ModelError
from .kinds import kind
from .object_storage import is_url, read_bytes
from .predictor import Predictor, RuntimeOptions
from .tiling import TileConfig


def model_source(path: str | os.PathLike, direction: str | None = None) -> Path | bytes:
    """The ONNX model behind an ONNX file (also one in object storage: ``s3://.../model.onnx``), a run directory or a
    checkpoint (ours or the reference's): a path to an .onnx file, or the bytes of an ONNX model (downloaded, or the
    in-memory export of a PyTorch generator)."""
    if is_url(path) and str(path).endswith(".onnx"):
        try:
            return read_bytes(str(path))
        except FileNotFoundError:
            raise ModelError(f"{path}: no such object") from None
    path = Path(path)
    if path.is_dir() and direction and (path / f"{direction}.onnx").exists():
        return path / f"{direction}.onnx"
    p = resolve_model_path(path)
    if p.suffix == ".onnx":
        return p
    from .generators import load_generator  # lazy: torch (an ONNX file needs none)

    G, meta = load_generator(p, direction)
    if not kind(meta["kind"]).translates:
        raise kind(meta["kind"]).refusal(path, "the predictor")
    return kind(meta["kind"]).call("export")(G, meta, check=False)[0]


def load(path: str | os.PathLike, device: str = "auto", direction: str | None = None, threads: int = 0,
         tiling: TileConfig | None = None, runtime: RuntimeOptions | None = None) -> Predictor:
    """A :class:`Predictor` from an ONNX file, a run directory or a checkpoint (ours or the reference's).

    Non-ONNX models are exported in memory first, so every path computes the same graph.
    """
    return Predictor(model_source(path, direction), device=device, threads=threads, tiling=tiling, runtime=runtime)
