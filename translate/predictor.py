"""The ONNX Runtime predictor: one code path for ``translate predict``, batch
conversion and the HTTP service, so one image gives the same pixels everywhere.

Any size and aspect in, the same size out: the input is reflect-padded (centred) to
the network's size multiple and the output cropped back. Transparency is set aside
and restored. The CUDA provider is used when a GPU is really there, else the CPU.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from . import imageio
from .errors import ModelError
from .onnx_meta import decode_metadata
from .padding import crop_padding, pad_to_multiple
from .tiling import TileConfig, TiledRunner
from .windows import MappedSource, TileSink, TileSource

def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def default_providers(device: str = "auto") -> list:
    import onnxruntime as ort

    use_cuda = device == "cuda" or (device == "auto" and cuda_available())
    if use_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        # heuristic conv algorithm search: the exhaustive one costs up to a second per new input shape
        return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError("device cuda was asked for, but no CUDA GPU / CUDA provider is available")
    return ["CPUExecutionProvider"]


class Predictor:
    """Translate images with an exported generator.

    ``Predictor(path_or_bytes)(image)`` takes a PIL image or a uint8 array (HxW, HxWx1,
    HxWx3 or HxWx4) and returns the same type, the same size.

    Images over ``tiling.threshold`` pixels (default 2048 x 2048) run tile by tile with
    whole-image normalisation statistics, in bounded memory (see :mod:`translate.tiling`);
    ``tiling=TileConfig(threshold=None)`` never tiles, ``threshold=0`` always does.

    ``spin=False`` makes ONNX Runtime's pool threads sleep when they have no work instead of
    spinning (its default): for a server whose runs come with gaps and whose cores are shared
    with other processes (the service's model replicas; see BENCHMARKS.md).
    """

    def __init__(self, model: str | os.PathLike | bytes, device: str = "auto", threads: int = 0,
                 providers: Sequence | None = None, tiling: TileConfig | None = None, spin: bool = True):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(model)
        self._session_args = dict(sess_options=so, providers=list(providers or default_providers(device)))
        self.source = "<bytes>" if isinstance(model, bytes) else source
        self.session = self._make_session(source)
        self.tiling = tiling or TileConfig()
        # the tiled graph is built from the model on first use: keep it only when tiling may happen
        self._model = source if self.tiling.threshold is not None else None
        self._tiler: TiledRunner | None = None
        self.metadata: dict[str, Any] = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        shape = self.session.get_inputs()[0].shape
        self.input_nc = int(self.metadata.get("input_nc", shape[1] if isinstance(shape[1], int) else 3))
        self.output_nc = int(self.metadata.get("output_nc", 3))
        self.size_multiple = int(self.metadata.get("size_multiple", 1))
        self.min_size = int(self.metadata.get("min_size", self.size_multiple))
        self.input_name = self.session.get_inputs()[0].name

    def _make_session(self, model: str | bytes):
        import onnxruntime as ort

        try:
            return ort.InferenceSession(model, **self._session_args)
        except Exception as e:
            raise ModelError(f"{self.source}: cannot load ONNX model ({e.__class__.__name__}: {e})") from None

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def tiler(self) -> TiledRunner:
        """The tiled runner (its graph is built on first use)."""
        if self._tiler is None:
            if self._model is None:
                raise ModelError(f"{self.source}: this predictor was made with tiling off (threshold None)")
            import onnx  # a file's external weights (the dynamo exporter's .onnx.data) are read in too

            model = self._model if isinstance(self._model, bytes) else onnx.load(self._model).SerializeToString()
            self._tiler = TiledRunner(model, self.input_nc, self.size_multiple, self.min_size,
                                      self._make_session, self.tiling)
        return self._tiler

    # ------------------------------------------------------------ network level
    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW in [-1, 1], any H and W -> output of the same H and W (tiled above the threshold)."""
        if self.tiling.wants(*np.shape(x)[-2:]):
            return self.tiler.run(np.asarray(x, dtype=np.float32))
        padded, pads = pad_to_multiple(np.ascontiguousarray(x, dtype=np.float32), self.size_multiple,
                                       self.min_size)
        y = self.session.run(None, {self.input_name: padded})[0]
        return crop_padding(y, pads)

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

    def translate_arrays(self, arrays: Sequence[np.ndarray],
                         progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
        """Translate several uint8 arrays; images of one size run as one batch. A tiled image reports
        ``progress(done, total)`` after every tile run (see :meth:`TiledRunner.translate_array`)."""
        prepared = [self._prepare(a) for a in arrays]
        results: list[np.ndarray | None] = [None] * len(prepared)
        by_shape: dict[tuple, list[int]] = {}
        for i, (a, _) in enumerate(prepared):
            by_shape.setdefault(a.shape, []).append(i)
        for shape, idx in by_shape.items():
            if self.tiling.wants(*shape[:2]):  # from uint8 tiles to uint8 rows: no full-size float copy
                out = [self.tiler.translate_array(prepared[i][0], progress) for i in idx]
            else:
                out = imageio.from_network(self.run(imageio.to_network(np.stack([prepared[i][0] for i in idx]))))
            for j, i in enumerate(idx):
                y, alpha = out[j], prepared[i][1]
                if alpha is not None:
                    y = np.concatenate([np.repeat(y, 3, axis=2) if y.shape[2] == 1 else y, alpha[:, :, None]], axis=2)
                results[i] = y
        return results  # type: ignore[return-value]

    def translate_source(self, source: TileSource, sink: TileSink,
                         progress: Callable[[int, int], None] | None = None) -> None:
        """Translate an image that ``source`` gives by windows (uint8, 1 or 3 channels) into ``sink``
        (uint8 rows with ``output_nc`` channels, top to bottom); see :mod:`translate.windows`.

        The same pixels as :meth:`translate_array` on the whole image. Above the tiling threshold only
        windows of the source are read and rows go to the sink as tiles finish (``progress(done,
        total)`` counts tile runs); below it, the image is read once and translated whole."""
        if source.channels not in (1, 3):
            raise ModelError(f"expected a source of 1 or 3 channels, got {source.channels}")
        source = MappedSource(source, self.match_channels, self.input_nc)
        if self.tiling.wants(source.height, source.width):
            self.tiler.translate_source(source, sink, progress)
            return
        a = source.read(0, source.height, 0, source.width)
        sink.write(0, imageio.from_network(self.run(imageio.to_network(a)))[0])

    def translate_array(self, a: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        squeeze = np.asarray(a).ndim == 2
        y = self.translate_arrays([a], progress)[0]
        return y[:, :, 0] if squeeze and y.shape[2] == 1 else y

    # --------------------------------------------------------------- PIL level
    def translate_image(self, img: Image.Image) -> Image.Image:
        rgb, alpha = imageio.split_alpha(img)
        out = imageio.array_to_image(self.translate_array(imageio.image_to_array(rgb)))
        if alpha is not None:
            out = out.convert("RGBA")
            out.putalpha(alpha)
        return out

    def __call__(self, image):
        if isinstance(image, Image.Image):
            return self.translate_image(image)
        return self.translate_array(image)

    # -------------------------------------------------------------- file level
    def translate_file(self, data: bytes, source: str, out: str | os.PathLike,
                       max_pixels: int = imageio.MAX_PIXELS, write_guard=None) -> None:
        """Decode an image file's bytes, translate, write ``out`` atomically (format from its
        suffix; JPEG drops transparency). ImageError names ``source`` for unreadable input.
        ``write_guard``: a context manager factory the write runs inside (e.g. a run's fence)."""
        img = self(imageio.decode(data, source=source, max_pixels=max_pixels))
        if Path(out).suffix.lower() in (".jpg", ".jpeg"):
            img = img.convert("RGB")
        with write_guard() if write_guard is not None else contextlib.nullcontext():
            imageio.save_image(img, out)
