"""GeoTIFF in and out (rasterio): rasters made here, translated by windows, read back."""
import json
import tracemalloc

import numpy as np
import pytest
import rasterio
import torch
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from translate import raster
from translate.errors import ConfigError, ImageError
from translate.export import export_generator
from translate.networks import define_G, to_inference
from translate.predictor import Predictor
from translate.raster import RasterOptions, translate_raster, translate_raster_bytes
from translate.tiling import TileConfig

CRS = "EPSG:32633"
TRANSFORM = from_origin(500000.0, 4100000.0, 0.5, 0.5)


def _model(norm="instance"):
    torch.manual_seed(0)
    arch = dict(name="resnet_2blocks", ngf=8, norm=norm)
    return export_generator(to_inference(define_G(**arch), batch_stats=False), {"arch": arch}, check=False)[0]


@pytest.fixture(scope="module")
def resnet():
    return _model()


def write_raster(path, bands, **profile):
    """bands: (count, H, W); extra creation options in ``profile``."""
    count, h, w = bands.shape
    base = dict(driver="GTiff", width=w, height=h, count=count, dtype=bands.dtype.name, crs=CRS, transform=TRANSFORM)
    base.update(profile)
    with rasterio.open(path, "w", **base) as ds:
        ds.write(bands)
    return path


def hwc(bands):
    return np.ascontiguousarray(np.transpose(bands, (1, 2, 0)))


@pytest.fixture(scope="module")
def photo():
    """An 8-bit RGB 'aerial photo' with a nodata collar (0 in every band) on the left and at the top."""
    rng = np.random.default_rng(0)
    a = rng.integers(1, 256, (3, 150, 210), dtype=np.uint8)
    a[:, :, :17] = 0
    a[:, :9] = 0
    return a


@pytest.mark.parametrize("threshold", [None, 0])
def test_crs_transform_and_nodata_survive_and_pixels_match_the_array_path(tmp_path, resnet, photo, threshold):
    src = write_raster(tmp_path / "in.tif", photo, nodata=0)
    p = Predictor(resnet, tiling=TileConfig(threshold=threshold, tile=64, overlap=32))
    tags = translate_raster(p, src, tmp_path / "out.tif", model="tiny.onnx")
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.crs.to_epsg() == 32633 and out.transform == TRANSFORM
        assert out.count == 4 and out.colorinterp[3] == ColorInterp.alpha
        assert out.profile["tiled"] and out.profile["compress"] == "deflate" and out.profile["blockxsize"] == 512
        y = out.read()
        assert out.tags()["TRANSLATE_MODEL"] == "tiny.onnx" and out.tags() == {**tags, "AREA_OR_POINT": "Area"}
    alpha = y[3]
    assert (alpha[:, :17] == 0).all() and (alpha[:9] == 0).all() and (alpha[9:, 17:] == 255).all()
    assert (y[:3, :, :17] == 0).all()  # the collar stays empty in the colour bands too
    expected = p.translate_array(hwc(photo))  # the same predictor on the whole array
    np.testing.assert_array_equal(hwc(y[:3])[9:, 17:], expected[9:, 17:])
    tiling = json.loads(tags["TRANSLATE_TILING"])
    assert tiling["mode"] == ("tiled" if threshold == 0 else "whole")
    if threshold == 0:
        assert tiling["tile"] == 64 and tiling["statistics"] == "exact" and tiling["tiles"] == p.tiler.last_plan.count


