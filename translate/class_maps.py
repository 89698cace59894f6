"""Scores of colour-coded class maps (maps, facade labels, cityscapes-style labels): what a user judges
in a map is whether each place got its class, which L1 cannot say (a map painted in the mean colour
has a low L1).

A :class:`Palette` names the classes and their colours: read from a JSON file (:func:`load_palette`),
found from the training targets (:func:`find_palette`), or shipped with a built-in set
(``translate.datasets.maps.MAPS_PALETTE``). Each pixel of an output and of its target is snapped to
the nearest palette colour (:func:`snap`); pixels at class borders of the target are ignored
(:func:`border_mask`: antialiasing and outlines make them ambiguous, and a border one pixel off is no
error a user sees); one :class:`ConfusionMatrix` over a whole split gives per-pixel accuracy,
per-class accuracy and class IoU (the FCN-score numbers of the pix2pix paper).

A target far from every palette colour is not a label map of that palette (a photo, the wrong
palette, the wrong side of the pair): :meth:`ConfusionMatrix.update` refuses it, naming the file,
when more than :data:`MAX_FAR_SHARE` of its pixels are farther than :data:`FAR_DISTANCE` from every
colour. Only numpy: no torch on this path.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import ConfigError
from .files import write_text_atomic

__all__ = ["Palette", "PALETTE_FILE", "FAR_DISTANCE", "MAX_FAR_SHARE", "load_palette", "save_palette",
           "palette_beside", "find_palette", "snap", "far_share", "border_mask", "ConfusionMatrix"]

PALETTE_FILE = "palette.json"  # beside a data set's splits: where evaluate and training look for it
FAR_DISTANCE = 48.0  # RGB (0..255) Euclidean distance beyond which a pixel matches no palette colour
MAX_FAR_SHARE = 0.25  # share of a label image's pixels that may match no colour before it is refused
_FORMAT = ('JSON {"classes": [{"name": "road", "colour": [r, g, b]}, ...]} with r, g, b in 0..255 '
           '(optional "side": "A" or "B", the side of the pairs that is the class map)')


@dataclass(frozen=True, eq=False)
class Palette:
    """The classes of a label map: ``colours[k]`` (uint8 RGB) is the colour of class ``names[k]``."""

    colours: np.ndarray  # (K, 3) uint8
    names: tuple[str, ...]
    side: str | None = None  # "A" or "B": which side of a data set's pairs is the class map, where known

    def __post_init__(self) -> None:
        colours = np.asarray(self.colours)
        if colours.ndim != 2 or colours.shape[1] != 3 or len(colours) < 2 or colours.dtype != np.uint8:
            raise ValueError(f"a palette is a (K >= 2, 3) uint8 array, got {colours.dtype} {colours.shape}")
        if len(self.names) != len(colours):
            raise ValueError(f"{len(self.names)} names for {len(colours)} colours")
        if self.side not in (None, "A", "B"):
            raise ValueError(f"side must be 'A', 'B' or None, got {self.side!r}")
        colours = colours.copy()
        colours.setflags(write=False)
        object.__setattr__(self, "colours", colours)
        object.__setattr__(self, "names", tuple(self.names))

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Palette) and self.names == other.names and self.side == other.side
                and np.array_equal(self.colours, other.colours))

    def __hash__(self) -> int:
        return hash((self.names, self.colours.tobytes(), self.side))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"side": self.side} if self.side else {}
        return {**doc, "classes": [{"name": n, "colour": [int(v) for v in c]} for n, c in zip(self.names, self.colours, strict=True)]}

    @classmethod
    def from_json(cls, doc: Any, source: str = "palette") -> Palette:
        """The palette of a parsed JSON document; ConfigError naming ``source`` and the format otherwise."""
        try:
            classes = doc["classes"]
            if not isinstance(classes, list) or len(classes) < 2:
                raise ValueError("'classes' must be a list of at least 2 classes")
            names, colours = [], []
            for c in classes:
                colour = c["colour"]
                if (not isinstance(c["name"], str) or not isinstance(colour, list) or len(colour) != 3
                        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)):
                    raise ValueError(f"bad class {c!r}")
                names.append(c["name"])
                colours.append(colour)
            if len(set(names)) != len(names):
                raise ValueError("class names must differ")
            side = doc.get("side")
            if side not in (None, "A", "B"):
                raise ValueError(f"'side' must be \"A\" or \"B\", got {side!r}")
            return cls(np.array(colours, np.uint8), tuple(names), side)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(source, f"not a palette ({e.__class__.__name__}: {e}); expected {_FORMAT}") from None


def load_palette(path: str | os.PathLike) -> Palette:
    """The palette in a JSON file (see :data:`_FORMAT`); ConfigError naming the file if it does not parse."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(str(p), f"cannot read the palette ({e.strerror or e}); expected a file of {_FORMAT}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(str(p), f"not JSON ({e}); expected {_FORMAT}") from None
    return Palette.from_json(doc, str(p))


