"""Evaluate a translation model on paired data: per-image and mean L1, PSNR, SSIM, and the scores that
judge what a user judges where the data allows them:

* ``class_map``: where the targets are class maps (a palette given, shipped beside the data as
  ``palette.json`` for the target side, or found from the training targets), pixel accuracy, mean class
  accuracy and class IoU over one confusion matrix (translate/class_maps.py);
* ``fcn_score``: with a segmenter (translate/segmenter.py) for a model that turns label maps into
  photos, the same three numbers of what the segmenter recognises in the translations, beside those of
  the real photos (the ceiling);
* ``frechet``: the Fréchet distance of the segmenter's features between translations of one half of
  the split and the real photos of the other, beside that of the real photos of the two halves: the
  figure a perfect translator gets, so a user sees the noise of the sample count.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import data as tdata
from . import imageio, metrics
from .class_maps import (
    PALETTE_FILE,
    ConfusionMatrix,
    Palette,
    find_palette,
    label_map,
    load_palette,
    palette_beside,
)
from .errors import ConfigError, ImageError
from .gan.metrics import fid_from_features
from .predictor import Predictor
from .segmenter import Segmenter

_PALETTE_SAMPLE = 64  # training targets read to find a palette (--palette auto)


def evaluate(predictor: Predictor, root: str | os.PathLike, split: str = "test", direction: str | None = None,
             limit: int = 0, progress: bool = True, palette: str | None = None,
             segmenter: Segmenter | None = None) -> dict[str, Any]:
    """Translate every input of ``split`` at its own size and score it against its target.

    L1 is on the [-1, 1] scale (as the training loss); PSNR (dB, capped at 100) and SSIM on
    [0, 1] images, both from torchmetrics. Unreadable pairs are listed under ``skipped``.
    ``palette``: a palette file, ``"auto"``, or None for the data's ``palette.json`` when it describes
    the target side (see :func:`find_target_palette`). ``segmenter``: the FCN score and Fréchet distance.
    """
    from tqdm.auto import tqdm

    direction = direction or predictor.metadata.get("direction", "AtoB")
    in_side, out_side = direction[0], direction[-1]
    classes = find_target_palette(palette, root, direction, predictor.input_nc, predictor.output_nc)
    if classes is not None and predictor.output_nc != 3:
        raise ConfigError("--palette", f"class maps are RGB images; this model outputs {predictor.output_nc} channel")
    fcn = _FcnScore(segmenter, root, in_side, out_side) if segmenter is not None else None
    sources = tdata.find_pairs(root, split)
    if limit:
        sources = sources[:limit]
    acc = metrics.MeanMetrics()
    matrix = ConfusionMatrix(len(classes), classes.names) if classes is not None else None
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
        if matrix is not None and classes is not None:
            matrix.update(out, np.asarray(b), classes, source=f"{src} (side {out_side})")
        if fcn is not None:
            fcn.update(src, np.asarray(a), out, np.asarray(b))
        names.append(src.name)
    if not names:
        raise ImageError(str(root), f"no readable pairs in split '{split}'")
    per_image = [{"name": n, **{k: _num(v) for k, v in m.items()}} for n, m in zip(names, acc.per_image, strict=True)]
    result: dict[str, Any] = {"count": len(names), "split": split, "direction": direction,
                              **{k: _num(v) for k, v in acc.compute().items()}}
    if matrix is not None and classes is not None:
        result["class_map"] = {"palette": list(classes.names), **_scores(matrix)}
    if fcn is not None:
        result.update(fcn.result())
    return {**result, "skipped": skipped, "per_image": per_image}


def find_target_palette(spec: str | None, root: str | os.PathLike, direction: str, input_nc: int = 3,
                        output_nc: int = 3) -> Palette | None:
    """The palette the targets are scored with: ``spec`` a file, ``"auto"`` (found from the training targets,
    else those of the test split), or None: the data's ``palette.json`` when it says the target side
    (``direction``'s second letter) holds the class maps, else no class-map scores."""
    if spec and spec != "auto":
        return load_palette(spec)
    if not spec:
        shipped = palette_beside(root)
        return shipped if shipped is not None and shipped.side == direction[-1] else None
    split = "train" if tdata.has_split(root, "train") else "test"
    targets = (np.asarray(tdata.load_pair(src, direction, input_nc, output_nc)[1])
               for src in tdata.find_pairs(root, split)[:_PALETTE_SAMPLE])
    return find_palette(targets)


class _FcnScore:
    """The FCN score and Fréchet distance of one evaluation (see the module's docstring)."""

    def __init__(self, segmenter: Segmenter, root: str | os.PathLike, in_side: str, out_side: str):
        if segmenter.photo_side != out_side:
            raise ConfigError("--segmenter", f"{segmenter.source} reads the photos of side {segmenter.photo_side}, "
                              f"but the model outputs side {out_side}: the FCN score needs a model that turns label "
                              f"maps into photos (--direction {in_side}to{out_side} the other way, or a segmenter "
                              f"trained with --direction {out_side}to{in_side})")
        shipped = palette_beside(root)
        if shipped is not None:
            segmenter.check_palette(shipped, Path(root) / PALETTE_FILE)
        self.segmenter, self.in_side = segmenter, in_side
        k = len(segmenter.palette)
        self.translated = ConfusionMatrix(k, segmenter.palette.names)
        self.real = ConfusionMatrix(k, segmenter.palette.names)
        self.features: dict[str, list[np.ndarray]] = {"translated": [], "real": []}

    def update(self, src: tdata.PairSource, labels_rgb: np.ndarray, out: np.ndarray, photo: np.ndarray) -> None:
        s = self.segmenter
        truth = label_map(labels_rgb, s.palette, f"{src} (side {self.in_side})",
                          advice=f"--segmenter needs a data set of photos and their label maps of its classes "
                                 f"({s.source} was trained on {s.palette.side or 'such'} label maps)")
        self.translated.update_labels(s.labels(out), truth)
        self.real.update_labels(s.labels(photo), truth)
        self.features["translated"].append(s.features(out))
        self.features["real"].append(s.features(photo))

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fcn_score": {"segmenter": self.segmenter.source,
                                             "translated": _scores(self.translated), "real": _scores(self.real)}}
        fake, real = (torch.from_numpy(np.stack(self.features[k])) for k in ("translated", "real"))
        half = len(real) // 2
        frechet: dict[str, Any] = {"features": f"segmenter {self.segmenter.source}", "count": half}
        if half < 2:
            frechet["note"] = "needs at least 4 pairs (two halves of 2)"
        else:  # translations of one half against the real photos of the other; the real halves for the noise
            frechet["translated"] = _num(max(0.0, fid_from_features(real[half:2 * half], fake[:half])))
            frechet["real_vs_real"] = _num(max(0.0, fid_from_features(real[half:2 * half], real[:half])))
        out["frechet"] = frechet
        return out


