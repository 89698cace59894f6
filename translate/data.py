"""Paired datasets (Pix2Pix layouts) and their joint augmentation.

Layouts read, for a split such as ``train``:

* aligned: ``DIR/train/*.png`` with A and B side by side in each file (any size);
* paired folders: ``DIR/train/A/x.png`` with ``DIR/train/B/x.png`` (matched by file stem),
  or ``DIR/A`` + ``DIR/B`` / a flat ``DIR/*.png`` with no split folders, read as ``train``.

Unpaired sets (CycleGAN) read ``DIR/trainA`` + ``DIR/trainB`` (the reference's unaligned
layout), or any paired layout made unpaired (see :func:`find_unpaired`, :class:`UnpairedImages`).

``DIR`` may be a local folder or an object-storage prefix (``s3://BUCKET/PREFIX``, any fsspec URL): the prefix is
listed once (:func:`translate.object_storage.data_path`) and each object is fetched when a sample needs it.

Augmentation is one albumentations pipeline applied with the same random parameters
to A and B (resize to the load size, random crop, horizontal flip), so the pair stays
pixel-aligned. Each sample's randomness comes from a seed the sampler hands out with
the index, so a run is reproducible and resumable whatever the number of workers.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence, TypeVar

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from . import imageio
from .errors import ConfigError, DataError, ImageError
from .object_storage import ObjectPath, data_path

if TYPE_CHECKING:
    import albumentations as A

log = logging.getLogger(__name__)

PREPROCESS = ("resize_and_crop", "crop", "resize", "none")
DIRECTIONS = ("AtoB", "BtoA")


@dataclass(frozen=True)
class PairSource:
    """Where one training pair comes from: an aligned A|B file, or two files."""

    a: Path | ObjectPath
    b: Path | ObjectPath | None = None  # None: ``a`` holds A|B side by side

    @property
    def name(self) -> str:
        return self.a.stem

    def __str__(self) -> str:
        return str(self.a) if self.b is None else f"{self.a} + {self.b}"


def _images_in(folder: Path | ObjectPath) -> list:
    return sorted(p for p in folder.iterdir() if p.is_file() and imageio.is_image_file(p))


def _paired_folders(a_dir: Path | ObjectPath, b_dir: Path | ObjectPath) -> list[PairSource]:
    a_files = {p.stem: p for p in _images_in(a_dir)}
    b_files = {p.stem: p for p in _images_in(b_dir)}
    common = sorted(a_files.keys() & b_files.keys())
    unmatched = sorted((a_files.keys() | b_files.keys()) - set(common))
    if unmatched:
        log.warning("%d files in %s / %s have no partner and are skipped (e.g. %s)",
                    len(unmatched), a_dir, b_dir, unmatched[0])
    return [PairSource(a_files[s], b_files[s]) for s in common]


def find_pairs(root: str | os.PathLike | ObjectPath, split: str = "train") -> list[PairSource]:
    """List the pairs of ``split`` under ``root`` (a folder, a URL, a listed prefix) in any supported layout (see
    module doc)."""
    root = data_path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    split_dir = root / split
    candidates: list[tuple[Any, Any]] = []
    if split_dir.is_dir():
        candidates.append((split_dir / "A", split_dir / "B"))
        candidates.append((split_dir, None))
    if split == "train":
        candidates.append((root / "A", root / "B"))
        if not any((root / s).is_dir() for s in ("train", "val", "test")):
            candidates.append((root, None))
    for a, b in candidates:
        if b is not None:
            if a.is_dir() and b.is_dir():
                pairs = _paired_folders(a, b)
                if pairs:
                    return pairs
        elif a.is_dir():
            files = _images_in(a)
            if files:
                return [PairSource(p) for p in files]
    raise DataError(
        f"{root}: no image pairs for split '{split}' (expected {root}/{split}/*.png with A|B side by side, "
        f"or {root}/{split}/A and {root}/{split}/B with matching file names)"
    )


def has_split(root: str | os.PathLike | ObjectPath, split: str) -> bool:
    try:
        find_pairs(root, split)
        return True
    except DataError:
        return False


def check_readable(sources: Sequence[PairSource], strict: bool = False,
                   max_pixels: int = imageio.MAX_PIXELS) -> tuple[list[PairSource], list[tuple[str, str]]]:
    """Open every file's header (cheap: no pixels decoded) and drop the unreadable ones.

    Returns (good sources, [(path, reason)] of the bad). With ``strict`` the first bad
    file raises :class:`ImageError` instead.
    """
    good, bad = [], []
    for src in sources:
        try:
            for p in [q for q in (src.a, src.b) if q is not None]:
                with p.open("rb") as f, Image.open(f) as im:
                    w, h = im.size
                    if w * h > max_pixels:
                        raise ImageError(p, f"{w}x{h} pixels is over the limit of {max_pixels:,}")
                    im.verify()
        except ImageError as e:
            if strict:
                raise
            bad.append((e.source, e.reason))
            continue
        except Exception as e:
            if strict:
                raise ImageError(p, f"not a readable image ({e})") from None
            bad.append((str(p), f"not a readable image ({e})"))
            continue
        good.append(src)
    return good, bad


def load_pair(src: PairSource, direction: str = "AtoB", input_nc: int = 3, output_nc: int = 3) -> tuple[Image.Image, Image.Image]:
    """Decode one pair as (input, target) PIL images, honouring ``direction``."""
    if src.b is None:
        ab = imageio.read_image(src.a)
        w, h = ab.size
        if w < 2:
            raise ImageError(src.a, f"aligned image is {w}x{h}: expected A and B side by side")
        half = w // 2
        a, b = ab.crop((0, 0, half, h)), ab.crop((half, 0, 2 * half, h))
    else:
        a, b = imageio.read_image(src.a), imageio.read_image(src.b)
    if direction == "BtoA":
        a, b = b, a
    elif direction != "AtoB":
        raise ConfigError("direction", f"must be one of {DIRECTIONS}, got {direction!r}")
    return imageio.convert_channels(a, input_nc), imageio.convert_channels(b, output_nc)


def build_transform(size: int, load_size: int | None = None, preprocess: str = "resize_and_crop",
                    flip: bool = True, train: bool = True) -> A.Compose:
    """The joint A/B pipeline. Evaluation (train=False) resizes to ``size``, nothing random."""
    import albumentations as A  # lazy: albumentations (the training code runs without it on in-memory data)

    if preprocess not in PREPROCESS:
        raise ConfigError("preprocess", f"must be one of {PREPROCESS}, got {preprocess!r}")
    load_size = load_size or size
    if load_size < size:
        raise ConfigError("load_size", f"must be >= size ({size}), got {load_size}")
    interp = cv2.INTER_CUBIC  # the reference resizes with bicubic
    ops: list = []
    if not train:
        if preprocess != "none":
            ops.append(A.Resize(size, size, interpolation=interp))
    elif preprocess == "resize_and_crop":
        ops += [A.Resize(load_size, load_size, interpolation=interp), A.RandomCrop(size, size)]
    elif preprocess == "crop":
        ops += [A.PadIfNeeded(size, size, border_mode=cv2.BORDER_REFLECT_101), A.RandomCrop(size, size)]
    elif preprocess == "resize":
        ops.append(A.Resize(size, size, interpolation=interp))
    if train and flip:
        ops.append(A.HorizontalFlip(p=0.5))
    return A.Compose(ops, additional_targets={"target": "image"})


class PairedImages(Dataset):
    """Pairs as tensors: ``{'A': CHW [-1,1], 'B': CHW [-1,1], 'name': str}`` (A is the input).

    Index with an int, or with ``(index, seed)`` as :class:`EpochSampler` yields, to fix
    the sample's augmentation. A file that fails to decode is reported with its path;
    with ``strict=False`` the next good pair is used instead and the file is remembered
    in ``self.skipped``.
    """

    def __init__(self, sources: Sequence[PairSource], size: int = 256, load_size: int | None = None,
                 preprocess: str = "resize_and_crop", flip: bool = True, train: bool = True,
                 direction: str = "AtoB", input_nc: int = 3, output_nc: int = 3,
                 strict: bool = False, seed: int = 0):
        if not sources:
            raise DataError("no image pairs to read")
        if direction not in DIRECTIONS:
            raise ConfigError("direction", f"must be one of {DIRECTIONS}, got {direction!r}")
        self.sources = list(sources)
        self.transform = build_transform(size, load_size, preprocess, flip, train)
        self.direction, self.input_nc, self.output_nc = direction, input_nc, output_nc
        self.strict, self.seed = strict, seed
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.sources)

    def _load(self, src: PairSource) -> tuple[Image.Image, Image.Image]:
        return load_pair(src, self.direction, self.input_nc, self.output_nc)

    def __getitem__(self, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        src, (a, b) = _first_readable(self.sources, index, self._load, self.strict, self.skipped, "image pair")
        a, b = imageio.image_to_array(a), imageio.image_to_array(b)
        if a.shape[:2] != b.shape[:2]:  # paired folders may differ in size: match B to A first
            b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_CUBIC)
            b = b[:, :, None] if b.ndim == 2 else b
        self.transform.set_random_seed(seed if seed is not None else _mix(self.seed, index))
        out = self.transform(image=a, target=b)
        return {"A": imageio.image_to_tensor(out["image"]), "B": imageio.image_to_tensor(out["target"]),
                "name": src.name}


def _first_readable(sources: Sequence, index: int, load, strict: bool, skipped: dict[str, str], what: str):
    """``(source, load(source))`` for the first source from ``index`` on (wrapping) that decodes.

    A source raising :class:`ImageError` is logged once and recorded in ``skipped``
    (path -> reason), or re-raised with ``strict``.
    """
    for attempt in range(len(sources)):
        src = sources[(index + attempt) % len(sources)]
        try:
            return src, load(src)
        except ImageError as e:
            if strict:
                raise
            if str(src) not in skipped:
                log.warning("skipping %s", e)
            skipped[str(src)] = e.reason
    raise DataError(f"every {what} failed to decode")


def _mix(*ints: int) -> int:
    """A 32-bit seed from a few integers (stable across processes, unlike hash())."""
    return int(np.random.SeedSequence([int(i) & 0xFFFFFFFF for i in ints]).generate_state(1)[0])


class EpochSampler(Sampler):
    """Endless, resumable sample order: epoch e is a permutation seeded by (seed, e).

    Yields ``(index, sample_seed)``. ``start`` is the number of samples already consumed
    (across epochs), so a resumed run continues exactly where it stopped.

    Data-parallel training splits the one global order: with ``shard=(rank, processes, batch)``
    each global step takes the next ``batch * processes`` samples and process ``rank`` gets its
    ``batch`` of them, so N processes at batch b see exactly the samples (and augmentations: the
    sample seed travels with the index) of one process at batch N * b, whatever N is on resume.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, start: int = 0,
                 shard: tuple[int, int, int] | None = None):
        self.n, self.seed, self.shuffle, self.start, self.shard = n, seed, shuffle, start, shard

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shard is None:
            return self._global()
        return self._sharded(*self.shard)

    def _sharded(self, rank: int, processes: int, batch: int) -> Iterator[tuple[int, int]]:
        stream = self._global()
        while True:
            chunk = [next(stream) for _ in range(batch * processes)]
            yield from chunk[rank * batch:(rank + 1) * batch]

    def _global(self) -> Iterator[tuple[int, int]]:
        epoch, pos = divmod(self.start, self.n)
        while True:
            if self.shuffle:
                g = torch.Generator().manual_seed(_mix(self.seed, epoch))
                order = torch.randperm(self.n, generator=g).tolist()
            else:
                order = list(range(self.n))
            for p in range(pos, self.n):
                yield order[p], _mix(self.seed, epoch, p, 1)
            epoch, pos = epoch + 1, 0

    def __len__(self) -> int:  # DataLoader asks; the sampler is endless
        return 2**62


