"""The kinds of generator, each described once: the registry every tool asks instead of branching.

A checkpoint's :class:`~translate.checkpoint.GeneratorSpec` and an exported model's metadata name a
kind. Its :class:`GeneratorKind` says how the generator is rebuilt from a checkpoint (``load``),
exported (``export``) and evaluated (``evaluate``), what its ONNX graph takes (``inputs``), and whether
the image predictor, and so ``translate predict``, batch conversion, the service and the model store,
can run it (``translates``; where not, ``use_instead`` says what can).

The callables are named as ``"module:function"`` and imported when first used, so this module imports
nothing of the project but its errors (every layer may ask it) and a kind's code lives in its own module. Adding a
kind is one module with its loader and exporter and one entry in :data:`KINDS`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModelError


@dataclass(frozen=True)
class GeneratorKind:
    """One kind of generator.

    ``load(raw_checkpoint, spec, meta, use_ema) -> (module, meta)`` rebuilds it in its test-time form;
    ``export(module, meta, out, tolerance) -> (bytes, max abs diff)`` writes its verified ONNX model (a
    kind that translates also takes ``check=False``: translate.loading's in-memory export, unverified);
    ``evaluate(args)`` is the ``translate evaluate`` command's handler for it (it lives with the command
    and takes its parsed flags). ``samples``: latents in, samples out, so ``translate sample`` and
    ``translate edit`` draw from it. ``inputs`` are its ONNX inputs'
    roles, in order: ``"image"`` (N, C, H, W in [-1, 1]), ``"latent"`` (N, nz), ``"label"`` (N,).
    ``onnx_kind`` is the ``translate.kind`` its exported models carry (models exported before the
    translation kind wrote one carry none: they read as ``"translation"``).
    """

    name: str
    summary: str  # what goes in and out, for error messages
    inputs: tuple[str, ...]
    load: str
    export: str
    evaluate: str
    translates: bool  # an image in, an image out: run by the predictor and served
    samples: bool = False  # latents in, samples out: drawn by `translate sample` / `edit`
    use_instead: str = ""  # where not: the command that runs it
    onnx_kind: str = ""

    @property
    def onnx_name(self) -> str:
        return self.onnx_kind or self.name

    def call(self, what: str) -> Callable[..., Any]:
        """The function named by field ``what`` (``"load"``, ``"export"``, ``"evaluate"``), imported now."""
        module, _, attr = getattr(self, what).partition(":")
        return getattr(importlib.import_module(module), attr)

    def refusal(self, source: object, where: str) -> ModelError:
        """The error for a model of this kind handed to ``where`` (which runs image translators only)."""
        return ModelError(f"{source}: a {self.name} model ({self.summary}), not an image translator, which "
                          f"{where} needs" + (f"; {self.use_instead}" if self.use_instead else ""))


KINDS: dict[str, GeneratorKind] = {
    "translation": GeneratorKind(
        name="translation", summary="an image in, an image out", inputs=("image",),
        load="translate.generators:load_translation_generator", export="translate.export:export_generator",
        evaluate="translate_cli.main:evaluate_translation", translates=True),
    "multimodal": GeneratorKind(
        name="multimodal", summary="an image and a latent code in, one of many images out", inputs=("image", "latent"),
        load="translate.generators:load_multimodal_generator", export="translate.export:export_multimodal_generator",
        evaluate="translate_cli.main:evaluate_translation", translates=True),
    "gan": GeneratorKind(
        name="gan", summary="latents in, samples out", inputs=("latent", "label"),
        load="translate.generators:load_gan_generator", export="translate.export:export_gan_generator",
        evaluate="translate_cli.gan_commands:cmd_evaluate", translates=False, samples=True,
        use_instead="use `translate sample` / `translate edit` with the run", onnx_kind="gan_generator"),
    "segmenter": GeneratorKind(  # translate/segmenter.py: the FCN-score's judge, a U-Net like a translator's
        name="segmenter", summary="a photo in, the class scores of its label map out", inputs=("image",),
        load="translate.generators:load_translation_generator", export="translate.export:export_generator",
        evaluate="translate_cli.main:evaluate_segmenter", translates=False,
        use_instead="it scores translations into photos: `translate evaluate MODEL --data DIR --segmenter RUN`"),
    "vae": GeneratorKind(  # the decoder is a DCGAN generator: loaded and exported as one, scored by its ELBO
        name="vae", summary="a VAE's decoder: latents in, images out", inputs=("latent",),
        load="translate.generators:load_gan_generator", export="translate.export:export_gan_generator",
        evaluate="translate_cli.gan_commands:cmd_evaluate_vae", translates=False, samples=True,
        use_instead="use `translate sample` (--grid for a 2-D latent) with the run", onnx_kind="vae_decoder"),
}


def kind(name: str) -> GeneratorKind:
    """The registered kind ``name``; a ModelError naming the kinds this version knows otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ModelError(f"unknown generator kind {name!r} (this version knows {sorted(KINDS)})") from None


def onnx_kind(meta: dict[str, Any], source: object = "model") -> GeneratorKind:
    """The kind of an exported model from its decoded metadata (:func:`translate.onnx_meta.decode_metadata`)."""
    name = meta.get("kind", "translation")
    for k in KINDS.values():
        if k.onnx_name == name:
            return k
    raise ModelError(f"{source}: a model of kind {name!r}, which this version cannot run "
                     f"(it knows {sorted(k.onnx_name for k in KINDS.values())}); upgrade, or re-export the run")


def check_translates(meta: dict[str, Any], source: object, where: str) -> GeneratorKind:
    """The kind of an exported model that ``where`` is about to run as an image translator; raises its
    refusal when the kind does not translate images."""
    k = onnx_kind(meta, source)
    if not k.translates:
        raise k.refusal(source, where)
    return k
