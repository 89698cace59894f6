"""The CUDA provider's settings, built in one place (translate.cuda_options), checked by the options dict they
give (no GPU here: the builder is tested, not a CUDA session), and the predictor's IOBinding, which runs on the
CPU provider too: the same outputs as a plain run."""
import numpy as np
import pytest
import torch

from translate import predictor
from translate.cuda_options import CONTEXT_RESERVE_BYTES, CudaOptions, replica_gpu_mem_limit
from translate.errors import ConfigError
from translate.export import export_generator, with_input_layout
from translate.networks import define_G, to_inference
from translate.predictor import CUDA, Predictor, RuntimeOptions
from translate.tiling import TileConfig

GiB = 2**30
#: IOBinding is ONNX Runtime's, and ``auto`` runs OpenVINO on CPUs with bf16 instructions: the engine is named
ORT = RuntimeOptions(engine="onnxruntime")


def test_the_conv_search_is_exhaustive_only_for_fixed_sizes_and_nhwc_only_when_asked():
    assert CudaOptions().provider_options() == {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC",
                                                "prefer_nhwc": "0"}
    fixed = CudaOptions(fixed_size=True, prefer_nhwc=True, device_id=1).provider_options()
    assert fixed == {"device_id": "1", "cudnn_conv_algo_search": "EXHAUSTIVE", "prefer_nhwc": "1"}
    limited = CudaOptions(gpu_mem_limit=20 * GiB).provider_options()
    assert limited["gpu_mem_limit"] == str(20 * GiB) and limited["arena_extend_strategy"] == "kSameAsRequested"
    assert all(isinstance(v, str) for v in limited.values())  # what ONNX Runtime's provider options take


@pytest.mark.parametrize("kw,field", [(dict(gpu_mem_limit=0), "gpu_mem_limit"), (dict(gpu_mem_limit=1.5), "gpu_mem_limit"),
                                      (dict(device_id=-1), "device_id")])
def test_bad_options_name_their_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        CudaOptions(**kw)


def test_a_replicas_memory_limit_is_its_share_of_the_gpu_unless_given():
    # four replicas on one GPU: a quarter each, less what the process takes outside ONNX Runtime's arena
    assert replica_gpu_mem_limit(0.25, None, 80 * GiB) == 20 * GiB - CONTEXT_RESERVE_BYTES
    assert replica_gpu_mem_limit(0.25, None, 4 * GiB) == GiB // 2  # a small GPU: never under half the share
    assert replica_gpu_mem_limit(0.25, 5 * GiB, 80 * GiB) == 5 * GiB  # a given value wins
    assert replica_gpu_mem_limit(1.0, None, 80 * GiB) is None  # a whole GPU: no limit
    assert replica_gpu_mem_limit(0.5, None, None) is None  # the GPU's size unknown (no CUDA here)


def test_the_providers_carry_the_options(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    monkeypatch.setattr(predictor, "load_cuda_libraries", lambda: None)
    options = CudaOptions(gpu_mem_limit=GiB, fixed_size=True, prefer_nhwc=True)
    providers = predictor.default_providers("cuda", options)
    assert providers == [(CUDA, options.provider_options()), "CPUExecutionProvider"]
    assert predictor.default_providers("cuda")[0][1]["cudnn_conv_algo_search"] == "HEURISTIC"
    assert predictor.default_providers("cpu", options) == ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    G = to_inference(define_G("unet_32", ngf=4, norm="batch"), batch_stats=True)
    return export_generator(G, {"arch": {"input_nc": 3}, "batch_stats": True})[0]


def test_io_binding_gives_the_plain_runs_outputs(model):
    plain = Predictor(model, tiling=TileConfig(threshold=None), runtime=ORT)
    bound = Predictor(model, tiling=TileConfig(threshold=None), runtime=ORT, cuda=CudaOptions(io_binding=True))
    assert plain.binding_device is None and bound.binding_device == "cpu"  # auto: bound on CUDA only
    calls = []
    real = bound.session.run_with_iobinding
    bound.session.run_with_iobinding = lambda b: calls.append(b) or real(b)  # the binding path is the one taken
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 3, 37, 53)).astype(np.float32)
    np.testing.assert_array_equal(bound.run(x), plain.run(x))
    images = [rng.integers(0, 256, (29, 40, 3), dtype=np.uint8) for _ in range(3)]
    for a, b in zip(bound.translate_arrays(images), plain.translate_arrays(images), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(calls) == 2


def test_io_binding_with_uint8_input(model):
    u8 = with_input_layout(model, "uint8-nhwc")[0]
    a = np.random.default_rng(1).integers(0, 256, (40, 33, 3), dtype=np.uint8)
    bound = Predictor(u8, runtime=ORT, cuda=CudaOptions(io_binding=True))
    np.testing.assert_array_equal(bound.translate_array(a), Predictor(model, runtime=ORT).translate_array(a))
