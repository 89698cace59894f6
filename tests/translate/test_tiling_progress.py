"""A tiled translation reports its progress tile run by tile run, and stops when the listener says so
(the service streams this to its jobs' progress and cancels a deleted job's work with it)."""
import numpy as np
import pytest
import torch

from translate.export import export_generator
from translate.networks import define_G, to_inference
from translate.predictor import Predictor
from translate.tiling import TileConfig


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    arch = dict(name="resnet_2blocks", ngf=8, norm="instance")
    G = to_inference(define_G(**arch), batch_stats=False)
    model = export_generator(G, {"arch": arch, "batch_stats": False}, check=False)[0]
    return Predictor(model, tiling=TileConfig(tile=64, overlap=16, threshold=0))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)


def test_every_tile_run_is_reported_and_the_result_is_unchanged(predictor, image):
    seen = []
    out = predictor.translate_array(image, progress=lambda done, total: seen.append((done, total)))
    plan = predictor.tiler.last_plan
    total = plan.count * plan.passes
    assert plan.count > 1 and plan.passes > 1  # several tiles, and statistics passes before the rendering one
    assert seen == [(i, total) for i in range(1, total + 1)]
    np.testing.assert_array_equal(out, predictor.translate_array(image))  # listening changes nothing


def test_a_listener_that_raises_stops_the_work_at_that_tile(predictor, image):
    class Stop(Exception):
        pass

    calls = []

    def stop_at_three(done, total):
        calls.append(done)
        if done == 3:
            raise Stop

    with pytest.raises(Stop):
        predictor.translate_array(image, progress=stop_at_three)
    assert calls == [1, 2, 3]
