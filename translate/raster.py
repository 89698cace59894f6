"""GeoTIFF (and other GDAL rasters) in and out, window by window, through one Predictor.

``translate predict``, ``translate convert`` and the service translate a raster with
:func:`translate_raster` (or :func:`translate_raster_bytes` for an upload). Reading and writing go
through rasterio (GDAL) by windows: a :class:`RasterSource` gives the tiled runner the windows it
asks for (:mod:`translate.windows`) and a :class:`GeoTiffSink` writes finished rows in whole rows
of GeoTIFF blocks, so a 20000 x 20000 raster translates in memory bounded by a band of tiles.

The rules, stated here and recorded in every output's tags (``gdalinfo`` shows them):

* **Bands.** ``--bands 3,2,1`` names the raster bands (1-based) that feed the model's red, green
  and blue (one band for a gray model, or one band repeated for an RGB model). By default: the
  bands whose colour interpretation is red, green and blue; else the first three bands that are
  not alpha; else the one band. An RGB model given one band repeats it; a gray model given three
  takes their luminance, as for any image. Tag ``TRANSLATE_BANDS``.
* **Bit depth.** 8-bit bands are used as they are. Any other type (16-bit, 32-bit, float) is
  stretched per band: the ``--stretch`` percentiles (default 2 and 98) of the band's valid pixels
  map linearly to 0 and 255, clipped. The percentiles come from a decimated read (the raster's
  overviews when it has them, else a grid of small windows), the whole raster when it is small.
  Tag ``TRANSLATE_STRETCH``: the rule and each band's limits.
* **Nodata.** A pixel is nodata when every selected band is (GDAL's masks: nodata values, an
  alpha band, an internal mask), as GDAL's dataset mask says: a dark pixel with one band at the
  nodata value is still valid. When the input has a mask the output gets an alpha band: the
  input's mask (0 for nodata, 255 for valid, or the input's own alpha values), and its colour
  bands are 0 where it is 0.
* **Output.** A GeoTIFF (``.tif``) with the input's CRS, geotransform (or GCPs), tiled 512 x 512,
  deflate with horizontal differencing, BigTIFF when needed; ``--cog`` writes a Cloud-Optimized
  GeoTIFF (overviews, tiles in order) instead. Tags ``TRANSLATE_MODEL``, ``TRANSLATE_TILING``
  (the predictor's tiling mode for this raster), ``TRANSLATE_SOURCE``.

Every output is written to a temporary name and renamed into place (:mod:`translate.files`).
rasterio is imported where it is used (``# lazy``): ``translate --help`` does not pay for GDAL.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import ConfigError, ImageError
from .files import atomic_path, scratch_path
from .imageio import MAX_PIXELS, is_raster_file
from .options import opt
from .predictor import Predictor

COMPRESSIONS = ("deflate", "zstd", "lzw", "none")
BLOCK = 512  # GeoTIFF tile side (GDAL's COG default)
SAMPLES = 1 << 20  # pixels per band the stretch percentiles are computed from
SAMPLE_WINDOW = 64  # side of the windows sampled when the raster has no overviews
CACHE_MB = 256  # GDAL's block cache while translating (its default is 5 % of the machine's memory)


@dataclass(frozen=True)
class RasterOptions:
    """How rasters are read and written (flags of ``translate predict`` and ``translate convert``)."""

    bands: str | None = opt(None, "raster bands (1-based) for the model's channels, e.g. 3,2,1; auto: the red, "
                                  "green and blue bands, else the first three, else the one band")
    stretch: str = opt("2,98", "rasters deeper than 8 bits: these per-band percentiles (LOW,HIGH) of the valid "
                               "pixels are stretched to 0..255 (recorded in the output's tags)")
    compress: str = opt("deflate", "compression of the GeoTIFFs written", choices=COMPRESSIONS)
    cog: bool = opt(False, "write Cloud-Optimized GeoTIFFs (internal overviews)")

    def __post_init__(self):
        self.band_list  # noqa: B018  (validates)
        self.percentiles  # noqa: B018
        if self.compress not in COMPRESSIONS:
            raise ConfigError("--compress", f"expected one of {', '.join(COMPRESSIONS)}, got {self.compress!r}")

    @property
    def band_list(self) -> tuple[int, ...] | None:
        if self.bands is None or not str(self.bands).strip():
            return None
        try:
            out = tuple(int(b) for b in str(self.bands).split(","))
        except ValueError:
            raise ConfigError("--bands", f"expected band numbers like 3,2,1, got {self.bands!r}") from None
        if len(out) not in (1, 3) or min(out) < 1:
            raise ConfigError("--bands", f"expected one or three band numbers from 1, got {self.bands!r}")
        return out

    @property
    def percentiles(self) -> tuple[float, float]:
        try:
            low, high = (float(p) for p in str(self.stretch).split(","))
        except ValueError:
            raise ConfigError("--stretch", f"expected two percentiles LOW,HIGH like 2,98, got {self.stretch!r}") \
                from None
        if not 0 <= low < high <= 100:
            raise ConfigError("--stretch", f"expected 0 <= LOW < HIGH <= 100, got {self.stretch!r}")
        return low, high

    @classmethod
    def of(cls, options: Any) -> RasterOptions:
        """These options taken from an object with the same fields (e.g. ConvertOptions)."""
        return cls(**{name: getattr(options, name) for name in cls.__dataclass_fields__})


# ------------------------------------------------------------------ reading
@contextlib.contextmanager
def open_raster(src: str | os.PathLike | bytes, name: str | None = None) -> Iterator[Any]:
    """An open rasterio dataset for a path or a file's bytes; ImageError naming it if GDAL cannot read it."""
    import rasterio  # lazy: GDAL
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    name = name or ("<upload>" if isinstance(src, bytes) else str(src))
    with contextlib.ExitStack() as stack:
        try:
            with warnings.catch_warnings():  # a plain TIFF is fine: its output is plain too
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                if isinstance(src, bytes):
                    if not src:
                        raise ImageError(name, "empty file")
                    ds = stack.enter_context(stack.enter_context(rasterio.MemoryFile(src)).open())
                else:
                    ds = stack.enter_context(rasterio.open(src))
        except RasterioError as e:
            raise ImageError(name, f"not a readable raster ({e})") from None
        if ds.width <= 0 or ds.height <= 0 or ds.count < 1:
            raise ImageError(name, f"empty raster ({ds.width}x{ds.height}, {ds.count} bands)")
        yield ds


