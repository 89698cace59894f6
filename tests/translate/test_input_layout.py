"""A model exported with uint8 NHWC input (`translate export --input uint8-nhwc`): the graph transposes and
normalises the decoded pixels itself, its metadata says so, and the predictor feeds it pixels as they are, with
the float model's outputs (whole, batched, padded, tiled, multimodal)."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.fp32 import FP32
from translate.errors import ConfigError, ModelError
from translate.export import export_generator, export_multimodal_generator, with_input_layout
from translate.input_layout import to_float_nchw
from translate.networks import LatentInputGenerator, define_G, to_inference
from translate.onnx_meta import TOLERANCE, read_metadata
from translate.predictor import Predictor
from translate.tiling import TileConfig
from translate_cli.main import main


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    G = to_inference(define_G("unet_32", ngf=4, norm="batch"), batch_stats=True)
    data, _ = export_generator(G, {"arch": {"input_nc": 3}, "batch_stats": True})
    return data, with_input_layout(data, "uint8-nhwc")[0]


def _images(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((37, 53, 3), (37, 53, 3), (64, 40, 3))]


def test_the_graph_takes_uint8_nhwc_and_the_metadata_says_so(models):
    data, u8 = models
    inp = ort.InferenceSession(u8, providers=["CPUExecutionProvider"]).get_inputs()[0]
    assert inp.type == "tensor(uint8)" and inp.shape[3] == 3 and isinstance(inp.shape[1], str)
    meta = read_metadata(u8)
    assert meta["input_layout"] == "uint8-nhwc" and "uint8 NHWC" in meta["normalization"]
    assert meta["size_multiple"] == read_metadata(data)["size_multiple"]  # the rest of the metadata is kept
    assert "input_layout" not in read_metadata(data)


def test_the_predictor_feeds_pixels_and_matches_the_float_model(models):
    data, u8 = models
    # fp32: the wrapper is held to the float model at export's tolerance
    pf, pu = (Predictor(m, tiling=TileConfig(threshold=None), runtime=FP32) for m in (data, u8))
    assert (pf.input_layout, pu.input_layout) == ("float-nchw", "uint8-nhwc")
    images = _images()
    for a, b in zip(pf.translate_arrays(images), pu.translate_arrays(images), strict=True):
        assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= 1
    # the network level: float NCHW in [-1, 1] from pixels gives the float model's output within export's tolerance
    x = (np.stack(images[:2]).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    assert np.abs(pf.run(x) - pu.run(x)).max() <= TOLERANCE


def test_tiles_of_a_uint8_model_are_the_float_models_tiles(models):
    data, u8 = models
    assert read_metadata(to_float_nchw(u8)).get("input_layout") == "uint8-nhwc"  # only the graph is changed back
    a = _images(1)[2]
    pf, pu = (Predictor(m, tiling=TileConfig(threshold=0), runtime=FP32) for m in models)  # fp32: equal pixels
    np.testing.assert_array_equal(pu.translate_array(a), pf.translate_array(a))
    assert pu.last_tiling["mode"] == "tiled"


def test_a_multimodal_model_takes_uint8_too():
    torch.manual_seed(0)
    G = LatentInputGenerator(to_inference(define_G("unet_32", input_nc=3 + 2, ngf=4, norm="instance"),
                                          batch_stats=False), nz=2)
    data, _ = export_multimodal_generator(G, {"arch": {"input_nc": 3}})
    u8, diff = with_input_layout(data, "uint8-nhwc")
    assert diff <= TOLERANCE
    z = np.array([[0.5, -1.0]], np.float32)
    a = _images(2)[0]
    np.testing.assert_allclose(Predictor(u8).translate_array(a, z=z[0]), Predictor(data).translate_array(a, z=z[0]),
                               atol=1)


def test_the_export_command_writes_a_uint8_model(tmp_path, capsys):
    torch.manual_seed(0)
    G = define_G("unet_32", ngf=8, norm="batch", use_dropout=True)
    torch.save(G.state_dict(), tmp_path / "latest_net_G.pth")
    main(["export", str(tmp_path / "latest_net_G.pth"), "--out", str(tmp_path / "m.onnx")])
    main(["export", str(tmp_path / "latest_net_G.pth"), "--out", str(tmp_path / "u8.onnx"), "--input", "uint8-nhwc"])
    assert "max abs diff" in capsys.readouterr().out
    assert read_metadata(tmp_path / "u8.onnx")["input_layout"] == "uint8-nhwc"
    a = _images(3)[2]
    f, u = Predictor(tmp_path / "m.onnx"), Predictor(tmp_path / "u8.onnx")
    assert np.abs(f.translate_array(a).astype(int) - u.translate_array(a)).max() <= 1
    with pytest.raises(SystemExit):  # argparse names the flag and its choices
        main(["export", str(tmp_path / "latest_net_G.pth"), "--out", str(tmp_path / "x.onnx"), "--input", "nhwc"])
    assert "--input" in capsys.readouterr().err


def test_bad_layouts_are_named():
    with pytest.raises(ConfigError, match="input"):
        with_input_layout(b"", "uint8-nchw")
    with pytest.raises(ModelError, match="not a uint8 NHWC wrapper"):
        to_float_nchw(export_generator(to_inference(define_G("unet_32", ngf=4, norm="batch"), batch_stats=True),
                                       {"arch": {"input_nc": 3}, "batch_stats": True}, check=False)[0])
