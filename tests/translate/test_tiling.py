"""Tiled prediction: same result as the whole image (whole-image statistics), bounded tiles."""
import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fp32 import FP32
from translate import imageio
from translate.errors import ConfigError
from translate.export import export_generator
from translate.networks import define_G, to_inference
from translate.predictor import Predictor
from translate.tiling import TileConfig
from translate.tiling.config import STATISTICS
from translate.tiling.geometry import (
    blend_weights,
    fit_tiles,
    plan_tiles,
    sample_windows,
    tile_origins,
)
from translate.tiling.graph.cut import find_split, probe
from translate.tiling.graph.norms import statistics_graph
from translate.tiling.statistics import AUTO, ON_SPLIT, ON_TILES
from translate.tiling.statistics.passes import ExactByLayer
from translate.tiling.statistics.split import SplitStatistics

WHOLE = TileConfig(threshold=None)
# every predictor here runs fp32 (runtime=FP32): tiles are held to the whole image at 1e-5 to 1e-3, and the
# tiled sessions' memory arena is ONNX Runtime's


def _model(arch, batch_stats=False):
    torch.manual_seed(0)
    G = to_inference(define_G(**arch), batch_stats=batch_stats)
    return export_generator(G, {"arch": arch, "batch_stats": batch_stats}, check=False)[0]


@pytest.fixture(scope="module")
def resnet():
    return _model(dict(name="resnet_2blocks", ngf=8, norm="instance"))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)


def _tiled(data, **kw):
    return Predictor(data, runtime=FP32, tiling=TileConfig(threshold=0, **kw))


def _mean_diff(a, b):
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize("tile,overlap,tol", [(64, 32, 0.02), (128, 64, 0.001)])
def test_tiles_with_whole_image_statistics_match_the_whole_image(tile, overlap, tol, resnet, image):
    x = imageio.to_network(image)
    whole = Predictor(resnet, runtime=FP32, tiling=WHOLE).run(x)
    p = _tiled(resnet, tile=tile, overlap=overlap, statistics="auto")  # no split: auto is exact, layer by layer
    tiled = p.run(x)
    assert tiled.shape == whole.shape == (1, 3, 200, 300)
    plan = p.tiler.last_plan
    assert plan.count > 4 and plan.layers > 0 and plan.passes == plan.layers + 1
    assert p.tiler.statistics == "exact" and p.tiler.last_info["statistics"] == "exact"
    naive = _tiled(resnet, tile=tile, overlap=overlap, statistics="per_tile").run(x)
    estimate = _tiled(resnet, tile=tile, overlap=overlap, statistics="estimate").run(x)
    err, naive_err, estimate_err = (_mean_diff(y, whole) for y in (tiled, naive, estimate))
    assert err < tol
    assert naive_err > 1.5 * err  # each tile normalised by its own statistics is measurably worse
    assert estimate_err < naive_err


@pytest.fixture(scope="module")
def unet():  # batch norm frozen as per-image statistics, as trained pix2pix models are exported
    return _model(dict(name="unet_32", ngf=8, norm="batch"), batch_stats=True)


@pytest.fixture(scope="module")
def unet_whole(unet, image):
    return Predictor(unet, runtime=FP32, tiling=WHOLE).run(imageio.to_network(image))


def test_unet_graph_splits_where_the_held_maps_are_small(unet):
    import onnx

    model = onnx.load_from_string(unet)
    tensors = probe(model, 3, 64)
    split = find_split(model, tensors, 8)
    assert split is not None and split.stride == 8 and len(split.inputs) == len(split.outputs) == 1
    assert split.floats_per_pixel == pytest.approx(32 / 64 + 64 / 64)  # 32 channels in at stride 8, 64 out
    assert split.pre == [0] and split.post == [5, 6] and split.inner == [1, 2, 3, 4]
    assert find_split(model, tensors, 4).floats_per_pixel == pytest.approx(16 / 16 + 32 / 16)  # too much to hold


def test_unet_exact_statistics_on_the_split_graph_equal_the_whole_image(unet, unet_whole, image):
    p = _tiled(unet, tile=64, overlap=32, statistics="exact")
    y = p.run(imageio.to_network(image))
    np.testing.assert_allclose(y, unet_whole, atol=1e-4)  # deep part on the whole image: its context too
    info = p.tiler.last_info
    assert info["statistics"] == "exact" and info["layers"] == {"whole_image": 4, "exact": 3, "sampled": 0}
    assert p.tiler.last_plan.passes == 3 + 1 + 1  # a pass per outer layer, the maps at the cut, the render