_Item = TypeVar("_Item")


def split_holdout(sources: Sequence[_Item], fraction: float = 0.05, seed: int = 0,
                  minimum: int = 1) -> tuple[list[_Item], list[_Item]]:
    """Hold out a deterministic part of ``sources`` (pairs, images, indices) for validation: (train, held_out)."""
    n = len(sources)
    k = min(max(minimum, math.ceil(n * fraction)), n - 1) if n > 1 and fraction > 0 else 0  # 0: hold none out
    rng = np.random.default_rng(_mix(seed, 7))
    held = set(rng.choice(n, size=k, replace=False).tolist()) if k else set()
    return ([s for i, s in enumerate(sources) if i not in held],
            [s for i, s in enumerate(sources) if i in held])


# ------------------------------------------------------------------ unpaired sets (CycleGAN)


@dataclass(frozen=True)
class ImageSource:
    """One image of an unpaired set: a whole file, or the A or B half of an aligned A|B file."""

    path: Path | ObjectPath
    half: str | None = None  # 'A' or 'B': that half of an aligned file; None: the whole file

    @property
    def name(self) -> str:
        return self.path.stem if self.half is None else f"{self.path.stem}_{self.half}"

    def __str__(self) -> str:
        return str(self.path) if self.half is None else f"{self.path} ({self.half} half)"


