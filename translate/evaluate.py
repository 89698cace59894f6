"""Evaluate a translation model on paired data: per-image and mean L1, PSNR, SSIM."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from . import data as tdata
from . import imageio, metrics
from .errors import ImageError
from .predictor import Predictor


def evaluate(predictor: Predictor, root: str | os.PathLike, split: str = "test", direction: str | None = None,
             limit: int = 0, progress: bool = True) -> dict[str, Any]:
    """Translate every input of ``split`` at its own size and score it against its target.

    L1 is on the [-1, 1] scale (as the training loss); PSNR (dB, capped at 100) and SSIM on
    [0, 1] images, both from torchmetrics. Unreadable pairs are listed under ``skipped``.
    """
    from tqdm.auto import tqdm

    direction = direction or predictor.metadata.get("direction", "AtoB")
    sources = tdata.find_pairs(root, split)
    if limit:
        sources = sources[:limit]
    acc = metrics.MeanMetrics()
    names, skipped = [], []
    for src in tqdm(sources, desc=f"evaluate {split}", disable=not progress, unit="img"):
        try:
            a, b = tdata.load_pair(src, direction, predictor.input_nc, predictor.output_nc)
        except ImageError as e:
            skipped.append({"path": e.source, "reason": e.reason})
            continue
        if b.size != a.size:
            b = b.resize(a.size, Image.Resampling.BICUBIC)
        out = predictor.translate_array(imageio.image_to_array(a))
        fake = imageio.image_to_tensor(out if out.ndim == 3 else out[:, :, None])[None]
        real = imageio.image_to_tensor(b)[None]
        acc.update(fake, real)
        names.append(src.name)
    if not names:
        raise ImageError(str(root), f"no readable pairs in split '{split}'")
    per_image = [{"name": n, **{k: _num(v) for k, v in m.items()}} for n, m in zip(names, acc.per_image, strict=True)]
    return {"count": len(names), "split": split, "direction": direction,
            **{k: _num(v) for k, v in acc.compute().items()}, "skipped": skipped, "per_image": per_image}


def _num(v) -> float:
    return round(float(np.asarray(v)), 6)
