"""JPEG decoding on the GPU as an option of an upload's decode: where no GPU is (here), the CPU decoder's pixels
exactly; the torchvision path itself (run on the CPU device here) within a few grey levels of Pillow's; and the
JPEGs it must leave to the CPU (EXIF-rotated, grey, CMYK, not JPEG) are left to it."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from translate import gpu_jpeg, uploads


def _jpeg(mode="RGB", size=(48, 32), orientation=None) -> bytes:
    rng = np.random.default_rng(0)
    a = np.clip(rng.normal(128, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(a).convert(mode)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[gpu_jpeg.EXIF_ORIENTATION] = orientation
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def test_without_a_gpu_the_gpu_option_gives_the_cpu_pixels():
    data = _jpeg()
    got, alpha = uploads.decode_upload(data, 10**6, gpu=True)
    want, _ = uploads.decode_upload(data, 10**6)
    np.testing.assert_array_equal(got, want)
    assert alpha is None
    if not torch.cuda.is_available():
        assert gpu_jpeg.decode_jpeg(data) is None  # the caller's cue to decode on the CPU


def test_torchvisions_decoder_gives_pillows_pixels_within_a_few_grey_levels():
    pytest.importorskip("torchvision")
    data = _jpeg()
    got = gpu_jpeg.decode_jpeg(data, device="cpu")
    want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert got is not None and got.shape == want.shape == (32, 48, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= 3


@pytest.mark.parametrize("data", [_jpeg(orientation=6), _jpeg("L"), _jpeg("CMYK"), b"\x89PNG\r\n\x1a\n" + b"0" * 40,
                                  b"\xff\xd8\xff garbage"], ids=["rotated", "grey", "cmyk", "png", "damaged"])
def test_what_the_gpu_would_decode_differently_is_left_to_the_cpu(data):
    assert not gpu_jpeg.gpu_decodable(data)
    assert gpu_jpeg.decode_jpeg(data, device="cpu") is None


def test_an_upright_rgb_jpeg_is_taken():
    assert gpu_jpeg.gpu_decodable(_jpeg()) and gpu_jpeg.gpu_decodable(_jpeg(orientation=1))