def test_unet_hybrid_is_close_to_the_whole_image_and_says_so(unet, unet_whole, image):
    x = imageio.to_network(image)
    p = _tiled(unet, tile=64, overlap=32, statistics="auto")  # auto is hybrid for a graph that splits
    y = p.run(x)
    info = p.tiler.last_info
    assert info["statistics"] == "hybrid" and info["cut_stride"] == 8
    assert info["layers"] == {"whole_image": 4, "exact": 0, "sampled": 3} and info["sample_windows"] > 4
    assert 0 < info["sample_share"] < 0.2 and info["tiles"] == p.tiler.last_plan.count > 4
    json.dumps(info)  # goes into the output's metadata as is
    naive = _tiled(unet, tile=64, overlap=32, statistics="per_tile").run(x)
    err, naive_err = _mean_diff(y, unet_whole), _mean_diff(naive, unet_whole)
    assert err < 0.012 and err < naive_err / 2  # measured 0.007 and 0.025
    # a canvas that fits one tile is measured whole: exact statistics, in one sampling run
    small = _tiled(unet, tile=320, overlap=32, statistics="hybrid")
    np.testing.assert_allclose(small.run(x), unet_whole, atol=1e-4)
    assert small.tiler.last_info["sample_windows"] == 1


def test_exact_statistics_equal_the_whole_image_with_enough_overlap(resnet, image):
    x = imageio.to_network(image)
    whole = Predictor(resnet, runtime=FP32, tiling=WHOLE).run(x)
    y = _tiled(resnet, tile=128, overlap=64, batch=3).run(x)  # batches do not change exact statistics
    assert _mean_diff(y, whole) < 0.001
    np.testing.assert_allclose(y, whole, atol=0.02)


def test_uint8_and_pil_paths_keep_size_and_alpha(resnet, image):
    whole, tiled = Predictor(resnet, runtime=FP32, tiling=WHOLE), _tiled(resnet, tile=128, overlap=64)
    out = tiled(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - whole(image).astype(int)).max() <= 3
    rgba = np.dstack([image[:97, :131], np.full((97, 131), 77, np.uint8)])
    img = tiled(Image.fromarray(rgba))
    assert img.size == (131, 97) and img.mode == "RGBA" and np.asarray(img)[..., 3].max() == 77
    # the float and uint8 tiled paths compute the same thing
    np.testing.assert_array_equal(out, imageio.from_network(tiled.run(imageio.to_network(image)))[0])


def _spy(tiler, seen):
    """Record (role, shapes of the 4-D inputs) of every session run the tiler's mode makes."""

    class Spy:
        def __init__(self, session, role):
            self.session, self.role = session, role

        def __getattr__(self, name):
            return getattr(self.session, name)

        def run(self, names, feeds):
            seen.append((self.role, {k: v.shape for k, v in feeds.items() if np.ndim(v) == 4}))
            return self.session.run(names, feeds)

    mode = tiler.mode
    make = mode.net.make_session
    mode.net.make_session = lambda graph: Spy(make(graph), "tiles")
    mode.session = Spy(mode.session, "tiles")
    if isinstance(mode, SplitStatistics):
        for name, role in (("sample_pre", "sample"), ("sample_post", "sample"), ("encode", "tiles"),
                           ("middle", "maps")):
            if getattr(mode, name) is not None:
                setattr(mode, name, Spy(getattr(mode, name), role))
        mode.prefix = {k: Spy(v, "tiles") for k, v in mode.prefix.items()}


