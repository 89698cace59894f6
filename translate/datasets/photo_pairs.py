"""Paired data from a folder of plain photos: ``translate data pair KIND PHOTOS OUT``.

Every photo is B (cropped to a centred square and resized to ``size``); A is made from it by
one of the pairings in :data:`PAIRINGS`, so the model learns to undo it:

* ``edges``: a line drawing of the photo, black strokes on white, drawn like the A side of the
  built-in ``sketches`` set (sketch -> photo, as edges2shoes). The photo is smoothed by an
  edge-preserving (bilateral) filter, its lightness evened out by CLAHE, its edges found by
  XDoG (the extended difference of Gaussians, Winnemoeller et al. 2012), thinned to one-pixel
  lines, rid of specks and short scratches, and drawn again with a pen on a twice-supersampled
  canvas, as the sketches set draws its outlines;
* ``gray``: the photo in grey levels (colourisation);
* ``downscale``: the photo reduced ``factor`` times and enlarged back with bicubic
  interpolation (super-resolution);
* ``mask``: the photo with holes painted white: one or two boxes and one to three free-form
  brush strokes (inpainting).

The set is written like a built-in one (:mod:`.folder`): ``OUT/{train,val,test}/NNNNN.png``
with A | B side by side and ``OUT/dataset.json`` (its ``kind`` is the pairing's name; ``sources``
names the photo of every file, ``skipped`` the photos that could not be read, and why).
Photos are assigned to splits by a hash of their path and the seed, and each photo's random
choices (a mask, a pen) come from the same hash: the same folder and seed give the same set,
and a photo added later moves no other photo to another split.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from ..errors import ConfigError, DataError, ImageError, TranslateError
from ..imageio import image_to_array, is_image_file, read_image, read_size
from ..object_storage import data_path, is_url
from ..options import opt
from .drawing import F32, check_size, drop_small_components, ink_sketch, thin
from .folder import Pair, split_counts, write_dataset

__all__ = ["Pairing", "PAIRINGS", "PairOptions", "pair_photos", "pair_photo", "find_photos"]


@dataclass(frozen=True)
class Pairing:
    """A way to make the A side of a pair from a photo (B)."""

    name: str  # as given to ``translate data pair``
    a: str  # what side A shows (recorded in dataset.json)
    make: Callable[[np.ndarray, np.ndarray, np.random.Generator, "PairOptions"], np.ndarray]
    # (B: the photo, size x size; the photo on a twice as large canvas; rng; options) -> A, uint8 like B


@dataclass
class PairOptions:
    """The options of ``translate data pair``."""

    size: int = opt(256, "side of each square image: photos are cropped to a centred square and resized")
    seed: int = opt(0, "seed of the split and of each photo's random choices (masks, pen)")
    val_fraction: float = opt(0.1, "share of the photos held out for validation")
    test_fraction: float = opt(0.1, "share of the photos held out for testing")
    factor: int = opt(4, "downscale: how many times smaller the low-resolution photo is")
    progress: bool = opt(True, "show a progress bar")

    def validate(self) -> None:
        check_size(self.size)
        if not 2 <= self.factor <= self.size // 4:
            raise ConfigError("factor", f"must be from 2 to size / 4 ({self.size // 4}), got {self.factor}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(name, f"must be in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("test_fraction", "val_fraction + test_fraction must leave photos to train on")


# --------------------------------------------------------------------------- the pairings

# XDoG: the blur of the fine Gaussian (as a share of the canvas side: 0.8 px on a 128 px image's canvas), the
# ratio of the coarse one, and how much of the coarse one is taken away. A pixel is ink where the difference is
# negative: on the dark side of an edge. Pieces shorter than 4 % of the side are dropped. Chosen by looking at
# the edges of the sketches set's photos next to its sketches (docs/images/edges_pairing.png).
_XDOG_SIGMA, _XDOG_K, _XDOG_TAU = 0.8 / 256, 1.6, 0.98
_MIN_STROKE = 0.04


def edge_lines(canvas: np.ndarray) -> np.ndarray:
    """The one-pixel lines of a photo's edges on its canvas (a boolean mask), before they are inked."""
    S = canvas.shape[0]
    smooth = cv2.bilateralFilter(canvas, 9, 40, 7)
    lightness = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB)[..., 0]
    lightness = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lightness).astype(F32) / 255
    s = _XDOG_SIGMA * S
    dog = cv2.GaussianBlur(lightness, (0, 0), s) - _XDOG_TAU * cv2.GaussianBlur(lightness, (0, 0), s * _XDOG_K)
    return drop_small_components(thin(dog < 0), _MIN_STROKE * S)


def _edges(b: np.ndarray, canvas: np.ndarray, rng: np.random.Generator, o: PairOptions) -> np.ndarray:
    return ink_sketch(edge_lines(canvas), int(rng.integers(2, 4)), b.shape[0])  # the sketches set's pens: 2 or 3


