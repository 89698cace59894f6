"""Tile sources and sinks: a padded window equals the padded array's, and a source read by windows
translates to the same pixels as the whole array, reading no more than a tile at a time."""
import numpy as np
import pytest
import torch

from translate.export import export_generator
from translate.networks import define_G, to_inference
from translate.padding import pad_to_multiple
from translate.predictor import Predictor
from translate.tiling import TileConfig
from translate.windows import ArraySink, ArraySource, PaddedSource


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    arch = dict(name="resnet_2blocks", ngf=8, norm="instance")
    return export_generator(to_inference(define_G(**arch), batch_stats=False), {"arch": arch}, check=False)[0]


@pytest.mark.parametrize("h,w,multiple,min_size", [(200, 300, 4, 0), (7, 9, 4, 0), (5, 3, 8, 16), (1, 6, 8, 8),
                                                  (2, 2, 16, 64), (33, 17, 32, 64)])
def test_padded_windows_equal_the_padded_array(h, w, multiple, min_size):
    rng = np.random.default_rng(h * w)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    full, pads = pad_to_multiple(a, multiple, min_size, axes=(0, 1))
    canvas = PaddedSource(ArraySource(a), multiple, min_size)
    assert canvas.pads == pads and (canvas.height, canvas.width) == full.shape[:2]
    for _ in range(40):
        y0, y1 = sorted(rng.integers(0, canvas.height + 1, 2))
        x0, x1 = sorted(rng.integers(0, canvas.width + 1, 2))
        if y1 > y0 and x1 > x0:
            np.testing.assert_array_equal(canvas.read(y0, y1, x0, x1), full[y0:y1, x0:x1])


class CountingSource(ArraySource):
    def __init__(self, a):
        super().__init__(a)
        self.largest = 0

    def read(self, y0, y1, x0, x1):
        self.largest = max(self.largest, (y1 - y0) * (x1 - x0))
        return super().read(y0, y1, x0, x1)


class OrderedSink(ArraySink):
    def __init__(self, h, w):
        super().__init__(h, w)
        self.next = 0

    def write(self, y0, rows):
        assert y0 == self.next  # top to bottom, no gaps
        self.next += len(rows)
        super().write(y0, rows)


@pytest.mark.parametrize("threshold", [None, 0])
def test_a_source_translates_like_the_whole_array(resnet, threshold):
    a = np.random.default_rng(3).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    p = Predictor(resnet, tiling=TileConfig(threshold=threshold, tile=64, overlap=32))
    source, sink, seen = CountingSource(a), OrderedSink(150, 230), []
    p.translate_source(source, sink, progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_array_equal(sink.array, p.translate_array(a))
    assert sink.next == 150
    if threshold == 0:  # tiled: windows of one tile, progress over every tile of every pass
        assert source.largest <= 64 * 64
        plan = p.tiler.last_plan
        assert seen[-1] == (plan.count * plan.passes, plan.count * plan.passes) and len(seen) == seen[-1][0]
    else:
        assert source.largest == 150 * 230 and not seen


def test_a_gray_source_feeds_an_rgb_model_as_a_gray_array_does(resnet):
    g = np.random.default_rng(4).integers(0, 256, (70, 90), dtype=np.uint8)
    p = Predictor(resnet, tiling=TileConfig(threshold=0, tile=64, overlap=32))
    sink = ArraySink(70, 90)
    p.translate_source(ArraySource(g), sink)
    np.testing.assert_array_equal(sink.array, p.translate_array(g))
