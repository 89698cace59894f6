"""The on-disk model store: named models, numbered versions, one promoted version per name.

Layout (every write is atomic: a version is written under a hidden temporary name and
renamed into place; the pointer to the promoted version is one small file replaced
atomically)::

    ROOT/NAME/CURRENT            "v0002"
    ROOT/NAME/v0001/model.onnx   the exported generator (translate.export)
    ROOT/NAME/v0001/meta.json    method, direction, size_multiple, channels, config, metrics, created
    ROOT/NAME/v0001/checkpoint.pt  optional slim training checkpoint, for fine-tuning

Names and versions come from HTTP clients: they are checked against strict patterns
before any path is built from them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from translate.errors import ConfigError, TranslateError
from translate.files import write_text_atomic

NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VERSION_RE = r"^v\d{4,}$"
MODEL_FILE, META_FILE, CHECKPOINT_FILE, CURRENT_FILE = "model.onnx", "meta.json", "checkpoint.pt", "CURRENT"
# the keys of a training checkpoint a fine-tuning run needs (no optimizer, scheduler or RNG state)
SLIM_CHECKPOINT_KEYS = ("format", "method", "config", "step", "networks", "generators")


class NotFoundError(TranslateError, KeyError):
    """A model name or version that the store does not hold (the service answers 404)."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(NAME_RE, name):
        raise ConfigError("name", f"{name!r} is not a model name (lowercase letters, digits, '_' and '-', "
                                  "starting with a letter or digit, at most 64 characters)")
    return name


def check_version(version: Any) -> str:
    if not isinstance(version, str) or not re.fullmatch(VERSION_RE, version):
        raise ConfigError("version", f"{version!r} is not a version (expected 'v' and at least 4 digits, e.g. v0001)")
    return version


