"""The one score that judges a translator on its task, for choosing between checkpoints or versions.

In order of what a user judges: the class IoU of the outputs' class maps where the targets are class
maps of a known palette (:mod:`translate.class_maps`); else the Fréchet distance between the features
of outputs and targets where a feature network is given (realism of photos: the segmenter of
``translate train segmenter``, or any network trained on the data); else the L1 distance (the
training loss's scale). :class:`Score` says which was used and which way is better, so a caller
compares two scores without knowing the task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import imageio, metrics
from .class_maps import ConfusionMatrix, Palette
from .gan.metrics import fid_from_features

__all__ = ["Score", "task_score"]


@dataclass(frozen=True)
class Score:
    """A task score: its name (``mean_iou``, ``frechet_distance``, ``l1``), value and direction."""

    name: str
    value: float
    higher_is_better: bool

    def better_than(self, other: Score | None) -> bool:
        """Strictly better than ``other`` (None, a score of nothing yet, is beaten by any score)."""
        if other is None:
            return True
        if other.name != self.name:
            raise ValueError(f"cannot compare a {self.name} score with a {other.name} score")
        return self.value > other.value if self.higher_is_better else self.value < other.value


@torch.no_grad()
def task_score(outputs: torch.Tensor, targets: torch.Tensor, palette: Palette | None = None,
               features: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Score:
    """The task's score of ``outputs`` against ``targets`` (NCHW in [-1, 1], as training validates).

    ``palette``: class IoU over one confusion matrix (borders ignored; a target far from the palette
    is refused). ``features``: a network mapping images to (N, F) features; the Fréchet distance of
    the two sets (needs at least 2 of each). Neither: mean L1.
    """
    if outputs.shape != targets.shape or outputs.dim() != 4:
        raise ValueError(f"expected two NCHW tensors of the same shape, got {tuple(outputs.shape)} and "
                         f"{tuple(targets.shape)}")
    if palette is not None:
        matrix = ConfusionMatrix(len(palette), palette.names)
        for i, (out, tgt) in enumerate(zip(_uint8(outputs), _uint8(targets), strict=True)):
            matrix.update(out, tgt, palette, source=f"validation target {i}")
        return Score("mean_iou", matrix.scores()["mean_iou"], higher_is_better=True)
    if features is not None:
        return Score("frechet_distance", max(0.0, fid_from_features(features(targets), features(outputs))),
                     higher_is_better=False)
    return Score("l1", float(metrics.l1(outputs, targets).mean()), higher_is_better=False)


def _uint8(images: torch.Tensor) -> list:
    if images.shape[1] != 3:
        raise ValueError(f"class maps are RGB images, got {images.shape[1]} channels")
    return list(imageio.tensor_to_array(images))