def _gray(b: np.ndarray, canvas: np.ndarray, rng: np.random.Generator, o: PairOptions) -> np.ndarray:
    return np.repeat(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def _downscale(b: np.ndarray, canvas: np.ndarray, rng: np.random.Generator, o: PairOptions) -> np.ndarray:
    size = b.shape[0]
    small = max(1, round(size / o.factor))
    low = cv2.resize(b, (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)


def hole_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Holes to paint over: one or two boxes and one to three free-form brush strokes (random walks with a
    round brush, as in the free-form masks of DeepFill v2, Yu et al. 2019); a boolean ``size`` x ``size`` mask."""
    m = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        w, h = (rng.uniform(0.15, 0.4, 2) * size).astype(int)
        x, y = rng.integers(0, size - w), rng.integers(0, size - h)
        m[y:y + h, x:x + w] = 1
    for _ in range(int(rng.integers(1, 4))):
        width = max(2, int(rng.uniform(0.04, 0.09) * size))
        p = rng.uniform(0.1, 0.9, 2) * size
        angle = rng.uniform(0, 2 * math.pi)
        for _ in range(int(rng.integers(3, 7))):
            angle += rng.uniform(-1.2, 1.2)
            step = rng.uniform(0.08, 0.22) * size
            q = np.clip(p + step * np.array([math.cos(angle), math.sin(angle)]), 0, size - 1)
            cv2.line(m, tuple(int(v) for v in p), tuple(int(v) for v in q), 1, width, cv2.LINE_AA)
            cv2.circle(m, tuple(int(v) for v in q), width // 2, 1, -1, cv2.LINE_AA)
            p = q
    return m.astype(bool)


def _mask(b: np.ndarray, canvas: np.ndarray, rng: np.random.Generator, o: PairOptions) -> np.ndarray:
    a = b.copy()
    a[hole_mask(rng, b.shape[0])] = 255
    return a


PAIRINGS: dict[str, Pairing] = {p.name: p for p in (
    Pairing("edges", a="line drawing", make=_edges),
    Pairing("gray", a="grey levels", make=_gray),
    Pairing("downscale", a="low resolution", make=_downscale),
    Pairing("mask", a="photo with holes", make=_mask),
)}


# --------------------------------------------------------------------------- photos in, pairs out

def _square(img: np.ndarray, side: int) -> np.ndarray:
    """The centred square of ``img``, resized to ``side``."""
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = img[y0:y0 + s, x0:x0 + s]
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if s > side else cv2.INTER_CUBIC)


def _hash(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{name}".encode()).digest()[:8], "little")


def pair_photo(kind: str, photo: np.ndarray, size: int = 256, seed: int = 0, name: str = "",
               options: PairOptions | None = None) -> Pair:
    """(A, B) of one photo (uint8 HxWx3, any size): what :func:`pair_photos` writes for the photo ``name``."""
    pairing = _pairing(kind)
    o = options or PairOptions(size=size, seed=seed)
    b = _square(photo, size)
    rng = np.random.default_rng([seed, _hash(seed, name)])
    return pairing.make(b, _square(photo, 2 * size), rng, o), b


def find_photos(photos: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list:
    """The image files under ``photos`` (a folder, or an object-storage prefix: listed once) (sub-folders too,
    hidden ones not), sorted; none under ``exclude``."""
    root: Any = data_path(photos)  # a Path or an ObjectPath: the same interface here
    if not root.is_dir():
        raise DataError(f"{root}: no such folder of photos")
    skip = data_path(exclude).resolve() if exclude is not None and is_url(exclude) == is_url(photos) else None
    found = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file() or not is_image_file(p):
            continue
        if skip is not None and skip in p.resolve().parents:
            continue
        found.append(p)
    if not found:
        raise DataError(f"{root}: no photos (.png, .jpg, .jpeg, .bmp, .webp, .tif) found")
    return found


def pair_photos(kind: str, photos: str | os.PathLike, out: str | os.PathLike,
                options: PairOptions | None = None) -> dict:
    """Write the pairs of every photo under ``photos`` to ``out`` (see the module doc) and return the summary.

    A photo that cannot be read is named on stderr and in the summary's ``skipped``, and left out."""
    pairing = _pairing(kind)
    o = options or PairOptions()
    o.validate()
    root = data_path(photos)
    files, unreadable = [], []
    for p in find_photos(photos, exclude=out):  # headers first, so the splits share out the readable photos
        try:
            read_size(p)
            files.append(p)
        except ImageError as e:
            unreadable.append({"file": p.relative_to(root).as_posix(), "reason": e.reason})
            print(f"skipped: {e}", file=sys.stderr, flush=True)
    if not files:
        first = unreadable[0]
        raise DataError(f"{root}: none of its {len(unreadable)} photos could be read (first: {first['file']}: "
                        f"{first['reason']})")
    names = [p.relative_to(root).as_posix() for p in files]
    order = sorted(range(len(files)), key=lambda i: (_hash(o.seed, names[i]), names[i]))
    splits = (1 - o.val_fraction - o.test_fraction, o.val_fraction, o.test_fraction)

    def pair_at(index: int) -> Pair:
        i = order[index]
        img = read_image(files[i], min_side=2 * o.size)  # damaged pixel data: an ImageError naming the file
        return pair_photo(kind, image_to_array(img), o.size, o.seed, names[i], o)

    summary = write_dataset(out, pair_at, split_counts(len(files), splits), kind=pairing.name, size=o.size,
                            seed=o.seed, splits=splits, sides=(pairing.a, "photo"),
                            progress=f"pairs ({kind})" if o.progress else False, skip_errors=TranslateError,
                            extra={"photos": str(root), **({"factor": o.factor} if kind == "downscale" else {})},
                            source_of=lambda index: names[order[index]], skipped=unreadable)
    if not summary["count"]:
        first = summary["skipped"][0]
        raise DataError(f"{root}: none of its {len(summary['skipped'])} photos could be read (first: "
                        f"{first['file']}: {first['reason']})")
    return summary


def _pairing(kind: str) -> Pairing:
    if kind not in PAIRINGS:
        raise ConfigError("kind", f"unknown pairing {kind!r}; expected one of: {', '.join(PAIRINGS)}")
    return PAIRINGS[kind]
