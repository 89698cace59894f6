"""Writing a built-in data set to disk: splits, the aligned A|B layout, ``dataset.json``.

Files are ``OUT/{train,val,test}/NNNNN.png`` (A | B side by side, as :mod:`translate.data`
reads them); indices run over train, then val, then test. The writer of the pairs is either a
built-in set's pair function (:mod:`translate.datasets`) or a pairing of photos
(:mod:`.photo_pairs`, which skips unreadable photos and records where each file came from). ``OUT/dataset.json`` records
how the set was made, including the generator that wrote it: a folder written by us
(now or before :mod:`translate.datasets` existed) may be written again, and its images
that the new run does not write are removed; a folder holding other images is refused.

``OUT`` may be an object-storage prefix (``s3://BUCKET/PREFIX``): the set is written to a local temporary folder,
then uploaded, ``dataset.json`` last (so a set is taken as ours only once it is whole), and the same rules hold
there: a prefix holding objects and no ``dataset.json`` of ours is refused, our images the new set does not have
are removed.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..files import atomic_path, write_text_atomic
from ..object_storage import data_path, is_url, list_files, put_file, remove

SPLITS = ("train", "val", "test")
GENERATOR = "translate.datasets"
# what dataset.json of our own folders may say: the old name is that of folders written before the package split
OUR_GENERATORS = (GENERATOR, "translate.synthetic")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

Pair = tuple[np.ndarray, np.ndarray]


def split_counts(count: int, splits: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, int]:
    """How many of ``count`` images go to train / val / test (val and test rounded, train the rest)."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ConfigError("count", f"must be an integer >= 0, got {count!r}")
    fr = [float(x) for x in splits]
    if len(fr) != 3 or any(not math.isfinite(x) or x < 0 for x in fr) or sum(fr) <= 0:
        raise ConfigError("splits", f"expected three fractions >= 0 (train, val, test), got {tuple(splits)!r}")
    total = sum(fr)
    n_val = int(round(count * fr[1] / total))
    n_test = min(int(round(count * fr[2] / total)), count - n_val)
    return {"train": int(count) - n_val - n_test, "val": n_val, "test": n_test}


