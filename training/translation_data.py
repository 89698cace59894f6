"""The data sets of the image-to-image trainers, assembled from their config: one call for paired
training (:func:`paired_sets`, Pix2Pix) and one for unpaired training (:func:`unpaired_sets`, CycleGAN).

The layouts are translate.data's (aligned A|B files, A/B folders, the reference's trainA/trainB);
a folder that holds none raises a DataError naming it and the layouts it would take. Validation
reads ``DIR/val`` (paired) or ``DIR/valA`` + ``DIR/valB``, else ``DIR/testA`` + ``DIR/testB``
(unaligned) when the folder has them, else a seeded held-out part of the training images
(``--val-fraction``). Files that cannot be read are skipped with one warning, or stop the run at
the first with ``--strict-data``. ``--data`` may be an object-storage prefix: it is listed once, its objects are not
read up front (each process fetches the samples it trains on), and an unreadable one is named and skipped when it is
met.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from translate import data as tdata
from translate.class_maps import MAX_FAR_SHARE, Palette, far_share, find_palette, load_palette, palette_beside
from translate.data import ImageSource, PairedImages, PairSource, UnpairedImages
from translate.errors import ConfigError
from translate.object_storage import ObjectPath

from .config import SegmenterConfig, TranslationConfig

log = logging.getLogger(__name__)

_PALETTE_SAMPLE = 64  # training targets read to find a palette (--palette auto)
_PALETTE_CHECK = 4  # training targets checked against a palette before the run starts

#: The validation set's own settings: resized to the crop size, neither cropped nor flipped.
_AS_TESTED: dict[str, Any] = dict(train=False, preprocess="resize")


def paired_split(c: TranslationConfig | SegmenterConfig) -> tuple[list[PairSource], list[PairSource]]:
    """(train, validation) pairs of ``c.data``: its ``val`` split when it has one, else a held-out part of train."""
    root = c.data_root()
    train = tdata.find_pairs(root, "train")
    if tdata.has_split(root, "val"):
        return train, tdata.find_pairs(root, "val")
    return tdata.split_holdout(train, c.val_fraction, c.seed)


def unaligned_split(c: TranslationConfig) -> tuple[tuple[list[ImageSource], list[ImageSource]],
                                                   tuple[list[ImageSource], list[ImageSource]]]:
    """((train A, train B), (validation A, validation B)) of a folder in the unaligned layout: its
    ``valA``/``valB`` or ``testA``/``testB`` when it has them, else a held-out part of each side."""
    root = c.data_root()
    train_A, train_B = tdata.find_unpaired(root, "train")
    val_split = next((s for s in ("val", "test") if tdata.has_unaligned_split(root, s)), None)
    if val_split:
        return (train_A, train_B), tdata.find_unpaired(root, val_split)
    train_A, val_A = tdata.split_holdout(train_A, c.val_fraction, c.seed)
    train_B, val_B = tdata.split_holdout(train_B, c.val_fraction, c.seed + 1)
    return (train_A, train_B), (val_A, val_B)


def readable(strict: bool, *source_lists: list) -> tuple[list, ...]:
    """Each list of pairs or images without the files that cannot be read (their headers are checked, in the order
    given), with one warning for all that were dropped; with ``strict`` the first unreadable file raises."""
    kept, dropped = [], []
    for sources in source_lists:
        if sources and _in_object_storage(sources[0]):  # headers would be a request per object per process
            kept.append(list(sources))
            continue
        pairs = bool(sources) and isinstance(sources[0], PairSource)
        good, bad = (tdata.check_readable if pairs else tdata.check_readable_images)(sources, strict=strict)
        kept.append(good)
        dropped += bad
    if dropped:
        log.warning("skipping %d unreadable files (first: %s: %s); --strict-data makes this fatal", len(dropped),
                    *dropped[0])
    return tuple(kept)


def _in_object_storage(source: PairSource | ImageSource) -> bool:
    return isinstance(source.a if isinstance(source, PairSource) else source.path, ObjectPath)


def _common(c: TranslationConfig | SegmenterConfig) -> dict[str, Any]:
    """What the training and the validation set of a run share."""
    return dict(size=c.size, direction=c.direction, input_nc=c.input_nc, output_nc=c.output_nc, strict=c.strict_data,
                seed=c.seed)


def _augmented(c: TranslationConfig | SegmenterConfig) -> dict[str, Any]:
    """The training set's own settings: resized to the load size, cropped, flipped."""
    return dict(load_size=c.load_size, preprocess=c.preprocess, flip=c.flip, train=True)


