"""The ONNX Runtime predictor: one code path for ``translate predict``, batch
conversion and the HTTP service, so one image gives the same pixels everywhere.

Any size and aspect in, the same size out: the input is reflect-padded (centred) to
the network's size multiple and the output cropped back. Transparency is set aside
and restored. The CUDA provider is used when a GPU is really there, else the CPU.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from . import imageio
from .errors import ModelError
from .tiling import TileConfig, TiledRunner

META_PREFIX = "translate."
TILING_TAG = "TRANSLATE_TILING"  # PNG text key of an output's Predictor.last_tiling (JSON)


def pad_to_multiple(x: np.ndarray, multiple: int, min_size: int = 0,
                    axes: tuple[int, int] = (-2, -1)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Reflect-pad NCHW ``x`` so H and W are multiples of ``multiple`` and at least ``min_size``.

    Returns (padded, (top, bottom, left, right)). Padding is split evenly around the image.
    ``axes`` names the H and W axes (``(0, 1)`` for an HWC image).
    """
    ax = [a % x.ndim for a in axes]
    h, w = x.shape[ax[0]], x.shape[ax[1]]
    least = max(multiple, min_size)
    th, tw = (max(least, -(-n // multiple) * multiple) for n in (h, w))
    top, left = (th - h) // 2, (tw - w) // 2
    pads = (top, th - h - top, left, tw - w - left)
    if not any(pads):
        return x, pads
    width = [(0, 0)] * x.ndim
    width[ax[0]], width[ax[1]] = (pads[0], pads[1]), (pads[2], pads[3])
    mode = "reflect" if min(h, w) > 1 else "edge"  # a 1-pixel side cannot be reflected
    return np.pad(x, width, mode=mode), pads


def crop_padding(y: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = pads
    return y[..., top: y.shape[-2] - bottom, left: y.shape[-1] - right]


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
    """

    def __init__(self, model: str | os.PathLike | bytes, device: str = "auto", threads: int = 0,
                 providers: Sequence | None = None, tiling: TileConfig | None = None):
        import onnxruntime as ort

        self._threads = threads
        source = model if isinstance(model, bytes) else str(model)
        self._providers = list(providers or default_providers(device))
        self.source = "<bytes>" if isinstance(model, bytes) else source
        self.session = self._make_session(source)
        self.tiling = tiling or TileConfig()
        # the tiled graph is built from the model on first use: keep it only when tiling may happen
        self._model = source if self.tiling.threshold is not None else None
        self._tiler: TiledRunner | None = None
        # how the last image was translated, for the output's metadata (see :meth:`_record`)
        self.last_tiling: dict[str, Any] | None = None
        raw = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, Any] = {}
        for k, v in raw.items():
            if k.startswith(META_PREFIX):
                key = k[len(META_PREFIX):]
                try:
                    self.metadata[key] = json.loads(v)
                except ValueError:
                    self.metadata[key] = v
        shape = self.session.get_inputs()[0].shape
        self.input_nc = int(self.metadata.get("input_nc", shape[1] if isinstance(shape[1], int) else 3))
        self.output_nc = int(self.metadata.get("output_nc", 3))
        self.size_multiple = int(self.metadata.get("size_multiple", 1))
        self.min_size = int(self.metadata.get("min_size", self.size_multiple))
        self.input_name = self.session.get_inputs()[0].name

    def _make_session(self, model: str | bytes, arena: bool = True):
        """An ONNX Runtime session with the predictor's threads and providers. ``arena=False``: CPU
        memory is returned after each run instead of kept for the next one; the tiled runner's
        sessions (up to ten for split graphs, each over a tile) would otherwise each keep their peak."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.enable_cpu_mem_arena = arena
        if self._threads:
            so.intra_op_num_threads = self._threads
        try:
            return ort.InferenceSession(model, sess_options=so, providers=self._providers)
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
                                      lambda graph: self._make_session(graph, arena=False), self.tiling)
        return self._tiler

    # ------------------------------------------------------------ network level
    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW in [-1, 1], any H and W -> output of the same H and W (tiled above the threshold)."""
        if self.tiling.wants(*np.shape(x)[-2:]):
            y = self.tiler.run(np.asarray(x, dtype=np.float32))
            self._record(True)
            return y
        self._record(False)
        padded, pads = pad_to_multiple(np.ascontiguousarray(x, dtype=np.float32), self.size_multiple,
                                       self.min_size)
        y = self.session.run(None, {self.input_name: padded})[0]
        return crop_padding(y, pads)

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
        if self.input_nc == 1 and a.shape[2] == 3:
            a = imageio.image_to_array(Image.fromarray(a).convert("L"))
        elif self.input_nc == 3 and a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
        return a, alpha

    def translate_arrays(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Translate several uint8 arrays; images of one size run as one batch."""
        prepared = [self._prepare(a) for a in arrays]
        results: list[np.ndarray | None] = [None] * len(prepared)
        by_shape: dict[tuple, list[int]] = {}
        for i, (a, _) in enumerate(prepared):
            by_shape.setdefault(a.shape, []).append(i)
        for shape, idx in by_shape.items():
            if self.tiling.wants(*shape[:2]):  # from uint8 tiles to uint8 rows: no full-size float copy
                out = [self.tiler.translate_array(prepared[i][0]) for i in idx]
                self._record(True)
            else:
                out = imageio.from_network(self.run(imageio.to_network(np.stack([prepared[i][0] for i in idx]))))
            for j, i in enumerate(idx):
                y, alpha = out[j], prepared[i][1]
                if alpha is not None:
                    y = np.concatenate([np.repeat(y, 3, axis=2) if y.shape[2] == 1 else y, alpha[:, :, None]], axis=2)
                results[i] = y
        return results  # type: ignore[return-value]

    def translate_array(self, a: np.ndarray) -> np.ndarray:
        squeeze = np.asarray(a).ndim == 2
        y = self.translate_arrays([a])[0]
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
        # how it was translated (whole, or tiled and with which statistics) goes into a PNG's text
        text = {TILING_TAG: json.dumps(self.last_tiling)} if self.last_tiling else None
        with write_guard() if write_guard is not None else contextlib.nullcontext():
            imageio.save_image(img, out, text=text)


def model_source(path: str | os.PathLike, direction: str | None = None) -> Path | bytes:
    """The ONNX model behind an ONNX file, a run directory or a checkpoint (ours or the reference's):
    a path to an .onnx file, or the bytes of the in-memory export of a PyTorch generator."""
    from .checkpoint import load_generator, resolve_model_path
    from .export import export_generator

    path = Path(path)
    if path.is_dir() and direction and (path / f"{direction}.onnx").exists():
        return path / f"{direction}.onnx"
    p = resolve_model_path(path)
    if p.suffix == ".onnx":
        return p
    G, meta = load_generator(p, direction)
    return export_generator(G, meta, check=False)[0]


def load(path: str | os.PathLike, device: str = "auto", direction: str | None = None, threads: int = 0,
         tiling: TileConfig | None = None) -> Predictor:
    """A :class:`Predictor` from an ONNX file, a run directory or a checkpoint (ours or the reference's).

    Non-ONNX models are exported in memory first, so every path computes the same graph.
    """
    return Predictor(model_source(path, direction), device=device, threads=threads, tiling=tiling)