def test_sessions_never_see_more_than_one_batch_of_tiles(resnet, image):
    p = _tiled(resnet, tile=64, overlap=32, batch=2)
    tiler, seen = p.tiler, []
    _spy(tiler, seen)
    assert p(image).shape == image.shape
    plan = tiler.last_plan
    assert plan.tile == (64, 64) and plan.canvas == (200, 300)  # 200x300 is a multiple of 4 already
    shapes = [s[tiler.mode.input_name] for _, s in seen]
    assert max(s[0] for s in shapes) <= 2 and {s[2:] for s in shapes} == {(64, 64)}
    assert len(seen) == plan.passes * len(plan.rows) * -(-len(plan.cols) // 2)  # batches within a tile row


def test_hybrid_runs_hold_a_tile_at_most(unet, image):
    a = np.concatenate([image, image[::-1]], axis=0)  # 400 x 300: 40 tiles of 64, 105 windows of 32 px
    p = _tiled(unet, tile=64, overlap=32, sample=0.6, statistics="hybrid")
    tiler, seen = p.tiler, []
    _spy(tiler, seen)
    assert p(a).shape == a.shape
    plan, cut = tiler.last_plan, tiler.last_info["cut_stride"]
    tiles, windows, maps = ([s for role, s in seen if role == r] for r in ("tiles", "sample", "maps"))
    assert tiles and windows and len(maps) == 1  # the deep part runs once, on the maps at the cut
    assert {s[tiler.mode.input_name] for s in tiles} == {(1, 3, *plan.tile)}
    assert max(np.prod(s[tiler.mode.input_name]) // 3 for s in windows) <= 64 * 64  # a tile's worth of windows per run
    assert len(windows) > 2  # the sample (60 % of the image) took several runs
    (shape,) = maps[0].values()
    assert shape[2:] == (plan.canvas[0] // cut, plan.canvas[1] // cut)


def test_threshold_decides_and_small_images_do_not_build_the_tiler(resnet, image):
    p = Predictor(resnet, runtime=FP32)  # default threshold: 2048 x 2048
    p(image)
    assert p._tiler is None
    p = Predictor(resnet, runtime=FP32, tiling=TileConfig(threshold=200 * 300 - 1, tile=128))
    p(image)
    assert p._tiler is not None and p.tiler.last_plan.count > 1


def test_unet_tiles_respect_the_size_multiple(unet):
    a = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    p = _tiled(unet, tile=50, overlap=10, statistics="estimate")  # rounded up to 64; the step to a multiple of 32
    assert p(a).shape == (70, 90, 3)
    plan = p.tiler.last_plan
    assert plan.tile == (64, 64) and plan.canvas == (96, 96)
    assert all(o % 32 == 0 for o in plan.rows + plan.cols)
    p = _tiled(unet, tile=50, overlap=10, statistics="hybrid")  # tiles align to the tiled part's deepest stride
    assert p(a).shape == (70, 90, 3)
    plan = p.tiler.last_plan
    assert plan.canvas == (96, 96) and plan.tile == (56, 56) and all(o % 8 == 0 for o in plan.rows + plan.cols)


def test_rewritten_graph_with_own_statistics_is_the_original(resnet):
    import onnxruntime as ort

    graph, layers = statistics_graph(resnet, 3, 64)
    assert len(layers) == 9 and {layer.stride for layer in layers} == {1, 2, 4}
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 48, 64)).astype(np.float32)
    feeds = {"input": x, "tile_weight": np.ones((1, 1, 48, 64), np.float32)}
    for layer in layers:
        feeds[layer.mean] = np.zeros(layer.channels, np.float32)
        feeds[layer.var] = np.ones(layer.channels, np.float32)
        feeds[layer.own] = np.asarray(1, np.float32)
    got = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(["output"], feeds)[0]
    np.testing.assert_allclose(got, Predictor(resnet, runtime=FP32, tiling=WHOLE).run(x), atol=1e-5)


def test_blend_weights_are_a_partition_of_unity():
    for length, tile, step in ((300, 64, 32), (224, 64, 32), (1000, 256, 192), (50, 64, 32)):
        tile = min(tile, length)
        origins = tile_origins(length, tile, step, 4)
        assert origins[0] == 0 and origins[-1] == length - tile
        assert all(o % 4 == 0 for o in origins) and max(np.diff(origins), default=0) <= step
        total = np.zeros(length)
        for o, w in zip(origins, blend_weights(length, tile, origins, (tile - step) // 2), strict=True):
            total[o:o + tile] += w
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
    (th, tw), rows, cols, step, overlap = plan_tiles(1024, 768, TileConfig(tile=512, overlap=128), 256, 256)
    assert (th, tw, step, overlap) == (512, 512, 256, 256) and rows == [0, 256, 512] and cols == [0, 256]


def test_fitted_tiles_cover_with_the_fewest_tiles_and_little_overlap():
    for length, tile, overlap, align in ((4096, 1536, 128, 32), (4096, 2176, 128, 32), (2048, 1024, 128, 32),
                                         (300, 64, 32, 4), (1000, 256, 64, 8), (200, 512, 64, 8)):
        side, origins = fit_tiles(length, tile, overlap, align)
        assert side % align == 0 and side <= -(-tile // align) * align
        assert origins[0] == 0 and origins[-1] + side == length and all(o % align == 0 for o in origins)
        gaps = np.diff(origins)
        assert all(side - g >= min(overlap, side // 2) for g in gaps)  # at least the overlap asked for
        fixed = plan_tiles(length, length, TileConfig(tile=tile, overlap=overlap), align, align)
        assert len(origins) <= len(fixed[1])
    assert fit_tiles(4096, 1536, 128, 32) == (1472, [0, 1312, 2624])  # 3 x 1472 instead of 3 x 1536


def test_sample_windows_spread_over_the_canvas():
    wins, w = sample_windows(4096, 4096, 0.15, 128, 16, 32)
    assert abs(len(wins) - 0.15 * 4096 ** 2 / 128 ** 2) < 5 and len(w) == len(wins) and w.shape[1:] == (1, 128, 128)
    ys = sorted({y0 for y0, _, _, _ in wins})
    assert len(ys) in (12, 13) and ys[0] < 4096 / 12 and ys[-1] > 4096 * 11 / 12 - 128 and all(y % 32 == 0 for y in ys)
    assert w[0, 0, 16:112, 16:112].min() == 1 and w[0, 0, :16].max() == 0  # a halo on edges inside the canvas
    assert w.sum() / (4096 * 4096) == pytest.approx(0.15 * (96 / 128) ** 2, rel=0.05)  # counted: the centres
    wins, w = sample_windows(300, 200, 0.5, 128, 16, 8)  # small canvas: smaller windows, still ~16 of them
    assert 8 <= len(wins) <= 20 and all(y1 <= 300 and x1 <= 200 for _, y1, _, x1 in wins)


def test_bad_tiling_options_are_named():
    with pytest.raises(ConfigError, match="tiling.tile"):
        TileConfig(tile=0)
    with pytest.raises(ConfigError, match="tiling.statistics"):
        TileConfig(statistics="median")
    with pytest.raises(ConfigError, match="tiling.sample"):
        TileConfig(sample=0)


def _seam_band(plan, shape, width):
    """Mask of canvas pixels within ``width`` of the middle of an overlap (where blended tiles meet)."""
    mask = np.zeros(shape, bool)
    th, tw = plan.tile
    for starts, side, axis in ((plan.rows, th, 0), (plan.cols, tw, 1)):
        for a, b in itertools.pairwise(starts):
            mid = (b + a + side) // 2  # the middle of the overlap of [a, a + side) and [b, b + side)
            sl = [slice(None), slice(None)]
            sl[axis] = slice(max(mid - width, 0), mid + width)
            mask[tuple(sl)] = True
    return mask


def test_unet_hybrid_seams_are_no_worse_than_the_rest(unet, unet_whole, image):
    p = _tiled(unet, tile=128, overlap=32, statistics="hybrid")
    y = p.run(imageio.to_network(image))
    plan = p.tiler.last_plan
    assert plan.canvas == (224, 320) and plan.count == 6  # padded to unet_32's multiple of 32, centred
    d = np.abs(y - unet_whole).mean(axis=(0, 1))
    band = _seam_band(plan, plan.canvas, 4)[12:212, 10:310]  # the image in the canvas
    assert 0.05 < band.mean() < 0.2
    # the deep part sees the whole image and the statistics are shared: no seam, only the sample's error
    # (measured 0.0052 near seams, 0.0051 elsewhere; estimated statistics 0.016 and 0.009)
    assert d[band].mean() < 0.012 and d[band].mean() < 1.25 * d[~band].mean()


def test_resnet_has_no_split_and_keeps_the_layer_by_layer_path(resnet, image):
    x = imageio.to_network(image)
    whole = Predictor(resnet, runtime=FP32, tiling=WHOLE).run(x)
    for asked in ("auto", "exact"):
        p = _tiled(resnet, tile=128, overlap=64, statistics=asked)
        assert isinstance(p.tiler.mode, ExactByLayer) and p.tiler.statistics == "exact"
        p.run(x)
        info = p.tiler.last_info
        assert info["statistics"] == "exact" and info["asked"] == asked and "cut_stride" not in info
        assert info["layers"] == {"exact": 9, "estimated": 0, "per_tile": 0}
    # hybrid asked of a ResNet: nothing runs on the whole image, every layer is measured on tiles or the
    # sample; small windows miss a ResNet's wide context (measured worse than estimate: auto never picks it)
    p = _tiled(resnet, tile=128, overlap=64, statistics="hybrid")
    y = p.run(x)
    info = p.tiler.last_info
    assert info["statistics"] == "hybrid" and info["cut_stride"] is None and info["layers"]["whole_image"] == 0
    assert info["layers"]["exact"] + info["layers"]["sampled"] == 9 and info["layers"]["sampled"] > 0
    assert _mean_diff(y, whole) < 0.08  # measured 0.040 (per-tile statistics 0.016, exact 0.0005)


def test_the_mode_used_is_recorded_for_the_output(unet, image, tmp_path):
    import io

    p = Predictor(unet, runtime=FP32, tiling=TileConfig(threshold=100 * 100, tile=64, overlap=32, statistics="auto"))
    small = image[:64, :64]
    p(small)
    assert p.last_tiling == {"mode": "whole"}
    p(image)
    t = p.last_tiling
    assert t["mode"] == "tiled" and t["statistics"] == "hybrid" and t["asked"] == "auto"
    assert t["tiles"] == p.tiler.last_plan.count and t["layers"]["whole_image"] == 4
    # the float path records it too
    p.run(imageio.to_network(small))
    assert p.last_tiling == {"mode": "whole"}
    # a PNG written by translate_file carries it as text; a whole-image one says so
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    p.translate_file(buf.getvalue(), "big.png", tmp_path / "big.png")
    with Image.open(tmp_path / "big.png") as img:
        assert img.size == (300, 200)
        tag = json.loads(img.text["TRANSLATE_TILING"])
    assert tag["mode"] == "tiled" and tag["statistics"] == "hybrid" and tag["cut_stride"] == 8
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="PNG")
    p.translate_file(buf.getvalue(), "small.png", tmp_path / "small.png")
    with Image.open(tmp_path / "small.png") as img:
        assert json.loads(img.text["TRANSLATE_TILING"]) == {"mode": "whole"}
    p.translate_file(buf.getvalue(), "small.png", tmp_path / "small.jpg")  # JPEG: no text chunks, still written
    assert (tmp_path / "small.jpg").stat().st_size > 0


@pytest.mark.parametrize("bad", ["median", "Hybrid", "", "whole"])
def test_an_unknown_statistics_mode_names_the_choices(bad):
    with pytest.raises(ConfigError, match="tiling.statistics") as e:
        TileConfig(statistics=bad)
    assert all(m in str(e.value) for m in ("auto", "hybrid", "exact", "estimate", "per_tile"))


def test_every_statistics_name_is_a_mode():
    assert set(STATISTICS) == {AUTO} | set(ON_TILES) | set(ON_SPLIT)
    assert all(mode.name == name for modes in (ON_TILES, ON_SPLIT) for name, mode in modes.items())


def test_default_is_auto_and_tiled_sessions_give_memory_back(unet, resnet):
    assert TileConfig().statistics == "auto"
    p = Predictor(unet, runtime=FP32, tiling=TileConfig(threshold=0, tile=64))
    assert p.tiler.statistics == "hybrid"
    assert Predictor(resnet, runtime=FP32, tiling=TileConfig(threshold=0)).tiler.statistics == "exact"
    # up to ten sub-graph sessions over a tile each: with arenas, each would keep its peak between images
    hy = p.tiler.mode
    sessions = [hy.session, hy.encode, hy.middle, *hy.prefix.values(), hy.sample_pre, hy.sample_post]
    assert all(not s.get_session_options().enable_cpu_mem_arena for s in sessions if s is not None)
    assert p.session.get_session_options().enable_cpu_mem_arena  # the whole-image session keeps its arena