def paired_sets(c: TranslationConfig | SegmenterConfig) -> tuple[PairedImages, PairedImages]:
    """(train, validation) sets of aligned pairs, for a method that learns A -> B from pairs."""
    train, val = readable(c.strict_data, *paired_split(c))
    return (PairedImages(train, **_augmented(c), **_common(c)),
            PairedImages(val or train[:1], **_AS_TESTED, **_common(c)))


def unpaired_sets(c: TranslationConfig) -> tuple[UnpairedImages, UnpairedImages | PairedImages]:
    """(train, validation) sets for a method that learns from unpaired A and B images.

    An unaligned folder (``trainA``/``trainB``) gives unpaired sets for both. A paired folder is made unpaired for
    training (its pairs shuffled and split in halves, A sides from one and B sides from the other, so no pair is
    seen together: translate.data.unpair) and validates on pairs, so that outputs can be scored against targets.
    """
    if tdata.has_unaligned_split(c.data_root(), "train"):
        (train_A, train_B), (val_A, val_B) = unaligned_split(c)
        val_A, val_B = readable(c.strict_data, val_A, val_B)
        val: UnpairedImages | PairedImages = UnpairedImages(val_A or train_A[:1], val_B or train_B[:1], **_AS_TESTED,
                                                            **_common(c))
    else:
        pairs, val_pairs = paired_split(c)
        train_A, train_B = tdata.unpair(pairs, c.seed)
        (val_pairs,) = readable(c.strict_data, val_pairs)
        val = PairedImages(val_pairs or pairs[:1], **_AS_TESTED, **_common(c))
    train_A, train_B = readable(c.strict_data, train_A, train_B)
    return UnpairedImages(train_A, train_B, **_augmented(c), **_common(c)), val


def target_palette(c: TranslationConfig) -> Palette | None:
    """The palette of the targets' class maps, which validation scores by class IoU: ``--palette FILE``, ``auto``
    (found from the training targets), or by default ``DIR/palette.json`` when it says the target side holds the
    class maps; None (validation scores L1) when there is none, or the data has no aligned pairs to score. A
    ConfigError names a training target that is far from the palette's colours, before the run starts."""
    side = "B" if c.direction == "AtoB" else "A"
    if tdata.has_unaligned_split(c.data_root(), "train"):
        if c.palette:
            raise ConfigError("palette", f"{c.data} has no aligned pairs: validation scores no class maps there")
        return None
    pairs = paired_split(c)[0]
    if c.palette == "auto":
        found = find_palette(_target(c, src) for src in pairs[:_PALETTE_SAMPLE])
        return Palette(found.colours, found.names, side)
    if c.palette:
        palette, source = load_palette(c.palette), c.palette
    else:
        shipped, source = palette_beside(c.data_root()), f"{c.data}/palette.json"
        if shipped is None or shipped.side != side:
            return None
        palette = shipped
    for src in pairs[:_PALETTE_CHECK]:
        share = far_share(_target(c, src), palette)
        if share > MAX_FAR_SHARE:
            raise ConfigError(str(src), f"side {side} (the target of --direction {c.direction}) is no class map of "
                              f"{source}: {share:.0%} of its pixels are far from every colour; check --direction, "
                              "or give this data's palette (--palette FILE, or --palette auto)")
    return Palette(palette.colours, palette.names, side)


def _target(c: TranslationConfig, src: PairSource) -> np.ndarray:
    return np.asarray(tdata.load_pair(src, c.direction, c.input_nc, c.output_nc)[1])


__all__ = ["paired_split", "unaligned_split", "readable", "paired_sets", "unpaired_sets", "target_palette"]