def choose_bands(ds: Any, wanted: tuple[int, ...] | None, name: str) -> tuple[int, ...]:
    """The bands that feed the model (see the module's rules): ``wanted`` checked, or the default."""
    from rasterio.enums import ColorInterp  # lazy: GDAL

    if wanted is not None:
        bad = [b for b in wanted if b > ds.count]
        if bad:
            raise ImageError(name, f"has {ds.count} band(s); --bands asks for band {bad[0]}")
        return wanted
    interp = list(ds.colorinterp)
    if interp == [ColorInterp.palette]:
        raise ImageError(name, "a palette raster; expand it to RGB first (gdal_translate -expand rgb)")
    if all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return tuple(interp.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue))
    colour = [i + 1 for i, c in enumerate(interp) if c != ColorInterp.alpha]
    if len(colour) >= 3:
        return tuple(colour[:3])
    if len(colour) == 1:
        return (colour[0],)
    raise ImageError(name, f"has {len(colour)} colour bands; say which feed the model with --bands (e.g. 1,2,1)")


def stretch_limits(ds: Any, bands: tuple[int, ...], percentiles: tuple[float, float],
                   samples: int = SAMPLES) -> list[tuple[float, float]] | None:
    """Per band (low, high): the ``percentiles`` of its valid pixels; None when every band is 8-bit.

    Small rasters are read whole; larger ones through their overviews (a decimated read) or, without
    overviews, a grid of ``SAMPLE_WINDOW`` windows spread evenly: about ``samples`` pixels a band."""
    from rasterio.windows import Window  # lazy: GDAL

    if all(ds.dtypes[b - 1] == "uint8" for b in bands):
        return None
    h, w = ds.height, ds.width
    if h * w <= samples:
        parts = [ds.read(bands, masked=True)]
    elif ds.overviews(bands[0]):
        f = math.sqrt(h * w / samples)
        parts = [ds.read(bands, out_shape=(len(bands), max(1, round(h / f)), max(1, round(w / f))), masked=True)]
    else:
        n = max(1, round(math.sqrt(samples) / SAMPLE_WINDOW))
        sy, sx = min(SAMPLE_WINDOW, h), min(SAMPLE_WINDOW, w)
        ys, xs = (_centres(length, side, min(n, max(1, length // side))) for length, side in ((h, sy), (w, sx)))
        parts = [ds.read(bands, window=Window(x, y, sx, sy), masked=True) for y in ys for x in xs]
    limits = []
    for i in range(len(bands)):
        values = np.concatenate([np.ma.compressed(p[i]) for p in parts]).astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            limits.append((0.0, 1.0))  # no valid pixel was seen: everything is nodata or the sample missed it
            continue
        low, high = (float(v) for v in np.percentile(values, percentiles))
        limits.append((low, high if high > low else low + 1.0))
    return limits


def _centres(length: int, side: int, n: int) -> list[int]:
    """Starts of ``n`` windows of ``side``, each centred in one of ``n`` equal cells of ``length``
    (a stratified sample: no part of the raster counts twice)."""
    return [int(min(max(0, (i + 0.5) * length / n - side / 2), length - side)) for i in range(n)]


class RasterSource:
    """A raster's ``bands`` read by windows as uint8 (stretched by ``limits`` when given): a
    :class:`translate.windows.TileSource`. ``largest_read`` is the most pixels one read asked for."""

    def __init__(self, ds: Any, bands: tuple[int, ...], limits: list[tuple[float, float]] | None = None):
        from rasterio.enums import MaskFlags  # lazy: GDAL

        self.ds, self.bands, self.limits = ds, list(bands), limits
        self.height, self.width, self.channels = ds.height, ds.width, len(bands)
        self.has_mask = any(ds.mask_flag_enums[b - 1] != [MaskFlags.all_valid] for b in bands)
        self.largest_read = 0

    def _window(self, y0: int, y1: int, x0: int, x1: int):
        from rasterio.windows import Window  # lazy: GDAL

        self.largest_read = max(self.largest_read, (y1 - y0) * (x1 - x0))
        return Window(x0, y0, x1 - x0, y1 - y0)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        a = self.ds.read(self.bands, window=self._window(y0, y1, x0, x1))
        if self.limits is not None:
            low = np.array([lo for lo, _ in self.limits], np.float32)[:, None, None]
            scale = np.array([255.0 / (hi - lo) for lo, hi in self.limits], np.float32)[:, None, None]
            a = np.nan_to_num((a.astype(np.float32) - low) * scale, nan=0.0, posinf=255.0, neginf=0.0)
            a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(a.transpose(1, 2, 0))

    def read_mask(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """uint8 (y1 - y0, x1 - x0): 0 where every band is nodata, else 255 (or the alpha band's value)."""
        return self.ds.read_masks(self.bands, window=self._window(y0, y1, x0, x1)).max(axis=0)


# ------------------------------------------------------------------ writing
class GeoTiffSink:
    """Finished rows written to an open GeoTIFF in whole rows of its blocks (so no compressed block
    is written twice), gathered in one buffer of ``block`` rows; with ``mask`` (a RasterSource),
    invalid pixels are zeroed and the mask goes to the last band as alpha. A
    :class:`translate.windows.TileSink`; call :meth:`close` at the end."""

    def __init__(self, out: Any, block: int, mask: RasterSource | None = None):
        self.out, self.block, self.mask = out, min(block, out.height), mask
        self.buffer: np.ndarray | None = None  # (C, block, W)
        self.held = 0  # rows in the buffer
        self.top = 0  # the first row not written yet

    def write(self, y0: int, rows: np.ndarray) -> None:
        if y0 != self.top + self.held:
            raise ValueError(f"rows must come in order: got row {y0}, expected {self.top + self.held}")
        if self.buffer is None:
            self.buffer = np.empty((rows.shape[2], self.block, self.out.width), np.uint8)
        while len(rows):
            n = min(len(rows), self.block - self.held)
            self.buffer[:, self.held:self.held + n] = rows[:n].transpose(2, 0, 1)
            self.held, rows = self.held + n, rows[n:]
            if self.held == self.block:
                self._flush()

    def close(self) -> None:
        if self.held:
            self._flush()
        if self.top != self.out.height:
            raise ValueError(f"{self.top} of {self.out.height} rows were written")

    def _flush(self) -> None:
        from rasterio.windows import Window  # lazy: GDAL

        assert self.buffer is not None  # write() makes it before it holds a row
        n, data = self.held, self.buffer[:, :self.held]
        window = Window(0, self.top, self.out.width, n)
        channels = data.shape[0]
        if self.mask is not None:
            valid = self.mask.read_mask(self.top, self.top + n, 0, self.out.width)
            data[:, valid == 0] = 0
            self.out.write(valid, channels + 1, window=window)
        self.out.write(data, list(range(1, channels + 1)), window=window)
        self.top, self.held = self.top + n, 0


def output_profile(ds: Any, channels: int, alpha: bool, options: RasterOptions) -> dict[str, Any]:
    """The GeoTIFF creation profile of a translated ``ds``: its georeferencing, our layout."""
    compress = {"compress": options.compress, "predictor": 2} if options.compress != "none" else {}
    photometric = "RGB" if channels == 3 else "MINISBLACK"
    return dict(driver="GTiff", width=ds.width, height=ds.height, count=channels + int(alpha), dtype="uint8",
                crs=ds.crs, transform=ds.transform, tiled=True, blockxsize=BLOCK, blockysize=BLOCK,
                interleave="pixel", photometric=photometric, BIGTIFF="IF_SAFER", **compress,
                **({"alpha": "YES"} if alpha else {}))


def _tags(predictor: Predictor, model: str, source: str, bands, percentiles, limits, tiled: bool) -> dict[str, str]:
    """The output's TRANSLATE_* tags, once the raster is translated (the tiled runner's plan is known)."""
    tiling: dict[str, Any] = {"mode": "whole"}
    if tiled:
        info = dict(predictor.tiler.last_info or {})  # the statistics mode used, tiles, passes, layers
        tiling = {"mode": "tiled", **asdict(predictor.tiling), **info, "tile": predictor.tiling.tile,
                  "tile_used": info.get("tile")}
    stretch: dict[str, Any] = {"rule": "none: 8-bit input"} if limits is None else {
        "rule": "percentile", "percentiles": list(percentiles),
        "bands": {str(b): [lo, hi] for b, (lo, hi) in zip(bands, limits, strict=True)}}
    arch = predictor.metadata.get("arch")
    return {"TRANSLATE_MODEL": model, **({"TRANSLATE_MODEL_ARCH": json.dumps(arch)} if arch else {}),
            "TRANSLATE_TILING": json.dumps(tiling), "TRANSLATE_BANDS": ",".join(map(str, bands)),
            "TRANSLATE_STRETCH": json.dumps(stretch), "TRANSLATE_SOURCE": source}


def _translate_into(predictor: Predictor, ds: Any, target: str, options: RasterOptions, model: str,
                    name: str, progress: Callable[[int, int], None] | None, z: np.ndarray | None = None) -> dict[str, str]:
    """Translate ``ds`` into a tiled GeoTIFF at ``target`` (a path or GDAL /vsimem/ name); returns its tags."""
    import rasterio  # lazy: GDAL
    from rasterio.enums import ColorInterp
    from rasterio.errors import NotGeoreferencedWarning

    bands = choose_bands(ds, options.band_list, name)
    limits = stretch_limits(ds, bands, options.percentiles)
    source = RasterSource(ds, bands, limits)
    channels = predictor.output_nc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        out = rasterio.open(target, "w", **output_profile(ds, channels, source.has_mask, options))
    with out:
        if not ds.transform or ds.transform.is_identity:
            gcps, gcp_crs = ds.gcps
            if gcps:
                out.gcps = (gcps, gcp_crs)
        colour = [ColorInterp.red, ColorInterp.green, ColorInterp.blue] if channels == 3 else [ColorInterp.gray]
        out.colorinterp = colour + ([ColorInterp.alpha] if source.has_mask else [])
        sink = GeoTiffSink(out, BLOCK, source if source.has_mask else None)
        predictor.translate_source(source, sink, progress, z)
        sink.close()
        tags = _tags(predictor, model, Path(name).name, bands, options.percentiles, limits,
                     predictor.tiling.wants(ds.height, ds.width))
        out.update_tags(**tags)
    return tags


def _cog(src: str, dst: str, options: RasterOptions) -> None:
    import rasterio.shutil  # lazy: GDAL

    compress = {"compress": options.compress, "predictor": "2"} if options.compress != "none" else {}
    rasterio.shutil.copy(src, dst, driver="COG", blocksize=BLOCK, overview_resampling="average",
                         BIGTIFF="IF_SAFER", **compress)


def _check_size(ds: Any, name: str, max_pixels: int | None) -> None:
    if max_pixels is not None and ds.width * ds.height > max_pixels:
        raise ImageError(name, f"raster is {ds.width}x{ds.height} = {ds.width * ds.height:,} pixels, over the "
                               f"limit of {max_pixels:,}")


def translate_raster(predictor: Predictor, src: str | os.PathLike, dst: str | os.PathLike,
                     options: RasterOptions | None = None, *, model: str | None = None,
                     write_guard: Callable[[], contextlib.AbstractContextManager] | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     max_pixels: int | None = None, z: np.ndarray | None = None) -> dict[str, str]:
    """Translate the raster file ``src`` into the GeoTIFF ``dst`` (written atomically; the rename runs
    inside ``write_guard()`` when given). Returns the tags written. ImageError names ``src`` when
    it cannot be read; ``model`` is what the tags call the model (default: the predictor's source);
    ``z``: a multimodal model's latent code."""
    import rasterio  # lazy: GDAL
    from rasterio.errors import RasterioError

    options = options or RasterOptions()
    name = str(src)
    try:
        with rasterio.Env(GDAL_CACHEMAX=CACHE_MB), open_raster(src, name) as ds:
            _check_size(ds, name, max_pixels)
            with atomic_path(dst, commit_guard=write_guard) as tmp:
                with scratch_path(dst) if options.cog else contextlib.nullcontext(tmp) as target:
                    tags = _translate_into(predictor, ds, str(target), options, model or predictor.source, name,
                                           progress, z)
                    if options.cog:
                        _cog(str(target), str(tmp), options)
    except RasterioError as e:
        raise ImageError(name, f"cannot read or write the raster ({e})") from None
    return tags


def translate_raster_bytes(predictor: Predictor, data: bytes, options: RasterOptions | None = None, *,
                           name: str = "<upload>", model: str | None = None,
                           max_pixels: int | None = MAX_PIXELS) -> bytes:
    """A raster file's bytes (an upload) -> the translated GeoTIFF's bytes (same rules as
    :func:`translate_raster`; everything in memory, so ``max_pixels`` bounds it)."""
    import rasterio  # lazy: GDAL
    from rasterio.errors import RasterioError

    options = options or RasterOptions()
    try:
        with rasterio.Env(GDAL_CACHEMAX=CACHE_MB), open_raster(data, name) as ds:
            _check_size(ds, name, max_pixels)
            with rasterio.MemoryFile(ext=".tif") as out, rasterio.MemoryFile(ext=".tif") as cog:
                _translate_into(predictor, ds, out.name, options, model or predictor.source, name, None)
                if not options.cog:
                    return out.read()
                _cog(out.name, cog.name, options)
                return cog.read()
    except RasterioError as e:
        raise ImageError(name, f"cannot read or write the raster ({e})") from None


def decode_raster(data: bytes, options: RasterOptions | None = None, *, name: str = "<upload>",
                  max_pixels: int | None = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray | None]:
    """A raster file's bytes -> (uint8 H x W x 1 or 3: the chosen bands, stretched by the same rules;
    the mask as alpha, or None when every pixel is valid), for callers that translate arrays (the
    service's batched path, answering PNG). ImageError names ``name``."""
    import rasterio  # lazy: GDAL
    from rasterio.errors import RasterioError

    options = options or RasterOptions()
    try:
        with rasterio.Env(GDAL_CACHEMAX=CACHE_MB), open_raster(data, name) as ds:
            _check_size(ds, name, max_pixels)
            bands = choose_bands(ds, options.band_list, name)
            source = RasterSource(ds, bands, stretch_limits(ds, bands, options.percentiles))
            image = source.read(0, ds.height, 0, ds.width)
            return image, source.read_mask(0, ds.height, 0, ds.width) if source.has_mask else None
    except RasterioError as e:
        raise ImageError(name, f"cannot read the raster ({e})") from None


def raster_pixels(data: bytes) -> int:
    """Width x height of a raster file's bytes from its header (0 when GDAL cannot read one): for a
    service that answers 413 rather than 400 to a raster over its pixel limit."""
    try:
        with open_raster(data) as ds:
            return ds.width * ds.height
    except ImageError:
        return 0


def is_raster_upload(data: bytes) -> bool:
    """Whether uploaded bytes are a TIFF (GeoTIFF) for :func:`translate_raster_bytes`."""
    return data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def translate_path(predictor: Predictor, src: str | os.PathLike, dst: str | os.PathLike,
                   options: RasterOptions | None = None, *, model: str | None = None,
                   write_guard: Callable[[], contextlib.AbstractContextManager] | None = None,
                   progress: Callable[[int, int], None] | None = None, z: np.ndarray | None = None) -> None:
    """Translate one file as ``translate predict`` and ``translate convert`` do: a raster by windows
    into a GeoTIFF (:func:`translate_raster`), any other image decoded whole
    (:meth:`Predictor.translate_file`); ``dst`` from :func:`translate.imageio.output_name`. ``z``: a
    multimodal model's latent code (one of its samples)."""
    if is_raster_file(src):
        translate_raster(predictor, src, dst, options, model=model, write_guard=write_guard, progress=progress, z=z)
        return
    try:
        data = Path(src).read_bytes()
    except OSError as e:
        raise ImageError(src, f"cannot open ({e.strerror or e})") from None
    predictor.translate_file(data, str(src), dst, write_guard=write_guard, z=z)
