"""Latent codes as a user gives them to a multimodal model (``--z``), and the names of its several outputs.

A code is comma-separated numbers (``0.5,-1,0,...``: one code) or a ``.npy`` file of one code
(``latent_size``,) or several (K, ``latent_size``), one output each. Whether the size fits the model is the
predictor's to say (:meth:`translate.predictor.Predictor.codes`), which knows the model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError


def read_codes(value: str) -> np.ndarray:
    """The codes (K, n) float32 of ``value``: comma-separated numbers, or a ``.npy`` file of shape (n,) or (K, n);
    a ConfigError on field ``z`` for anything else."""
    if value.endswith(".npy"):
        try:
            z = np.load(value, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError("z", f"{value}: not a readable .npy file of numbers ({e})") from None
        if z.ndim not in (1, 2) or not np.issubdtype(z.dtype, np.number):
            raise ConfigError("z", f"{value}: expected numbers of shape (n,) or (K, n), got {z.dtype} {z.shape}")
    else:
        try:
            z = np.array([float(v) for v in value.split(",")])
        except ValueError:
            raise ConfigError("z", f"expected comma-separated numbers or a .npy file, got {value!r}") from None
    z = np.atleast_2d(z).astype(np.float32)
    if not np.isfinite(z).all():
        raise ConfigError("z", f"{value}: the code holds a value that is not a finite number")
    return z


def sample_paths(path: Any, samples: int) -> list:
    """Where the outputs of one input go: ``path`` itself for one, ``NAME_0.png``, ``NAME_1.png``... for several."""
    p = path if hasattr(path, "parent") else Path(path)  # a Path, or an object's (translate.object_storage)
    return [p] if samples == 1 else [p.parent / f"{p.stem}_{i}{p.suffix}" for i in range(samples)]
