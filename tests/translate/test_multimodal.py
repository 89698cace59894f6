"""A multimodal translator (an image and a latent code in, one of many images out): its export, the predictor's
codes and samples, the tiled path (one code for every tile), and the refusals of bad codes and sample counts."""
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fp32 import FP32
from translate import imageio
from translate.errors import ConfigError
from translate.export import export_generator, export_multimodal_generator
from translate.latents import read_codes, sample_paths
from translate.networks import define_G, define_latent_G, to_inference
from translate.onnx_meta import read_metadata
from translate.predictor import MAX_SAMPLES, Predictor
from translate.tiling import TileConfig

NZ = 3
ARCH = dict(name="unet_32", nz=NZ, ngf=8, norm="instance")


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    G = define_latent_G(**ARCH)
    with torch.no_grad():  # an untrained G barely reads its code: make the code's channels count
        G.G.model.model[0].weight[:, 3:] *= 50
    return to_inference(G, batch_stats=False)


@pytest.fixture(scope="module")
def model(generator):
    data, diff = export_multimodal_generator(generator, {"arch": ARCH, "method": "bicyclegan"})
    assert diff < 1e-3  # verified against PyTorch on odd sizes, a code per image
    return data


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def test_the_model_says_it_takes_a_code_of_its_size(model):
    meta = read_metadata(model)
    assert meta["kind"] == "multimodal" and meta["latent_size"] == NZ and meta["input_nc"] == 3
    p = Predictor(model)
    assert p.latent_size == NZ and p.size_multiple == 32


def test_the_predictor_computes_what_the_pytorch_generator_does(generator, model, image):
    p = Predictor(model, runtime=FP32)  # fp32, as PyTorch: a grey level at most (bf16 is off by 2 here)
    z = p.latents(2, seed=1)
    got = p.translate_samples(image, z)
    x = imageio.to_network(image[None])
    padded = np.pad(x, ((0, 0), (0, 0), (12, 12), (4, 4)), mode="reflect")  # to 64 x 64, centred, as it pads
    with torch.no_grad():
        ref = generator(torch.from_numpy(padded).expand(2, -1, -1, -1), torch.from_numpy(z)).numpy()
    ref = imageio.from_network(ref[:, :, 12:52, 4:60])
    for y, r in zip(got, ref, strict=True):
        assert np.abs(y.astype(int) - r.astype(int)).max() <= 1


def test_different_codes_give_different_images_and_a_seed_the_same(model, image):
    p = Predictor(model)
    a, b = p.translate_samples(image, p.latents(2, seed=7))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 2
    again = Predictor(model).translate_samples(image, Predictor(model).latents(2, seed=7))
    np.testing.assert_array_equal(again[0], a)
    np.testing.assert_array_equal(again[1], b)
    np.testing.assert_array_equal(p.latents(4, seed=7), np.random.default_rng(7).standard_normal((4, NZ)).astype(np.float32))
    assert not np.array_equal(p.latents(2, seed=8), p.latents(2, seed=7))
    # one code given is the same as that code among samples; no code is code 0
    np.testing.assert_array_equal(p.translate_array(image, z=p.latents(2, seed=7)[1]), b)
    np.testing.assert_array_equal(p(image), p.translate_array(image, z=np.zeros(NZ, np.float32)))


def test_every_tile_of_a_sample_runs_with_its_code(model):
    big = np.random.default_rng(1).integers(0, 256, (96, 160, 3), dtype=np.uint8)
    whole, tiled = Predictor(model, tiling=TileConfig(threshold=None)), Predictor(
        model, tiling=TileConfig(threshold=0, tile=64, overlap=32, statistics="exact"))
    codes = whole.latents(2, seed=3)
    for z in codes:
        w, t = whole.translate_array(big, z=z), tiled.translate_array(big, z=z)
        assert tiled.last_tiling["mode"] == "tiled" and tiled.tiler.last_plan.count > 1
        assert np.abs(w.astype(float) - t.astype(float)).mean() < 1.5  # whole-image statistics, one code
    t0, t1 = (tiled.translate_array(big, z=z) for z in codes)
    assert np.abs(t0.astype(int) - t1.astype(int)).mean() > 2


def test_bad_sample_counts_and_codes_are_refused_naming_what_to_change(model):
    p = Predictor(model)
    with pytest.raises(ConfigError, match=f"samples: must be a whole number from 1 to {MAX_SAMPLES}, got 17"):
        p.latents(MAX_SAMPLES + 1)
    with pytest.raises(ConfigError, match=f"z: .* takes a latent code of {NZ} numbers, got 2"):
        p.translate_array(np.zeros((32, 32, 3), np.uint8), z=np.zeros(2))
    torch.manual_seed(0)
    arch = dict(name="unet_32", ngf=4, norm="instance")
    one = Predictor(export_generator(to_inference(define_G(**arch), False), {"arch": arch}, check=False)[0])
    assert one.latent_size == 0
    assert one.latents(1).shape == (1, 0)  # one answer: one sample, no code
    with pytest.raises(ConfigError, match="samples: .* a one-answer model .* ask for 1 sample"):
        one.latents(4)
    with pytest.raises(ConfigError, match="z: .* a one-answer model: it takes no latent code"):
        one.translate_array(np.zeros((32, 32, 3), np.uint8), z=np.zeros(NZ))


def test_codes_are_read_from_numbers_or_a_npy_file(tmp_path):
    np.testing.assert_array_equal(read_codes("0.5,-1,2"), [[0.5, -1, 2]])
    np.save(tmp_path / "z.npy", np.arange(6.0).reshape(2, 3))
    assert read_codes(str(tmp_path / "z.npy")).shape == (2, 3)
    with pytest.raises(ConfigError, match="z: expected comma-separated numbers or a .npy file, got 'a,b'"):
        read_codes("a,b")
    with pytest.raises(ConfigError, match="z: .*missing.npy: not a readable .npy file"):
        read_codes(str(tmp_path / "missing.npy"))
    assert sample_paths("out/a.png", 1) == [Path("out/a.png")]
    assert [p.name for p in sample_paths("out/a.png", 3)] == ["a_0.png", "a_1.png", "a_2.png"]