def test_a_raster_far_over_the_memory_budget_is_read_and_written_by_windows(tmp_path):
    h, w, tile = 8192, 512, 128
    yy, xx = np.mgrid[0:h, 0:w]
    bands = np.stack([(xx // 7) % 256, (yy // 5) % 256, ((xx + yy) // 11) % 256]).astype(np.uint8)
    src = write_raster(tmp_path / "big.tif", bands, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    del bands, yy, xx
    p = Predictor(_model(norm="none"), tiling=TileConfig(threshold=0, tile=tile, overlap=32))
    seen = {}
    real = raster.RasterSource

    class Spy(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            seen["source"] = self

    raster.RasterSource = Spy
    tracemalloc.start()
    try:
        translate_raster(p, src, tmp_path / "out.tif")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        raster.RasterSource = real
    image = h * w * 3  # the raster as uint8; a float copy would be 4 times that
    assert seen["source"].largest_read <= tile * tile < image / 100
    assert peak < image / 2  # numpy never held the raster, not even as uint8
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.shape == (h, w) and out.count == 3 and out.transform == TRANSFORM


def test_sixteen_bit_bands_are_stretched_by_percentiles_recorded_in_the_tags(tmp_path, resnet):
    rng = np.random.default_rng(1)
    a = rng.normal(3000, 600, (4, 96, 128)).clip(1, 65535).astype(np.uint16)
    a[:, 80:] = 0  # nodata rows must not count in the percentiles
    src = write_raster(tmp_path / "ms.tif", a, nodata=0)
    p = Predictor(resnet, tiling=TileConfig(threshold=None))
    tags = translate_raster(p, src, tmp_path / "out.tif", RasterOptions(bands="3,2,1", stretch="1,99"))
    stretch = json.loads(tags["TRANSLATE_STRETCH"])
    assert stretch["rule"] == "percentile" and stretch["percentiles"] == [1, 99] and tags["TRANSLATE_BANDS"] == "3,2,1"
    chosen = a[[2, 1, 0]].astype(np.float64)
    expected_in = np.empty((96, 128, 3), np.uint8)
    for i, b in enumerate(("3", "2", "1")):
        low, high = np.percentile(chosen[i, :80], [1, 99])
        assert stretch["bands"][b] == pytest.approx([low, high])
        expected_in[..., i] = np.clip(np.rint((chosen[i] - low) * (255 / (high - low))), 0, 255)
    with rasterio.open(tmp_path / "out.tif") as out:
        y = out.read()
        assert out.tags()["TRANSLATE_STRETCH"] == tags["TRANSLATE_STRETCH"]
    expected = p.translate_array(expected_in)
    assert np.abs(hwc(y[:3])[:80].astype(int) - expected[:80]).max() <= 1  # float32 vs float64 stretch
    assert (y[3, 80:] == 0).all() and (y[3, :80] == 255).all()


@pytest.mark.parametrize("overviews", [False, True])
def test_the_stretch_of_a_large_raster_comes_from_a_decimated_read(tmp_path, overviews):
    rng = np.random.default_rng(2)
    a = (rng.gamma(2.0, 400.0, (1, 1024, 1024)) + np.linspace(0, 2000, 1024)[None, None]).astype(np.uint16)
    src = write_raster(tmp_path / "g.tif", a, tiled=True, blockxsize=128, blockysize=128)
    if overviews:
        with rasterio.open(src, "r+") as ds:
            ds.build_overviews([2, 4])
    values = a.astype(np.float64).ravel()
    with rasterio.open(src) as ds:
        assert bool(ds.overviews(1)) == overviews
        full = raster.stretch_limits(ds, (1,), (2, 98), samples=1024 * 1024)  # read whole: exact
        sampled = raster.stretch_limits(ds, (1,), (2, 98), samples=256 * 256)  # a quarter of a quarter
    assert full[0] == pytest.approx(tuple(np.percentile(values, [2, 98])))
    low, high = sampled[0]
    assert 1.5 < (values < low).mean() * 100 < 2.5 and 97.5 < (values < high).mean() * 100 < 98.5


def test_band_choice(tmp_path, resnet):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 40, 48), dtype=np.uint8)
    p = Predictor(resnet, tiling=TileConfig(threshold=None))
    # RGBA photo: the alpha band is the mask, not a colour, and comes back as alpha
    a[3, :5] = 0
    rgba = write_raster(tmp_path / "rgba.tif", a, photometric="RGB", alpha="YES")
    tags = translate_raster(p, rgba, tmp_path / "rgba_out.tif")
    assert tags["TRANSLATE_BANDS"] == "1,2,3"
    with rasterio.open(tmp_path / "rgba_out.tif") as out:
        y = out.read()
    np.testing.assert_array_equal(y[3], a[3])
    assert (y[:3, :5] == 0).all() and (y[:3, 5:] > 0).any()
    # four anonymous bands: the first three, unless --bands says otherwise
    ms = write_raster(tmp_path / "ms.tif", a, photometric="MINISBLACK")
    assert translate_raster(p, ms, tmp_path / "a.tif")["TRANSLATE_BANDS"] == "1,2,3"
    translate_raster(p, ms, tmp_path / "b.tif", RasterOptions(bands="4,2,1"))
    with rasterio.open(tmp_path / "b.tif") as out:
        np.testing.assert_array_equal(hwc(out.read()), p.translate_array(hwc(a[[3, 1, 0]])))
    # one band feeds an RGB model repeated, as a gray image does
    gray = write_raster(tmp_path / "gray.tif", a[:1])
    translate_raster(p, gray, tmp_path / "g.tif")
    with rasterio.open(tmp_path / "g.tif") as out:
        np.testing.assert_array_equal(hwc(out.read()), p.translate_array(a[0]))
    with pytest.raises(ImageError, match="ms.tif: has 4 band"):
        translate_raster(p, ms, tmp_path / "c.tif", RasterOptions(bands="5,2,1"))
    with pytest.raises(ImageError, match="2 colour bands"):
        translate_raster(p, write_raster(tmp_path / "two.tif", a[:2]), tmp_path / "d.tif")
    for bad, field in (("3,2", "--bands"), ("a,b,c", "--bands"), ("98,2", "--stretch"), ("5", "--stretch")):
        with pytest.raises(ConfigError, match=field):
            RasterOptions(**{field[2:]: bad})


def test_cog_output_and_bytes_in_and_out(tmp_path, resnet):
    yy, xx = np.mgrid[0:700, 0:900]
    a = np.stack([xx % 256, yy % 256, (xx * yy) % 256]).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", a)
    p = Predictor(resnet, tiling=TileConfig(threshold=None))
    translate_raster(p, src, tmp_path / "cog.tif", RasterOptions(cog=True))
    with rasterio.open(tmp_path / "cog.tif") as out:
        assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and out.overviews(1)
        assert out.crs.to_epsg() == 32633 and out.transform == TRANSFORM and "TRANSLATE_MODEL" in out.tags()
        cog = out.read()
    data = translate_raster_bytes(p, src.read_bytes(), name="in.tif")
    assert raster.is_raster_upload(data)
    with rasterio.MemoryFile(data) as mem, mem.open() as out:
        assert out.crs.to_epsg() == 32633 and out.transform == TRANSFORM
        np.testing.assert_array_equal(out.read(), cog)
    with pytest.raises(ImageError, match="upload: raster is 900x700"):
        translate_raster_bytes(p, src.read_bytes(), name="upload", max_pixels=1000)


def test_an_uploaded_raster_decodes_to_the_array_the_windows_give(tmp_path, photo):
    a = photo.astype(np.uint16) * 10 + 5
    a[:, :, :17] = 0
    src = write_raster(tmp_path / "in.tif", a, nodata=0)
    image, alpha = raster.decode_raster(src.read_bytes(), RasterOptions(bands="2,3,1"), name="in.tif")
    with rasterio.open(src) as ds:
        source = raster.RasterSource(ds, (2, 3, 1), raster.stretch_limits(ds, (2, 3, 1), (2, 98)))
        np.testing.assert_array_equal(image, source.read(0, 150, 0, 210))
    assert image.shape == (150, 210, 3) and (alpha[:, :17] == 0).all() and (alpha[9:, 17:] == 255).all()
    assert raster.raster_pixels(src.read_bytes()) == 150 * 210 and raster.raster_pixels(b"II*\x00") == 0
    with pytest.raises(ImageError, match="in.tif: not a readable raster"):
        raster.decode_raster(b"II*\x00" + bytes(40), name="in.tif")


def test_unreadable_rasters_are_named_and_nothing_is_left_behind(tmp_path, resnet):
    p = Predictor(resnet, tiling=TileConfig(threshold=None))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00 not really a tiff")
    with pytest.raises(ImageError, match="bad.tif: not a readable raster"):
        translate_raster(p, bad, tmp_path / "out" / "bad.tif")
    src = write_raster(tmp_path / "ok.tif", np.zeros((3, 16, 16), np.uint8))

    class Refused(Exception):
        pass

    def guard():
        raise Refused  # e.g. a convert run that ended while this file was being translated

    with pytest.raises(Refused):
        translate_raster(p, src, tmp_path / "out" / "ok.tif", RasterOptions(cog=True), write_guard=guard)
    assert list((tmp_path / "out").iterdir()) == []


def test_ground_control_points_are_kept_when_there_is_no_geotransform(tmp_path, resnet):
    from rasterio.control import GroundControlPoint

    gcps = [GroundControlPoint(row=r, col=c, x=10.0 + c * 1e-4, y=50.0 - r * 1e-4) for r, c in ((0, 0), (0, 47),
                                                                                              (39, 0), (39, 47))]
    a = np.random.default_rng(6).integers(0, 256, (3, 40, 48), dtype=np.uint8)
    src = tmp_path / "scan.tif"
    with rasterio.open(src, "w", driver="GTiff", width=48, height=40, count=3, dtype="uint8") as ds:
        ds.write(a)
        ds.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    translate_raster(Predictor(resnet, tiling=TileConfig(threshold=None)), src, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as out:
        got, crs = out.gcps
    assert crs.to_epsg() == 4326 and [(g.row, g.col, g.x, g.y) for g in got] == [(g.row, g.col, g.x, g.y)
                                                                                   for g in gcps]
