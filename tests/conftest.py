"""Shared fixtures: tiny paired datasets and tiny training configs (CPU, 32 px)."""
import numpy as np
import pytest
from PIL import Image


def make_pairs(root, n_train=24, n_val=4, size=32, seed=0):
    """Aligned A|B pairs where B is a fixed per-pixel colour map of A (quick to learn)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_val)):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = np.full((size, size, 3), 40, np.uint8)
            for _ in range(4):
                y, x = rng.integers(0, size - 8, 2)
                h, w = rng.integers(6, size // 2, 2)
                a[y:y + h, x:x + w] = rng.integers(60, 256, 3)
            b = np.stack([a[..., 1], 255 - a[..., 0], a[..., 2] // 2 + 60], axis=-1).astype(np.uint8)
            Image.fromarray(np.concatenate([a, b], axis=1)).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"))


def tiny_pix2pix_config(data, out, **kw):
    from training.pix2pix import Pix2PixConfig

    base = dict(data=str(data), out=str(out), size=32, netG="unet_32", ngf=8, ndf=8, batch_size=4, steps=8,
                workers=0, log_every=2, val_every=4, sample_every=4, checkpoint_every=4, progress=False,
                export=False, preprocess="resize_and_crop", load_size=36)
    base.update(kw)
    return Pix2PixConfig(**base)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for a test module (reused if the session already has one), shut down after it."""
    ray = pytest.importorskip("ray")
    own = not ray.is_initialized()
    if own:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if own:
        ray.shutdown()


S3_BUCKET = "i2i-test"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server in its own process, found by the clients through the standard AWS environment
    (set for the session, so Ray started later passes it to its workers), and an empty bucket."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    from tests.s3_server import s3_environment

    with s3_environment(tmp_path_factory.mktemp("store-cache"), S3_BUCKET) as server:
        yield server
