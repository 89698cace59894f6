"""`translate serve` as an operator runs it: its own process (and session), stopped by Ctrl-C (SIGINT) or by
SIGTERM (docker stop, systemd). It must end by itself and leave no process of its local Ray behind."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytest.importorskip("ray.serve")

START_S = 300  # a hang bound for the start on a loaded 2-CPU machine (it takes 8 to 40 s)
# stop_local bounds its own phases (Serve 5 s, ray.shutdown, 2 s grace, then SIGKILL): about 10 s by
# construction (measured in BENCHMARKS.md); this is only a hang bound, not a speed check
STOP_BOUND_S = 60


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


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from serving.store import ModelStore

    from ..serving.conftest import tiny_onnx

    root = tmp_path_factory.mktemp("serve-store")
    ModelStore(root).register("unet", tiny_onnx("unet_32"))
    return root


# Ctrl-C in a terminal sends SIGINT to the whole foreground process group (Ray's own processes included);
# docker stop and systemd (KillMode=mixed) send SIGTERM to the main process
@pytest.mark.parametrize("sig,group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["Ctrl-C to the process group", "SIGTERM to the process"])
def test_serve_stops_on_a_signal_and_leaves_no_ray_process(store, tmp_path, sig, group):
    from ..serving.conftest import free_port

    port = free_port()
    log = tmp_path / "serve.log"

    def default_signals():  # a test runner started in the background ignores SIGINT, and exec keeps that
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "translate_cli.main", "serve", "--store", str(store),
                                 "--port", str(port), "--max-replicas", "1"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=default_signals, env=os.environ.copy())
    try:
        deadline = time.monotonic() + START_S
        while "Ctrl-C to stop" not in log.read_text():
            assert proc.poll() is None, f"translate serve exited while starting:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"translate serve did not start:\n{log.read_text()}"
            time.sleep(0.5)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=120).status_code == 200
        running = session_processes(proc.pid)
        assert any("raylet" in c for c in running.values()) and any("ServeReplica" in c for c in running.values()), \
            running  # Ray and the replicas run in the command's session: what must be gone afterwards
        signalled = time.monotonic()
        os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        assert proc.wait(timeout=STOP_BOUND_S) == 0, log.read_text()
        print(f"stopped {time.monotonic() - signalled:.1f} s after {signal.Signals(sig).name}")
        text = log.read_text()
        assert "stopping the service" in text and "\nstopped\n" in text, text
        assert "Connecting to existing Serve app" not in text, text  # serve.run's misleading note on our own Serve
        time.sleep(0.5)  # what a killed process leaves is reaped by init; let /proc catch up
        left = {pid: cmd for pid, cmd in session_processes(proc.pid).items() if pid in running or "ray" in cmd}
        assert not left, f"left running after translate serve stopped: {left}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in session_processes(proc.pid):  # never leave them to the next test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