def parse_model_id(model_id: str) -> tuple[str, str]:
    """'NAME@VERSION' -> (name, version), both checked."""
    name, sep, version = str(model_id).partition("@")
    if not sep:
        raise ConfigError("model_id", f"{model_id!r} is not NAME@VERSION")
    return check_name(name), check_version(version)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ModelStore:
    """Versions of exported models on disk; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root if root is not None else os.environ.get("TRANSLATE_STORE", "models"))

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # ------------------------------------------------------------------ reading
    def _name_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and re.fullmatch(NAME_RE, p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        d = self._name_dir(name)
        if not d.is_dir():
            return []
        found = [p.name for p in d.iterdir() if re.fullmatch(VERSION_RE, p.name) and (p / MODEL_FILE).is_file()]
        return sorted(found, key=lambda v: int(v[1:]))

    def current(self, name: str) -> str | None:
        try:
            version = (self._name_dir(name) / CURRENT_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        return version if re.fullmatch(VERSION_RE, version) else None

    def _resolve(self, name: str, version: str | None) -> Path:
        """The directory of NAME/VERSION (None: the promoted one); NotFoundError when absent."""
        if version is None:
            version = self.current(name)
            if version is None:
                if not self.versions(name):
                    raise NotFoundError(f"no model named {name!r}")
                raise NotFoundError(f"model {name!r} has no promoted version")
        d = self._name_dir(name) / check_version(version)
        if not (d / MODEL_FILE).is_file():
            if not self.versions(name):
                raise NotFoundError(f"no model named {name!r}")
            raise NotFoundError(f"model {name!r} has no version {version!r} (has {', '.join(self.versions(name))})")
        return d

    def model_path(self, name: str, version: str | None = None) -> Path:
        return self._resolve(name, version) / MODEL_FILE

    def checkpoint_path(self, name: str, version: str | None = None) -> Path | None:
        p = self._resolve(name, version) / CHECKPOINT_FILE
        return p if p.is_file() else None

    def meta(self, name: str, version: str | None = None) -> dict:
        d = self._resolve(name, version)
        try:
            return json.loads((d / META_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return {"name": name, "version": d.name}

    def list(self) -> list[dict]:
        out = []
        for name in self.names():
            versions = []
            for v in self.versions(name):
                try:
                    versions.append({**self.meta(name, v), "version": v})
                except NotFoundError:  # deleted meanwhile
                    continue
            out.append({"name": name, "current": self.current(name), "versions": versions})
        return out

    # ------------------------------------------------------------------ writing
    def register(self, name: str, onnx: str | os.PathLike | bytes, meta: dict | None = None,
                 checkpoint: str | os.PathLike | None = None, promote: bool = False) -> str:
        """Add a new version of ``name``; returns it. The first version of a name is promoted."""
        from translate.predictor import Predictor

        name_dir = self._name_dir(name)
        if not isinstance(onnx, bytes):
            if not Path(onnx).is_file():
                raise ConfigError("onnx", f"{onnx}: no such model file")
        model = Predictor(onnx, device="cpu")  # ModelError when it is not a usable model
        m = model.metadata
        record: dict[str, Any] = {
            "name": name,
            "method": m.get("method", ""),
            "direction": m.get("direction", "AtoB"),
            "size_multiple": model.size_multiple,
            "channels": model.input_nc,
            "output_channels": model.output_nc,
            "arch": m.get("arch", {}),
            "step": m.get("step"),
            "config": m.get("config", {}),
            "metrics": {},
        }
        slim = None
        if checkpoint is not None:
            from translate.checkpoint import load_checkpoint, resolve_checkpoint

            ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
            slim = {k: ckpt[k] for k in SLIM_CHECKPOINT_KEYS if k in ckpt}
            record["metrics"] = dict(ckpt.get("last_val") or {})  # the run's last validation scores
        record["sha256"] = hashlib.sha256(onnx if isinstance(onnx, bytes) else Path(onnx).read_bytes()).hexdigest()
        record.update(meta or {})

        name_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=name_dir))
        try:
            if isinstance(onnx, bytes):
                (tmp / MODEL_FILE).write_bytes(onnx)
            else:
                shutil.copyfile(onnx, tmp / MODEL_FILE)
            if slim is not None:
                import torch

                torch.save(slim, tmp / CHECKPOINT_FILE)
            os.chmod(tmp, 0o755)
            # claim the next free number: renaming onto an existing (non-empty) version fails
            n = int(self.versions(name)[-1][1:]) + 1 if self.versions(name) else 1
            while True:
                version = f"v{n:04d}"
                record.update(version=version, created=_utc_now(), has_checkpoint=slim is not None)
                (tmp / META_FILE).write_text(json.dumps(record, indent=2, default=str))
                try:
                    os.rename(tmp, name_dir / version)
                    break
                except OSError:
                    if not (name_dir / version).exists():
                        raise
                    n += 1
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if promote:
            self.promote(name, version)
        else:
            self._promote_if_none(name)
        return version

    def _promote_if_none(self, name: str) -> None:
        """Point CURRENT at the first version when none is promoted yet (atomic create-if-absent:
        concurrent first registrations agree, since v0001 exists before any later number)."""
        pointer = self._name_dir(name) / CURRENT_FILE
        if self.current(name) is not None:
            return
        version = self.versions(name)[0]
        fd, tmp = tempfile.mkstemp(prefix=".CURRENT.", dir=pointer.parent)
        try:
            os.write(fd, (version + "\n").encode())
            os.close(fd)
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, pointer)  # fails if another writer promoted meanwhile
            except FileExistsError:
                if self.current(name) is None:  # a corrupt pointer: replace it
                    os.replace(tmp, pointer)
                    return
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def promote(self, name: str, version: str) -> None:
        self._resolve(name, version)
        write_text_atomic(self._name_dir(name) / CURRENT_FILE, version + "\n")

    def delete(self, name: str, version: str | None = None) -> None:
        """Delete one version, or (``version=None``) the whole model with all its versions.

        The promoted version of a model that has other versions cannot be deleted: promote
        another one first. Deleting the only version deletes the model.
        """
        name_dir = self._name_dir(name)
        if version is not None:
            self._resolve(name, version)
        elif not self.versions(name):
            raise NotFoundError(f"no model named {name!r}")
        if version is None or self.versions(name) == [version]:
            target = name_dir
        else:
            target = self._resolve(name, version)
            if self.current(name) == version:
                raise ConfigError("version", f"{version} is the promoted version of {name!r}; promote another "
                                             f"version first (has {', '.join(self.versions(name))})")
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root if target == name_dir else name_dir))
        os.rename(target, trash / target.name)  # atomic: readers see the version or nothing
        shutil.rmtree(trash, ignore_errors=True)
