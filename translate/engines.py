"""The engines that run an exported ``.onnx`` file: ONNX Runtime (CPU or CUDA) and OpenVINO (optional, ``pip
install openvino``; CPU only, ``auto``'s choice on CPUs with bf16 instructions). Both read the same file: the ONNX
model stays the one artifact.

What the predictor and the tiled runner call on a model is :class:`Session`: ONNX Runtime's
``InferenceSession`` has it as it is, and :class:`OpenVinoSession` implements it over OpenVINO's compiled
model, so padding, tiling and batching are the predictor's whatever the engine.

Why OpenVINO at all: on CPUs with bf16 instructions (avx512_bf16, AMX) the convolution ceiling doubles,
and ONNX Runtime's CPU provider has no bf16 convolutions; OpenVINO runs them in bf16 through its inference
precision hint. :func:`choose` resolves ``engine="auto"`` by the CPU's flags: OpenVINO in bf16 where the model
runs on the CPU, the CPU has those instructions and the package is installed, ONNX Runtime everywhere else.
Measured side by side by ``benchmarks/cpu_speed.py`` on a 2-vCPU AMD EPYC with avx512_bf16 (BENCHMARKS.md,
"OpenVINO beside ONNX Runtime on CPU"): unet_256 60.6 ms against ONNX Runtime's 83.0 (0.17 mean grey levels
off its output), resnet_9blocks 256 ms against 561 (0.94): faster at no more than one grey level of mean
difference, the issue's rule for adopting it. bf16 is not within 1e-4 of PyTorch, so what checks the export
or tiling in fp32 names ``engine="onnxruntime"``. On CPUs without bf16 both engines run fp32 and ``auto``
stays ONNX Runtime, the measured default (one earlier measurement had OpenVINO fp32 level on unet_256 and
about 10 % ahead on resnet_9blocks, not side by side); it changes there only on ``benchmarks/cpu_speed.py``'s
figures from such a CPU.

A leaf but for the errors: numpy, and OpenVINO only when a session is made.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import numpy as np

from .errors import ConfigError, ModelError

ENGINES = ("auto", "onnxruntime", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")
#: /proc/cpuinfo flags of bf16 arithmetic in hardware (AVX512-BF16; AMX tiles with their bf16 instructions)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
MISSING_OPENVINO = "--engine openvino needs the openvino package, which is not installed here: pip install openvino"


class Session(Protocol):
    """A loaded model, as ONNX Runtime's ``InferenceSession`` offers it (the part the project calls)."""

    def get_inputs(self) -> Sequence[Any]: ...  # each with .name and .shape (ints, or None/str when dynamic)

    def get_outputs(self) -> Sequence[Any]: ...

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def get_modelmeta(self) -> Any: ...  # .custom_metadata_map: the ONNX file's metadata_props

    def get_providers(self) -> list[str]: ...


def cpu_flags() -> set[str]:
    """This CPU's flags as /proc/cpuinfo lists them (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in text.splitlines()
                 if line.startswith(("flags", "Features"))), set())


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    return bool(set(BF16_FLAGS) & (cpu_flags() if flags is None else flags))


def openvino_installed() -> bool:
    try:
        return importlib.util.find_spec("openvino") is not None
    except ValueError:  # a module of that name without a spec
        return False


class Choice(NamedTuple):
    """What runs a model: ``engine`` "onnxruntime" or "openvino", at ``precision`` "fp32" or "bf16"."""

    engine: str
    precision: str


def choose(engine: str = "auto", precision: str = "auto", device: str = "auto",
           cuda: Callable[[], bool] = lambda: False, flags: set[str] | None = None) -> Choice:
    """The engine and precision for ``engine`` and ``precision`` as asked (see :data:`ENGINES`,
    :data:`PRECISIONS`) and ``device`` ("auto", "cpu", "cuda"; ``cuda()`` says whether "auto" means the GPU).
    A ConfigError names the field: OpenVINO asked for the GPU or without its package, bf16 on a CPU without
    bf16 instructions or on ONNX Runtime (whose CPU provider has no bf16 convolutions)."""
    if engine not in ENGINES:
        raise ConfigError("engine", f"must be one of {', '.join(ENGINES)}, got {engine!r}")
    if precision not in PRECISIONS:
        raise ConfigError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    bf16 = cpu_has_bf16(flags)
    if engine == "auto":  # the device asked last: whether "auto" means the GPU may cost a torch import
        use_openvino = (bf16 and openvino_installed()
                        and (device == "cpu" or (device == "auto" and not cuda())))
        engine = "openvino" if use_openvino else "onnxruntime"
    if engine == "openvino":
        if device == "cuda":
            raise ConfigError("engine", "openvino runs on the CPU: --device cpu (or auto) with it, or --engine "
                                        "onnxruntime for CUDA")
        if not openvino_installed():
            raise ConfigError("engine", MISSING_OPENVINO)
    if precision == "bf16" and engine != "openvino":
        raise ConfigError("precision", "bf16 runs on --engine openvino only (ONNX Runtime's CPU provider has no bf16 "
                                       "convolutions)")
    if precision == "bf16" and not bf16:
        raise ConfigError("precision", f"bf16 needs a CPU with {' or '.join(BF16_FLAGS)} (this one has neither; "
                                       "OpenVINO would run fp32)")
    if precision == "auto":
        precision = "bf16" if engine == "openvino" and bf16 else "fp32"
    return Choice(engine, precision)


class Port(NamedTuple):
    """An input or output of a model, as ONNX Runtime's ``NodeArg`` names it: dynamic dimensions are None."""

    name: str
    shape: list[int | None]


