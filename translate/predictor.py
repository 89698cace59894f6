"""The predictor: one code path for ``translate predict``, batch conversion and the HTTP
service, so one image gives the same pixels everywhere.

Any size and aspect in, the same size out: the input is reflect-padded (centred) to
the network's size multiple and the output cropped back. Transparency is set aside
and restored. The CUDA provider is used when a GPU is really there, else the CPU; a
session asked for CUDA that comes up without it (ONNX Runtime falls back to the CPU
with only a log line, e.g. when its CUDA libraries are not found) is a
:class:`~translate.errors.CudaProviderError` naming the reason with ``device="cuda"``,
and a warning with ``device="auto"``. How the model runs (the engine, ONNX Runtime or
OpenVINO, both reading the same .onnx file (:mod:`translate.engines`); threads, graph
optimisation, spinning, memory arena) is :class:`RuntimeOptions`, its defaults measured
(BENCHMARKS.md, "CPU speed"); how its CUDA provider runs (a replica's GPU memory limit,
cuDNN's search, NHWC kernels, IOBinding) is :class:`~translate.cuda_options.CudaOptions`.
A model exported with uint8 NHWC input (:mod:`translate.input_layout`) is fed the decoded
pixels as they are.

A multimodal model (kind ``"multimodal"``, BicycleGAN's) also takes a latent code of
``latent_size`` numbers per image: one input, many outputs. Every method takes codes
(``latents=`` one per image, ``z=`` one for all); without them the code is 0, the prior's
mean, so such a model gives one answer wherever one is asked for. :meth:`Predictor.latents`
draws ``samples`` codes N(0, 1) from numpy's Generator seeded by ``seed`` (same seed, same
codes, same images); a one-answer model (``latent_size`` 0) takes no code and one sample.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from . import imageio
from .cuda_options import CudaOptions
from .engines import ENGINES, PRECISIONS, OpenVinoSession, Session, choose
from .errors import ConfigError, CudaProviderError, ModelError
from .input_layout import UINT8_NHWC, layout_of, to_float_nchw
from .kinds import check_translates
from .onnx_meta import decode_metadata
from .options import opt
from .padding import crop_padding, pad_to_multiple
from .tiling import TileConfig, TiledRunner
from .tiling.graph.bind import bind_input
from .windows import MappedSource, TileSink, TileSource

log = logging.getLogger(__name__)
CUDA = "CUDAExecutionProvider"
TILING_TAG = "TRANSLATE_TILING"  # PNG text key of an output's Predictor.last_tiling (JSON)
#: The most samples of one input asked at once (each costs a translation; the page and a grid stay readable).
MAX_SAMPLES = 16


#: Device nodes of an NVIDIA driver: Linux (/dev/nvidiactl, /dev/nvidia0...) and WSL2 (/dev/dxg).
NVIDIA_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def cuda_available() -> bool:
    """Whether CUDA is usable here. Asked of torch, but only where an NVIDIA driver shows at all: on a
    machine without one, importing torch just to hear no cost every `translate predict` of an ONNX file 2 s
    and half a gigabyte of memory."""
    if sys.platform.startswith("linux") and not any(os.path.exists(n) for n in NVIDIA_DEVICE_NODES):
        return False
    try:
        import torch  # lazy: torch

        return torch.cuda.is_available()
    except Exception:
        return False


def gpu_memory_bytes(device_id: int = 0) -> int | None:
    """The memory of this process's GPU ``device_id`` in bytes (asked of torch), None where CUDA is not usable."""
    if not cuda_available():
        return None
    import torch  # lazy: torch

    return int(torch.cuda.get_device_properties(device_id).total_memory)


def default_providers(device: str = "auto", cuda: CudaOptions | None = None) -> list:
    """The providers of a session on ``device``; CUDA's with ``cuda``'s options (by default the heuristic
    convolution search: the exhaustive one costs up to a second per new input shape)."""
    import onnxruntime as ort

    use_cuda = device == "cuda" or (device == "auto" and cuda_available())
    if use_cuda and CUDA in ort.get_available_providers():
        load_cuda_libraries()
        return [(CUDA, (cuda or CudaOptions()).provider_options()), "CPUExecutionProvider"]
    if device == "cuda":
        raise CudaProviderError(f"device cuda was asked for, but this onnxruntime {ort.__version__} has no {CUDA} "
                                f"(it offers {', '.join(ort.get_available_providers())}): install onnxruntime-gpu "
                                "in its place")
    return ["CPUExecutionProvider"]


