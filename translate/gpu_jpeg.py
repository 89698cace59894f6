"""JPEG decoding on the GPU (torchvision's nvJPEG) where a GPU and torchvision are there, for a GPU replica
whose CPU would otherwise spend most of a small image's time in the decoder.

:func:`decode_jpeg` decodes only what it gives the same pixels' meaning as the CPU decoder
(:func:`translate.imageio.decode`): a baseline RGB JPEG (YCbCr, 3 components) with no EXIF rotation; for any
other file, or where the GPU or torchvision is absent, it answers None and the caller decodes on the CPU. The
two decoders' inverse DCTs and chroma upsampling differ by a few grey levels at most; the pixels' size,
orientation and colours do not.

torchvision 0.29 deprecates its image decoders in favour of TorchCodec (a DeprecationWarning, once per process);
the lent GPU machines have 0.26. Where a later torchvision drops ``decode_jpeg``, the import fails and the CPU
decodes, as without torchvision.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def gpu_decodable(data: bytes) -> bool:
    """Whether ``data`` is a JPEG the GPU decodes as the CPU would: RGB (not grey or CMYK), not rotated by EXIF.
    Reads the header only."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format == "JPEG" and img.mode == "RGB" and img.getexif().get(EXIF_ORIENTATION, 1) == 1
    except Exception:  # whatever the header is, the CPU decoder says what is wrong with it
        return False


def decode_jpeg(data: bytes, device: str = "cuda") -> np.ndarray | None:
    """uint8 H x W x 3 decoded on ``device`` (torchvision.io.decode_jpeg), or None where that cannot be: not a
    :func:`gpu_decodable` JPEG, no torchvision, no such device, or a decoder error (the CPU decoder then names it)."""
    if not gpu_decodable(data):
        return None
    try:
        import torch  # lazy: torch
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as tv_decode_jpeg

        if device == "cuda" and not torch.cuda.is_available():
            return None
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        image = tv_decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        return image.permute(1, 2, 0).contiguous().cpu().numpy()
    except Exception:
        return None