class ModelMeta(NamedTuple):
    custom_metadata_map: dict[str, str]


class OpenVinoSession:
    """An ONNX model compiled by OpenVINO for the CPU, behind :class:`Session`.

    ``threads`` (None or 0: OpenVINO's default, one per core) and ``precision`` ("fp32" or "bf16") go to
    OpenVINO's hints. Dynamic sizes stay dynamic (the plugin keeps its kernels per shape). ``run`` may be
    called from several threads at once (the service's worker threads): each thread has its own infer
    request on the one compiled model."""

    def __init__(self, model: str | bytes, threads: int | None = None, precision: str = "fp32"):
        try:
            import openvino as ov
        except ImportError:
            raise ConfigError("engine", MISSING_OPENVINO) from None
        core = ov.Core()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
                                  "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:  # bytes: the whole model, weights included (the project serialises external data in)
            net = core.read_model(model=model, weights=b"") if isinstance(model, bytes) else core.read_model(model)
            self.compiled = core.compile_model(net, "CPU", config)
        except Exception as e:
            source = "<bytes>" if isinstance(model, bytes) else model
            raise ModelError(f"{source}: OpenVINO cannot load this ONNX model ({e.__class__.__name__}: "
                             f"{str(e).strip()})") from None
        info = net.get_rt_info()  # the ONNX file's metadata_props are its "framework" entries
        self.metadata = {k: info["framework"][k].astype(str) for k in info["framework"]} if "framework" in info else {}
        self.precision = precision
        self.inputs = [self._port(p) for p in self.compiled.inputs]
        self.outputs = [self._port(p) for p in self.compiled.outputs]
        self._output_index = {o.name: i for i, o in enumerate(self.outputs)}
        self._local = threading.local()

    @staticmethod
    def _port(p) -> Port:
        """The port under its ONNX name. A tensor may carry several names where OpenVINO folded tensors into one,
        and ``get_any_name`` may be another's: an output's (the tiled runner's per-layer pixel counts, folded
        equal), whose result node's name is the ONNX output's with a "/sink_port_0" suffix, and an input's (a
        multimodal model's latent code, named also after the Cast that follows it), whose parameter node's name
        is the ONNX input's."""
        names = p.get_names()
        node = p.get_node()
        own = node.get_friendly_name()
        if node.get_type_name() == "Result":
            own = own.rsplit("/sink_port_", 1)[0]
        name = own if own in names else p.get_any_name()
        return Port(name, [d.get_length() if d.is_static else None for d in p.get_partial_shape()])

    def get_inputs(self) -> list[Port]:
        return self.inputs

    def get_outputs(self) -> list[Port]:
        return self.outputs

    def get_modelmeta(self) -> ModelMeta:
        return ModelMeta(self.metadata)

    def get_providers(self) -> list[str]:
        return [f"OpenVINO CPU ({self.precision})"]

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        results = request.infer(feeds).to_tuple()  # copies out of the request's buffers: the next call reuses them
        if not output_names:
            return list(results)
        return [results[self._output_index[name]] for name in output_names]
