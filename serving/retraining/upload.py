"""Upload validation for retraining: a zip (the service) or a folder (the CLI) of paired images
-> an aligned data set under the store, or a :class:`DataError` naming the entry and nothing written.

The upload must hold aligned A|B images, flat or in ``train/`` with optional ``val/`` and
``test/``; one common top-level folder is stripped (a set made by ``translate data make`` or
``translate data pair`` is one, its ``dataset.json`` skipped). Refused: unsafe paths (``..``, absolute,
drive letters, backslashes, symbolic links: zip-slip), more than ``max_files`` files or
``max_bytes`` uncompressed (zip bombs; counted while reading, not trusted from the header),
non-images, corrupt or too-large images (fully decoded by :mod:`translate.imageio` with
``max_pixels``), images too narrow to be a pair, too few pairs. Files go to a fresh hidden
folder which is renamed into place in one step, so a refused upload leaves nothing behind.

Held-out pairs: the upload's ``test/`` split, else its ``val/`` split, else a deterministic
``HOLDOUT_FRACTION`` of its pairs (:func:`translate.data.split_holdout`) moved to ``val/``
here, so training (which reads ``train/`` only) never sees them.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from translate import imageio
from translate.class_maps import PALETTE_FILE
from translate.errors import DataError, ImageError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # a member first, an empty archive, a spanned one
HOLDOUT_FRACTION = 0.1  # of an upload without val/ or test/, held out for the comparison
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may hold. ``None`` means no limit (the CLI's local folders)."""

    max_files: int | None = 10_000
    max_bytes: int | None = 1 << 30  # uncompressed, all files together
    max_file_bytes: int | None = 256 << 20  # uncompressed, one file
    max_pixels: int = 8192 * 4096  # per file: an aligned pair is twice as wide as one image
    min_pairs: int = 2  # at least one to train on and one to compare on


UPLOAD_LIMITS = UploadLimits()
FOLDER_LIMITS = UploadLimits(max_files=None, max_bytes=None, max_file_bytes=None)


@dataclass
class Entry:
    """One file of an upload, read on demand."""

    name: str  # as given (zip member name, or path relative to the folder)
    size: int  # declared size (the zip header; may lie)
    read: Callable[[int], bytes]  # read at most n bytes
    is_link: bool = False


def is_zip(data: bytes) -> bool:
    """Whether ``data`` starts as a zip archive does (its magic bytes; nothing else is read)."""
    return data.startswith(ZIP_MAGIC)


def zip_entries(zip_bytes: bytes) -> list[Entry]:
    """The files of an uploaded zip (directories left out); DataError when it is not a readable zip."""
    if not zip_bytes:
        raise DataError("upload.zip: empty upload")
    try:
        zf = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as e:
        raise DataError(f"upload.zip: not a readable zip archive ({e})") from None

    def reader(info: zipfile.ZipInfo) -> Callable[[int], bytes]:
        def read(n: int) -> bytes:
            try:
                with zf.open(info) as f:
                    return f.read(n)
            except Exception as e:  # bad CRC, unsupported compression, truncated archive
                raise DataError(f"{info.filename}: cannot be extracted ({e.__class__.__name__}: {e})") from None
        return read

    return [Entry(i.filename, i.file_size, reader(i), stat.S_ISLNK(i.external_attr >> 16))
            for i in zf.infolist() if not i.is_dir()]


def folder_entries(root: Path) -> list[Entry]:
    """The files under a local folder, as upload entries (paths relative to ``root``)."""
    def reader(p: Path) -> Callable[[int], bytes]:
        def read(n: int) -> bytes:
            with open(p, "rb") as f:
                return f.read(n)
        return read

    return [Entry(p.relative_to(root).as_posix(), p.stat().st_size, reader(p))
            for p in sorted(root.rglob("*")) if p.is_file()]


def _ignored(parts: tuple[str, ...]) -> bool:
    """Skipped, not refused: archive clutter (macOS resource forks, hidden files), the ``dataset.json`` that
    ``translate data make`` and ``translate data pair`` write next to their pairs and the ``palette.json`` of a set of
    class maps (the job scores class maps with the palette its model's training run kept)."""
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts) or parts[-1] in ("dataset.json", PALETTE_FILE)


def _safe_parts(name: str) -> tuple[str, ...]:
    if "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\x00" in name:
        raise DataError(f"{name}: unsafe path in the archive (absolute or Windows-style); refused")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if not parts or ".." in parts:
        raise DataError(f"{name}: unsafe path in the archive (leads outside the folder); refused")
    return parts


