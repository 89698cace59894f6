"""A local Ray (2 CPUs) and the Serve app over a store of two tiny models, for the modules that use it.

Module-scoped (test_service.py and test_page.py: two starts per session), so Ray is down again
before other modules that start their own.
"""
import logging
import os
import socket

import pytest

from tests.conftest import S3_BUCKET  # noqa: F401  (the modules here import it from this conftest)

RETRAIN_TOKEN = "test-token-7f3a"
# tight limits so the refusals are cheap to provoke (max_queued_requests counts requests the router has
# not yet handed to a replica, so a burst needs room there even when the replica has capacity); uploads up to
# 4096 x 4096 (the default tiling threshold, 2048 x 2048, is kept: `translate predict` tiles the same way), retraining
# zips up to 4 MiB
SERVICE_OPTIONS = dict(max_batch_size=4, batch_wait_timeout_s=0.05, max_queued_requests=8, max_replicas=1,
                       max_upload_bytes=8 * 2**20, max_zip_bytes=4 * 2**20, max_pixels=4096 * 4096,
                       request_timeout_s=30, ingress_num_cpus=0.25, num_cpus=1, max_jobs=6)


def tiny_onnx(net: str = "unet_32", seed: int = 0, batch_stats: bool = True) -> bytes:
    """An exported random generator (ngf=8): milliseconds per image, real ONNX Runtime arithmetic.
    ``batch_stats``: per-image statistics (InstanceNorm: tiled in several passes), else running statistics
    (one tiled pass)."""
    import torch

    from translate.export import export_generator
    from translate.networks import define_G, to_inference

    torch.manual_seed(seed)
    G = to_inference(define_G(net, ngf=8), batch_stats=batch_stats)
    meta = {"method": "pix2pix", "direction": "AtoB", "arch": {"name": net, "ngf": 8}, "batch_stats": batch_stats,
            "config": {"netG": net, "ngf": 8}}
    return export_generator(G, meta)[0]


def tiny_multimodal_onnx(seed: int = 0, nz: int = 4) -> bytes:
    """An exported random multimodal generator (an image and a code of ``nz`` numbers in; ngf=8), its code's
    input weights scaled up so that different codes give visibly different images."""
    import torch

    from translate.export import export_multimodal_generator
    from translate.networks import define_latent_G, to_inference

    torch.manual_seed(seed)
    arch = dict(name="unet_32", nz=nz, ngf=8, norm="instance")
    G = define_latent_G(**arch)
    with torch.no_grad():
        G.G.model.model[0].weight[:, 3:] *= 50
    return export_multimodal_generator(to_inference(G, batch_stats=False), {"method": "bicyclegan", "arch": arch})[0]


def aerial_photo(side: int):
    """A procedural aerial photo (the built-in maps set's A side) as a PIL image, drawn at 1024 px and scaled to
    ``side``: a full-size scene takes minutes to draw."""
    import numpy as np
    from PIL import Image

    from translate.datasets.maps import make_maps_pair

    return Image.fromarray(make_maps_pair(np.random.default_rng(3), 1024)[0]).resize((side, side), Image.BICUBIC)


@pytest.fixture(scope="module")
def onnx_a():
    return tiny_onnx("unet_32", seed=0)


@pytest.fixture(scope="module")
def onnx_b():
    return tiny_onnx("unet_32", seed=1)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Aligned pairs to retrain on (16 train, 4 val, 4 test)."""
    from tests.conftest import make_pairs

    return make_pairs(tmp_path_factory.mktemp("retrain") / "pairs", n_train=16, n_val=4)


@pytest.fixture(scope="module")
def base_run(pairs, tmp_path_factory):
    """An under-trained tiny Pix2Pix (4 steps) on ``pairs``: the version retraining tests start from."""
    from tests.conftest import tiny_pix2pix_config
    from training.loop import Trainer
    from training.pix2pix import Pix2Pix

    out = tmp_path_factory.mktemp("base") / "run"
    return Trainer(Pix2Pix, tiny_pix2pix_config(pairs, out, steps=4, lr=1e-3, export=True)).fit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, url, store, jobs_dir=None):
        self.url, self.store, self.jobs_dir = url, store, jobs_dir
        self._predictors = {}

    def predictor(self, name, version=None):
        """The reference: translate's Predictor on the stored file the service serves."""
        from translate.predictor import Predictor

        path = self.store.model_path(name, version)
        if path not in self._predictors:
            self._predictors[path] = Predictor(path, device="cpu")
        return self._predictors[path]