def load_image(src: ImageSource, channels: int = 3) -> Image.Image:
    """Decode one image of an unpaired set (the half of an aligned file, or the file)."""
    if src.half is None:
        return imageio.read_image(src.path, channels=channels)
    a, b = load_pair(PairSource(src.path), "AtoB", channels, channels)
    return a if src.half == "A" else b


def has_unaligned_split(root: str | os.PathLike | ObjectPath, split: str) -> bool:
    """Whether ``root`` has the reference's unaligned layout for ``split``: ``{split}A/`` and ``{split}B/``."""
    root = data_path(root)
    return all((root / f"{split}{s}").is_dir() and _images_in(root / f"{split}{s}") for s in "AB")


def unpair(pairs: Sequence[PairSource], seed: int = 0) -> tuple[list[ImageSource], list[ImageSource]]:
    """Two unpaired sets from paired data, with no image meeting its partner.

    The pairs are put in a seeded random order; the first half gives the A sides, the second
    half the B sides (so the B set is shuffled independently of A, and half the data is used).
    """
    if len(pairs) < 2:
        raise DataError(f"{len(pairs)} image pair(s): at least 2 are needed to split into unpaired A and B halves")
    order = np.random.default_rng(_mix(seed, 11)).permutation(len(pairs)).tolist()
    cut = len(pairs) - len(pairs) // 2
    a_side = [ImageSource(pairs[i].a, "A" if pairs[i].b is None else None) for i in order[:cut]]
    b_side = [ImageSource(pairs[i].b, None) if pairs[i].b is not None else ImageSource(pairs[i].a, "B")
              for i in order[cut:]]
    return a_side, b_side