def _layout(entries: list[Entry], source: str) -> list[tuple[Entry, str, str]]:
    """(entry, split, file name) for each image; refuses what is not a flat or split layout."""
    files = []
    for e in entries:
        parts = _safe_parts(e.name)
        if e.is_link:
            raise DataError(f"{e.name}: symbolic link in the archive; refused")
        if not _ignored(parts):
            files.append((e, parts))
    if not files:
        raise DataError(f"{source}: no images found (expected aligned A|B images, flat or in train/, val/, test/)")
    tops = {parts[0] for _, parts in files}
    if len(tops) == 1 and all(len(p) > 1 for _, p in files) and next(iter(tops)) not in SPLITS:
        files = [(e, parts[1:]) for e, parts in files]  # a zipped folder: strip its name
    out, flat, split = [], [], []
    for e, parts in files:
        if len(parts) == 1:
            flat.append(e.name)
            out.append((e, "train", parts[0]))
        elif len(parts) == 2 and parts[0] in SPLITS:
            split.append(e.name)
            out.append((e, parts[0], parts[1]))
        else:
            raise DataError(f"{e.name}: unexpected location (expected images at the top level, "
                            f"or in train/, val/, test/)")
        if not imageio.is_image_file(out[-1][2]):
            raise DataError(f"{e.name}: not an image file (accepted: {', '.join(imageio.IMAGE_EXTENSIONS)})")
    if flat and split:
        raise DataError(f"{flat[0]}: images both at the top level and in split folders ({split[0]}); use one layout")
    if split and not any(s == "train" for _, s, _ in out):
        raise DataError(f"{source}: split folders without train/")
    seen = set()
    for e, s, fname in out:
        key = (s, PurePosixPath(fname).stem.lower())
        if key in seen:
            raise DataError(f"{e.name}: a second file named {PurePosixPath(fname).stem!r} in {s}/")
        seen.add(key)
    return out


def import_pairs(entries: list[Entry], dest: Path, source: str, limits: UploadLimits = UPLOAD_LIMITS) -> dict:
    """Validate ``entries`` and write them to ``dest`` (which must not exist) in one rename.

    Returns ``{"train", "val", "test": pair counts, "eval_split", "held_out": "uploaded"|"split_holdout"}``.
    """
    from translate import data as tdata  # lazy: torch and albumentations

    files = _layout(entries, source)
    if limits.max_files is not None and len(files) > limits.max_files:
        raise DataError(f"{source}: {len(files):,} files, over the limit of {limits.max_files:,}")
    budget = limits.max_bytes
    declared = sum(e.size for e, _, _ in files)
    if budget is not None and declared > budget:
        raise DataError(f"{source}: {declared:,} bytes uncompressed, over the limit of {budget:,}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        for e, split, fname in files:
            # never trust the declared size: read at most one byte past what is still allowed
            caps = [c for c in (budget, limits.max_file_bytes) if c is not None]
            data = e.read(min(caps) + 1 if caps else -1)
            if caps and len(data) > min(caps):
                raise DataError(f"{e.name}: uncompressed data over the limit of {min(caps):,} bytes "
                                f"({'upload' if min(caps) == budget else 'per file'})")
            if budget is not None:
                budget -= len(data)
            try:
                img = imageio.decode(data, source=e.name, max_pixels=limits.max_pixels)
            except ImageError as err:
                raise DataError(str(err)) from None
            if img.width < 2:
                raise DataError(f"{e.name}: {img.width}x{img.height} is too narrow for A and B side by side")
            (tmp / split).mkdir(exist_ok=True)
            (tmp / split / fname).write_bytes(data)
        counts = {}
        for split in SPLITS:
            if (tmp / split).is_dir():
                try:
                    tdata.check_readable(tdata.find_pairs(tmp, split), strict=True, max_pixels=limits.max_pixels)
                except ImageError as err:
                    raise DataError(f"{source}: {split}/{Path(err.source).name}: {err.reason}") from None
                counts[split] = len(tdata.find_pairs(tmp, split))
        if sum(counts.values()) < limits.min_pairs:
            raise DataError(f"{source}: {sum(counts.values())} pair(s); at least {limits.min_pairs} are needed "
                            f"(some to train on, some held out to compare the versions)")
        held_out = "uploaded"
        if "val" not in counts and "test" not in counts:
            held_out = "split_holdout"
            _, held = tdata.split_holdout(tdata.find_pairs(tmp, "train"), HOLDOUT_FRACTION, seed=0)
            (tmp / "val").mkdir()
            for src in held:
                assert isinstance(src.a, Path)  # a folder's pairs
                src.a.rename(tmp / "val" / src.a.name)
            counts["train"] -= len(held)
            counts["val"] = len(held)
        os.chmod(tmp, 0o755)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**{s: counts.get(s, 0) for s in SPLITS}, "eval_split": "test" if counts.get("test") else "val",
            "held_out": held_out}
