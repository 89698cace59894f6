"""The settings of ONNX Runtime's CUDA provider for one model replica, built into its options in one place.

:class:`CudaOptions` holds what a GPU replica tunes: the GPU memory ONNX Runtime may take (``gpu_mem_limit``:
several replicas share one GPU, and neither Ray nor CUDA keeps one replica out of another's memory), cuDNN's
convolution search (``EXHAUSTIVE`` pays a search for every new input shape, so only for inputs of one fixed
size; ``HEURISTIC`` otherwise), the provider's NHWC kernels (``prefer_nhwc``: tensor cores work in NHWC, and a
graph in NCHW pays transposes around each convolution), and whether the predictor runs through an IOBinding.
:meth:`CudaOptions.provider_options` is the dict ``InferenceSession(providers=[(CUDA, options)])`` takes.

A leaf: no ONNX Runtime import, so the options can be built and checked where the CUDA provider is absent.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


@dataclass(frozen=True)
class CudaOptions:
    """How one predictor uses the CUDA provider (ignored on the CPU provider, except ``io_binding``)."""

    #: bytes of GPU memory ONNX Runtime's arena may hold (None: no limit, ONNX Runtime's default)
    gpu_mem_limit: int | None = None
    #: the inputs all have one size: cuDNN's exhaustive search runs once and then pays off on every call
    fixed_size: bool = False
    #: the CUDA provider's NHWC kernels for convolutions (the graph stays NCHW at its edges)
    prefer_nhwc: bool = False
    #: run through an IOBinding (inputs copied to the device once, the output allocated where the provider runs);
    #: None: on when the session runs on CUDA
    io_binding: bool | None = None
    device_id: int = 0

    def __post_init__(self) -> None:
        if self.gpu_mem_limit is not None and (not isinstance(self.gpu_mem_limit, int) or self.gpu_mem_limit < 1):
            raise ConfigError("gpu_mem_limit", f"must be a whole number of bytes >= 1, got {self.gpu_mem_limit!r}")
        if not isinstance(self.device_id, int) or self.device_id < 0:
            raise ConfigError("device_id", f"must be a whole number >= 0, got {self.device_id!r}")

    @property
    def conv_algo_search(self) -> str:
        return "EXHAUSTIVE" if self.fixed_size else "HEURISTIC"

    def provider_options(self) -> dict[str, str]:
        """The CUDA provider's options (ONNX Runtime takes them as strings)."""
        options = {"device_id": str(self.device_id), "cudnn_conv_algo_search": self.conv_algo_search,
                   "prefer_nhwc": "1" if self.prefer_nhwc else "0"}
        if self.gpu_mem_limit is not None:
            options["gpu_mem_limit"] = str(self.gpu_mem_limit)
            # grow the arena by what is asked, not by doubling: a doubling can overshoot a tight limit
            options["arena_extend_strategy"] = "kSameAsRequested"
        return options


#: GPU memory each replica's process takes outside ONNX Runtime's arena, which gpu_mem_limit does not bound: its
#: CUDA context (and torch's, which asks the GPU's size and decodes JPEGs), cuBLAS's workspace. Read, not yet
#: measured: benchmarks/gpu_check.py's replica rows print the memory in use when a GPU is lent.
CONTEXT_RESERVE_BYTES = 2**30


def replica_gpu_mem_limit(num_gpus: float, gpu_mem_limit: int | None, gpu_total_bytes: int | None) -> int | None:
    """The ``gpu_mem_limit`` of a replica holding ``num_gpus`` of a GPU of ``gpu_total_bytes``: the value given,
    else, when it holds a fraction of one (several replicas share it), its share of the GPU less
    :data:`CONTEXT_RESERVE_BYTES` (at least half its share), else None (a whole GPU, or a GPU whose size is
    unknown: no limit)."""
    if gpu_mem_limit is not None:
        return gpu_mem_limit
    if 0 < num_gpus < 1 and gpu_total_bytes:
        share = int(gpu_total_bytes * num_gpus)
        return max(share - CONTEXT_RESERVE_BYTES, share // 2)
    return None