def write_dataset(out: str | os.PathLike, pair_at: Callable[[int], Pair], counts: dict[str, int], *, kind: str,
                  size: int, seed: int, splits: Sequence[float], sides: tuple[str, str],
                  progress: bool | str = True, skip_errors: type[Exception] | tuple[type[Exception], ...] = (),
                  extra: dict | None = None, source_of: Callable[[int], str] | None = None,
                  skipped: Sequence[dict] = ()) -> dict:
    """Write pair ``pair_at(i)`` of each index to ``out`` as laid out above; return the summary.

    ``counts`` comes from :func:`split_counts`; ``kind``, ``size``, ``seed``, ``splits`` and
    ``sides`` (what A and B show) are recorded in ``dataset.json``, and ``extra`` fields with them.
    Each file is written atomically. ``progress``: a progress bar (a string: its label).
    A pair whose ``pair_at`` raises one of ``skip_errors`` is left out, named on stderr and
    listed in the summary's ``skipped`` (``file``: ``source_of(i)``, else the index; ``reason``) after
    the ``skipped`` the caller found before;
    ``counts`` and ``count`` are those written; ``sources`` maps each written file to ``source_of(i)``.
    """
    if is_url(out):
        return _write_to_object_storage(str(out).rstrip("/"), lambda local: write_dataset(
            local, pair_at, counts, kind=kind, size=size, seed=seed, splits=splits, sides=sides, progress=progress,
            skip_errors=skip_errors, extra=extra, source_of=source_of, skipped=skipped))
    out = Path(out)
    names = _prepare_folder(out, counts)
    label = (f"synthetic {kind}" if progress is True else progress) or None
    failed = _write_pairs(out, names, pair_at, label, skip_errors)
    written = [(split, idx) for split, idx in names if idx not in failed]
    summary = {
        "kind": kind,
        "out": str(out),
        "counts": {split: sum(1 for s, _ in written if s == split) for split in counts},
        "count": len(written),
        "size": size,
        "seed": seed,
        "splits": [float(x) for x in splits],
        "layout": "aligned",  # A | B side by side
        "A": sides[0],
        "B": sides[1],
        "generator": GENERATOR,
        **(extra or {}),
    }
    if skip_errors or skipped:
        summary["skipped"] = [*skipped, *({"file": source_of(i) if source_of else i,
                                           "reason": getattr(e, "reason", str(e))} for i, e in failed.items())]
    if source_of is not None:
        summary["sources"] = {f"{split}/{idx:05d}.png": source_of(idx) for split, idx in written}
    write_text_atomic(out / "dataset.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _write_to_object_storage(url: str, write: Callable[[Path], dict]) -> dict:
    """``write`` a set into a local temporary folder, then upload it to ``url`` (``dataset.json`` last)."""
    existing = [k for k in list_files(url) if k != "dataset.json"]
    if existing and read_summary(url) is None:
        raise ConfigError("out", f"{url} already holds objects ({url}/{existing[0]}) and is not a data set written "
                                 "here; choose a new or empty prefix")
    with tempfile.TemporaryDirectory(prefix="i2i-dataset-") as tmp:
        summary = write(Path(tmp))
        summary["out"] = url
        write_text_atomic(Path(tmp, "dataset.json"), json.dumps(summary, indent=2) + "\n")
        written = {p.relative_to(tmp).as_posix() for p in _images(Path(tmp))}
        for rel in sorted(written):
            put_file(Path(tmp, rel), f"{url}/{rel}")
        for rel in existing:  # ours, left over from an earlier run with another count or split
            if rel not in written and re.fullmatch(r"(train|val|test)/\d{5}\.png", rel):
                remove(f"{url}/{rel}")
        put_file(Path(tmp, "dataset.json"), f"{url}/dataset.json")
    return summary


def _prepare_folder(out: Path, counts: dict[str, int]) -> list[tuple[str, int]]:
    """Check that ``out`` may be written, make the split folders, remove our stale images.

    Returns the (split, index) of every image to write.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} exists and is not a folder")
    existing = _images(out) if out.is_dir() else []
    if existing and not _is_ours(out):
        raise ConfigError("out", f"{out} already holds images ({existing[0]}) and is not a synthetic dataset; "
                                 "choose a new or empty folder")
    names: list[tuple[str, int]] = []
    i = 0
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        for _ in range(counts[split]):
            names.append((split, i))
            i += 1
    keep = {_image_path(out, split, idx) for split, idx in names}
    for p in existing:  # ours, left over from an earlier run with another count or split
        if p not in keep and re.fullmatch(r"\d{5}\.png", p.name):
            p.unlink(missing_ok=True)
    return names


def _image_path(out: Path, split: str, index: int) -> Path:
    return out / split / f"{index:05d}.png"


def _images(out: Path) -> list[Path]:
    """Image files already under the split folders of ``out``."""
    files = []
    for split in SPLITS:
        d = out / split
        if d.is_dir():
            files += [p for p in d.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES]
    return files


def read_summary(out: str | os.PathLike) -> dict | None:
    """``out/dataset.json`` of a folder we wrote (what :func:`write_dataset` returned), else None."""
    try:
        summary = json.loads((data_path(out) / "dataset.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("generator") in OUR_GENERATORS else None


def _is_ours(out: Path) -> bool:
    """Whether ``out/dataset.json`` says we wrote the folder."""
    return read_summary(out) is not None


def _write_pairs(out: Path, names: list[tuple[str, int]], pair_at: Callable[[int], Pair],
                 progress: str | None, skip_errors: type[Exception] | tuple[type[Exception], ...] = ()
                 ) -> dict[int, Exception]:
    """Each pair as one A|B PNG; ``progress``: the label of a progress bar, or None for none.
    Returns the errors of the pairs skipped, by index (an earlier run's file for them is removed)."""
    bar = None
    if progress is not None:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(names), desc=progress, unit="img")
        except ImportError:  # pragma: no cover - tqdm is a dependency
            bar = None
    skipped: dict[int, Exception] = {}
    try:
        for split, idx in names:
            try:
                a, b = pair_at(idx)
            except skip_errors as e:
                skipped[idx] = e
                _image_path(out, split, idx).unlink(missing_ok=True)
                if bar is not None:
                    bar.write(f"skipped: {e}", file=sys.stderr)
                else:
                    print(f"skipped: {e}", file=sys.stderr, flush=True)
            else:
                img = Image.fromarray(np.concatenate([a, b], axis=1))
                with atomic_path(_image_path(out, split, idx)) as tmp:
                    img.save(tmp, format="PNG", compress_level=3)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return skipped