def find_unpaired(root: str | os.PathLike | ObjectPath, split: str = "train",
                  seed: int = 0) -> tuple[list[ImageSource], list[ImageSource]]:
    """The A and B images of ``split``: ``DIR/{split}A`` + ``DIR/{split}B`` (any file names, any
    counts), or else any paired layout of :func:`find_pairs`, made unpaired by :func:`unpair`."""
    root = data_path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if has_unaligned_split(root, split):
        a_side, b_side = ([ImageSource(p) for p in _images_in(root / f"{split}{s}")] for s in "AB")
        return a_side, b_side
    try:
        pairs = find_pairs(root, split)
    except DataError:
        raise DataError(f"{root}: no images for split '{split}' (expected {root}/{split}A and {root}/{split}B, "
                        f"or a paired layout such as {root}/{split}/*.png with A|B side by side)") from None
    return unpair(pairs, seed)


def check_readable_images(sources: Sequence[ImageSource], strict: bool = False
                          ) -> tuple[list[ImageSource], list[tuple[str, str]]]:
    """:func:`check_readable` for the images of an unpaired set."""
    good, bad = check_readable([PairSource(s.path) for s in dict.fromkeys(sources)], strict=strict)
    ok = {g.a for g in good}
    return [s for s in sources if s.path in ok], bad


class UnpairedImages(Dataset):
    """Unpaired A and B images as tensors: ``{'A', 'B', 'name', 'name_B'}`` (A is the input side).

    As the reference's unaligned dataset: the length is max(len A, len B) and item ``i`` holds
    A[i % len A]. In training its B image is drawn at a random index derived from the sample's
    seed, so the draw is fixed by the ``(index, seed)`` key that :class:`EpochSampler` hands
    out (a resumed run sees the same B images); at evaluation it is B[i % len B]. A and B are
    augmented independently (each its own crop and flip). ``direction='BtoA'`` swaps the sets.
    Unreadable files are skipped (or fatal with ``strict``) as in :class:`PairedImages`.
    """

    def __init__(self, a_sources: Sequence[ImageSource], b_sources: Sequence[ImageSource], size: int = 256,
                 load_size: int | None = None, preprocess: str = "resize_and_crop", flip: bool = True,
                 train: bool = True, direction: str = "AtoB", input_nc: int = 3, output_nc: int = 3,
                 strict: bool = False, seed: int = 0):
        if direction not in DIRECTIONS:
            raise ConfigError("direction", f"must be one of {DIRECTIONS}, got {direction!r}")
        if direction == "BtoA":
            a_sources, b_sources = b_sources, a_sources
        if not a_sources or not b_sources:
            raise DataError(f"no images on the {'A' if not a_sources else 'B'} side")
        self.a_sources, self.b_sources = list(a_sources), list(b_sources)
        self.transform = build_transform(size, load_size, preprocess, flip, train)
        self.train, self.input_nc, self.output_nc = train, input_nc, output_nc
        self.strict, self.seed = strict, seed
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return max(len(self.a_sources), len(self.b_sources))

    def b_index(self, key) -> int:
        """The index into the B images that item ``key`` uses."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        if not self.train:
            return index % len(self.b_sources)
        return _mix(self._seed(index, seed), 1) % len(self.b_sources)

    def _seed(self, index: int, seed: int | None) -> int:
        return seed if seed is not None else _mix(self.seed, index)

    def _side(self, sources: list[ImageSource], index: int, channels: int, seed: int) -> tuple[ImageSource, torch.Tensor]:
        src, img = _first_readable(sources, index % len(sources), lambda s: load_image(s, channels), self.strict,
                                   self.skipped, "image")
        self.transform.set_random_seed(seed)
        return src, imageio.image_to_tensor(self.transform(image=imageio.image_to_array(img))["image"])

    def __getitem__(self, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        seed = self._seed(index, seed)
        a_src, a = self._side(self.a_sources, index, self.input_nc, _mix(seed, 2))
        b_src, b = self._side(self.b_sources, self.b_index(key), self.output_nc, _mix(seed, 3))
        return {"A": a, "B": b, "name": a_src.name, "name_B": b_src.name}
