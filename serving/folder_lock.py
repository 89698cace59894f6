"""One run at a time per output folder, and a fence its writers pass through.

``translate convert`` writes into OUT_DIR from many worker processes (Ray Data actors). Two
guarantees are kept with one file, ``OUT_DIR/.convert.lock``:

* **One owner.** The driver creates the file exclusively, holding JSON ``{run, pid, host,
  started}``. A second run on the same folder is refused with the owner named; a lock whose
  process is gone (same host, pid dead or reused) is stale and taken over.
* **No write after the run ends.** Every output is written inside :func:`fenced`, which holds a
  shared ``flock`` on the lock file and checks that the file still names this run. The owner
  ends the run with :meth:`FolderLock.release`: it takes the exclusive lock (so it waits for the
  writes in flight to finish), overwrites the run id and deletes the file. A worker that is
  still translating when the run is interrupted finds the run gone and writes nothing.

``flock`` is per host: on a folder shared between hosts (NFS) it is as good as the file
system's lock support.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Iterator

from translate.errors import ConfigError, TranslateError

LOCK_NAME = ".convert.lock"


class RunCancelled(TranslateError):
    """The run that started this write has ended (interrupted, or another run owns the folder)."""


def _host() -> str:
    return socket.gethostname()


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in () may hold spaces


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` runs (and, given its start time, is still the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # exited, not yet reaped
    except OSError:
        pass
    now = start_time(pid)
    return start is None or now is None or now == start


class FolderLock:
    """The owner's side: ``acquire()`` before the first write, ``release()`` in a ``finally``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.run = ""

    def acquire(self) -> str:
        """Take the folder for a new run; returns the run id. ConfigError when another live run holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        run = uuid.uuid4().hex
        me = {"run": run, "pid": os.getpid(), "pid_start": start_time(os.getpid()),
              "host": _host(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
            self.run = run
            return run
        raise ConfigError("out_dir", f"{self.folder}: could not take {LOCK_NAME} (another run keeps taking it)")

    def _take_over_if_stale(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return  # released meanwhile: try again
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # no writer of the old run is mid-write while we look
            try:
                owner = json.loads(f.read() or "{}")
            except ValueError:
                owner = {}
            if not owner.get("run"):  # released by its owner, not yet deleted
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                return
            pid, host = int(owner.get("pid", -1)), owner.get("host", "?")
            if host == _host() and not process_alive(pid, owner.get("pid_start")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)  # stale: its process is gone
                return
            raise ConfigError("out_dir", f"{self.folder} is being written by another run (pid {pid} on {host}, "
                              f"since {owner.get('started', '?')}); wait for it to finish or stop it"
                              + ("" if host == _host() else
                                 f" (if that host's run has died, delete {self.path})"))

    def release(self) -> None:
        """End the run: wait for writes in flight, then make every later write of this run refuse."""
        if not self.run:
            return
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            self.run = ""
            return
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                owner = json.loads(f.read() or "{}")
            except ValueError:
                owner = {}
            if owner.get("run") == self.run:
                f.seek(0)
                f.truncate()
                f.write(json.dumps({"run": "", "released": self.run}))
                f.flush()
                os.unlink(self.path)
        self.run = ""


def check(folder: str | os.PathLike, run: str) -> None:
    """Raise RunCancelled unless ``run`` still owns ``folder`` (a cheap look, no lock held)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads((Path(folder) / LOCK_NAME).read_text()).get("run") == run:
            return
    raise RunCancelled(f"{folder}: the conversion run ended; not writing")


@contextlib.contextmanager
def fenced(folder: str | os.PathLike, run: str) -> Iterator[None]:
    """Hold the run's shared lock for one write; RunCancelled (nothing written) once the run has ended."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
        raise RunCancelled(f"{folder}: the conversion run ended; not writing") from None
    with os.fdopen(fd) as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        try:
            owner = json.loads(f.read() or "{}")
        except ValueError:
            owner = {}
        if owner.get("run") != run:
            raise RunCancelled(f"{folder}: the conversion run ended; not writing")
        yield
