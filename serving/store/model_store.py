"""The model store's facade: :class:`ModelStore` holds the rules (names, numbering, what may be deleted,
the metadata, promotion as a compare-and-swap) over the backend its location names (:func:`open_backend`):
a folder (:mod:`serving.store.local`) or object storage (:mod:`serving.store.object_storage`)."""
from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from translate.errors import ConfigError
from translate.kinds import check_translates
from translate.onnx_meta import read_metadata

from .local import LocalBackend
from .object_storage import ObjectBackend
from .vocabulary import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    FileSource,
    NotFoundError,
    PromotionConflict,
    StoreBackend,
    check_name,
    check_version,
    sha256_file,
)

# the keys of a training checkpoint a fine-tuning run needs (no optimizer, scheduler or RNG state); the palette its
# run scored class maps with is retraining's too (serving.retraining.promotion)
SLIM_CHECKPOINT_KEYS = ("format", "method", "config", "step", "networks", "generators", "palette")
STORE_ENV = "TRANSLATE_STORE"


def is_url(location: str | os.PathLike) -> bool:
    """True for an object-storage URL (``s3://...``); False for a folder (a path or ``file://``)."""
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", str(location))
    return scheme is not None and scheme.group(1).lower() not in ("file", "local")


def open_backend(location: str | os.PathLike) -> StoreBackend:
    if is_url(location):
        return ObjectBackend(str(location))
    text = str(location)
    return LocalBackend(Path(text[len("file://"):] if text.startswith("file://") else location))


