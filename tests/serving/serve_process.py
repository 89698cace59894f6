"""`translate serve` as its own process, as an operator starts it: in a session of its own (Ray's processes
with it, so a test can see what is left when it stops), stopped by Ctrl-C (SIGINT to the process group) or by
SIGTERM (docker stop, systemd)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

START_S = 300  # a hang bound for the start on a loaded 2-CPU machine (it takes 8 to 40 s)
# stop_local bounds its own phases (Serve 5 s, ray.shutdown, 2 s grace, then SIGKILL): about 10 s by
# construction (measured in BENCHMARKS.md); this is only a hang bound, not a speed check
STOP_BOUND_S = 60
STARTED = "Ctrl-C to stop"  # the last line `translate serve` prints once it serves


def session_processes(sid: int) -> dict[int, str]:
    """pid -> command line of every live process in session ``sid`` (from /proc; zombies are dead already)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # field 6: the session id; field 3: the state
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def _default_signals() -> None:  # a test runner started in the background ignores SIGINT, and exec keeps that
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ServeProcess:
    """``translate serve ARGS`` started in ``cwd`` with ``env`` (default: this process's), its output in ``log``.
    A context manager: whatever happens, nothing of it is left running afterwards."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "translate_cli.main", "serve", *args], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_default_signals, env=os.environ.copy() if env is None else env,
                                         cwd=cwd)

    def text(self) -> str:
        return self.log.read_text()

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_S
        while STARTED not in self.text():
            assert self.proc.poll() is None, f"translate serve exited while starting:\n{self.text()}"
            assert time.monotonic() < deadline, f"translate serve did not start:\n{self.text()}"
            time.sleep(0.5)

    def processes(self) -> dict[int, str]:
        return session_processes(self.proc.pid)

    def stop(self, sig: int = signal.SIGINT, group: bool = True) -> int:
        """Ctrl-C as a terminal sends it (to the whole foreground process group), or ``sig`` to the process alone;
        the exit status."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=STOP_BOUND_S)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_BOUND_S)
        for pid in self.processes():  # never leave them to the next test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