@pytest.fixture(scope="session", params=["local", "s3"])
def store_factory(request, tmp_path_factory):
    """Empty stores: in a folder, and in the S3 server (every test module using this runs on both)."""
    from serving.store import ModelStore

    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        return lambda: ModelStore(server.new_url(S3_BUCKET))
    return lambda: ModelStore(tmp_path_factory.mktemp("store"))


def stored(store, name: str) -> list[str]:
    """Everything the store holds under ``name`` (files or keys, relative), whatever the backend."""
    backend = store.backend
    if hasattr(backend, "fs"):
        prefix = f"{backend.base}/{name}/"
        return sorted(k[len(prefix):] for k in backend.fs.find(prefix))
    folder = store.root / name
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


def leftovers(store, name: str) -> list[str]:
    """What interrupted or failed writes left under ``name``: hidden temporary folders (folder store),
    uploads that no version's manifest names (object store)."""
    backend = store.backend
    if hasattr(backend, "fs"):
        named = {backend.manifest(name, v)["upload"] for v in store.versions(name)}
        return sorted({k.split("/")[1] for k in stored(store, name) if k.startswith("files/")} - named)
    folder = store.root / name
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def pointer_as_stored(store, name: str) -> str | None:
    """The promoted version read from the stored bytes themselves (CURRENT, or the newest promotion record)."""
    import json

    backend = store.backend
    if hasattr(backend, "fs"):
        records = sorted(k for k in stored(store, name) if k.startswith("promotions/"))
        return json.loads(backend.fs.cat_file(f"{backend.base}/{name}/{records[-1]}"))["version"] if records else None
    current = store.root / name / "CURRENT"
    return current.read_text().strip() if current.exists() else None


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    pytest.importorskip("ray.serve")
    from serving import local_service as service_app
    from serving.store import ModelStore

    store = ModelStore(tmp_path_factory.mktemp("served-store"))
    store.register("unet", tiny_onnx("unet_32", seed=0), meta={"metrics": {"l1": 0.5}})
    store.register("resnet", tiny_onnx("resnet_2blocks", seed=1))
    store.register("bicycle", tiny_multimodal_onnx(seed=2))  # several answers per upload: samples and seed
    # the replicas inherit the environment Ray starts with; keep it out of this process afterwards
    saved = os.environ.get("TRANSLATE_RETRAIN_TOKEN")
    os.environ["TRANSLATE_RETRAIN_TOKEN"] = RETRAIN_TOKEN
    try:
        service_app.init_local_ray(num_cpus=2)
    finally:
        if saved is None:
            del os.environ["TRANSLATE_RETRAIN_TOKEN"]
        else:
            os.environ["TRANSLATE_RETRAIN_TOKEN"] = saved
    try:
        jobs_dir = tmp_path_factory.mktemp("jobs")
        url = service_app.start_local(store.root, port=free_port(), jobs_dir=str(jobs_dir), **SERVICE_OPTIONS)
        yield Service(url, store, jobs_dir)
    finally:
        # Serve's own stop ends within stop_local's bound: Ray stopped beside it could crash this process natively
        warnings: list[str] = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger("training.local_ray").addHandler(handler)
        try:
            service_app.stop_local()
        finally:
            logging.getLogger("training.local_ray").removeHandler(handler)
        assert not warnings, warnings
