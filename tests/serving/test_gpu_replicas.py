"""GPU model replicas, set up without a GPU: fractional GPUs with their own CPUs (several replicas per GPU), each
replica's ONNX Runtime memory limit (its share of the GPU, or the value given), NHWC kernels, JPEG decode on the
GPU as an option of the replica's decode (falling back to the CPU here). No Ray is started."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from serving import app, model_server
from serving.config import ServiceConfig
from translate.cuda_options import CONTEXT_RESERVE_BYTES
from translate.errors import ConfigError
from translate.export import export_generator
from translate.networks import define_G, to_inference
from translate.predictor import Predictor

GiB = 2**30


def test_fractional_gpus_with_their_own_cpus_reach_the_deployment():
    cfg = ServiceConfig.from_args({"num_gpus": "0.25", "num_cpus": "2", "gpu_mem_limit": str(10 * GiB),
                                   "prefer_nhwc": "true", "gpu_decode": "true"})
    assert (cfg.num_gpus, cfg.num_cpus, cfg.gpu_mem_limit, cfg.prefer_nhwc, cfg.gpu_decode) == (
        0.25, 2.0, 10 * GiB, True, True)
    assert app.deployment_options(cfg)["ModelServer"]["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.25}
    assert ServiceConfig.from_args({"num_gpus": "2"}).num_gpus == 2.0  # whole GPUs still go


@pytest.mark.parametrize("args,field", [
    ({"num_gpus": "1.5"}, "num_gpus"), ({"num_gpus": "-0.25"}, "num_gpus"), ({"num_cpus": "-1"}, "num_cpus"),
    ({"gpu_mem_limit": str(GiB)}, "gpu_mem_limit"),  # a limit without a GPU
    ({"num_gpus": "0.5", "gpu_mem_limit": "0"}, "gpu_mem_limit"),
])
def test_resources_ray_or_onnx_runtime_would_refuse_name_their_field(args, field):
    with pytest.raises(ConfigError, match=field):
        ServiceConfig.from_args(args)


def test_a_replica_takes_its_share_of_the_gpus_memory(monkeypatch):
    monkeypatch.setattr(model_server, "gpu_memory_bytes", lambda: 80 * GiB)
    quarter = model_server.replica_cuda_options(ServiceConfig.from_args({"num_gpus": "0.25", "prefer_nhwc": "true"}))
    assert quarter.gpu_mem_limit == 20 * GiB - CONTEXT_RESERVE_BYTES and quarter.prefer_nhwc
    assert quarter.provider_options()["gpu_mem_limit"] == str(quarter.gpu_mem_limit)
    assert quarter.provider_options()["cudnn_conv_algo_search"] == "HEURISTIC"  # uploads come in every size
    monkeypatch.setattr(model_server, "gpu_memory_bytes", lambda: pytest.fail("a CUDA context for nothing"))
    given = ServiceConfig.from_args({"num_gpus": "0.25", "gpu_mem_limit": str(6 * GiB)})
    assert model_server.replica_cuda_options(given).gpu_mem_limit == 6 * GiB
    assert model_server.replica_cuda_options(ServiceConfig.from_args({"num_gpus": "1"})).gpu_mem_limit is None
    monkeypatch.setattr(model_server, "gpu_memory_bytes", lambda: None)  # no CUDA: the size unknown, no limit
    assert model_server.replica_cuda_options(ServiceConfig.from_args({"num_gpus": "0.5"})).gpu_mem_limit is None


def test_a_replica_given_a_gpu_refuses_to_run_on_the_cpu():
    assert model_server.replica_device(ServiceConfig.from_args({"num_gpus": "0.25"})) == "cuda"
    assert model_server.replica_device(ServiceConfig.from_args({})) == "auto"


def test_gpu_decode_falls_back_to_the_cpu_decoder_with_the_same_answer():
    torch.manual_seed(0)
    G = to_inference(define_G("unet_32", ngf=4, norm="batch"), batch_stats=True)
    p = Predictor(export_generator(G, {"arch": {"input_nc": 3}, "batch_stats": True}, check=False)[0])
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(buf, "JPEG")
    items = [{"upload": buf.getvalue(), "format": "PNG"}, {"upload": b"not an image", "format": "PNG"}]
    on, off = (model_server.translate_items(p, items, 10**6, gpu_decode=g) for g in (True, False))
    assert on[0]["content"] == off[0]["content"] and on[1]["status"] == off[1]["status"] == 415
