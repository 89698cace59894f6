"""The shipped serving/serve_config.yaml deployed as an operator deploys it: `ray start --head` with token
authentication, `serve deploy` refused without the token and accepted with it (the step its comments and the
README give), CPU-only values under `args` and nothing else changed; the model replica schedules, /healthz
answers and a translation equals translate's predictor. The cluster runs in a session of its own and every
process of it is stopped afterwards (never `ray stop`, which stops every Ray of the machine's user)."""
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from PIL import Image

from .conftest import free_port, tiny_onnx
from .serve_process import session_processes

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "serving" / "serve_config.yaml"
BIN = Path(sys.executable).parent
START_S = 300  # hang bounds on a loaded 2-CPU machine, not speed checks
DEPLOY_S = 300
# what a CPU-only node changes in the shipped args (the store and jobs folder are the test's own)
BLOCKING = "This command will now block forever"  # the line `ray start --block` prints once the node is up
CPU_ONLY = {"num_gpus": 0, "num_cpus": 0.5, "max_replicas": 1, "ingress_num_cpus": 0.25}


def run(argv: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cluster():
    """A one-node `ray start --head` cluster (2 CPUs, token authentication) with its own HOME (its token) and
    temporary folder: (environment of the operator's shell on the head node, dashboard address)."""
    pytest.importorskip("ray.serve")
    base = Path(tempfile.mkdtemp(prefix="rc-"))  # short: Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "HOME": str(base / "home"), "RAY_AUTH_MODE": "token",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "RAY_max_direct_call_object_size": str(2**20)}
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_ADDRESS", None)
    (base / "home").mkdir()
    generated = run([str(BIN / "ray"), "get-auth-token", "--generate"], env)
    assert generated.returncode == 0 and generated.stdout.strip(), generated.stderr
    dashboard = free_port()
    log = open(base / "ray-start.log", "w")
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={free_port()}",
                             "--num-cpus=2", "--num-gpus=0", "--include-dashboard=true",
                             f"--dashboard-port={dashboard}", f"--temp-dir={base / 'ray'}",
                             "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=base)
    try:
        deadline = time.monotonic() + START_S
        while True:  # started: `ray start` says it blocks now, and the dashboard answers (401: it wants the token)
            started = BLOCKING in (base / "ray-start.log").read_text()
            assert head.poll() is None, (base / "ray-start.log").read_text()
            try:
                if started and requests.get(f"http://127.0.0.1:{dashboard}/api/version", timeout=5).status_code == 401:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (base / "ray-start.log").read_text()
            time.sleep(1)
        yield env, f"http://127.0.0.1:{dashboard}", base
    finally:
        stop_session(head)
        log.close()
        subprocess.run(["rm", "-rf", str(base)], check=False)


def stop_session(head: subprocess.Popen) -> None:
    """SIGTERM to every process of the cluster's session (the head and everything Ray started under it), then
    SIGKILL to what is left 10 s later."""
    sid = head.pid
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        for pid in session_processes(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while session_processes(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
    head.wait(timeout=10)
    assert not session_processes(sid), f"left running: {session_processes(sid)}"


def test_the_shipped_yaml_deploys_on_a_ray_start_cluster_with_the_token_step(cluster, tmp_path):
    env, dashboard, base = cluster
    from serving.store import ModelStore

    store = ModelStore(tmp_path / "store")
    store.register("maps", tiny_onnx("unet_32", seed=0))
    config = yaml.safe_load(SERVE_CONFIG.read_text())
    port = free_port()
    config["http_options"].update(host="127.0.0.1", port=port)
    application = config["applications"][0]
    application["args"].update(CPU_ONLY, store=str(store.root), jobs_dir=str(tmp_path / "jobs"))
    application["runtime_env"]["env_vars"]["TRANSLATE_STORE"] = str(store.root)
    deployed = tmp_path / "serve_config.yaml"
    deployed.write_text(yaml.safe_dump(config))

    # the operator's other shell: no RAY_AUTH_MODE, another HOME without the token -> refused
    other = {**env, "HOME": str(tmp_path)}
    other.pop("RAY_AUTH_MODE")
    refused = run([str(BIN / "serve"), "deploy", str(deployed), "-a", dashboard], other)
    assert refused.returncode != 0, refused.stdout
    assert "AuthenticationError" in refused.stderr, refused.stderr + (base / "ray-start.log").read_text()[-2000:]
    # the token file alone is not enough either: `serve deploy` sends it only with RAY_AUTH_MODE=token
    with_file = run([str(BIN / "serve"), "deploy", str(deployed), "-a", dashboard], {**other, "HOME": env["HOME"]})
    assert with_file.returncode != 0 and "AuthenticationError" in with_file.stderr, with_file.stderr
    # the documented step: the token printed on the head node, given with RAY_AUTH_MODE=token
    token = run([str(BIN / "ray"), "get-auth-token"], env).stdout.strip()
    accepted = run([str(BIN / "serve"), "deploy", str(deployed), "-a", dashboard],
                   {**other, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr + (base / "ray-start.log").read_text()[-2000:]

    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + DEPLOY_S
    while True:  # healthy only once a model replica answers a real translation
        try:
            if requests.get(f"{url}/healthz", timeout=30).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or loading the model
            pass
        assert time.monotonic() < deadline, run([str(BIN / "serve"), "status", "-a", dashboard],
                                                {**other, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}).stdout
        time.sleep(2)
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    r = requests.post(f"{url}/v1/models/maps/translate", files={"image": ("a.png", buf.getvalue())}, timeout=60)
    assert r.status_code == 200 and r.headers["x-model-version"] == "v0001", r.text
    from translate.predictor import Predictor

    expected = np.asarray(Predictor(store.model_path("maps"), device="cpu")(Image.fromarray(image)))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))), expected)
