"""The HTTP layer's body handling, without Ray: a real-sized retraining zip (80 photo-like pairs, about 1.2 MB, the
size that broke curl's default form type) is the zip whatever content type the client declares, or the form's
file field; the README's curl line itself runs against a served model in tests/test_readme.py."""
import asyncio
import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from starlette.requests import Request

from serving.http_layer import ServiceError, upload_fields
from serving.retraining.upload import is_zip

BOUNDARY = "soakboundary42"


def real_sized_zip() -> bytes:
    """80 aligned A | B pairs of the built-in maps set (128 px sides, JPEG): about 1.2 MB, as a user's would be."""
    from translate.datasets import make_pair

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(80):
            jpeg = io.BytesIO()
            Image.fromarray(np.concatenate(make_pair("maps", i, size=128, seed=11), axis=1)).save(jpeg, "JPEG",
                                                                                                  quality=90)
            zf.writestr(f"new-maps/{i:03d}.jpg", jpeg.getvalue())
    return buf.getvalue()


def request(body: bytes, content_type: str | None) -> Request:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/v1/models/maps/retrain", "headers": headers,
                    "query_string": b""}, receive)


def multipart(field: str, data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"pairs.zip\"\r\n"
            f"Content-Type: application/zip\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture(scope="module")
def pairs_zip() -> bytes:
    data = real_sized_zip()
    assert len(data) > 10**6  # real-sized: a tiny zip parsed as a urlencoded form by luck
    return data


@pytest.mark.parametrize("content_type", ["application/zip", "application/octet-stream",
                                          "application/x-www-form-urlencoded", None])
def test_a_zip_body_is_the_zip_whatever_type_it_declares(pairs_zip, content_type):
    data, form = asyncio.run(upload_fields(request(pairs_zip, content_type), pairs_zip, ("data",), is_zip))
    assert data == pairs_zip and form == {}


def test_a_zip_in_the_forms_data_field_is_the_zip_and_another_field_is_refused(pairs_zip):
    body = multipart("data", pairs_zip)
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    data, _ = asyncio.run(upload_fields(request(body, ctype), body, ("data",), is_zip))
    assert data == pairs_zip
    body = multipart("pairs", pairs_zip)
    with pytest.raises(ServiceError, match="no file field 'data'"):
        asyncio.run(upload_fields(request(body, ctype), body, ("data",), is_zip))
