"""Paired data sets: built-in ones, procedural, so Pix2Pix can be tried with nothing to download,
and pairs made from a folder of the user's own photos.

The registry: :data:`KINDS`, the sets by name, each a :class:`DatasetKind`. One module per set
draws a pixel-aligned (A, B) pair from a random generator:

* ``maps`` (:mod:`.maps`): aerial photo | flat map, as in the pix2pix ``maps`` set;
* ``sketches`` (:mod:`.sketches`): line sketch | shaded object photo, like edges2shoes.

Adding a set is one module with its pair function and one line in :data:`KINDS`; the
``translate data make`` command offers every kind listed there.

Photos: :data:`PAIRINGS` (:mod:`.photo_pairs`) turn any photo into a pair whose B is the photo
and whose A is its edges drawn as a sketch, its grey levels, a low-resolution copy or the
photo with holes; :func:`pair_photos` writes a folder of photos as such a set
(``translate data pair``).

:func:`make_pair` gives pair ``index`` of a set; :func:`make_dataset` writes a set in the
aligned layout (see :mod:`.folder`). Pair ``i`` comes from ``np.random.default_rng([seed, i])``,
so it does not depend on ``count``, and a run is reproducible byte for byte. Shared drawing
helpers live in :mod:`.drawing`. Only numpy, OpenCV and Pillow are used; everything is
vectorised (about 20-40 ms a pair at 256 px on one core).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..class_maps import PALETTE_FILE, Palette, save_palette
from ..errors import ConfigError
from ..options import opt
from . import maps, sketches
from .drawing import check_size
from .folder import Pair, read_summary, split_counts, write_dataset
from .photo_pairs import PAIRINGS, PairOptions, pair_photo, pair_photos

__all__ = ["DatasetKind", "KINDS", "MakeOptions", "make_pair", "make_dataset", "split_counts", "dataset_kind",
           "PAIRINGS", "PairOptions", "pair_photo", "pair_photos"]


@dataclass(frozen=True)
class DatasetKind:
    """A built-in paired data set."""

    name: str  # as given to ``translate data make``
    a: str  # what side A shows (recorded in dataset.json)
    b: str  # what side B shows
    pair: Callable[[np.random.Generator, int], Pair]  # (rng, size) -> pixel-aligned uint8 (A, B)
    palette: Palette | None = None  # the classes of its class-map side, written beside the set as palette.json


KINDS: dict[str, DatasetKind] = {k.name: k for k in (
    DatasetKind("maps", a="aerial photo", b="map", pair=maps.make_maps_pair, palette=maps.MAPS_PALETTE),
    DatasetKind("sketches", a="sketch", b="photo", pair=sketches.make_sketches_pair),
)}


@dataclass
class MakeOptions:
    """The options of ``translate data make``."""

    count: int = opt(400, "number of pairs (80 % train, 10 % val, 10 % test)")
    size: int = opt(256, "side of each image")
    seed: int = opt(0, "pair i is drawn from (seed, i) alone")
    progress: bool = opt(True, "show a progress bar")


def _kind(kind: str) -> DatasetKind:
    if kind not in KINDS:
        raise ConfigError("kind", f"unknown synthetic dataset {kind!r}; expected one of: {', '.join(KINDS)}")
    return KINDS[kind]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError("seed", f"must be an integer >= 0, got {seed!r}")
    return int(seed)


def make_pair(kind: str, index: int, size: int = 256, seed: int = 0) -> Pair:
    """Pair ``index`` of a built-in set: what :func:`make_dataset` writes for it, as (A, B)."""
    entry = _kind(kind)
    return entry.pair(np.random.default_rng([_check_seed(seed), int(index)]), size)


def make_dataset(kind: str, out: str | os.PathLike, count: int = 400, size: int = 256, seed: int = 0,
                 splits: Sequence[float] = (0.8, 0.1, 0.1), progress: bool = True) -> dict:
    """Write a built-in paired set in the aligned layout and return its summary.

    Files are ``out/{train,val,test}/{i:05d}.png`` (A | B side by side, ``2*size`` x ``size``);
    indices run over train, then val, then test. Image ``i`` depends only on
    (``kind``, ``seed``, ``i``, ``size``), never on ``count``. Each file is written atomically.
    ``out`` may be new, empty, or an earlier built-in set (whose images are replaced);
    a folder holding other images is refused rather than mixed into. A set whose one side is a class map
    gets its palette beside the splits (``out/palette.json``), for evaluation and training to find.
    """
    entry = _kind(kind)
    size = check_size(size)
    seed = _check_seed(seed)
    counts = split_counts(count, splits)
    summary = write_dataset(out, lambda i: entry.pair(np.random.default_rng([seed, i]), size), counts,
                            kind=entry.name, size=size, seed=seed, splits=splits, sides=(entry.a, entry.b),
                            progress=progress)
    if entry.palette is not None:
        save_palette(entry.palette, Path(out) / PALETTE_FILE)
    else:  # the folder may hold an earlier set of another kind
        (Path(out) / PALETTE_FILE).unlink(missing_ok=True)
    return summary


def dataset_kind(folder: str | os.PathLike) -> str | None:
    """The kind of data set a folder holds, as its ``dataset.json`` records it (``maps``, ``sketches``, a
    pairing of photos such as ``edges``), or None for a folder we did not write."""
    summary = read_summary(folder)
    kind = summary.get("kind") if summary else None
    return kind if isinstance(kind, str) else None
