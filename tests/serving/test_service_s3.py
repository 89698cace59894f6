"""The service over an S3 store (moto's server, a process): replicas load versions by URL through their
node cache; a promotion made by another process reaches them with no restart and no failed request;
a corrupted version is refused by its checksum while the version before it keeps being served."""
import io
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from serving.store import ModelStore

from .conftest import S3_BUCKET, SERVICE_OPTIONS, Service, free_port, tiny_onnx
from .test_service import encode, noise, post, reference

TIMEOUT = 60


@pytest.fixture(scope="module")
def s3_service(s3_server):
    pytest.importorskip("ray.serve")
    from serving import local_service as service_app

    url = s3_server.new_url(S3_BUCKET, "served")
    store = ModelStore(url)
    store.register("maps", tiny_onnx("unet_32", seed=20))
    store.register("maps", tiny_onnx("unet_32", seed=21))
    service_app.init_local_ray(num_cpus=2)  # after s3_server: Ray's workers inherit its AWS_* environment
    try:
        yield Service(service_app.start_local(url, port=free_port(), **SERVICE_OPTIONS), store)
    finally:
        service_app.stop_local()


class Traffic:
    """Requests one after another from a thread until stopped: (time, status, version) of each."""

    def __init__(self, service, data):
        self.service, self.data, self.seen = service, data, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            r = post(self.service, "maps", data=self.data)
            self.seen.append((time.monotonic(), r.status_code, r.headers.get("x-model-version"), r.content))

    def until(self, predicate, count=1, timeout=300.0):
        """Wait until ``count`` answers satisfy ``predicate`` (a hang bound, not a speed check)."""
        deadline = time.monotonic() + timeout
        while sum(map(predicate, self.seen)) < count:
            assert time.monotonic() < deadline and self.thread.is_alive(), self.seen[-3:]
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        self.thread.join(TIMEOUT)
        return self.seen


def wait_for_health(service, predicate, timeout: float = 300.0) -> dict:
    """GET /healthz until its 200 answer satisfies ``predicate`` (a hang bound): that answer."""
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(service.url + "/healthz", timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        if predicate(r.json()):
            return r.json()
        assert time.monotonic() < deadline, r.json()
        time.sleep(0.2)


def test_a_promotion_from_another_process_reaches_the_replicas_without_a_failed_request(s3_service):
    data = encode(noise(36, 20, seed=7))
    first = post(s3_service, "maps", data=data)
    assert first.status_code == 200 and first.headers["x-model-version"] == "v0001"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(first.content))),
                                  reference(s3_service, data, "maps", "v0001"))
    traffic = Traffic(s3_service, data)
    try:
        traffic.until(lambda s: s[1] == 200)
        # a second shell: the CLI, another process with its own client, promotes through the store
        promote = subprocess.run([sys.executable, "-m", "translate_cli.main", "models", "promote", "maps", "v0002",
                                  "--store", s3_service.store.url], capture_output=True, text=True, timeout=120)
        assert promote.returncode == 0 and "promoted maps v0002" in promote.stdout, promote.stderr
        traffic.until(lambda s: s[2] == "v0002", count=10)  # the switch, and requests after it
    finally:
        seen = traffic.finish()
    assert [s[1] for s in seen if s[1] != 200] == []  # not one request failed
    versions = [s[2] for s in seen]
    switch = versions.index("v0002")
    assert set(versions[:switch]) == {"v0001"} and set(versions[switch:]) == {"v0002"}  # once, for good
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(seen[-1][3]))),
                                  reference(s3_service, data, "maps", "v0002"))


def test_a_corrupted_version_is_refused_and_the_previous_one_keeps_serving(s3_service):
    store, data = s3_service.store, encode(noise(30, 30, seed=8))
    assert post(s3_service, "maps", data=data).headers["x-model-version"] == "v0002"
    bad = store.register("maps", tiny_onnx("unet_32", seed=22))
    entry = store.backend.manifest("maps", bad)["files"]["model.onnx"]
    key = f"{store.backend.base}/maps/{entry['key']}"
    original = store.backend.fs.cat_file(key)
    store.backend.fs.pipe_file(key, original[:100] + bytes(len(original) - 100))  # the object rots in the bucket
    traffic = Traffic(s3_service, data)
    try:
        store.promote("maps", bad)
        health = wait_for_health(s3_service, lambda h: h.get("promoted") == bad)  # the ingress tried it, and fell back
        at = len(traffic.seen)
        traffic.until(lambda s: True, count=at + 5)  # requests answered since
        pinned = post(s3_service, "maps", data=data, params={"version": bad})
    finally:
        seen = traffic.finish()
        store.backend.fs.pipe_file(key, original)
        store.promote("maps", "v0002")
    assert len(seen) > 3 and {(s[1], s[2]) for s in seen} == {(200, "v0002")}
    assert pinned.status_code == 503 and pinned.json()["error"] == "model_unavailable"
    assert "checksum mismatch" in pinned.json()["detail"]
    assert health["status"] == "ok" and health["version"] == "v0002" and health["promoted"] == bad
