"""The service's HTTP layer: what a request and its answer are made of, below the deployments.

Refusals (:class:`ServiceError`, and every typed :class:`~translate.errors.TranslateError` by
:func:`translate_error_status`) become 4xx/5xx answers with a JSON body ``{"error": CODE, "detail": ...}``;
overload is a 503 with ``Retry-After``. Bodies are read within a byte limit and forms taken apart, a body
that is the file itself (by its magic bytes) taken as it is (:func:`read_body`, :func:`upload_fields`); the answer's format follows ``Accept``
(:func:`output_format`) and a translation is encoded for it (:func:`encode_result`); retraining asks for a
bearer token (:func:`check_retrain_auth`).
"""
import hmac
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse

from serving.store import NotFoundError, StoreError
from translate import imageio
from translate.errors import ConfigError, DataError, ImageError, ModelError, StorageError, TranslateError
from translate.imageio import TooManyPixels
from translate.uploads import UnsupportedFormat

RETRY_AFTER_S = 1
TOKEN_ENV = "TRANSLATE_RETRAIN_TOKEN"
# zlib level of PNG responses: much faster than Pillow's default 6, for slightly larger files (BENCHMARKS.md)
RESPONSE_PNG_LEVEL = 1


class ServiceError(Exception):
    """An HTTP refusal: status, a short code, a human detail, extra headers."""

    def __init__(self, status: int, error: str, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


def error_response(status: int, error: str, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def translate_error_status(e: TranslateError) -> tuple[int, str]:
    """HTTP status and error code of a typed error."""
    if isinstance(e, NotFoundError):
        return 404, "not_found"
    if isinstance(e, StoreError):
        return 503, "store_unavailable"
    if isinstance(e, StorageError):  # the jobs' bucket (jobs_dir on object storage)
        return 503, "storage_unavailable"
    if isinstance(e, ConfigError):
        return 400, f"bad_{e.field}"
    if isinstance(e, TooManyPixels):
        return 413, "too_many_pixels"
    if isinstance(e, UnsupportedFormat):
        return 415, "unsupported_format"
    if isinstance(e, ImageError):
        return 400, "bad_image"
    if isinstance(e, DataError):
        return 400, "bad_data"
    if isinstance(e, ModelError):
        return 503, "model_unavailable"  # a stored model that cannot run is not the client's fault
    return 400, "bad_request"


def error_result(e: TranslateError) -> dict[str, Any]:
    """A typed error as the model deployment answers it (``{'status', 'error', 'detail'}``); the ingress raises
    it again as a :class:`ServiceError`."""
    status, code = translate_error_status(e)
    return {"status": status, "error": code, "detail": str(e)}


def retry_headers() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_S)}


def check_retrain_auth(authorization: str | None, token: str | None) -> None:
    """Raise ServiceError 403 when retraining is disabled (no token configured), 401 on a missing/wrong token."""
    if not token:
        raise ServiceError(403, "retraining_disabled", f"retraining is disabled: the server has no {TOKEN_ENV}")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ServiceError(401, "unauthorized", "retraining needs the header 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ServiceError(401, "unauthorized", "wrong retraining token", {"WWW-Authenticate": "Bearer"})


def output_format(accept: str | None) -> str:
    """'JPEG' when the Accept header asks for image/jpeg at least as much as for image/png, else 'PNG'."""
    q: dict[str, float] = {}
    for part in (accept or "").split(","):
        mime, *params = (s.strip() for s in part.split(";"))
        weight = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    weight = float(p[2:])
                except ValueError:
                    weight = 0.0
        q[mime.lower()] = max(weight, q.get(mime.lower(), 0.0))
    jpeg = max(q.get("image/jpeg", 0.0), q.get("image/jpg", 0.0))
    return "JPEG" if jpeg > 0 and jpeg >= q.get("image/png", 0.0) else "PNG"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes: by Content-Length, then as it arrives."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ServiceError(400, "bad_content_length", f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise ServiceError(413, "too_large", f"the request body is {int(declared):,} bytes, over the limit "
                                                 f"of {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, "too_large", f"the request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def upload_fields(request: Request, body: bytes, fields: tuple[str, ...],
                        is_file: Callable[[bytes], bool]) -> tuple[bytes, dict[str, str]]:
    """(file bytes, text fields): the form's file field ``fields[0]`` (its other ``fields`` are text), or the
    raw body.

    A body whose bytes are the file itself (``is_file``: its magic bytes) is the file, whatever its declared
    type: curl's ``--data-binary`` declares every body a urlencoded form. A multipart body is parsed as a
    form (a malformed one is a 400); a urlencoded one is a form when it parses and names one of ``fields``,
    else it is the raw body, refused or taken by what its bytes are."""
    ctype = request.headers.get("content-type", "").lower()
    if is_file(body) or not ctype.startswith(FORM_TYPES):
        return body, {}
    multipart = ctype.startswith(FORM_TYPES[0])
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=32)
    except Exception as e:  # malformed multipart: starlette raises its own HTTP or parser errors
        if not multipart:
            return body, {}
        raise ServiceError(400, "bad_form", f"the form data cannot be parsed ({getattr(e, 'detail', e)})") from None
    if not multipart and not any(k in form for k in fields):
        await form.close()
        return body, {}
    file_field = fields[0]
    text = {k: v for k, v in form.items() if isinstance(v, str)}
    upload = form.get(file_field)
    if upload is None:
        raise ServiceError(400, "missing_field", f"the form has no file field {file_field!r}")
    if isinstance(upload, str):
        raise ServiceError(400, "missing_field", f"form field {file_field!r} must be a file, not text")
    data = await upload.read()
    await form.close()
    return data, text


def encode_result(y: np.ndarray, alpha: np.ndarray | None, fmt: str) -> bytes:
    """Translated uint8 array + the alpha set aside (uint8 H x W, from :func:`translate.uploads.decode_upload`)
    -> PNG (alpha restored) or JPEG (composited on white)."""
    out = imageio.array_to_image(y)
    if alpha is not None:
        out = out.convert("RGBA")
        out.putalpha(imageio.array_to_image(alpha))
        if fmt == "JPEG":
            out = imageio.to_rgb(out)
    return imageio.encode(out, fmt, compress_level=RESPONSE_PNG_LEVEL)


GRID_GAP = 4  # white pixels between the samples of a grid image


def grid_image(images: list[np.ndarray]) -> np.ndarray:
    """Same-size uint8 images (H x W x C) side by side in a near-square grid, row by row, on white: the samples
    of one upload as one picture (``?grid=1``)."""
    h, w = images[0].shape[:2]
    channels = max(1 if y.ndim == 2 else y.shape[2] for y in images)
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    out = np.full((rows * h + (rows - 1) * GRID_GAP, cols * w + (cols - 1) * GRID_GAP, channels), 255, np.uint8)
    for k, y in enumerate(images):
        r, c = divmod(k, cols)
        out[r * (h + GRID_GAP):r * (h + GRID_GAP) + h, c * (w + GRID_GAP):c * (w + GRID_GAP) + w] = (
            y.reshape(h, w, -1))
    return out
