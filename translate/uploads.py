"""Decoding an upload: bytes a client sent, which nothing has checked, to pixels or a typed error, in one call.

The checks run in the order that costs least, and each refusal is an :class:`~translate.errors.ImageError`
subclass a service can map to its answer: a format an upload may have, from the first bytes
(:class:`UnsupportedFormat`); at most ``max_pixels`` by the header, before any pixel is decoded
(:class:`~translate.imageio.TooManyPixels`: decompression bombs); then the decode itself (an
``ImageError`` when the data is damaged). A TIFF (GeoTIFF, several bands, 16-bit) is read by
:mod:`translate.raster`'s rules, as ``translate predict`` reads the file; every other format by
:mod:`translate.imageio`.

:func:`is_image` tells from the first bytes alone whether bytes are an image of those formats (a service takes
such a body as the image whatever type it declares); :func:`upload_pixels` is the header-only half, cheap
enough to run before an upload is accepted; :func:`decode_upload` runs the same checks and decodes.
"""
from __future__ import annotations

import numpy as np

from . import gpu_jpeg, imageio, raster
from .errors import ImageError
from .imageio import TooManyPixels

UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")


class UnsupportedFormat(ImageError):
    """Bytes in none of the :data:`UPLOAD_FORMATS`, judged from their first bytes (the service's 415)."""

    def __init__(self, source: str, data: bytes):
        super().__init__(source, f"not a {', '.join(UPLOAD_FORMATS)} image (first bytes {data[:8]!r})")

    def __str__(self) -> str:  # the reason alone, as the service's 415 has always said it: it quotes the bytes
        return self.reason


def is_image(data: bytes) -> bool:
    """Whether ``data`` starts as an image in one of the :data:`UPLOAD_FORMATS` does (its magic bytes; nothing
    else is read)."""
    return imageio.sniff_format(data) in UPLOAD_FORMATS


def _check_header(data: bytes, max_pixels: int, source: str) -> tuple[str, int]:
    """(format, pixels the header claims; 0: no readable header) of an upload, refused as the module says."""
    if not data:
        raise ImageError(source, "empty file")
    fmt = imageio.sniff_format(data)
    if fmt not in UPLOAD_FORMATS:
        raise UnsupportedFormat(source, data)
    pixels = raster.raster_pixels(data) if fmt == "TIFF" else imageio.header_pixels(data)
    if pixels > max_pixels:
        raise TooManyPixels(source, f"the image header claims {pixels:,} pixels, over the limit of {max_pixels:,}")
    return fmt, pixels


def upload_pixels(data: bytes, max_pixels: int, source: str = "upload") -> int:
    """The pixels an upload's header claims, nothing decoded (GDAL reads a TIFF's header); 0 when it has no
    readable header, which :func:`decode_upload` then refuses as a damaged image."""
    return _check_header(data, max_pixels, source)[1]


def decode_upload(data: bytes, max_pixels: int, source: str = "upload",
                  gpu: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """An upload's bytes -> (uint8 H x W x C image, uint8 H x W alpha or None), after the header's checks.

    Alpha is what a PNG answer restores: an image's transparency (None when it is opaque everywhere, as a
    canvas drawing or most RGBA exports are), a raster's mask of valid pixels. Colour under transparent
    pixels is kept as it is. ``gpu``: a JPEG is decoded on the GPU where one is (:mod:`translate.gpu_jpeg`;
    elsewhere, and for a JPEG it does not take, on the CPU)."""
    fmt, _ = _check_header(data, max_pixels, source)
    if fmt == "TIFF":
        return raster.decode_raster(data, name=source, max_pixels=max_pixels)
    if gpu and fmt == "JPEG" and (pixels := gpu_jpeg.decode_jpeg(data)) is not None:
        return pixels, None  # a JPEG has no transparency
    rgb, alpha = imageio.split_alpha(imageio.decode(data, source=source, max_pixels=max_pixels))
    if alpha is not None and alpha.getextrema() == (255, 255):
        alpha = None
    return imageio.image_to_array(rgb), None if alpha is None else np.asarray(alpha, dtype=np.uint8)
