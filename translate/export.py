"""ONNX export of a generator, verified against PyTorch.

Test-time policy (the reference trains batch norm at batch size 1 and, by default,
tests without ``eval()``: batch statistics and dropout on):

* dropout is off at test time: the output is deterministic, and ONNX Runtime would
  delete Dropout nodes anyway;
* batch norm trained at batch size 1 normalises each image by its own statistics,
  frozen as InstanceNorm carrying the learned scale and shift: exactly the reference's
  test-time arithmetic without the randomness, independent of the other images in a
  batch (so a server can batch requests), and exported as one op that ONNX Runtime
  and PyTorch compute alike. Models trained with larger batches use running statistics.

The exported graph takes ``input`` (N, C, H, W) float in [-1, 1] with dynamic N, H, W
(H and W multiples of ``size_multiple``) and returns ``output`` in [-1, 1]. The model's
metadata carries the normalisation, size multiple, channels and training config. An image
translator may instead take uint8 (N, H, W, C) pixels as decoded (``input_layout``
``uint8-nhwc``, :mod:`translate.input_layout`: the graph transposes and normalises them).
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import CHECKPOINT_CHOICES, generator_specs, load_checkpoint, resolve_checkpoint, run_checkpoint
from .errors import ConfigError, ModelError
from .files import atomic_path
from .gan.networks import DCGANGenerator, MLPGenerator
from .generators import load_generator
from .imageio import from_network, to_network
from .input_layout import FLOAT_NCHW, INPUT_LAYOUTS, check_layout, to_uint8_nhwc
from .kinds import KINDS, kind
from .networks import LatentInputGenerator, ResnetGenerator
from .onnx_meta import OPSET, TOLERANCE, add_metadata, encode_metadata, read_metadata
from .options import opt
from .padding import pad_to_multiple


def onnx_bytes(G: nn.Module, input_nc: int, opset: int = OPSET) -> bytes:
    """Serialise an inference generator (see networks.to_inference) with dynamic batch and size."""
    m = getattr(G, "size_multiple", 4)
    side = m * max(1, -(-64 // m))  # big enough that no norm layer sees a 1x1 map while tracing
    dummy = torch.zeros(1, input_nc, side, side)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The legacy (TorchScript) exporter: the graph is exported as the eval-mode module
        # computes it; dynamic_axes give dynamic batch/height/width in one file.
        torch.onnx.export(G.eval(), (dummy,), buf,  # type: ignore[arg-type]  # takes a BytesIO, typed path
                          dynamo=False, opset_version=opset, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                        "output": {0: "batch", 2: "height", 3: "width"}},
                          do_constant_folding=True)
    return buf.getvalue()


def translation_properties(G: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """What an image translator's model says of itself (before encoding): kind, sizes, channels, policy, config."""
    arch = meta.get("arch", {})

    multiple = getattr(G, "size_multiple", 1)
    return {
        "kind": kind(meta.get("kind", "translation")).onnx_name,  # a translator, or a segmenter built alike
        "size_multiple": multiple,
        # the ResNet blocks reflect-pad their 1/4-scale maps, which needs at least 2 pixels there
        "min_size": 2 * multiple if isinstance(G, ResnetGenerator) else multiple,
        "input_nc": arch.get("input_nc", 3),
        "output_nc": arch.get("output_nc", 3),
        "normalization": "x / 127.5 - 1 (uint8 -> [-1, 1]); output (y + 1) * 127.5",
        "test_time": ("batch norm with per-image statistics (InstanceNorm), dropout off" if meta.get("batch_stats")
                      else "eval mode: running statistics, dropout off"),
        "method": meta.get("method", ""),
        "direction": meta.get("direction", "AtoB"),
        "arch": arch,
        "step": meta.get("step"),
        "config": meta.get("config", {}),
    }


def verification_inputs(input_nc: int, size_multiple: int, seed: int = 0) -> list[np.ndarray]:
    """Random uint8 images of odd sizes (and a batch of two), padded as the predictor pads them."""

    rng = np.random.default_rng(seed)
    out = []
    for n, h, w in ((1, 37, 53), (2, 29, 71)):
        x = to_network(rng.integers(0, 256, (n, h, w, input_nc), dtype=np.uint8))
        out.append(pad_to_multiple(x, size_multiple)[0])
    return out


