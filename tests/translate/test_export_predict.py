"""ONNX export parity with PyTorch, and the predictor's size/type/alpha contract."""
import numpy as np
import pytest
import torch
from PIL import Image

import translate
from tests.fp32 import FP32
from translate.errors import ModelError
from translate.export import export_generator
from translate.generators import load_generator
from translate.networks import define_G, to_inference
from translate.padding import pad_to_multiple
from translate.predictor import Predictor


def _meta(arch, batch_stats):
    return {"arch": arch, "batch_stats": batch_stats, "method": "pix2pix", "direction": "AtoB"}


@pytest.mark.parametrize("arch,batch_stats", [
    (dict(name="unet_32", ngf=8, norm="batch", use_dropout=True), True),
    (dict(name="unet_32", ngf=8, norm="batch", use_dropout=True), False),
    (dict(name="resnet", n_blocks=2, ngf=8, norm="instance"), False),
    (dict(name="unet_32", ngf=8, norm="none"), False),
])
def test_onnx_matches_pytorch_on_odd_sizes(arch, batch_stats):
    torch.manual_seed(0)
    G = define_G(**arch)
    if arch["norm"] == "batch":  # give running stats something other than (0, 1)
        G.train()
        with torch.no_grad():
            for _ in range(3):
                G(torch.randn(2, 3, 32, 32))
    G_inf = to_inference(G, batch_stats=batch_stats)
    data, diff = export_generator(G_inf, _meta(arch, batch_stats))
    assert diff is not None and diff < 1e-4
    p = Predictor(data, runtime=FP32)  # fp32: held to PyTorch at 1e-4
    assert p.size_multiple == G_inf.size_multiple
    # odd sizes through the predictor equal PyTorch on the same padded input
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 37, 21)).astype(np.float32)
    xp, pads = pad_to_multiple(x, p.size_multiple)
    with torch.no_grad():
        ref = G_inf(torch.from_numpy(xp)).numpy()
    ref = ref[..., pads[0]: ref.shape[-2] - pads[1], pads[2]: ref.shape[-1] - pads[3]]
    np.testing.assert_allclose(p.run(x), ref, atol=1e-4)
    # deterministic: dropout off, batch norm frozen
    np.testing.assert_array_equal(p.run(x), p.run(x))


def test_per_image_statistics_do_not_mix_images_in_a_batch():
    torch.manual_seed(0)
    G_inf = to_inference(define_G("unet_32", ngf=8, norm="batch"), batch_stats=True)
    p = Predictor(export_generator(G_inf, _meta({"name": "unet_32"}, True), check=False)[0], runtime=FP32)  # 1e-5
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(p.run(x)[:1], p.run(x[:1]), atol=1e-5)


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    arch = dict(name="resnet", n_blocks=1, ngf=8, norm="instance")
    G_inf = to_inference(define_G(**arch), batch_stats=False)
    return Predictor(export_generator(G_inf, _meta(arch, False), check=False)[0])


@pytest.mark.parametrize("h,w", [(1, 1), (5, 3), (33, 70), (64, 64)])
def test_predict_keeps_size(predictor, h, w):
    a = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = predictor(a)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_predict_pil_in_pil_out_with_alpha_and_gray(predictor):
    rgba = Image.new("RGBA", (13, 9), (10, 200, 30, 128))
    out = predictor(rgba)
    assert isinstance(out, Image.Image) and out.size == (13, 9) and out.mode == "RGBA"
    assert np.asarray(out)[..., 3].max() == 128
    gray = predictor(Image.new("L", (7, 5), 100))
    assert gray.size == (7, 5) and gray.mode == "RGB"
    assert predictor(np.zeros((6, 4), np.uint8)).shape == (6, 4, 3)
    with pytest.raises(ModelError, match="uint8"):
        predictor(np.zeros((4, 4, 3), np.float32))


def test_batch_of_mixed_sizes(predictor):
    imgs = [np.full((8, 8, 3), 10, np.uint8), np.full((5, 9, 3), 200, np.uint8), np.full((8, 8, 3), 10, np.uint8)]
    outs = predictor.translate_arrays(imgs)
    assert [o.shape for o in outs] == [(8, 8, 3), (5, 9, 3), (8, 8, 3)]
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[1], predictor(imgs[1]))


def test_bad_model_files_are_named(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(ModelError, match="model.onnx"):
        translate.load(bad)
    with pytest.raises(ModelError, match="missing"):
        translate.load(tmp_path / "missing.pt")


def test_reference_state_dict_predicts_like_pytorch(tmp_path):
    torch.manual_seed(0)
    G = define_G("unet_32", ngf=8, norm="batch", use_dropout=True)
    sd = {"module." + k: v for k, v in G.state_dict().items()}  # saved from DataParallel, as the reference does
    torch.save(sd, tmp_path / "latest_net_G.pth")
    p = translate.load(tmp_path / "latest_net_G.pth")
    G_ref, meta = load_generator(tmp_path / "latest_net_G.pth")
    assert meta["batch_stats"] is True  # the reference tests batch-norm models with batch statistics
    a = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    from translate.imageio import from_network, to_network

    with torch.no_grad():
        ref = from_network(G_ref(torch.from_numpy(to_network(a))).numpy())[0]
    assert np.abs(p(a).astype(int) - ref.astype(int)).max() <= 1


class _RunsCode:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["checkpoint", "reference"])
def test_model_files_are_opened_without_running_pickled_code(tmp_path, kind):
    marker = tmp_path / "pwned"
    payload = {"format": "i2i-translate/checkpoint/1", "x": _RunsCode(marker)} if kind == "checkpoint" else \
        {"model.0.weight": torch.zeros(1), "evil": _RunsCode(marker)}
    path = tmp_path / ("latest.pt" if kind == "checkpoint" else "latest_net_G.pth")
    torch.save(payload, path)
    with pytest.raises(ModelError, match=path.name):
        load_generator(path)
    assert not marker.exists()