def load_cuda_libraries() -> None:
    """Put the CUDA, cuBLAS and cuDNN libraries ONNX Runtime's CUDA provider needs in the process.

    onnxruntime-gpu does not ship them; they come with the nvidia-* wheels torch installs, which are
    not on the loader's path until something loads them: importing torch does, and so does
    ``onnxruntime.preload_dlls()`` (ORT >= 1.21). Without them ORT falls back to the CPU."""
    with contextlib.suppress(Exception):
        import torch  # noqa: F401  (lazy: torch; it loads its nvidia libraries)
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        with contextlib.suppress(Exception):
            ort.preload_dlls()


def cuda_provider_problem() -> str:
    """Why ONNX Runtime's CUDA provider library does not load here (the loader's own message)."""
    import ctypes

    import onnxruntime as ort

    lib = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    if not lib.exists():
        return f"{lib.name} is not in this onnxruntime build"
    try:
        ctypes.CDLL(str(lib))
    except OSError as e:
        return f"{lib.name} does not load: {e}"
    return ("the provider library loads, but the session did not take it: see ONNX Runtime's log above "
            "(an old driver for this CUDA build, or no GPU visible to this process)")


def _provider_names(providers: Sequence) -> list[str]:
    return [p if isinstance(p, str) else p[0] for p in providers]


GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class RuntimeOptions:
    """How a model runs: the engine (:mod:`translate.engines`), its threads, and ONNX Runtime's own settings
    (OpenVINO takes the threads and the precision). The defaults are what measured fastest for the project's
    generators on CPU (BENCHMARKS.md, "CPU speed": each setting against the others, side by side)."""

    engine: str = opt("auto", "what runs the .onnx file: onnxruntime, or openvino (CPU only; pip install openvino); "
                      "auto: openvino in bf16 on a CPU with bf16 instructions (avx512_bf16, amx_bf16) where it "
                      "is installed, measured 1.4-2.2x ONNX Runtime's speed there within a grey level "
                      "(BENCHMARKS.md); onnxruntime elsewhere (a GPU, other CPUs)", choices=ENGINES)
    precision: str = opt("auto", "arithmetic of --engine openvino: fp32, or bf16 (CPUs with avx512_bf16 or AMX); "
                         "auto: bf16 where the CPU has it (ONNX Runtime runs fp32)", choices=PRECISIONS)
    threads: int | None = opt(None, "intra-op threads (auto: the engine's default, one per core)")
    graph_optimization: str = opt("all", "ONNX Runtime graph optimisation level ('all' adds the CPU's blocked "
                                  "convolution layout, the fastest measured)", choices=GRAPH_OPTIMIZATIONS)
    spinning: bool = opt(True, "ONNX Runtime's threads spin between operators instead of sleeping (faster per "
                         "image; --no-spinning leaves the CPU to other processes between calls)")
    memory_arena: bool = opt(True, "ONNX Runtime's CPU memory arena (buffers reused from call to call)")

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 0):
            raise ConfigError("threads", f"must be a whole number >= 0 (0: ONNX Runtime's default), got {self.threads!r}")
        for name, choices in (("engine", ENGINES), ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                raise ConfigError(name, f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise ConfigError("graph_optimization", f"must be one of {', '.join(GRAPH_OPTIMIZATIONS)}, "
                              f"got {self.graph_optimization!r}")

    def session_options(self):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[self.graph_optimization]
        if self.threads:
            so.intra_op_num_threads = self.threads
        if not self.spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.enable_cpu_mem_arena = self.memory_arena
        return so


class Predictor:
    """Translate images with an exported generator.

    ``Predictor(path_or_bytes)(image)`` takes a PIL image or a uint8 array (HxW, HxWx1,
    HxWx3 or HxWx4) and returns the same type, the same size.

    Images over ``tiling.threshold`` pixels (default 2048 x 2048) run tile by tile with
    whole-image normalisation statistics, in bounded memory (see :mod:`translate.tiling`);
    ``tiling=TileConfig(threshold=None)`` never tiles, ``threshold=0`` always does.

    ``runtime.engine`` picks what runs the file (:func:`translate.engines.choose`; ``providers``,
    ONNX Runtime's, mean ONNX Runtime): ``engine`` and ``precision`` say what was chosen.
    """

    def __init__(self, model: str | os.PathLike | bytes, device: str = "auto", threads: int = 0,
                 providers: Sequence | None = None, tiling: TileConfig | None = None,
                 runtime: RuntimeOptions | None = None, cuda: CudaOptions | None = None):
        """``threads`` (when > 0) overrides ``runtime.threads``; ``cuda``: the CUDA provider's settings."""
        runtime = runtime or RuntimeOptions()
        if threads:
            runtime = dataclasses.replace(runtime, threads=threads)
        self.runtime = runtime
        if providers is not None and runtime.engine == "openvino":
            raise ConfigError("engine", "providers are ONNX Runtime's: leave them out to run on openvino")
        self.engine, self.precision = choose("onnxruntime" if providers is not None else runtime.engine,
                                             runtime.precision, device, cuda_available)
        source = model if isinstance(model, bytes) else str(model)
        self._cuda_required = device == "cuda" or providers is not None  # CUDA asked for by name, if at all
        self.cuda = cuda or CudaOptions()
        self._session_args: dict[str, Any] = {} if self.engine == "openvino" else dict(
            sess_options=runtime.session_options(), providers=list(providers or default_providers(device, self.cuda)))
        self.source = "<bytes>" if isinstance(model, bytes) else str(model)
        self.session = self._make_session(source)
        self.tiling = tiling or TileConfig()
        # the tiled graph is built from the model on first use: keep it only when tiling may happen
        self._model = source if self.tiling.threshold is not None else None
        self._tiler: tuple[bytes, TiledRunner] | None = None  # (the code it was built for, the runner)
        # how the last image was translated, for the output's metadata (see :meth:`_record`)
        self.last_tiling: dict[str, Any] | None = None
        self.metadata: dict[str, Any] = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        check_translates(self.metadata, self.source, "the predictor")  # a GAN's z -> sample graph is refused here
        shape = self.session.get_inputs()[0].shape
        self.input_nc = int(self.metadata.get("input_nc", shape[1] if isinstance(shape[1], int) else 3))
        self.output_nc = int(self.metadata.get("output_nc", 3))
        self.size_multiple = int(self.metadata.get("size_multiple", 1))
        self.min_size = int(self.metadata.get("min_size", self.size_multiple))
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        #: float-nchw (in [-1, 1]) or uint8-nhwc (pixels as decoded): see translate.input_layout
        self.input_layout = layout_of(self.metadata)
        on_cuda = CUDA in self.session.get_providers()
        #: where an IOBinding puts the inputs and output ("cuda", "cpu"), or None: plain session.run
        self.binding_device = (("cuda" if on_cuda else "cpu") if self.engine == "onnxruntime" and (
            on_cuda if self.cuda.io_binding is None else self.cuda.io_binding) else None)  # an ONNX Runtime API
        #: numbers of the latent code a multimodal model takes besides the image; 0 for a one-answer model
        self.latent_size = int(self.metadata.get("latent_size", 0))
        self.latent_name = self.session.get_inputs()[1].name if self.latent_size else ""

    def _make_session(self, model: str | bytes, arena: bool | None = None) -> Session:
        """A session of the predictor's engine with its runtime options (and ONNX Runtime's providers).
        ``arena=False``: ONNX Runtime returns CPU memory after each run instead of keeping it for the next
        one; the tiled runner's sessions (up to ten for split graphs, each over a tile) would otherwise each
        keep their peak."""
        if self.engine == "openvino":
            return OpenVinoSession(model, self.runtime.threads, self.precision)
        import onnxruntime as ort

        args = self._session_args
        if arena is not None:
            so = self.runtime.session_options()
            so.enable_cpu_mem_arena = arena
            args = {**args, "sess_options": so}
        try:
            session = ort.InferenceSession(model, **args)
        except Exception as e:
            if CUDA in _provider_names(self._session_args["providers"]) and "CUDA" in str(e):
                raise CudaProviderError(f"{self.source}: ONNX Runtime's {CUDA} failed to start "
                                        f"({e.__class__.__name__}: {e})") from None
            raise ModelError(f"{self.source}: cannot load ONNX model ({e.__class__.__name__}: {e})") from None
        if CUDA in _provider_names(self._session_args["providers"]) and CUDA not in session.get_providers():
            message = (f"{self.source}: ONNX Runtime was asked for CUDA but runs on {', '.join(session.get_providers())}: "
                       f"{cuda_provider_problem()}")
            if self._cuda_required:
                raise CudaProviderError(message)
            log.warning("%s; running on the CPU (--device cpu says so without this warning)", message)
        return session

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def tiler(self) -> TiledRunner:
        """The tiled runner last used (its graph is built on first use; a multimodal model's for code 0)."""
        return self._tiler[1] if self._tiler is not None else self.tiler_for(None)

    def tiler_for(self, z: np.ndarray | None) -> TiledRunner:
        """The tiled runner of code ``z`` (a multimodal model's code is bound into its graph, so every tile of
        the image runs with it); the last one is kept, so the tiles of one code build it once."""
        key = self.codes(None if z is None else np.asarray(z)[None], 1).tobytes()
        if self._tiler is None or self._tiler[0] != key:
            if self._model is None:
                raise ModelError(f"{self.source}: this predictor was made with tiling off (threshold None)")
            import onnx  # a file's external weights (the dynamo exporter's .onnx.data) are read in too

            model = self._model if isinstance(self._model, bytes) else onnx.load(self._model).SerializeToString()
            if self.input_layout == UINT8_NHWC:  # the tiled runner rewrites the float graph and feeds it floats
                model = to_float_nchw(model, self.input_name)
            if self.latent_size:
                model = bind_input(model, self.latent_name, np.frombuffer(key, np.float32).reshape(1, -1))
            self._tiler = (key, TiledRunner(model, self.input_nc, self.size_multiple, self.min_size,
                                            lambda graph: self._make_session(graph, arena=False), self.tiling))
        return self._tiler[1]

    # ------------------------------------------------------------ latent codes
    def check_samples(self, samples: int) -> None:
        """A ConfigError for a number of samples this model cannot give: more than :data:`MAX_SAMPLES`, fewer
        than one, or more than one of a one-answer model."""
        if not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
            raise ConfigError("samples", f"must be a whole number from 1 to {MAX_SAMPLES}, got {samples!r}")
        if samples > 1 and not self.latent_size:
            raise ConfigError("samples", f"{self.source} is a one-answer model (no latent code; a multimodal model "
                              "such as BicycleGAN's gives several): ask for 1 sample")

    def latents(self, samples: int, seed: int | None = None) -> np.ndarray:
        """``samples`` codes (samples, latent_size) drawn N(0, 1) from ``numpy.random.default_rng(seed)``: the
        same seed gives the same codes. A one-answer model gives one empty code (it takes none)."""
        self.check_samples(samples)
        return np.random.default_rng(seed).standard_normal((samples, self.latent_size)).astype(np.float32)

    def codes(self, latents: np.ndarray | None, n: int) -> np.ndarray:
        """``n`` codes as the model takes them: float32 (n, latent_size), from ``latents`` ((n, latent_size), or
        one code (latent_size,) for all), zeros (the prior's mean) when None. A ConfigError names a code of the
        wrong size, or a code given to a one-answer model."""
        if latents is None:
            return np.zeros((n, self.latent_size), np.float32)
        z = np.asarray(latents, dtype=np.float32)
        if z.ndim == 1:
            z = np.broadcast_to(z, (n, z.shape[0]))
        if not self.latent_size and z.size:
            raise ConfigError("z", f"{self.source} is a one-answer model: it takes no latent code")
        if z.shape != (n, self.latent_size):
            raise ConfigError("z", f"{self.source} takes a latent code of {self.latent_size} numbers, got "
                              f"{z.shape[-1] if z.ndim else 0}")
        return np.ascontiguousarray(z)

    # ------------------------------------------------------------ network level
    def run(self, x: np.ndarray, latents: np.ndarray | None = None) -> np.ndarray:
        """float32 NCHW in [-1, 1], any H and W -> output of the same H and W (tiled above the threshold).
        ``latents``: a multimodal model's codes, one per image or one for all (see :meth:`codes`)."""
        z = self.codes(latents, len(x))
        if self.tiling.wants(*np.shape(x)[-2:]):
            x = np.asarray(x, dtype=np.float32)
            y = np.concatenate([self.tiler_for(z[i]).run(x[i:i + 1]) for i in range(len(x))])
            self._record(True)
            return y
        if self.input_layout == UINT8_NHWC:  # the graph takes pixels: x in [-1, 1] is pixels again
            return self.run_pixels(imageio.from_network(x), z)
        self._record(False)
        padded, pads = pad_to_multiple(np.ascontiguousarray(x, dtype=np.float32), self.size_multiple,
                                       self.min_size)
        return crop_padding(self._session_run(padded, z), pads)

    def run_pixels(self, a: np.ndarray, latents: np.ndarray | None = None) -> np.ndarray:
        """uint8 NHWC pixels (channels as the model takes them) -> float NCHW output in [-1, 1], untiled: a
        uint8-NHWC model is fed the pixels as they are, a float one :func:`translate.imageio.to_network` of them."""
        if self.input_layout != UINT8_NHWC:
            return self.run(imageio.to_network(a), latents)
        z = self.codes(latents, len(a))
        self._record(False)
        padded, pads = pad_to_multiple(np.ascontiguousarray(a, dtype=np.uint8), self.size_multiple, self.min_size,
                                       axes=(1, 2))
        return crop_padding(self._session_run(padded, z), pads)

    def _session_run(self, image: np.ndarray, z: np.ndarray) -> np.ndarray:
        """One run of the session on a padded image batch (and its codes), through an IOBinding where asked."""
        feed = {self.input_name: image, **({self.latent_name: z} if self.latent_size else {})}
        if self.binding_device is None:
            return self.session.run(None, feed)[0]
        import onnxruntime as ort

        session: Any = self.session  # an ONNX Runtime InferenceSession: binding_device is None for other engines
        binding = session.io_binding()
        values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), self.binding_device, self.cuda.device_id)
                  for v in feed.values()]  # kept alive until the run is done
        for name, value in zip(feed, values, strict=True):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.output_name, self.binding_device, self.cuda.device_id)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def _record(self, tiled: bool) -> None:
        """``last_tiling``: ``{"mode": "whole"}``, or ``{"mode": "tiled"}`` with the tiled runner's
        ``last_info`` (``statistics``: the mode used, ``asked``: the configured one, tiles, passes...)."""
        self.last_tiling = {"mode": "tiled", **(self.tiler.last_info or {})} if tiled else {"mode": "whole"}

    # -------------------------------------------------------------- array level
    def _prepare(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 HxW[xC] -> (HxWx input_nc, alpha or None)."""
        a = np.asarray(a)
        if a.dtype != np.uint8:
            raise ModelError(f"expected a uint8 image array, got {a.dtype}")
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
            raise ModelError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape {a.shape}")
        alpha = None
        if a.shape[2] == 4:
            a, alpha = a[:, :, :3], a[:, :, 3]
        return self.match_channels(a), alpha

    def match_channels(self, a: np.ndarray) -> np.ndarray:
        """uint8 HxWx1 or HxWx3 -> HxWx input_nc (RGB to luminance, or gray repeated): per pixel,
        so a window of an image converts as the whole image does."""
        if self.input_nc == 1 and a.shape[2] == 3:
            return imageio.image_to_array(Image.fromarray(np.ascontiguousarray(a)).convert("L"))
        if self.input_nc == 3 and a.shape[2] == 1:
            return np.repeat(a, 3, axis=2)
        return a

    def translate_arrays(self, arrays: Sequence[np.ndarray], progress: Callable[[int, int], None] | None = None,
                         latents: np.ndarray | None = None) -> list[np.ndarray]:
        """Translate several uint8 arrays; images of one size run as one batch. A tiled image reports
        ``progress(done, total)`` after every tile run (see :meth:`TiledRunner.translate_array`).
        ``latents``: a multimodal model's codes, one per array or one for all (see :meth:`codes`)."""
        z = self.codes(latents, len(arrays))
        prepared = [self._prepare(a) for a in arrays]
        results: dict[int, np.ndarray] = {}
        by_shape: dict[tuple, list[int]] = {}
        for i, (a, _) in enumerate(prepared):
            by_shape.setdefault(a.shape, []).append(i)
        for shape, idx in by_shape.items():
            if self.tiling.wants(*shape[:2]):  # from uint8 tiles to uint8 rows: no full-size float copy
                out: list[np.ndarray] | np.ndarray = [self.tiler_for(z[i]).translate_array(prepared[i][0], progress)
                                                      for i in idx]
                self._record(True)
            else:
                out = imageio.from_network(self.run_pixels(np.stack([prepared[i][0] for i in idx]), z[idx]))
            for j, i in enumerate(idx):
                y, alpha = out[j], prepared[i][1]
                if alpha is not None:
                    y = np.concatenate([np.repeat(y, 3, axis=2) if y.shape[2] == 1 else y, alpha[:, :, None]], axis=2)
                results[i] = y
        return [results[i] for i in range(len(prepared))]

    def translate_source(self, source: TileSource, sink: TileSink,
                         progress: Callable[[int, int], None] | None = None, z: np.ndarray | None = None) -> None:
        """Translate an image that ``source`` gives by windows (uint8, 1 or 3 channels) into ``sink``
        (uint8 rows with ``output_nc`` channels, top to bottom); see :mod:`translate.windows`.

        The same pixels as :meth:`translate_array` on the whole image. Above the tiling threshold only
        windows of the source are read and rows go to the sink as tiles finish (``progress(done,
        total)`` counts tile runs); below it, the image is read once and translated whole. ``z``: a
        multimodal model's code (every tile runs with it)."""
        if source.channels not in (1, 3):
            raise ModelError(f"expected a source of 1 or 3 channels, got {source.channels}")
        source = MappedSource(source, self.match_channels, self.input_nc)
        if self.tiling.wants(source.height, source.width):
            self.tiler_for(self.codes(z, 1)[0]).translate_source(source, sink, progress)
            self._record(True)
            return
        a = source.read(0, source.height, 0, source.width)
        sink.write(0, imageio.from_network(self.run_pixels(a[None], z))[0])

    def translate_array(self, a: np.ndarray, progress: Callable[[int, int], None] | None = None,
                        z: np.ndarray | None = None) -> np.ndarray:
        squeeze = np.asarray(a).ndim == 2
        y = self.translate_arrays([a], progress, z)[0]
        return y[:, :, 0] if squeeze and y.shape[2] == 1 else y

    def translate_samples(self, a: np.ndarray, latents: np.ndarray,
                          progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
        """One uint8 array translated once per code of ``latents`` (samples, latent_size), e.g.
        ``latents(samples, seed)``: a multimodal model's several answers, as one batch."""
        return self.translate_arrays([a] * len(latents), progress, latents)

    # --------------------------------------------------------------- PIL level
    def translate_image(self, img: Image.Image, z: np.ndarray | None = None) -> Image.Image:
        rgb, alpha = imageio.split_alpha(img)
        out = imageio.array_to_image(self.translate_array(imageio.image_to_array(rgb), z=z))
        if alpha is not None:
            out = out.convert("RGBA")
            out.putalpha(alpha)
        return out

    def __call__(self, image, z: np.ndarray | None = None):
        """A PIL image or uint8 array translated (``z``: a multimodal model's code; 0 when None)."""
        if isinstance(image, Image.Image):
            return self.translate_image(image, z)
        return self.translate_array(image, z=z)

    # -------------------------------------------------------------- file level
    def translate_file(self, data: bytes, source: str, out: str | os.PathLike,
                       max_pixels: int = imageio.MAX_PIXELS, write_guard=None, z: np.ndarray | None = None) -> None:
        """Decode an image file's bytes, translate, write ``out`` atomically (format from its
        suffix; JPEG drops transparency). ImageError names ``source`` for unreadable input.
        ``write_guard``: a context manager factory the write runs inside (e.g. a run's fence);
        ``z``: a multimodal model's code."""
        img = self(imageio.decode(data, source=source, max_pixels=max_pixels), z)
        if Path(out).suffix.lower() in (".jpg", ".jpeg"):
            img = img.convert("RGB")
        # how it was translated (whole, or tiled and with which statistics) goes into a PNG's text
        text = {TILING_TAG: json.dumps(self.last_tiling)} if self.last_tiling else None
        with write_guard() if write_guard is not None else contextlib.nullcontext():
            imageio.save_image(img, out, text=text)
