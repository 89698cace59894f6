"""`translate serve` as an operator runs it: its own process (and session), with the operator's flags, stopped by
Ctrl-C (SIGINT) or by SIGTERM (docker stop, systemd). The flags reach the service, retraining without a token in
the environment is refused, and it ends by itself, leaving no process of its local Ray behind."""
import io
import os
import signal
import time

import numpy as np
import pytest
import requests
from PIL import Image

pytest.importorskip("ray.serve")

TIMEOUT = 120


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from serving.store import ModelStore

    from ..serving.conftest import tiny_onnx

    root = tmp_path_factory.mktemp("serve-store")
    ModelStore(root).register("unet", tiny_onnx("unet_32"))
    return root


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def finished(url: str, job: dict) -> dict:
    deadline = time.monotonic() + 300  # a hang bound, not a speed check
    while True:
        state = requests.get(url + job["url"], timeout=TIMEOUT).json()
        if state["status"] in ("done", "failed"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


def check_the_flags(url: str, jobs_dir) -> None:
    """--tile-threshold 4096 --async-pixels 16384 --job-ttl-s 123 --jobs-dir JOBS, as the service answers them."""
    translate = f"{url}/v1/models/unet/translate"
    inline = requests.post(translate, data=png(100, 100), timeout=TIMEOUT)  # under async-pixels: in the request
    assert inline.status_code == 200 and Image.open(io.BytesIO(inline.content)).size == (100, 100), inline.text
    jobs = {}
    for (w, h), params in (((200, 100), {}), ((60, 60), {"async": "true"})):  # over async-pixels; asked for
        r = requests.post(translate, data=png(w, h), params=params, timeout=TIMEOUT)
        assert r.status_code == 202, r.text
        jobs[w * h] = r.json()
        assert (jobs_dir / r.json()["id"] / "job.json").is_file()  # kept in --jobs-dir
    tiled, whole = (finished(url, jobs[n]) for n in (200 * 100, 60 * 60))
    assert tiled["status"] == whole["status"] == "done"
    assert tiled["tiles_total"] > 1 and whole["tiles_total"] == 1  # over --tile-threshold: tile runs; under: one
    assert tiled["expires"] - tiled["finished"] == pytest.approx(123)  # --job-ttl-s
    retrain = requests.post(f"{url}/v1/models/unet/retrain", data=b"PK\x05\x06" + bytes(18),
                            headers={"Authorization": "Bearer anything"}, timeout=TIMEOUT)
    assert retrain.status_code == 403 and retrain.json()["error"] == "retraining_disabled", retrain.text


# Ctrl-C in a terminal sends SIGINT to the whole foreground process group (Ray's own processes included);
# docker stop and systemd (KillMode=mixed) send SIGTERM to the main process
@pytest.mark.parametrize("sig,group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["Ctrl-C to the process group", "SIGTERM to the process"])
def test_serve_takes_its_flags_stops_on_a_signal_and_leaves_no_ray_process(store, tmp_path, sig, group):
    from serving.http_layer import TOKEN_ENV

    from ..serving.conftest import free_port
    from ..serving.serve_process import ServeProcess

    port, jobs_dir = free_port(), tmp_path / "jobs"
    args = ["--store", str(store), "--port", str(port), "--max-replicas", "1", "--tile-threshold", "4096",
            "--async-pixels", "16384", "--job-ttl-s", "123", "--jobs-dir", str(jobs_dir)]
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # retraining not enabled
    with ServeProcess(args, tmp_path / "serve.log", env=env) as serve:
        serve.wait_started()
        url = f"http://127.0.0.1:{port}"
        assert requests.get(f"{url}/healthz", timeout=TIMEOUT).status_code == 200
        check_the_flags(url, jobs_dir)
        running = serve.processes()
        assert any("raylet" in c for c in running.values()) and any("ServeReplica" in c for c in running.values()), \
            running  # Ray and the replicas run in the command's session: what must be gone afterwards
        signalled = time.monotonic()
        assert serve.stop(sig, group) == 0, serve.text()
        print(f"stopped {time.monotonic() - signalled:.1f} s after {signal.Signals(sig).name}")
        text = serve.text()
        assert "stopping the service" in text and "\nstopped\n" in text, text
        assert "Connecting to existing Serve app" not in text, text  # serve.run's misleading note on our own Serve
        time.sleep(0.5)  # what a killed process leaves is reaped by init; let /proc catch up
        left = {pid: cmd for pid, cmd in serve.processes().items() if pid in running or "ray" in cmd}
        assert not left, f"left running after translate serve stopped: {left}"
