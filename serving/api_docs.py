"""What the service's OpenAPI description says beyond its routes: the bodies and their limits.

The ingress reads its uploads itself (limits before parsing, one decode path), so FastAPI cannot
infer the request bodies from the handlers' signatures: :data:`TRANSLATE_BODY` and
:data:`RETRAIN_BODY` describe them, and the response models below describe what comes back (they
document; the handlers build the bodies). :func:`openapi_schema` adds one service's limits
(``ServiceConfig``) to the description FastAPI builds, as text and as ``x-limits``: they differ per
deployment, so each ingress replica builds its own ``/openapi.json``.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .config import ServiceConfig

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff")
BINARY = {"type": "string", "format": "binary"}


class ErrorBody(BaseModel):
    """Every refusal's body (4xx and 5xx)."""

    error: str = Field(description="a short code: bad_name, bad_version, not_found, too_large, too_many_pixels, "
                                   "unsupported_format, bad_image, missing_image, missing_field, bad_form, bad_samples, "
                                   "bad_data, bad_job_id, not_ready, unauthorized, retraining_disabled, overloaded, "
                                   "too_many_jobs, timeout, model_unavailable, unhealthy, no_model, ...",
                       examples=["too_many_pixels"])
    detail: str | list[dict[str, Any]] = Field(description="what was wrong, naming the field or file",
                                               examples=["upload: image is 9000x9000 = 81,000,000 pixels, over "
                                                         "the limit of 67,108,864"])


class JobBody(BaseModel):
    """A translation job (202 from translate, and GET /v1/translations/{id})."""

    id: str = Field(description="32 hex digits")
    status: Literal["queued", "running", "done", "failed"]
    model: str
    version: str = Field(description="the version asked for or promoted; once done, the one that translated")
    width: int
    height: int
    progress: float = Field(description="0 to 1: tile runs done / tile runs in all")
    tiles_done: int
    tiles_total: int = Field(description="tiles x passes; 0 until the model replica has planned the tiles")
    created: float = Field(description="Unix time")
    started: float | None = None
    finished: float | None = None
    expires: float | None = Field(None, description="Unix time the job and its result are removed at the latest; "
                                                   "sooner when the results kept pass jobs_disk_budget_mb (the "
                                                   "least recently fetched go first)")
    url: str = Field(description="this job: GET for progress, DELETE to cancel or drop it")
    result: str | None = Field(None, description="once done: GET it for the image at full size (?delete=true: "
                                                "the job goes once it is sent)")
    media_type: str | None = Field(None, description="once done: image/png or image/jpeg")
    error: str | None = Field(None, description="once failed: the error code")
    detail: str | list[dict[str, Any]] | None = Field(None, description="once failed: what went wrong")


class SamplesBody(BaseModel):
    """Several answers of a multimodal model to one upload (translate with ``samples`` > 1, without ``grid``)."""

    model: str
    version: str = Field(description="the version that translated")
    seed: int = Field(description="the seed the codes were drawn from: send it again for the same images, another "
                                  "for more")
    samples: int = Field(description="how many images")
    media_type: Literal["image/png", "image/jpeg"] = Field(description="each image's format (from Accept)")
    images: list[str] = Field(description="the images, base64-encoded, each the upload's size")


class ModelVersion(BaseModel):
    version: str
    method: str = ""
    direction: str = "AtoB"
    size_multiple: int = 1
    channels: int = 3
    latent_size: int = Field(0, description="numbers of a multimodal model's latent code (0: one answer per image); "
                                            "such a model takes samples and seed")
    config: dict[str, Any] = Field(default_factory=dict, description="the training config (size: its crop side)")
    metrics: dict[str, Any] = Field(default_factory=dict)
    sha256: str = ""


class ModelEntry(BaseModel):
    name: str
    current: str | None = Field(description="the promoted version, served when none is asked for")
    versions: list[ModelVersion]


class Limits(BaseModel):
    max_upload_bytes: int
    max_pixels: int
    tile_threshold: int
    async_pixels: int
    max_jobs: int = Field(description="translation jobs queued or running at once (finished ones do not count)")
    job_ttl_s: float
    jobs_disk_budget_mb: int = Field(description="megabytes of finished jobs' results kept")
    request_timeout_s: float


class ModelsBody(BaseModel):
    models: list[ModelEntry]
    limits: Limits


