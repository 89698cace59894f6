"""Atomic file writes: a crash never leaves half a file under the final name."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def _temp_next_to(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # ".NAME.<random>.tmp.EXT": hidden, unique, and still ending in the real suffix
    # for writers that choose a format by extension
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike,
                commit_guard: Callable[[], contextlib.AbstractContextManager] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place on success.

    The temporary file lives in the same directory (so the rename is atomic) and
    keeps the suffix (so libraries that pick a format by extension still work).
    On error it is removed and ``path`` is left untouched. ``commit_guard``: a context
    manager factory the rename runs inside (a long write need not hold it, e.g. a run's fence).
    """
    path = Path(path)
    final_tmp = _temp_next_to(path)
    try:
        yield final_tmp
        os.chmod(final_tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with commit_guard() if commit_guard is not None else contextlib.nullcontext():
            os.replace(final_tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            final_tmp.unlink()
        raise


@contextlib.contextmanager
def scratch_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``, named like :func:`atomic_path`'s (so a cleaner of those
    finds it after a crash), removed when the block ends."""
    tmp = _temp_next_to(Path(path))
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