def save_palette(palette: Palette, path: str | os.PathLike) -> Path:
    p = Path(path)
    write_text_atomic(p, json.dumps(palette.to_json(), indent=1) + "\n")
    return p


def palette_beside(root: str | os.PathLike) -> Palette | None:
    """The palette a data set folder ships (``root/palette.json``), or None."""
    path = Path(root) / PALETTE_FILE
    return load_palette(path) if path.is_file() else None


def find_palette(images: Iterable[np.ndarray], max_classes: int = 12, min_share: float = 0.002) -> Palette:
    """The dominant colours of label maps (training targets): the most frequent exact colours, each at
    least :data:`FAR_DISTANCE` / 2 from those already taken (antialiased edges and compression make
    near copies of each class colour), and covering at least ``min_share`` of the pixels. Classes are
    named by their colour (``#rrggbb``), most frequent first."""
    counts: dict[int, int] = {}
    total = 0
    for image in images:
        packed = _pack(_rgb(image, "label image"))
        values, n = np.unique(packed, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + c
        total += packed.size
    if not total:
        raise ConfigError("palette", "no label images to find a palette from")
    taken: list[np.ndarray] = []
    for v, c in sorted(counts.items(), key=lambda kv: -kv[1]):
        if len(taken) == max_classes or c < min_share * total:
            break
        colour = np.array([(v >> 16) & 255, (v >> 8) & 255, v & 255], np.float64)
        if all(np.linalg.norm(colour - t) >= FAR_DISTANCE / 2 for t in taken):
            taken.append(colour)
    if len(taken) < 2:
        raise ConfigError("palette", "the label images have fewer than 2 dominant colours: they are not class maps "
                          "(give the palette with --palette FILE)")
    colours = np.array(taken, np.uint8)
    return Palette(colours, tuple("#%02x%02x%02x" % tuple(int(v) for v in c) for c in colours))


def _rgb(image: np.ndarray, source: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(source, f"a class map is an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}")
    return image


def _pack(image: np.ndarray) -> np.ndarray:
    i = image.astype(np.int32)
    return (i[..., 0] << 16) | (i[..., 1] << 8) | i[..., 2]


def _distances(image: np.ndarray, palette: Palette) -> np.ndarray:
    """(H, W, K) squared RGB distance of each pixel to each palette colour (int32)."""
    diff = image.astype(np.int32)[:, :, None, :] - palette.colours.astype(np.int32)[None, None]
    return np.einsum("hwkc,hwkc->hwk", diff, diff)


def snap(image: np.ndarray, palette: Palette) -> np.ndarray:
    """(H, W) int64: the index of the nearest palette colour of each pixel of an H x W x 3 uint8 image."""
    return _distances(_rgb(image, "image"), palette).argmin(axis=2).astype(np.int64)


def far_share(image: np.ndarray, palette: Palette) -> float:
    """The share of pixels farther than :data:`FAR_DISTANCE` from every palette colour."""
    nearest = _distances(_rgb(image, "image"), palette).min(axis=2)
    return float((nearest > FAR_DISTANCE ** 2).mean())


def border_mask(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """(H, W) bool: pixels with a pixel of another class within ``width`` (8-neighbourhood)."""
    labels = np.asarray(labels)
    mask = np.zeros(labels.shape, bool)
    if width <= 0:
        return mask
    padded = np.pad(labels, width, mode="edge")
    h, w = labels.shape
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            if dy or dx:
                mask |= padded[width + dy:width + dy + h, width + dx:width + dx + w] != labels
    return mask


class ConfusionMatrix:
    """Counts of (target class, predicted class) over many images; :meth:`scores` gives the numbers."""

    def __init__(self, num_classes: int, names: Iterable[str] | None = None) -> None:
        self.num_classes = int(num_classes)
        self._named = names is not None  # else the names of the first palette given to update
        self.names = tuple(names) if names is not None else tuple(str(k) for k in range(self.num_classes))
        if len(self.names) != self.num_classes:
            raise ValueError(f"{len(self.names)} names for {self.num_classes} classes")
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)  # [target, predicted]

    def update(self, pred_rgb: np.ndarray, target_rgb: np.ndarray, palette: Palette, ignore_border: int = 1,
               source: str | os.PathLike | None = None) -> None:
        """Add one image: output and target (H x W x 3 uint8), both snapped to ``palette``. A target with
        more than :data:`MAX_FAR_SHARE` of its pixels far from every palette colour is refused
        (ConfigError naming ``source``)."""
        name = str(source) if source is not None else "label image"
        pred_rgb, target_rgb = _rgb(pred_rgb, name), _rgb(target_rgb, name)
        if pred_rgb.shape != target_rgb.shape:
            raise ValueError(f"{name}: output {pred_rgb.shape} and target {target_rgb.shape} differ in size")
        if len(palette) != self.num_classes:
            raise ValueError(f"a palette of {len(palette)} classes for a matrix of {self.num_classes}")
        if not self._named:
            self.names, self._named = palette.names, True
        dist = _distances(target_rgb, palette)
        share = float((dist.min(axis=2) > FAR_DISTANCE ** 2).mean())
        if share > MAX_FAR_SHARE:
            raise ConfigError(name, f"{share:.0%} of its pixels are far from every colour of the palette (more than "
                              f"{MAX_FAR_SHARE:.0%}): not a label map of it; give this data's palette "
                              "(--palette FILE, or --palette auto to find it from the targets) or check --direction")
        target = dist.argmin(axis=2)
        self.update_labels(snap(pred_rgb, palette), target, ignore_border)

    def update_labels(self, pred: np.ndarray, target: np.ndarray, ignore_border: int = 1) -> None:
        """Add one image given as class indices (H x W each), e.g. a segmenter's prediction."""
        pred, target = np.asarray(pred, np.int64), np.asarray(target, np.int64)
        if pred.shape != target.shape:
            raise ValueError(f"predicted {pred.shape} and target {target.shape} labels differ in size")
        keep = ~border_mask(target, ignore_border)
        idx = target[keep] * self.num_classes + pred[keep]
        self.matrix += np.bincount(idx, minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)

    def scores(self) -> dict[str, Any]:
        """``pixel_accuracy``; ``mean_class_accuracy`` over the classes present in the targets;
        ``mean_iou`` over the classes present in targets or predictions; ``class_iou`` by name
        (None for a class seen in neither)."""
        m = self.matrix.astype(np.float64)
        total = m.sum()
        if total == 0:
            raise ValueError("no pixels scored: every pixel was a border, or nothing was added")
        hits, actual, predicted = np.diag(m), m.sum(axis=1), m.sum(axis=0)
        union = actual + predicted - hits
        present = actual > 0
        iou = np.divide(hits, union, out=np.zeros_like(hits), where=union > 0)
        return {
            "pixel_accuracy": float(hits.sum() / total),
            "mean_class_accuracy": float((hits[present] / actual[present]).mean()),
            "mean_iou": float(iou[union > 0].mean()),
            "class_iou": {n: (float(v) if u > 0 else None) for n, v, u in zip(self.names, iou, union, strict=True)},
        }