def evaluate_segmenter(segmenter: Segmenter, root: str | os.PathLike, split: str = "test", limit: int = 0,
                       progress: bool = True) -> dict[str, Any]:
    """What a segmenter recognises in the real photos of ``split``: the ceiling of the FCN scores it gives."""
    from tqdm.auto import tqdm

    s = segmenter
    direction = f"{s.photo_side}to{'B' if s.photo_side == 'A' else 'A'}"
    shipped = palette_beside(root)
    if shipped is not None:
        s.check_palette(shipped, Path(root) / PALETTE_FILE)
    sources = tdata.find_pairs(root, split)[:limit or None]
    matrix = ConfusionMatrix(len(s.palette), s.palette.names)
    for src in tqdm(sources, desc=f"evaluate {split}", disable=not progress, unit="img"):
        photo, labels = tdata.load_pair(src, direction, 3, 3)
        truth = label_map(np.asarray(labels), s.palette, f"{src} (side {direction[-1]})",
                          advice="the segmenter needs a data set of photos and their label maps of its classes")
        matrix.update_labels(s.labels(np.asarray(photo)), truth)
    if not sources:
        raise ImageError(str(root), f"no pairs in split '{split}'")
    return {"count": len(sources), "split": split, "segmenter": s.source, **_scores(matrix)}


def summary_table(result: dict[str, Any]) -> str:
    """A short table of an evaluation's scores (its JSON has them all)."""
    lines = [f"{result.get('count')} pairs of {result.get('split')}"]
    if "l1" in result:
        lines.append(f"L1 {result['l1']:.4f}   PSNR {result['psnr']:.2f} dB   SSIM {result['ssim']:.4f}")
    rows = []
    if "pixel_accuracy" in result:
        rows.append(("segmenter on real photos", result))
    if "class_map" in result:
        rows.append(("class map of the outputs", result["class_map"]))
    if "fcn_score" in result:
        rows += [("FCN score, translations", result["fcn_score"]["translated"]),
                 ("FCN score, real photos (ceiling)", result["fcn_score"]["real"])]
    if rows:
        lines.append(f"{'':34}{'pixel acc':>10}{'class acc':>10}{'mean IoU':>10}")
        lines += [f"{name:34}{r['pixel_accuracy']:>10.3f}{r['mean_class_accuracy']:>10.3f}{r['mean_iou']:>10.3f}"
                  for name, r in rows]
    f = result.get("frechet")
    if f and "translated" in f:
        lines.append(f"Frechet distance ({f['features']}, {f['count']} vs {f['count']} images): translations "
                     f"{f['translated']:.3f}, real vs real {f['real_vs_real']:.3f}")
    return "\n".join(lines)


def _scores(matrix: ConfusionMatrix) -> dict[str, Any]:
    s = matrix.scores()
    return {**{k: _num(s[k]) for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou")},
            "class_iou": {k: (None if v is None else _num(v)) for k, v in s["class_iou"].items()}}


def _num(v) -> float:
    return round(float(np.asarray(v)), 6)
