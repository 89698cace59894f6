import struct
import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from translate import imageio
from translate.errors import ImageError


def _png_bytes(img: Image.Image) -> bytes:
    buf = BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_16bit_grayscale_is_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 256).astype(np.uint16)[None, :].repeat(4, 0))
    img = Image.fromarray(ramp)  # uint16 -> mode I;16
    out = np.asarray(imageio.to_rgb(imageio.decode(_png_bytes(img))))
    assert out.shape == (4, 256, 3)
    # a straight ramp 0..255, not 99 % saturated at 255 as Image.convert('RGB') gives
    np.testing.assert_allclose(out[0, :, 0], np.linspace(0, 255, 256), atol=1)
    assert (out == 255).mean() < 0.01


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "1", "CMYK"])
def test_modes_convert_to_rgb(mode):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8))
    img = base.convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    buf = BytesIO()
    img.save(buf, format=fmt)
    rgb = imageio.to_rgb(imageio.decode(buf.getvalue()))
    assert rgb.mode == "RGB" and rgb.size == (9, 8)


def test_transparent_pixels_composite_on_white_and_split_alpha_keeps_colour():
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 200  # red hidden under alpha 0
    a[0, 0, 3] = 255
    img = Image.fromarray(a, "RGBA")
    rgb = np.asarray(imageio.to_rgb(img))
    assert tuple(rgb[1, 1]) == (255, 255, 255) and tuple(rgb[0, 0]) == (200, 0, 0)
    colour, alpha = imageio.split_alpha(img)
    assert np.asarray(alpha)[0, 0] == 255 and np.asarray(alpha)[1, 1] == 0
    assert tuple(np.asarray(colour)[1, 1]) == (200, 0, 0)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (20, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    buf = BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert imageio.decode(buf.getvalue()).size == (10, 20)


def _with_fake_size(png: bytes, w: int, h: int) -> bytes:
    # rewrite IHDR width/height (and its CRC): a tiny file claiming a huge image
    ihdr = png[12:29]
    data = ihdr[4:]
    data = struct.pack(">II", w, h) + data[8:]
    chunk = b"IHDR" + data
    return png[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF) + png[33:]


def test_decompression_bomb_refused_from_header():
    bomb = _with_fake_size(_png_bytes(Image.new("L", (1, 1))), 20000, 20000)
    assert len(bomb) < 200
    with pytest.raises(ImageError, match="pixels"):
        imageio.decode(bomb, source="bomb.png", max_pixels=10_000_000)


def test_corrupt_and_empty_files_name_the_source(tmp_path):
    p = tmp_path / "broken.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageError, match="broken.png"):
        imageio.read_image(p)
    with pytest.raises(ImageError, match="empty"):
        imageio.decode(b"", source="x.png")
    good = _png_bytes(Image.new("RGB", (64, 64), (1, 2, 3)))
    with pytest.raises(ImageError, match="truncated.png"):
        imageio.decode(good[: len(good) // 2], source="truncated.png")


def test_sniff_format():
    assert imageio.sniff_format(_png_bytes(Image.new("RGB", (2, 2)))) == "PNG"
    buf = BytesIO()
    Image.new("RGB", (2, 2)).save(buf, format="JPEG")
    assert imageio.sniff_format(buf.getvalue()) == "JPEG"
    assert imageio.sniff_format(b"GIF89a....") is None


def test_network_round_trip_is_exact():
    a = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    x = imageio.to_network(a)
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(imageio.from_network(x)[0], a)
    t = imageio.image_to_tensor(a)
    np.testing.assert_array_equal(imageio.tensor_to_array(t), a)


def test_save_image_is_atomic_and_leaves_no_temp(tmp_path):
    imageio.save_image(np.zeros((4, 4, 3), np.uint8), tmp_path / "out" / "a.png")
    imageio.save_image(np.zeros((4, 4, 3), np.uint8), tmp_path / "out" / "a.jpg")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "a.png"]
    assert Image.open(tmp_path / "out" / "a.jpg").format == "JPEG"
