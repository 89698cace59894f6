"""The networks that judge translations in the quality benchmarks, trained on the built-in sets (nothing is
downloaded): for photos, the FCN-score protocol's segmenter (``translate train segmenter``) and its pooled
features, whose Fréchet distance is the realism score of issue 21 (translate/task_score.py).

The sketches set ships no label maps; its segmenter learns the sketch's classes (ink, paper, the grey of
the strokes' edges, found from the training sketches: ``--palette auto``) from the photos, so its features
are those of a network that has learned where an object's outline and detail lines lie in a photo. Trained
once per work folder and reused by every run that is scored with it (same judge for every variant).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

#: steps of the sketches segmenter (about 2 CPU-minutes at 128 px on 2 cores)
SEGMENTER_STEPS = 300


def photo_judge(data: Path, work: Path, steps: int = SEGMENTER_STEPS, direction: str = "BtoA"
                ) -> Callable:
    """``features(images)`` for a Fréchet distance of ``data``'s photos: NCHW in [-1, 1] -> (N, F) float64, by the
    segmenter trained (once, under ``work``) on ``data``'s photos (``direction``: BtoA when B is the photo)."""
    import numpy as np
    import torch

    from training.config import SegmenterConfig  # lazy: torch
    from training.loop import Trainer  # lazy: torch
    from training.segmenter import Segmenter  # lazy: torch
    from translate import imageio  # lazy: torch
    from translate.segmenter import load_segmenter  # lazy: torch

    out = work / f"judge-{data.name}-{steps}"
    if not (out / "checkpoints" / "latest.pt").exists():
        config = SegmenterConfig(data=str(data), out=str(out), direction=direction, palette="auto", steps=steps,
                                 size=128, netG="unet_128", workers=0, progress=False, export=False, seed=0,
                                 val_every=0, sample_every=10**9, checkpoint_every=10**9)
        Trainer(Segmenter, config).fit()
    segmenter = load_segmenter(out)

    def features(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.stack([segmenter.features(a) for a in imageio.tensor_to_array(images)]))

    return features