def verify(G: nn.Module, model_bytes: bytes, input_nc: int) -> float:
    """Max abs difference between PyTorch and ONNX Runtime (CPU) on odd-sized inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for x in verification_inputs(input_nc, getattr(G, "size_multiple", 1)):
            ref = G(torch.from_numpy(x)).numpy()
            got = sess.run(None, {"input": x})[0]
            if ref.shape != got.shape:
                raise ModelError(f"ONNX output shape {got.shape} differs from PyTorch {ref.shape}")
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def export_generator(G: nn.Module, meta: dict[str, Any], out: str | os.PathLike | None = None,
                     tolerance: float = TOLERANCE, check: bool = True) -> tuple[bytes, float | None]:
    """Export, attach metadata, verify; write atomically to ``out`` when given.

    Returns (model bytes, max abs diff or None when not checked). Raises ModelError when
    the difference is over ``tolerance`` (nothing is written then).
    """
    input_nc = meta.get("arch", {}).get("input_nc", 3)
    data = add_metadata(onnx_bytes(G, input_nc), encode_metadata(translation_properties(G, meta)))
    return _checked(data, verify(G, data, input_nc) if check else None, tolerance, out)


def _checked(data: bytes, diff: float | None, tolerance: float, out: str | os.PathLike | None
             ) -> tuple[bytes, float | None]:
    """``(data, diff)`` once ``diff`` (None: not checked) is within ``tolerance``, written atomically to ``out``
    when given; a ModelError otherwise, and nothing written."""
    if diff is not None and diff > tolerance:
        raise ModelError(f"ONNX export differs from PyTorch by {diff:.3g} (> tolerance {tolerance})")
    if out is not None:
        with atomic_path(out) as tmp:
            Path(tmp).write_bytes(data)
    return data, diff


def directions_of(path: str | os.PathLike) -> list[str]:
    """The generators a checkpoint (or run directory) holds, by name (direction for translation)."""
    p = resolve_checkpoint(path)
    if p.suffix == ".onnx":
        return []
    try:
        return sorted(generator_specs(load_checkpoint(p)))
    except ModelError:
        return ["AtoB"]  # a reference state dict holds one generator


@dataclass
class ExportOptions:
    """The settings of ``translate export`` (its flags, through :func:`translate.options.add_arguments`)."""

    direction: str | None = opt(None, "AtoB or BtoA, for checkpoints holding both")
    checkpoint: str | None = opt(None, f"which checkpoint of a run directory: {CHECKPOINT_CHOICES} (default: best "
                                 "when the run kept one, else latest)")
    tolerance: float = opt(TOLERANCE, "largest absolute difference from PyTorch allowed on [-1, 1] outputs")
    input: str = opt(FLOAT_NCHW, "the image input: float NCHW in [-1, 1], or uint8 NHWC pixels as decoded (the "
                     "graph transposes and normalises them: less to copy to a GPU, no conversion on the CPU)",
                     choices=INPUT_LAYOUTS)


def export_model(path: str | os.PathLike, out: str | os.PathLike, direction: str | None = None,
                 tolerance: float = TOLERANCE, input_layout: str = FLOAT_NCHW) -> float:
    """Export one generator of a checkpoint, run directory or reference .pth to ``out``, verified;
    returns the max abs difference against PyTorch. The graph is the generator's kind's
    (:mod:`translate.kinds`): an image translator (``input`` -> ``output``), a GAN generator (``z``
    [+ ``label``] -> ``output``)... ``input_layout`` ``uint8-nhwc``: an image translator's input takes
    uint8 NHWC (see :func:`with_input_layout`)."""
    G, meta = load_generator(path, direction)
    export = kind(meta["kind"]).call("export")
    if check_layout(input_layout) == FLOAT_NCHW:
        return export(G, meta, out, tolerance)[1]
    if not kind(meta["kind"]).translates:
        raise ConfigError("input", f"{path}: a {meta['kind']} generator takes no image; --input {input_layout} is "
                                   "for image translators")
    data, diff = export(G, meta, None, tolerance)
    data, layout_diff = with_input_layout(data, input_layout, tolerance)
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(data)
    return diff + layout_diff  # a bound of the difference from PyTorch


def with_input_layout(model_bytes: bytes, input_layout: str, tolerance: float = TOLERANCE) -> tuple[bytes, float]:
    """A verified image translator's model with its image input in ``input_layout`` and its metadata saying so;
    returns (bytes, max abs difference from the float model on odd-sized uint8 images, a code of 0 for a
    multimodal model). Raises ModelError over ``tolerance``."""
    if check_layout(input_layout) == FLOAT_NCHW:
        return model_bytes, 0.0
    props = read_metadata(model_bytes)
    props.update(input_layout=input_layout, normalization="input uint8 NHWC, x / 127.5 - 1 in the graph; output "
                                                          "(y + 1) * 127.5")
    data = add_metadata(to_uint8_nhwc(model_bytes), encode_metadata(props))
    diff = verify_input_layout(model_bytes, data, int(props.get("input_nc", 3)), int(props.get("size_multiple", 1)),
                               int(props.get("latent_size", 0)))
    if diff > tolerance:
        raise ModelError(f"the {input_layout} model differs from the float one by {diff:.3g} (> tolerance {tolerance})")
    return data, diff


def verify_input_layout(float_bytes: bytes, uint8_bytes: bytes, input_nc: int, size_multiple: int,
                        latent_size: int = 0) -> float:
    """Max abs difference between a float NCHW model and its uint8 NHWC form on the same odd-sized images."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]) for b in (float_bytes, uint8_bytes)]
    worst = 0.0
    for x in verification_inputs(input_nc, size_multiple):
        extra = {"latent": np.zeros((len(x), latent_size), np.float32)} if latent_size else {}
        ref = sessions[0].run(None, {"input": x, **extra})[0]
        pixels = from_network(x)  # exact: x came from uint8 pixels (padding copies pixels)
        got = sessions[1].run(None, {"input": pixels, **extra})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def export_source(model: str | os.PathLike, checkpoint: str | None = None) -> Path:
    """What ``translate export MODEL [--checkpoint C]`` exports: a run directory's checkpoint
    (:func:`translate.checkpoint.run_checkpoint`: by default the best when the run kept one), or the file named."""
    if Path(model).is_dir():
        return run_checkpoint(model, checkpoint)
    if checkpoint is not None:
        raise ConfigError("checkpoint", f"{model} is a file: --checkpoint picks one of a run directory's checkpoints")
    return resolve_checkpoint(model)


