"""The backbone library: networks, losses, data, image I/O, ONNX export and the predictor.

Quick use::

    import translate
    predictor = translate.load("runs/pix2pix-maps-001")   # .onnx, run directory or checkpoint
    photo_out = predictor(PIL.Image.open("aerial.png"))   # PIL in, PIL out (same size)
"""
from __future__ import annotations

__version__ = "0.1.0"


def load(path, device: str = "auto", direction: str | None = None, threads: int = 0, runtime=None):
    """Load a model for prediction; see :func:`translate.loading.load`."""
    from .loading import load as _load  # lazy: numpy and ONNX Runtime on first use, not on `import translate`

    return _load(path, device=device, direction=direction, threads=threads, runtime=runtime)


__all__ = ["load", "__version__"]
