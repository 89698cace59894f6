"""The data sets of the image-to-image trainers, assembled from their config: one call for paired
training (:func:`paired_sets`, Pix2Pix) and one for unpaired training (:func:`unpaired_sets`, CycleGAN).

The layouts are translate.data's (aligned A|B files, A/B folders, the reference's trainA/trainB);
a folder that holds none raises a DataError naming it and the layouts it would take. Validation
reads ``DIR/val`` (paired) or ``DIR/valA`` + ``DIR/valB``, else ``DIR/testA`` + ``DIR/testB``
(unaligned) when the folder has them, else a seeded held-out part of the training images
(``--val-fraction``). Files that cannot be read are skipped with one warning, or stop the run at
the first with ``--strict-data``.
"""
from __future__ import annotations

import logging
from typing import Any

from translate import data as tdata
from translate.data import ImageSource, PairedImages, PairSource, UnpairedImages

from .config import SegmenterConfig, TranslationConfig

log = logging.getLogger(__name__)

#: The validation set's own settings: resized to the crop size, neither cropped nor flipped.
_AS_TESTED: dict[str, Any] = dict(train=False, preprocess="resize")


def paired_split(c: TranslationConfig | SegmenterConfig) -> tuple[list[PairSource], list[PairSource]]:
    """(train, validation) pairs of ``c.data``: its ``val`` split when it has one, else a held-out part of train."""
    train = tdata.find_pairs(c.data, "train")
    if tdata.has_split(c.data, "val"):
        return train, tdata.find_pairs(c.data, "val")
    return tdata.split_holdout(train, c.val_fraction, c.seed)


def unaligned_split(c: TranslationConfig) -> tuple[tuple[list[ImageSource], list[ImageSource]],
                                                   tuple[list[ImageSource], list[ImageSource]]]:
    """((train A, train B), (validation A, validation B)) of a folder in the unaligned layout: its
    ``valA``/``valB`` or ``testA``/``testB`` when it has them, else a held-out part of each side."""
    train_A, train_B = tdata.find_unpaired(c.data, "train")
    val_split = next((s for s in ("val", "test") if tdata.has_unaligned_split(c.data, s)), None)
    if val_split:
        return (train_A, train_B), tdata.find_unpaired(c.data, val_split)
    train_A, val_A = tdata.split_holdout(train_A, c.val_fraction, c.seed)
    train_B, val_B = tdata.split_holdout(train_B, c.val_fraction, c.seed + 1)
    return (train_A, train_B), (val_A, val_B)


def readable(strict: bool, *source_lists: list) -> tuple[list, ...]:
    """Each list of pairs or images without the files that cannot be read (their headers are checked, in the order
    given), with one warning for all that were dropped; with ``strict`` the first unreadable file raises."""
    kept, dropped = [], []
    for sources in source_lists:
        pairs = bool(sources) and isinstance(sources[0], PairSource)
        good, bad = (tdata.check_readable if pairs else tdata.check_readable_images)(sources, strict=strict)
        kept.append(good)
        dropped += bad
    if dropped:
        log.warning("skipping %d unreadable files (first: %s: %s); --strict-data makes this fatal", len(dropped),
                    *dropped[0])
    return tuple(kept)


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
    if tdata.has_unaligned_split(c.data, "train"):
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


__all__ = ["paired_split", "unaligned_split", "readable", "paired_sets", "unpaired_sets"]