def export_run(run_dir: str | os.PathLike, verbose: bool = True) -> dict[str, float]:
    """Export every generator of a run, from its best checkpoint when it kept one, else its latest: ``model.onnx``
    for one, ``AtoB.onnx``/``BtoA.onnx`` for two."""
    run_dir = Path(run_dir)
    ckpt = run_checkpoint(run_dir)
    dirs = directions_of(ckpt)
    diffs = {}
    for d in dirs:
        out = run_dir / ("model.onnx" if len(dirs) == 1 else f"{d}.onnx")
        diffs[d] = export_model(ckpt, out, d)
        if verbose:
            print(f"exported {out} from {ckpt.relative_to(run_dir)} (max abs diff vs PyTorch {diffs[d]:.2e})")
    return diffs


# ------------------------------------------------------------ multimodal translators
def export_multimodal_generator(G: LatentInputGenerator, meta: dict[str, Any], out: str | os.PathLike | None = None,
                                tolerance: float = TOLERANCE, check: bool = True) -> tuple[bytes, float | None]:
    """Export an image-and-latent translator (BicycleGAN's G, test-time form) as ``input`` (N, C, H, W) in
    [-1, 1] and ``latent`` (N, nz) float32 -> ``output`` (N, C', H, W), dynamic batch, height and width
    (a latent of batch 1 serves the whole batch); its metadata is a translator's with ``kind`` multimodal
    and ``latent_size`` nz. Verified against PyTorch on odd sizes with random codes; written atomically
    to ``out``. Returns (bytes, max abs diff or None when not checked); raises ModelError over ``tolerance``."""
    input_nc = meta.get("arch", {}).get("input_nc", 3)
    m = G.size_multiple
    side = m * max(1, -(-64 // m))  # as onnx_bytes: no norm layer sees a 1x1 map while tracing
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(G.eval(), (torch.zeros(1, input_nc, side, side), torch.zeros(1, G.nz)), buf,  # type: ignore[arg-type]
                          dynamo=False, opset_version=OPSET, input_names=["input", "latent"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "latent": {0: "codes"},
                                        "output": {0: "batch", 2: "height", 3: "width"}},
                          do_constant_folding=True)
    props = {**translation_properties(G.G, meta), "kind": KINDS["multimodal"].onnx_name, "latent_size": G.nz,
             "input_nc": input_nc, "latent": "z ~ N(0, I); z = 0 (the prior's mean) for one answer"}
    data = add_metadata(buf.getvalue(), encode_metadata(props))
    return _checked(data, verify_multimodal_generator(G, data, input_nc) if check else None, tolerance, out)


def verify_multimodal_generator(G: LatentInputGenerator, model_bytes: bytes, input_nc: int, seed: int = 0) -> float:
    """Max abs difference between PyTorch and ONNX Runtime (CPU) on odd-sized inputs, a code per image."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for x in verification_inputs(input_nc, G.size_multiple, seed):
            z = torch.randn(x.shape[0], G.nz, generator=g)
            ref = G(torch.from_numpy(x), z).numpy()
            got = sess.run(None, {"input": x, "latent": z.numpy()})[0]
            if ref.shape != got.shape:
                raise ModelError(f"ONNX output shape {got.shape} differs from PyTorch {ref.shape}")
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst


# ------------------------------------------------------------ GAN generators
class _LatentInputs(nn.Module):
    """G(z) or G(z, label) with the inputs named for ONNX."""

    def __init__(self, G: nn.Module):
        super().__init__()
        self.G = G

    def forward(self, z, label=None):
        return self.G(z, label)


GAN_META_KEYS = ("arch", "classes", "data", "ema", "step", "gan_mode", "config")


def export_gan_generator(G: DCGANGenerator | MLPGenerator, meta: dict[str, Any], out: str | os.PathLike | None = None,
                         tolerance: float | None = None, seed: int = 0) -> tuple[bytes, float]:
    """Export a GAN generator (eval mode) as ``z`` (N, nz) float32 [+ ``label`` (N,) int64] -> ``output``
    (N, C, H, W) in [-1, 1] or (N, D) points, dynamic N; attach metadata; verify against PyTorch on
    random latents (batches of 1 and 5); write atomically to ``out``. A VAE's decoder (kind ``"vae"``) is such a
    generator; the model's ``translate.kind`` is its kind's.
    Returns (bytes, max abs diff); raises ModelError over ``tolerance``."""
    tolerance = TOLERANCE if tolerance is None else tolerance
    G = G.eval()
    nz, k = G.nz, G.num_classes
    inputs = (torch.zeros(2, nz), torch.zeros(2, dtype=torch.int64)) if k else (torch.zeros(2, nz),)
    names = ["z", "label"][: len(inputs)]
    axes = {n: {0: "batch"} for n in names + ["output"]}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the wrapper must be in eval mode too: the exporter restores the wrapper's mode, recursively
        torch.onnx.export(_LatentInputs(G).eval(), inputs, buf,  # type: ignore[arg-type]  # takes a BytesIO, typed path
                          dynamo=False, opset_version=OPSET, input_names=names, output_names=["output"],
                          dynamic_axes=axes, do_constant_folding=True)
    props = {"kind": KINDS[meta.get("kind", "gan")].onnx_name, "nz": nz, "num_classes": k, "inputs": names,
             "output": ("image NCHW in [-1, 1]; uint8 = (y + 1) * 127.5" if isinstance(G, DCGANGenerator)
                        else "points (N, D)"),
             "latent": "z ~ N(0, I); truncation resamples |z| > T", **{k_: meta[k_] for k_ in GAN_META_KEYS if k_ in meta}}
    data = add_metadata(buf.getvalue(), encode_metadata(props))
    diff = verify_gan_generator(G, data, seed)
    _checked(data, diff, tolerance, out)
    return data, diff


def verify_gan_generator(G: DCGANGenerator | MLPGenerator, model_bytes: bytes, seed: int = 0) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for n in (1, 5):
            z = torch.randn(n, G.nz, generator=g)
            feed = {"z": z.numpy()}
            y = None
            if G.num_classes:
                y = torch.randint(0, G.num_classes, (n,), generator=g)
                feed["label"] = y.numpy()
            ref = G(z, y).numpy()
            got = sess.run(None, feed)[0]
            if ref.shape != got.shape:
                raise ModelError(f"ONNX output shape {got.shape} differs from PyTorch {ref.shape}")
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst
