"""Starting Ray inside a command without losing its signal handling (used by the trainers' data-parallel
runs, batch conversion and the service: it sits in training/, the lowest layer that may use Ray).

``ray.init`` replaces the process's SIGTERM handler (Ray's core worker installs one that aborts
the process with a stack dump, and its Python one exits at once), so a command that handles
SIGTERM like Ctrl-C (``translate convert``, ``translate serve``: stop cleanly, leave nothing
running) would be killed mid-way instead. :func:`init` starts Ray and puts the handler back.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any


@contextlib.contextmanager
def keep_signal_handlers():
    """Restore the Python SIGTERM/SIGINT handlers that were in place before the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:  # None: installed from C, cannot be put back from Python
                signal.signal(sig, handler)


def init(**kwargs: Any) -> None:
    """``ray.init(**kwargs)`` (quiet by default) with this process's signal handlers kept."""
    import ray

    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("log_to_driver", False)
    kwargs.setdefault("logging_level", logging.WARNING)
    with keep_signal_handlers():
        ray.init(**kwargs)
