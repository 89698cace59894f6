"""The segmenter of the FCN-score protocol (pix2pix paper, section 4.2): a U-Net trained on a data set's
real photos to recognise the classes of their label maps (``translate train segmenter``). A translation
into photos is scored by what the segmenter recognises in it, beside what it recognises in the real
photos (the ceiling); its pooled features give a Fréchet distance that needs no downloaded network.

The network is ``networks.define_G`` with one output channel per palette class; its tanh output
times :data:`LOGIT_SCALE` are the class logits (cross-entropy in training, argmax here). It is
checkpointed and exported as the ``"segmenter"`` kind (:mod:`translate.kinds`), which carries its
palette and which side of the pairs is the photo; the predictor and the service refuse it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from .class_maps import Palette
from .errors import ModelError
from .generators import generator_kind, load_generator
from .imageio import to_network
from .networks import UnetGenerator
from .padding import crop_padding, pad_to_multiple

__all__ = ["LOGIT_SCALE", "Segmenter", "load_segmenter", "segmenter_extra"]

LOGIT_SCALE = 8.0  # tanh outputs in [-1, 1] times this: logits that let cross-entropy approach 0


def segmenter_extra(palette: Palette, photo_side: str) -> dict[str, Any]:
    """What a segmenter's checkpoint spec carries besides the network: its classes and its photo side."""
    return {"palette": palette.to_json(), "photo_side": photo_side}


@dataclass
class Segmenter:
    """A trained segmenter in its test-time form: ``labels`` and ``features`` of uint8 HxWx3 photos."""

    net: nn.Module
    palette: Palette
    photo_side: str  # "A" or "B": the side of the pairs it was trained to read
    source: str
    device: torch.device = torch.device("cpu")

    @torch.no_grad()
    def _run(self, image: np.ndarray, features: bool) -> np.ndarray:
        x, pads = pad_to_multiple(to_network(image), getattr(self.net, "size_multiple", 1))
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        if features:  # the U-Net's last maps before its output layer, averaged over the image
            outer = cast(UnetGenerator, self.net).model.model  # the outermost block: [down, inner, ReLU, up, tanh]
            return outer[:3](t).mean(dim=(2, 3))[0].double().cpu().numpy()
        return crop_padding(self.net(t).argmax(dim=1).cpu().numpy(), pads)[0]

    def labels(self, image: np.ndarray) -> np.ndarray:
        """(H, W) int64: the class the segmenter sees at each pixel of an H x W x 3 uint8 photo."""
        return self._run(image, features=False).astype(np.int64)

    def features(self, image: np.ndarray) -> np.ndarray:
        """(F,) float64: the photo's pooled features, for a Fréchet distance."""
        return self._run(image, features=True)

    def check_palette(self, palette: Palette, source: str | os.PathLike) -> None:
        """A ModelError when a data set's palette (from ``source``) has other classes than this segmenter's."""
        if palette.names != self.palette.names or not np.array_equal(palette.colours, self.palette.colours):
            raise ModelError(f"{self.source}: a segmenter trained for the classes {list(self.palette.names)}, but "
                             f"{source} has {list(palette.names)}; train one on this data "
                             "(translate train segmenter --data DIR)")


def load_segmenter(path: str | os.PathLike, device: str | torch.device = "cpu") -> Segmenter:
    """The segmenter of a run directory or checkpoint; a ModelError naming the file for any other model."""
    found = generator_kind(path)
    if found != "segmenter":
        what = "an ONNX model" if found == "onnx" else f"a {found} model"
        raise ModelError(f"{path}: {what}, not a segmenter; give the run directory or checkpoint of "
                         "`translate train segmenter --data DIR`")
    net, meta = load_generator(path)
    device = torch.device(device)
    return Segmenter(net.to(device), Palette.from_json(meta["palette"], str(path)), meta["photo_side"], str(path),
                     device)
