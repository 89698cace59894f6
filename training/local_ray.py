"""Starting a local Ray inside a command without losing its signal handling, and stopping it
without leaving any of its processes behind (used by the trainers' data-parallel runs, batch
conversion and the service: it sits in training/, the lowest layer that may use Ray).

``ray.init`` replaces the process's SIGTERM handler (Ray's core worker installs one that aborts
the process with a stack dump, and its Python one exits at once), so a command that handles
SIGTERM like Ctrl-C (``translate convert``, ``translate serve``: stop cleanly, leave nothing
running) would be killed mid-way instead. :func:`init` starts Ray and puts the handler back.

``ray.shutdown`` stops the processes it started itself, but not always what those started (Ray's
dashboard and runtime-env agents were seen outliving a ``translate serve`` stopped by SIGTERM):
:func:`shutdown` notes every process of the local Ray first and ends whatever outlives
``ray.shutdown``, in bounded time, with a second Ctrl-C or SIGTERM only hurrying it along.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable


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


def ray_processes() -> list:
    """The processes of the local Ray this process started (psutil.Process): its children that run Ray's own
    programs (GCS, raylet, dashboard, monitors) and everything under them (workers, agents, replicas)."""
    import psutil
    import ray

    ray_dir = str(Path(ray.__file__).parent)
    found = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if any(ray_dir in part for part in child.cmdline()):
                found.append(child)
                found.extend(child.children(recursive=True))
    return found


def serve_replicas(app: str) -> dict[str, list]:
    """The local Ray's Serve replica processes of application ``app``, by deployment name (psutil.Process)."""
    import psutil

    found: dict[str, list] = {}
    prefix = f"ServeReplica:{app}:"
    for p in ray_processes():
        with contextlib.suppress(psutil.Error):
            title = " ".join(p.cmdline())
            if prefix in title:
                # the title names the method a busy replica runs: ServeReplica:app:Ingress.handle_request...
                found.setdefault(title.split(prefix, 1)[1].split()[0].split(".")[0], []).append(p)
    return found


def shutdown(first: Callable[[], Any] | None = None, first_timeout_s: float = 5.0, grace_s: float = 2.0) -> list[int]:
    """Stop the local Ray, leaving none of its processes: ``first()`` (e.g. ``serve.shutdown``, which lets requests
    in flight finish) for at most ``first_timeout_s``, then ``ray.shutdown()``, then SIGTERM to every process of
    it that is still there and SIGKILL ``grace_s`` later. Returns the pids that outlived ``ray.shutdown``.

    A Ctrl-C or SIGTERM meanwhile cuts ``first`` short instead of leaving Ray half stopped."""
    import psutil
    import ray

    procs = ray_processes() if ray.is_initialized() else []
    hurry = threading.Event()
    with _signals_hurry(hurry):
        if first is not None:
            worker = threading.Thread(target=_quietly, args=(first,), daemon=True, name="ray-first-shutdown")
            worker.start()
            deadline = time.monotonic() + first_timeout_s
            while worker.is_alive() and not hurry.is_set() and time.monotonic() < deadline:
                worker.join(0.1)
            if worker.is_alive():  # ray.shutdown beside a call still in Ray can crash this process natively
                logging.getLogger(__name__).warning("%s did not finish within %g s; stopping Ray regardless",
                                                    getattr(first, "__qualname__", first), first_timeout_s)
        ray.shutdown()
        left = [p for p in procs if p.is_running()]  # is_running also tells a reused pid apart
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(left, timeout=grace_s)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=grace_s)
    return [p.pid for p in left]


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    # cut short by ray.shutdown (Ray's worker raises SystemExit in a call it ends), or Serve already gone: the stop
    # goes on regardless
    except (Exception, SystemExit) as e:
        logging.getLogger(__name__).debug("during shutdown: %s", e)


@contextlib.contextmanager
def _signals_hurry(hurry: threading.Event):
    """While stopping, SIGINT and SIGTERM set ``hurry`` instead of raising in the middle of the stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in saved:
        signal.signal(sig, lambda signum, frame: hurry.set())
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
