"""Tiled prediction: same result as the whole image (whole-image statistics), bounded tiles."""
import numpy as np
import pytest
import torch
from PIL import Image

from translate import imageio
from translate.errors import ConfigError
from translate.export import export_generator
from translate.networks import define_G, to_inference
from translate.predictor import Predictor
from translate.tiling import TileConfig, blend_weights, plan_tiles, statistics_graph, tile_origins

WHOLE = TileConfig(threshold=None)


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
    return Predictor(data, tiling=TileConfig(threshold=0, **kw))


def _mean_diff(a, b):
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize("arch,batch_stats,tile,overlap,tol", [
    (dict(name="resnet_2blocks", ngf=8, norm="instance"), False, 64, 32, 0.02),
    (dict(name="resnet_2blocks", ngf=8, norm="instance"), False, 128, 64, 0.001),
    (dict(name="unet_32", ngf=8, norm="instance"), False, 128, 64, 0.008),
    (dict(name="unet_32", ngf=8, norm="batch"), True, 128, 64, 0.008),  # batch norm frozen as per-image stats
])
def test_tiles_with_whole_image_statistics_match_the_whole_image(arch, batch_stats, tile, overlap, tol, image):
    data = _model(arch, batch_stats)
    x = imageio.to_network(image)
    whole = Predictor(data, tiling=WHOLE).run(x)
    p = _tiled(data, tile=tile, overlap=overlap)  # default: exact statistics, layer by layer
    tiled = p.run(x)
    assert tiled.shape == whole.shape == (1, 3, 200, 300)
    plan = p.tiler.last_plan
    assert plan.count > 4 and plan.layers > 0 and plan.passes == plan.layers + 1
    naive = _tiled(data, tile=tile, overlap=overlap, statistics="per_tile").run(x)
    estimate = _tiled(data, tile=tile, overlap=overlap, statistics="estimate").run(x)
    err, naive_err, estimate_err = (_mean_diff(y, whole) for y in (tiled, naive, estimate))
    assert err < tol
    assert naive_err > 1.5 * err  # each tile normalised by its own statistics is measurably worse
    assert estimate_err < naive_err


def test_exact_statistics_equal_the_whole_image_with_enough_overlap(resnet, image):
    x = imageio.to_network(image)
    whole = Predictor(resnet, tiling=WHOLE).run(x)
    y = _tiled(resnet, tile=128, overlap=64, batch=3).run(x)  # batches do not change exact statistics
    assert _mean_diff(y, whole) < 0.001
    np.testing.assert_allclose(y, whole, atol=0.02)


def test_uint8_and_pil_paths_keep_size_and_alpha(resnet, image):
    whole, tiled = Predictor(resnet, tiling=WHOLE), _tiled(resnet, tile=128, overlap=64)
    out = tiled(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - whole(image).astype(int)).max() <= 3
    rgba = np.dstack([image[:97, :131], np.full((97, 131), 77, np.uint8)])
    img = tiled(Image.fromarray(rgba))
    assert img.size == (131, 97) and img.mode == "RGBA" and np.asarray(img)[..., 3].max() == 77
    # the float and uint8 tiled paths compute the same thing
    np.testing.assert_array_equal(out, imageio.from_network(tiled.run(imageio.to_network(image)))[0])


def test_sessions_never_see_more_than_one_batch_of_tiles(resnet, image):
    p = _tiled(resnet, tile=64, overlap=32, batch=2)
    tiler, seen = p.tiler, []

    class Spy:  # records the input of every run of every session the tiler makes
        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def run(self, names, feeds):
            seen.append(feeds[tiler.input_name].shape)
            return self.session.run(names, feeds)

    make = tiler.make_session
    tiler.make_session = lambda graph: Spy(make(graph))
    tiler.session = Spy(tiler.session)
    assert p(image).shape == image.shape
    plan = tiler.last_plan
    assert plan.tile == (64, 64) and plan.canvas == (200, 300)  # 200x300 is a multiple of 4 already
    assert max(s[0] for s in seen) <= 2 and {s[2:] for s in seen} == {(64, 64)}
    assert len(seen) == plan.passes * len(plan.rows) * -(-len(plan.cols) // 2)  # batches within a tile row


def test_threshold_decides_and_small_images_do_not_build_the_tiler(resnet, image):
    p = Predictor(resnet)  # default threshold: 2048 x 2048
    p(image)
    assert p._tiler is None
    p = Predictor(resnet, tiling=TileConfig(threshold=200 * 300 - 1, tile=128))
    p(image)
    assert p._tiler is not None and p.tiler.last_plan.count > 1


def test_unet_tiles_respect_the_size_multiple():
    data = _model(dict(name="unet_32", ngf=8, norm="instance"))
    p = _tiled(data, tile=50, overlap=10)  # rounded up to 64; the step to a multiple of 32
    a = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    assert p(a).shape == (70, 90, 3)
    plan = p.tiler.last_plan
    assert plan.tile == (64, 64) and plan.canvas == (96, 96)
    assert all(o % 32 == 0 for o in plan.rows + plan.cols)


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
    np.testing.assert_allclose(got, Predictor(resnet, tiling=WHOLE).run(x), atol=1e-5)


def test_blend_weights_are_a_partition_of_unity():
    for length, tile, step in ((300, 64, 32), (224, 64, 32), (1000, 256, 192), (50, 64, 32)):
        tile = min(tile, length)
        origins = tile_origins(length, tile, step, 4)
        assert origins[0] == 0 and origins[-1] == length - tile
        assert all(o % 4 == 0 for o in origins) and max(np.diff(origins), default=0) <= step
        total = np.zeros(length)
        for o, w in zip(origins, blend_weights(length, tile, origins, (tile - step) // 2)):
            total[o:o + tile] += w
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
    (th, tw), rows, cols, step, overlap = plan_tiles(1024, 768, TileConfig(tile=512, overlap=128), 256, 256)
    assert (th, tw, step, overlap) == (512, 512, 256, 256) and rows == [0, 256, 512] and cols == [0, 256]


def test_bad_tiling_options_are_named():
    with pytest.raises(ConfigError, match="tiling.tile"):
        TileConfig(tile=0)
    with pytest.raises(ConfigError, match="tiling.statistics"):
        TileConfig(statistics="median")