class ModelStore:
    """Versions of exported models in a folder or in object storage; see :mod:`serving.store`.

    ``max_staleness_s``: how old a read of the pointer or of the version list may be (a server
    polling an object store per request sets a few seconds; folders are always read afresh).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, max_staleness_s: float = 0.0):
        self.backend = open_backend(root if root is not None else os.environ.get(STORE_ENV, "models"))
        self.max_staleness_s = 0.0 if self.backend.cheap_reads else max_staleness_s
        self._cache: dict[tuple, tuple[float, Any]] = {}

    @property
    def url(self) -> str:
        """Where the store is: an absolute folder or an object-storage URL (what replicas elsewhere open)."""
        return self.backend.url

    @property
    def root(self) -> Path:
        """The store's folder; for an object store, the local folder for its working files."""
        return self.backend.root

    def __repr__(self) -> str:
        return f"ModelStore({self.url!r})"

    def _cached(self, key: tuple, read: Callable[[], Any]) -> Any:
        if self.max_staleness_s > 0:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.max_staleness_s:
                return hit[1]
        value = read()
        if self.max_staleness_s > 0:
            self._cache[key] = (time.monotonic(), value)
        return value

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        return self.backend.names()

    def versions(self, name: str) -> list[str]:
        check_name(name)
        return self._cached(("versions", name), lambda: self.backend.versions(name))

    def current(self, name: str) -> str | None:
        check_name(name)
        return self._cached(("current", name), lambda: self.backend.read_pointer(name).version)

    def resolve(self, name: str, version: str | None = None) -> str:
        """The version NAME/VERSION names (None: the promoted one), checked to exist; NotFoundError if not.
        Reads no model file (nothing is downloaded)."""
        check_name(name)
        if version is None:
            version = self.current(name)
            if version is None:
                if not self.versions(name):
                    raise NotFoundError(f"no model named {name!r}")
                raise NotFoundError(f"model {name!r} has no promoted version")
        check_version(version)
        if not self._cached(("has", name, version), lambda: self.backend.has_version(name, version)):
            versions = self.backend.versions(name)
            if not versions:
                raise NotFoundError(f"no model named {name!r}")
            raise NotFoundError(f"model {name!r} has no version {version!r} (has {', '.join(versions)})")
        return version

    def model_path(self, name: str, version: str | None = None) -> Path:
        """A local file holding the model (for an object store: downloaded once, checksum-verified)."""
        version = self.resolve(name, version)
        path = self.backend.fetch(name, version, MODEL_FILE)
        if path is None:
            raise NotFoundError(f"model {name!r} {version} has no {MODEL_FILE}")
        return path

    def checkpoint_path(self, name: str, version: str | None = None) -> Path | None:
        return self.backend.fetch(name, self.resolve(name, version), CHECKPOINT_FILE)

    def meta(self, name: str, version: str | None = None) -> dict:
        version = self.resolve(name, version)
        return self.backend.read_meta(name, version)

    def list(self) -> list[dict]:
        out = []
        for name in self.names():
            versions = []
            for v in self.versions(name):
                try:
                    versions.append({**self.backend.read_meta(name, v), "version": v})
                except NotFoundError:  # deleted meanwhile
                    continue
            out.append({"name": name, "current": self.current(name), "versions": versions})
        return out

    # ------------------------------------------------------------------ writing
    def register(self, name: str, onnx: str | os.PathLike | bytes, meta: dict | None = None,
                 checkpoint: str | os.PathLike | None = None, promote: bool = False) -> str:
        """Add a new version of ``name``; returns it. The first version of a name is promoted."""
        from translate.predictor import Predictor  # lazy: ONNX Runtime, only when registering

        check_name(name)
        if not isinstance(onnx, bytes):
            if not Path(onnx).is_file():
                raise ConfigError("onnx", f"{onnx}: no such model file")
        # the store serves image translators: a model of another kind is refused by name before it is run
        check_translates(read_metadata(onnx), "model" if isinstance(onnx, bytes) else onnx, "the model store")
        model = Predictor(onnx, device="cpu")  # ModelError when it is not a usable model
        m = model.metadata
        record: dict[str, Any] = {
            "name": name,
            "method": m.get("method", ""),
            "direction": m.get("direction", "AtoB"),
            "size_multiple": model.size_multiple,
            "channels": model.input_nc,
            "output_channels": model.output_nc,
            "latent_size": model.latent_size,  # > 0: a multimodal model, which gives several answers (samples)
            "arch": m.get("arch", {}),
            "step": m.get("step"),
            "config": m.get("config", {}),
            "metrics": {},
        }
        files: dict[str, FileSource] = {MODEL_FILE: onnx if isinstance(onnx, bytes) else Path(onnx)}
        if checkpoint is not None:
            from translate.checkpoint import load_checkpoint, resolve_checkpoint  # lazy: torch

            ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
            slim = {k: ckpt[k] for k in SLIM_CHECKPOINT_KEYS if k in ckpt}
            record["metrics"] = dict(ckpt.get("last_val") or {})  # the run's last validation scores

            def write_slim(path: Path, slim=slim) -> None:
                import torch

                torch.save(slim, path)

            files[CHECKPOINT_FILE] = write_slim
        record["sha256"] = (hashlib.sha256(onnx).hexdigest() if isinstance(onnx, bytes)
                            else sha256_file(onnx)[0])
        record.update(meta or {})
        record["has_checkpoint"] = CHECKPOINT_FILE in files
        self.backend.sweep(name)  # what killed writers left long ago; never a write in progress
        version = self.backend.publish(name, files, record)
        self._cache.clear()
        if promote:
            self.promote(name, version)
        else:
            self._promote_if_none(name)
        return version

    def _promote_if_none(self, name: str) -> None:
        """Point the pointer at the first version when none (or a version that is gone) is promoted:
        concurrent first registrations agree, since v0001 exists before any later number."""
        pointer = self.backend.read_pointer(name)
        versions = self.backend.versions(name)
        if not versions or pointer.version in versions:
            return
        try:
            self.backend.swap_pointer(name, versions[0], pointer.token)
        except PromotionConflict:
            pass  # another writer promoted meanwhile: theirs stands
        self._cache.clear()

    def promote(self, name: str, version: str, expected: str | None = None) -> None:
        """Serve ``version`` of ``name``: one compare-and-swap of the pointer, no restart needed.

        ``expected``: promote only if this is still the promoted version (e.g. the version a
        retraining job compared against). Raises PromotionConflict when another promotion
        changed the pointer first; nothing is changed then.
        """
        check_name(name)
        check_version(version)
        pointer = self.backend.read_pointer(name)
        if expected is not None and pointer.version != check_version(expected):
            raise PromotionConflict(f"{name}: not promoting {version}: the promoted version is "
                                    f"{pointer.version or 'none'}, not {expected} as expected")
        self._cache.clear()
        self.resolve(name, version)
        if pointer.version == version:
            return
        try:
            self.backend.swap_pointer(name, version, pointer.token)
        except PromotionConflict:
            now = self.backend.read_pointer(name).version
            if now == version and expected is None:
                return  # the other promotion did what we asked
            raise PromotionConflict(
                f"{name}: another promotion changed the promoted version from {pointer.version or 'none'} to "
                f"{now or 'none'} while {version} was being promoted; nothing was changed (look at "
                f"`translate models list` and promote again if {version} should still be served)") from None
        finally:
            self._cache.clear()

    def delete(self, name: str, version: str | None = None) -> None:
        """Delete one version, or (``version=None``) the whole model with all its versions.

        The promoted version of a model that has other versions cannot be deleted: promote
        another one first. Deleting the only version deletes the model.
        """
        check_name(name)
        self._cache.clear()
        if version is not None:
            self.resolve(name, version)
        elif not self.backend.versions(name):
            raise NotFoundError(f"no model named {name!r}")
        versions = self.backend.versions(name)
        try:
            if version is None or versions == [version]:
                self.backend.remove_model(name)
                return
            if self.backend.read_pointer(name).version == version:
                raise ConfigError("version", f"{version} is the promoted version of {name!r}; promote another "
                                             f"version first (has {', '.join(versions)})")
            self.backend.remove_version(name, version)
        finally:
            self._cache.clear()
