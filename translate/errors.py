"""Typed errors for bad input. Each names the file or field and says what was wrong.

The CLI prints one line for these and exits non-zero; the service answers 4xx.
"""
from __future__ import annotations

import os


class TranslateError(Exception):
    """Base class for errors caused by the user's input (not by a bug)."""


class ConfigError(TranslateError, ValueError):
    """A configuration field or command-line flag has a bad value."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class ImageError(TranslateError, ValueError):
    """An image could not be read, or is refused (too large, wrong format, corrupt)."""

    def __init__(self, source: str | os.PathLike | object, reason: str):
        """``source``: what the image came from (a file, an object-storage URL, an upload's name)."""
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class DataError(TranslateError, ValueError):
    """A dataset folder is missing, empty, or laid out in a way we cannot read."""


class ModelError(TranslateError, ValueError):
    """A model file (checkpoint, ONNX, reference state dict) cannot be used."""


class CudaProviderError(ModelError):
    """CUDA was asked for, but ONNX Runtime cannot run the model with its CUDA provider (the CPU build is
    installed, its CUDA libraries do not load, no GPU is visible): the message names which."""


class StorageError(TranslateError):
    """Object storage could not be read or written: no such bucket, a refused request (credentials,
    permissions), an endpoint that does not answer. The message names the URL and which."""