def limits(cfg: ServiceConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in Limits.model_fields}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for refusals, each with the error body."""
    why = {400: "bad input: the field or file is named in detail (bad_samples: over the cap, several samples of a "
                "one-answer model, or samples of an image answered as a job)", 401: "a missing or wrong token",
           403: "retraining is disabled: the service has no TRANSLATE_RETRAIN_TOKEN",
           404: "no such model, version or job",
           409: "the job has no result yet (detail says how far it is)",
           413: "over max_upload_bytes (max_zip_bytes for retraining; from Content-Length or as the body "
                "arrives) or over max_pixels (from the image header, before decoding)",
           415: "not PNG, JPEG, WebP, BMP or TIFF (by magic bytes)",
           503: "overloaded, max_jobs jobs queued or running (too_many_jobs), or the model or the jobs' storage "
                "cannot be reached; Retry-After says when to retry",
           504: "the model did not answer within request_timeout_s: send large images with async=true"}
    return {code: {"model": ErrorBody, "description": why[code]} for code in codes}


TRANSLATE_BODY = {
    "required": True,
    "description": "The image: the multipart field `image` (and optionally `version`), or the raw body, which is "
                   "known by its bytes whatever Content-Type it declares (curl --data-binary declares a urlencoded "
                   "form). EXIF orientation is applied; transparency is set aside and restored (PNG).",
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {"image": {**BINARY, "description": "PNG, JPEG, WebP, BMP or TIFF"},
                           "version": {"type": "string", "pattern": "^v[0-9]{4,}$",
                                       "description": "as the query parameter"}}}},
        **{t: {"schema": BINARY} for t in IMAGE_TYPES},
        "application/octet-stream": {"schema": BINARY},
    },
}

TRANSLATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SamplesBody,
          "description": "the translation, the upload's size (headers X-Model, X-Model-Version, X-Batch-Size); with "
                         "samples, seed or grid also X-Seed and X-Samples: one sample (or grid=true) is one image, "
                         "several are a JSON body (SamplesBody)",
          "content": {"image/png": {"schema": BINARY}, "image/jpeg": {"schema": BINARY}}},
    202: {"model": JobBody, "description": "a job: uploads over async_pixels, or async=true. Location: the job "
                                           "URL; poll it, then GET its result"},
    **errors(400, 404, 413, 415, 503, 504),
}

RETRAIN_BODY = {
    "required": True,
    "description": "A zip of aligned training pairs (A|B images side by side, or A/ and B/ folders): the "
                   "multipart field `data` or the raw body (known by its bytes whatever Content-Type it declares)",
    "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["data"],
                                                   "properties": {"data": BINARY}}},
                "application/zip": {"schema": BINARY}},
}

DESCRIPTION = """Image-to-image translation (Pix2Pix, CycleGAN) with ONNX Runtime behind Ray Serve.

Upload an image to `POST /v1/models/{name}/translate` and get the translation back, the same size.
Images over `async_pixels` pixels (or any, with `?async=true`) become a job: the answer is 202 with the
job, `GET /v1/translations/{id}` reports its progress and then the URL of the result.
At most `max_jobs` jobs are queued or running at once (beyond it 503 `too_many_jobs` with Retry-After);
finished results are kept for `job_ttl_s` within `jobs_disk_budget_mb`, the least recently fetched removed
first. `GET /v1/translations/{id}/result?delete=true` sends the result and deletes the job at once, as
`DELETE /v1/translations/{id}` does.
Every refusal is a JSON body `{"error": CODE, "detail": ...}`.
"""


def openapi_schema(title: str, version: str, routes, cfg: ServiceConfig) -> dict[str, Any]:
    """The OpenAPI description of ``routes`` with ``cfg``'s limits in the text and under ``x-limits``."""
    from fastapi.openapi.utils import get_openapi  # lazy: fastapi

    lim = limits(cfg)
    table = "\n".join(f"| `{k}` | {v:,} |" if isinstance(v, int) else f"| `{k}` | {v:g} |" for k, v in lim.items())
    schema = get_openapi(title=title, version=version, routes=routes,
                         description=DESCRIPTION + "\n## This service's limits\n\n| limit | value |\n|---|---|\n"
                                     + table + "\n")
    schema["info"]["x-limits"] = lim
    for path in schema["paths"].values():  # a request that fails validation is answered 400, not FastAPI's 422
        for op in path.values():
            if op.get("responses", {}).pop("422", None) is not None:
                op["responses"].setdefault("400", {"description": "bad input: the field is named in detail",
                                                   "content": {"application/json": {"schema": {
                                                       "$ref": "#/components/schemas/ErrorBody"}}}})
    for unused in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(unused, None)
    translate = schema["paths"]["/v1/models/{name}/translate"]["post"]
    translate["x-limits"] = {k: lim[k] for k in ("max_upload_bytes", "max_pixels", "tile_threshold", "async_pixels")}
    body = translate["requestBody"]
    body["description"] += (f" At most {cfg.max_upload_bytes:,} bytes and {cfg.max_pixels:,} pixels (checked from "
                            f"the header, before decoding); over {cfg.tile_threshold:,} pixels the image is "
                            f"translated tile by tile, over {cfg.async_pixels:,} as a job.")
    retrain = schema["paths"]["/v1/models/{name}/retrain"]["post"]
    retrain["x-limits"] = {"max_zip_bytes": cfg.max_zip_bytes}
    retrain["requestBody"]["description"] += f"; at most {cfg.max_zip_bytes:,} bytes."
    return schema
