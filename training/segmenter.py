"""The segmenter of the FCN-score protocol (``translate train segmenter``): a U-Net learns, from a data
set's real photos and their label maps, the class of each pixel (per-pixel cross-entropy over the
palette's classes). ``translate evaluate MODEL --segmenter RUN`` then scores translations into photos by
what it recognises in them (translate/segmenter.py). Its validation is the class-map scores of its own
predictions on the validation pairs.

The palette: ``--palette FILE``, else the data set's ``palette.json``, else found from the training
label maps (``--palette auto``). A palette the data set names is checked against its first label maps,
so a wrong ``--direction`` (a photo taken for the labels) stops the run before step one.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from translate import data as tdata
from translate.checkpoint import GeneratorSpec
from translate.class_maps import (
    MAX_FAR_SHARE,
    ConfusionMatrix,
    Palette,
    far_share,
    find_palette,
    load_palette,
    palette_beside,
)
from translate.errors import ConfigError
from translate.networks import to_inference
from translate.segmenter import LOGIT_SCALE, segmenter_extra

from .config import SegmenterConfig, resolved
from .method_base import Method
from .translation_data import paired_sets, paired_split
from .translation_networks import generator, in_layout

_PALETTE_SAMPLE = 64  # training label maps read to find or check the palette


def _label_maps(c: SegmenterConfig, count: int) -> list[tuple[str, np.ndarray]]:
    """(file, label map as uint8 HxWx3) of the first ``count`` training pairs."""
    out = []
    for src in paired_split(c)[0][:count]:
        _, labels = tdata.load_pair(src, c.direction, c.input_nc, 3)
        out.append((str(src), np.asarray(labels, np.uint8)))
    return out


def resolve_palette(c: SegmenterConfig) -> Palette:
    """The run's palette (see the module's docstring); a ConfigError naming the file that does not fit."""
    label_side = "B" if c.direction == "AtoB" else "A"
    if c.palette == "auto" or (not c.palette and palette_beside(c.data) is None):
        found = find_palette(m for _, m in _label_maps(c, _PALETTE_SAMPLE))
        return Palette(found.colours, found.names, label_side)
    source = c.palette or f"{c.data}/palette.json"
    palette = load_palette(source)
    if palette.side is not None and palette.side != label_side:
        raise ConfigError("direction", f"{source} says side {palette.side} holds the label maps, so the photo is side "
                          f"{'A' if palette.side == 'B' else 'B'}: pass --direction "
                          f"{'AtoB' if palette.side == 'B' else 'BtoA'}")
    for name, labels in _label_maps(c, 4):
        share = far_share(labels, palette)
        if share > MAX_FAR_SHARE:
            raise ConfigError(name, f"side {label_side} is no label map of {source}: {share:.0%} of its pixels are far "
                              "from every class colour; check --direction, or give the palette of this data "
                              "(--palette FILE, or --palette auto)")
    return Palette(palette.colours, palette.names, label_side)


class Segmenter(Method):
    """Segmenter: photos -> the classes of their label maps, the judge of `translate evaluate --segmenter`."""

    name = "segmenter"
    config_class = SegmenterConfig
    config: SegmenterConfig
    exact_settings = dict(norm="instance", amp=False)

    def __init__(self, config: SegmenterConfig, device: torch.device):
        super().__init__(config, device)
        c = config
        self.palette = resolve_palette(c)
        self.arch, self.S = generator(c, output_nc=len(self.palette))
        self.place({"S": self.S}, channels_last=resolved(c.channels_last))
        self.optimizers = {"S": torch.optim.Adam(self.S.parameters(), lr=c.lr, fused=True)}
        self.colours = torch.tensor(self.palette.colours, dtype=torch.float32, device=device) / 127.5 - 1

    @classmethod
    def tiny_config(cls, data: str, out: str, **overrides) -> SegmenterConfig:
        return SegmenterConfig(**{**dict(data=str(data), out=str(out), size=32, load_size=36, netG="unet_32", ngf=4,
                                         batch_size=2, steps=6, workers=0, progress=False, export=False), **overrides})

    def datasets(self):
        return paired_sets(self.config)

    def classes(self, label_maps: torch.Tensor) -> torch.Tensor:
        """(N, H, W) class indices of label maps (NCHW in [-1, 1]): the nearest palette colour of each pixel."""
        d = ((label_maps.float()[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(dim=2)
        return d.argmin(dim=1)

    def step(self, batch: dict) -> dict[str, float]:
        photos, label_maps = in_layout(self.config, batch["A"], batch["B"])
        opt = self.optimizers["S"]
        opt.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.S(photos) * LOGIT_SCALE
        loss = F.cross_entropy(logits.float(), self.classes(label_maps))
        loss.backward()
        opt.step()
        return {"cross_entropy": loss.item()}

    def generators(self) -> dict[str, GeneratorSpec]:
        c = self.config
        photo_side = c.direction[0]
        return {c.direction: GeneratorSpec(network="S", arch=self.arch, batch_stats=c.batch_stats, direction=c.direction,
                                           method=self.name, kind="segmenter",
                                           extra={**segmenter_extra(self.palette, photo_side), "train_size": c.size,
                                                  "data": c.data})}

    def eval_generators(self):
        return {self.config.direction: to_inference(self.S, batch_stats=self.config.batch_stats)}

    @torch.no_grad()
    def validate(self, val_set, max_images: int) -> dict[str, float]:
        """Pixel accuracy, mean class accuracy and mean IoU of its predictions on the validation pairs."""
        S = self.eval_generators()[self.config.direction]
        matrix = ConfusionMatrix(len(self.palette), self.palette.names)
        for batch in self.validation_batches(val_set, max_images):
            predicted, target = S(batch["A"]).argmax(dim=1).cpu().numpy(), self.classes(batch["B"]).cpu().numpy()
            for p, t in zip(predicted, target, strict=True):
                matrix.update_labels(p, t)
        scores = matrix.scores()
        return {k: scores[k] for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou")}

    def sample_columns(self, batch, gens):
        predicted = gens[self.config.direction](batch["A"]).argmax(dim=1)
        return [batch["A"], self.colours[predicted].permute(0, 3, 1, 2), batch["B"]]
