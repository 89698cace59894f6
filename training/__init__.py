"""The trainers: one module per method on one shared loop (``training.process_loop``, which
``training.loop.Trainer`` runs).

The registry below is the one list of trainers that the ``translate train`` command, the
retraining service and the tests read. Adding a trainer is one module (a ``Method`` subclass with
its ``name`` and its config dataclass, see DESIGN.md) and one line here.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from translate.errors import ConfigError

if TYPE_CHECKING:  # the loop imports torch: the registry itself stays importable without it
    from .method_base import Method

#: "module:Class" of every trainer, in the order ``translate train --help`` lists them.
TRAINERS: tuple[str, ...] = (
    "training.pix2pix:Pix2Pix",
    "training.cyclegan:CycleGAN",
    "training.cut:CUT",
    "training.gan:GAN",
    "training.segmenter:Segmenter",
    "training.bicyclegan:BicycleGAN",
    "training.vae:VAE",
)

_imported: dict[str, type[Method]] = {}  # by "module:Class"


def methods() -> dict[str, type[Method]]:
    """Every registered trainer by its name (importing their modules on first use)."""
    for target in TRAINERS:
        if target not in _imported:
            module, cls = target.split(":")
            _imported[target] = getattr(importlib.import_module(module), cls)
    return {_imported[t].name: _imported[t] for t in TRAINERS}


def method(name: str) -> type[Method]:
    """The trainer called ``name``; a ConfigError naming the known ones otherwise."""
    found = methods().get(name)
    if found is None:
        raise ConfigError("method", f"no trainer named {name!r} (known: {', '.join(methods())})")
    return found


__all__ = ["TRAINERS", "methods", "method"]
