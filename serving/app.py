"""The translation service: a Ray Serve app with an HTTP ingress and a batching model deployment.

``HTTP request -> Ingress (body and pixel limits, format allow-list: from the header, nothing
decoded) -> the compressed upload -> ModelServer (one replica holds several models through
@serve.multiplexed, requests are grouped with @serve.batch; in the batch's worker thread: decode
with translate.imageio -> translate.predictor.Predictor (ONNX Runtime) -> alpha restored, PNG or
JPEG) -> the encoded bytes -> Ingress -> response``. Bytes, not arrays, cross between the
processes: a decoded array is several times larger and, over Ray's 100 KB inline limit, goes
through the object store.

Routes::

    GET  /                              the upload page (static/index.html): upload or draw
    GET  /docs, /openapi.json           the API described (Swagger UI served from the package, no CDN),
                                        with this service's limits
    GET  /v1/models                     names, versions, metadata, the promoted version; the limits
    GET  /healthz                       200 only when a model answers a real tiny translation
    POST /v1/models/{name}/translate    multipart field ``image`` or the raw body; ``version``
                                        as query or form field; PNG, or JPEG for Accept: image/jpeg.
                                        Over ``async_pixels`` (or with ``?async=true``): 202 and a job
    GET  /v1/translations/{id}          a translation job's progress; once done, its result's URL
    GET  /v1/translations/{id}/result   the translated image, full size
    DELETE /v1/translations/{id}        cancel a job, or drop its result
    POST /v1/models/{name}/retrain      a zip of training pairs; Authorization: Bearer <token>
    GET  /v1/jobs/{job_id}              a retraining job's status

Jobs (uploads over ``async_pixels``, or ``?async=true``) and images over ``tile_threshold`` pixels
are decoded on the ingress and run one at a time on the model replica, outside the request batches
(``ModelServer.translate_large``, which streams its progress back; tile by tile above
``tile_threshold``, translate.tiling).
Every refusal is a 4xx with a JSON body ``{"error": CODE, "detail": ...}``; overload is a
503 with ``Retry-After``. ``build_app`` returns the application; ``app_builder`` is the
same for ``serve deploy`` configs (see serve_config.yaml); ``start_local`` runs it on an
embedded local Ray and ``stop_local`` stops it, leaving no Ray process behind.
"""
import asyncio
import hmac
import io
import inspect
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import api_docs
from training import local_ray
from serving.config import ServiceConfig
from serving.store import ModelStore, NotFoundError, StoreError, check_name, parse_model_id
from serving.translation_jobs import HEARTBEAT_S, JOB_ID, JobGone, JobsFull, JobStore, public_view
from translate import imageio
from translate.errors import ConfigError, DataError, ImageError, ModelError, TranslateError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
RETRY_AFTER_S = 1
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
TOKEN_ENV = "TRANSLATE_RETRAIN_TOKEN"
RESPONSE_PNG_LEVEL = 1  # zlib level of PNG responses: 4x faster than Pillow's default 6, 2 % larger (BENCHMARKS.md)
MAX_MODELS_PER_REPLICA = 4
STORE_POLL_S = 2.0  # an object store's pointer and version list are read at most this often per ingress replica
PROGRESS_EVERY_S = 0.5  # a job's progress is written at most this often
SWEEP_EVERY_S = 30.0  # expired jobs are removed this often
# Swagger UI's files, from the fastapi-offline package: /docs works with no network
DOCS_STATIC = "/static-docs"
DOCS_FILES = resources.files("fastapi_offline") / "static"


class ServiceError(Exception):
    """An HTTP refusal: status, a short code, a human detail, extra headers."""

    def __init__(self, status: int, error: str, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


def error_response(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def translate_error_status(e: TranslateError) -> tuple[int, str]:
    """HTTP status and error code of a typed error."""
    if isinstance(e, NotFoundError):
        return 404, "not_found"
    if isinstance(e, StoreError):
        return 503, "store_unavailable"
    if isinstance(e, ConfigError):
        return 400, f"bad_{e.field}"
    if isinstance(e, ImageError):
        return 400, "bad_image"
    if isinstance(e, DataError):
        return 400, "bad_data"
    if isinstance(e, ModelError):
        return 503, "model_unavailable"  # a stored model that cannot run is not the client's fault
    return 400, "bad_request"


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


async def upload_fields(request: Request, body: bytes, file_field: str) -> tuple[bytes, dict[str, str]]:
    """(file bytes, text fields) from a multipart form's ``file_field``, or the raw body."""
    ctype = request.headers.get("content-type", "").lower()
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return body, {}
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
        raise ServiceError(400, "bad_form", f"the form data cannot be parsed ({getattr(e, 'detail', e)})") from None
    text = {k: v for k, v in form.items() if isinstance(v, str)}
    upload = form.get(file_field)
    if upload is None:
        raise ServiceError(400, "missing_field", f"the form has no file field {file_field!r}")
    if isinstance(upload, str):
        raise ServiceError(400, "missing_field", f"form field {file_field!r} must be a file, not text")
    data = await upload.read()
    await form.close()
    return data, text


def claimed_pixels(data: bytes) -> int:
    """Width x height from the image header alone (0 when there is no readable header)."""
    from PIL import Image

    try:
        w, h = Image.open(io.BytesIO(data)).size  # lazy: reads the header, decodes nothing
    except Exception:
        return 0
    return w * h


def check_upload(data: bytes, max_pixels: int) -> int:
    """The checks of untrusted bytes that need no decoding: not empty (400), an allowed format (415), at
    most ``max_pixels`` by the header (413). Returns the pixels the header claims (0: no readable header,
    which decoding then refuses as a bad image)."""
    if not data:
        raise ServiceError(400, "missing_image", "the upload is empty: send the image as the multipart field "
                                                 "'image' or as the request body")
    fmt = imageio.sniff_format(data)
    if fmt not in ALLOWED_FORMATS:
        raise ServiceError(415, "unsupported_format", f"not a {', '.join(ALLOWED_FORMATS)} image "
                                                      f"(first bytes {data[:8]!r})")
    if fmt == "TIFF":  # GeoTIFF, several bands, 16-bit: GDAL reads the header (translate.raster's rules)
        from translate import raster  # lazy: GDAL

        pixels = raster.raster_pixels(data)
    else:
        pixels = claimed_pixels(data)
    if pixels > max_pixels:
        raise ServiceError(413, "too_many_pixels", f"upload: the image header claims {pixels:,} pixels, over the "
                                                   f"limit of {max_pixels:,}")
    return pixels


def decode_upload(data: bytes, max_pixels: int) -> tuple[np.ndarray, Any]:
    """Untrusted bytes -> (uint8 RGB array, alpha channel or None); ServiceError for every refusal.
    The one decoding path of uploads (on the model replica for the batched path, on the ingress for jobs
    and large images): a format added here is served everywhere."""
    check_upload(data, max_pixels)
    if imageio.sniff_format(data) == "TIFF":
        return decode_raster_upload(data, max_pixels)
    try:
        img = imageio.decode(data, source="upload", max_pixels=max_pixels)
    except ImageError as e:
        if claimed_pixels(data) > max_pixels:
            raise ServiceError(413, "too_many_pixels", str(e)) from None
        raise ServiceError(400, "bad_image", str(e)) from None
    rgb, alpha = imageio.split_alpha(img)
    if alpha is not None and alpha.getextrema() == (255, 255):
        alpha = None  # opaque everywhere (a canvas drawing, most RGBA exports): nothing to restore
    return imageio.image_to_array(rgb), alpha


def decode_raster_upload(data: bytes, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A TIFF upload (GeoTIFF, several bands, 16-bit) read by :mod:`translate.raster`'s rules, as
    ``translate predict`` reads the file: the default bands, 16-bit and deeper stretched per band
    from percentiles, nodata as alpha (restored in a PNG answer). The answer is an image, not a
    georeferenced raster: ``translate predict`` or ``translate convert`` keep the georeferencing."""
    from translate import raster  # lazy: GDAL

    try:  # its size was checked from the header (check_upload)
        return raster.decode_raster(data, name="upload", max_pixels=max_pixels)
    except ImageError as e:
        raise ServiceError(400, "bad_image", str(e)) from None


def encode_result(y: np.ndarray, alpha, fmt: str) -> bytes:
    """Translated uint8 array + the alpha set aside (an L image or a uint8 array) -> PNG (alpha restored) or
    JPEG (composited on white)."""
    out = imageio.array_to_image(y)
    if alpha is not None:
        out = out.convert("RGBA")
        out.putalpha(imageio.array_to_image(alpha) if isinstance(alpha, np.ndarray) else alpha)
        if fmt == "JPEG":
            out = imageio.to_rgb(out)
    return imageio.encode(out, fmt, compress_level=RESPONSE_PNG_LEVEL)


def translate_items(model, items: list, max_pixels: int) -> list[dict]:
    """One batch, on the model replica's worker thread: uploads (``{'upload': bytes, 'format': 'PNG'}``,
    checked by their header on the ingress) are decoded, every image runs through ``model`` in one call
    (grouped by size inside), uploads come back encoded (``{'content': bytes}``), arrays as arrays
    (``{'image': array}``). An upload that does not decode gets its error dict; the rest still run."""
    results: list[dict | None] = [None] * len(items)
    arrays, index, alphas = [], [], {}
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            arrays.append(item)
        else:
            try:
                a, alphas[i] = decode_upload(item["upload"], max_pixels)
            except ServiceError as e:
                results[i] = {"status": e.status, "error": e.error, "detail": e.detail}
                continue
            except Exception as e:  # whatever a hostile file makes Pillow raise: its request alone fails
                log.exception("decoding an upload")
                results[i] = {"status": 400, "error": "bad_image", "detail": f"the image cannot be decoded "
                                                                            f"({e.__class__.__name__}: {e})"}
                continue
            arrays.append(a)
        index.append(i)
    for i, y in zip(index, model.translate_arrays(arrays) if arrays else []):
        item = items[i]
        if isinstance(item, np.ndarray):
            results[i] = {"image": y}
            continue
        try:
            results[i] = {"content": encode_result(y, alphas[i], item["format"])}
        except Exception as e:  # a bug: this request's 500, not its batch's
            log.exception("encoding a result")
            results[i] = {"status": 500, "error": "internal_error", "detail": f"{e.__class__.__name__}: {e}"}
    return results  # type: ignore[return-value]


# Serve pickles a deployment class when it is decorated: everything it uses is defined above it.
def retrain_module():
    """serving.retraining.jobs, imported lazily (it brings training in); 501 where it is missing."""
    try:
        from serving.retraining import jobs  # lazy: brings in training/ and torch
    except ModuleNotFoundError as e:
        if e.name not in ("serving.retraining", "serving.retraining.jobs"):
            raise
        raise ServiceError(501, "not_implemented", "retraining is not available in this installation") from None
    return jobs


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("i2i-translate")
    except PackageNotFoundError:
        return "0.0.0"


class JobCancelled(Exception):
    """Raised inside a tiled translation whose caller has gone, to stop it at the next tile."""


async def consume_stream(stream, progress: Callable[[int, int], None] | None) -> dict:
    """The result of ``ModelServer.translate_large``'s stream, passing its progress reports on."""
    async for msg in stream:
        if "done" in msg:
            if progress is not None:
                progress(msg["done"], msg["total"])
            continue
        return msg
    raise ServiceError(503, "model_unavailable", "the model replica ended the translation without a result",
                       retry_headers())


# --------------------------------------------------------------------------- model deployment
# settings that come from ServiceConfig are applied in build_app (deployment_options), not here
@serve.deployment(name="ModelServer", backpressure_config={"retry_after_s": RETRY_AFTER_S})
class ModelServer:
    """Runs translate.predictor.Predictor on batches of same-model requests (grouped by size inside), and
    large images one at a time, tile by tile, reporting progress (``translate_large``)."""

    def __init__(self, config: dict):
        self.config = ServiceConfig(**config)
        self.store = ModelStore(self.config.store)
        self.translate_batch.set_max_batch_size(self.config.max_batch_size)
        self.translate_batch.set_batch_wait_timeout_s(self.config.batch_wait_timeout_s)

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def load_model(self, model_id: str):
        from translate.predictor import Predictor, RuntimeOptions  # lazy: ONNX Runtime, only on model replicas
        from translate.tiling import TileConfig  # lazy: with the predictor

        name, version = parse_model_id(model_id)  # the id may come from a client header: allow-list it

        def load():  # from an object store: downloaded once into this node's cache, checksum-verified
            # spinning=False: ORT's threads sleep between runs instead of spinning on cores the HTTP side needs
            # (on 2 shared cores: 33 -> 21 ms of replica CPU per request, 25 -> 31 req/s; BENCHMARKS.md)
            return Predictor(self.store.model_path(name, version), threads=self.config.threads,
                             tiling=TileConfig(threshold=self.config.tile_threshold),
                             runtime=RuntimeOptions(spinning=False))

        return await asyncio.to_thread(load)

    @serve.batch  # sizes set from the config in __init__
    async def translate_batch(self, items: list) -> list[dict]:
        model = await self.load_model(serve.get_multiplexed_model_id())
        # decoding and encoding ride along in the batch's one trip to a worker thread
        results = await asyncio.to_thread(translate_items, model, items, self.config.max_pixels)
        return [{**r, "batch_size": len(items)} for r in results]

    async def __call__(self, item) -> dict:
        """An upload ``{'upload': bytes, 'format': 'PNG' or 'JPEG'}`` -> ``{'content': bytes, 'batch_size': n}``
        (decoded and encoded here: compressed bytes travel between the replicas, not arrays), or a uint8
        HxWx3 array -> ``{'image': uint8 HxWxC, 'batch_size': n}``; an error is ``{'status', 'error',
        'detail'}``."""
        try:
            return await self.translate_batch(item)
        except TranslateError as e:
            status, code = translate_error_status(e)
            return {"status": status, "error": code, "detail": str(e)}

    async def translate_large(self, image: np.ndarray):
        """A stream: ``{'done': i, 'total': n}`` after tile runs (coalesced), then ``{'image': ...,
        'batch_size': 1}`` or an error dict. Tiled above tile_threshold (translate.tiling: bounded memory);
        a cancelled stream stops the work at the next tile."""
        cancelled = threading.Event()
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue = asyncio.Queue()

        def progress(done: int, total: int) -> None:  # on the worker thread
            if cancelled.is_set():
                raise JobCancelled
            loop.call_soon_threadsafe(updates.put_nowait, (done, total))

        work = None
        try:
            model = await self.load_model(serve.get_multiplexed_model_id())
            work = asyncio.ensure_future(asyncio.to_thread(model.translate_array, image, progress))
            while not work.done():
                getter = asyncio.ensure_future(updates.get())
                await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                done, total = getter.result()
                while not updates.empty():
                    done, total = updates.get_nowait()
                yield {"done": done, "total": total}
            y = work.result()
            if not model.tiling.wants(*y.shape[:2]):  # one run, no tiles: done in one step
                yield {"done": 1, "total": 1}
            yield {"image": y, "batch_size": 1}
        except TranslateError as e:
            status, code = translate_error_status(e)
            yield {"status": status, "error": code, "detail": str(e)}
        finally:
            cancelled.set()  # the caller went away (or the work ended): a tile run still going stops after it
            if work is not None and not work.done():  # it ends with JobCancelled, which nobody needs to hear
                work.add_done_callback(lambda f: f.cancelled() or f.exception())


# --------------------------------------------------------------------------- ingress
api = FastAPI(title="i2i-translate", docs_url=None, redoc_url=None, openapi_url=None)
api.mount(DOCS_STATIC, StaticFiles(directory=str(DOCS_FILES)), name="docs-static")


@api.exception_handler(ServiceError)
async def _service_error(request: Request, e: ServiceError):
    return error_response(e.status, e.error, e.detail, e.headers)


@api.exception_handler(TranslateError)
async def _translate_error(request: Request, e: TranslateError):
    status, code = translate_error_status(e)
    return error_response(status, code, str(e))


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, e: StarletteHTTPException):
    codes = {404: "no_such_route", 405: "method_not_allowed"}
    return error_response(e.status_code, codes.get(e.status_code, "http_error"), e.detail, e.headers)


@api.exception_handler(Exception)
async def _internal_error(request: Request, e: Exception):
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", f"{e.__class__.__name__}: {e}")


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, e: RequestValidationError):
    return error_response(400, "bad_request", [{k: err.get(k) for k in ("loc", "msg")} for err in e.errors()])


VERSION_QUERY = Query(None, description="a version, v0001 or later (default: the promoted one)")
ASYNC_QUERY = Query(None, alias="async", description="true: answer 202 with a job at once; false: answer with "
                                                     "the image even when large (bounded by the request timeout); "
                                                     "absent: a job for uploads over async_pixels")


@serve.deployment(name="Ingress", backpressure_config={"retry_after_s": RETRY_AFTER_S})
@serve.ingress(api)
class Ingress:
    def __init__(self, model_server, config: dict):
        self.config = ServiceConfig(**config)
        # the promoted version is polled (an object store's is read at most every STORE_POLL_S; a folder's per
        # request), so a promotion from any node reaches every replica without a restart
        self.store = ModelStore(self.config.store, max_staleness_s=STORE_POLL_S)
        self.last_served: dict[str, str] = {}  # per name: the promoted version this replica last served
        self.model_server = model_server
        self.handles: dict[str, Any] = {}  # per model id: options() builds a new handle each time
        self.page = (STATIC / "index.html").read_text()
        self.jobs = JobStore(self.config.jobs_dir or default_jobs_dir(), self.config.max_jobs, self.config.job_ttl_s)
        self.running: dict[str, asyncio.Task] = {}  # the jobs this replica runs (or queues), by id
        self.job_slots: asyncio.Semaphore | None = None
        self.keeper: asyncio.Task | None = None
        self._openapi: dict | None = None

    # ------------------------------------------------------------------ helpers
    async def resolve(self, name: str, version: str | None) -> str:
        """The version to serve: the one asked for, else the promoted one (nothing is downloaded here)."""
        return await asyncio.to_thread(self.store.resolve, name, version)

    async def run_served(self, name: str, version: str, pinned: bool, image: np.ndarray | dict,
                         progress: Callable[[int, int], None] | None = None,
                         timeout: float | None | Literal["request"] = "request") -> tuple[dict, str]:
        """Run the model; when the promoted version cannot be loaded (its file corrupt or missing, the
        store unreachable) keep answering with the version this replica served before it. Asked for
        by number (``pinned``), a version is that version or an error."""
        try:
            result = await self.run_model(f"{name}@{version}", image, progress, timeout)
        except ServiceError as e:
            before = self.last_served.get(name)
            if pinned or e.error not in ("model_unavailable", "store_unavailable") or before in (None, version):
                raise
            log.warning("%s@%s cannot be served (%s); still serving %s", name, version, e.detail, before)
            return await self.run_model(f"{name}@{before}", image, progress, timeout), before
        if not pinned:
            self.last_served[name] = version
        return result, version

    async def run_model(self, model_id: str, image: np.ndarray | dict,
                        progress: Callable[[int, int], None] | None = None,
                        timeout: float | None | Literal["request"] = "request") -> dict:
        """One image through the model deployment: batched (an array, or an upload checked by its header:
        see ``ModelServer.__call__``), or an array above tile_threshold (or with a ``progress`` listener)
        one at a time on ``translate_large``. ``timeout``: seconds, None for none."""
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        timeout = self.config.request_timeout_s if timeout == "request" else timeout
        handle = self.handles.get(model_id)
        if handle is None:
            if len(self.handles) > 256:
                self.handles.clear()
            handle = self.handles[model_id] = self.model_server.options(multiplexed_model_id=model_id)
        if progress is not None or (isinstance(image, np.ndarray)
                                    and image.shape[0] * image.shape[1] > self.config.tile_threshold):
            stream = handle.options(stream=True).translate_large.remote(image)
            waiting, cancel = consume_stream(stream, progress), stream.cancel
        else:
            response = handle.remote(image)
            waiting, cancel = response, response.cancel
        try:
            result = await asyncio.wait_for(waiting, timeout=timeout)
        except asyncio.TimeoutError:
            cancel()
            raise ServiceError(504, "timeout", f"the model did not answer within {timeout:g} s; send large "
                                               "images with ?async=true", retry_headers()) from None
        except (BackPressureError, DeploymentUnavailableError) as e:
            raise ServiceError(503, "overloaded", f"the service is busy ({e}); retry later", retry_headers()) from None
        except RayActorError as e:
            raise ServiceError(503, "model_unavailable", f"the model replica stopped while translating "
                                                         f"({e.__class__.__name__}); retry", retry_headers()) from None
        except BaseException:
            cancel()
            raise
        if "error" in result:
            raise ServiceError(result["status"], result["error"], result["detail"])
        return result

    # ------------------------------------------------------------------ jobs
    def start_job(self, job: dict, pinned: bool) -> None:
        if self.job_slots is None:
            self.job_slots = asyncio.Semaphore(self.config.job_workers)
        if self.keeper is None or self.keeper.done():
            self.keeper = asyncio.create_task(self.keep_jobs())
        self.running[job["id"]] = asyncio.create_task(self.run_job(job, pinned))

    async def run_job(self, job: dict, pinned: bool) -> None:
        """Decode nothing again: the upload was decoded and checked before the 202; run, encode, keep."""
        job_id, last = job["id"], [0.0]

        def progress(done: int, total: int) -> None:  # a small JSON written in place: cheap enough on the loop
            now = time.monotonic()
            if done >= total or now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                self.jobs.update(job_id, done=done, total=total)  # JobGone (deleted) ends the run

        try:
            async with self.job_slots:
                await asyncio.to_thread(self.jobs.update, job_id, state="running", started=time.time())
                image, alpha = await asyncio.to_thread(self.jobs.load_input, job_id)
                result, version = await self.run_served(job["model"], job["version"], pinned, image, progress,
                                                        timeout=None)
                del image
                fmt = job["format"]
                content = await asyncio.to_thread(encode_result, result["image"], alpha, fmt)
                del result
                await asyncio.to_thread(self.jobs.finish, job_id, content, fmt.lower().replace("jpeg", "jpg"),
                                        version=version, media_type=f"image/{fmt.lower()}")
        except JobGone:
            pass  # deleted (cancelled) by a client
        except ServiceError as e:
            await asyncio.to_thread(self.jobs.fail, job_id, e.status, e.error, e.detail)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug: say so in the job rather than leave it running forever
            log.exception("translation job %s failed", job_id)
            await asyncio.to_thread(self.jobs.fail, job_id, 500, "internal_error", f"{e.__class__.__name__}: {e}")
        finally:
            self.running.pop(job_id, None)

    async def keep_jobs(self) -> None:
        """Touch the jobs this replica runs (others see it alive) and remove expired ones, forever."""
        swept = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await asyncio.to_thread(self.jobs.touch, list(self.running))
                if time.monotonic() - swept >= SWEEP_EVERY_S:
                    swept = time.monotonic()
                    await asyncio.to_thread(self.jobs.sweep)
            except Exception:
                log.exception("keeping the translation jobs in %s", self.jobs.root)

    def job_view(self, request: Request, job: dict) -> dict:
        return public_view(job, self.config.job_ttl_s, request.scope.get("root_path", "").rstrip("/"))

    async def job_record(self, job_id: str) -> dict:
        if not JOB_ID.fullmatch(job_id):
            raise ServiceError(400, "bad_job_id", f"{job_id!r} is not a translation job id (32 hex digits)")
        return await asyncio.to_thread(self.jobs.get, job_id)

    # ------------------------------------------------------------------ routes
    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(self):
        return HTMLResponse(self.page)

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self):
        if self._openapi is None:  # self.app: the FastAPI app this replica serves (set by Serve's wrapper)
            from serving.api_docs import openapi_schema  # lazy: built once, on the first request

            self._openapi = openapi_schema(api.title, package_version(), self.app.routes, self.config)
        return JSONResponse(self._openapi)

    @api.get("/docs", include_in_schema=False)
    async def docs(self, request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title=f"{api.title} API",
                                   swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png")

    @api.get("/v1/models", summary="The models, their versions and the service's limits",
             responses={200: {"model": api_docs.ModelsBody, "description": "the store's models"}})
    async def models(self):
        return {"models": await asyncio.to_thread(self.store.list), "limits": api_docs.limits(self.config)}

    @api.get("/healthz", summary="200 once a model answers a real (tiny) translation",
             responses=api_docs.errors(503))
    async def healthz(self):
        for name in await asyncio.to_thread(self.store.names):
            version = await asyncio.to_thread(self.store.current, name)
            if version is None:
                continue
            try:
                probe = np.full((16, 16, 3), 127, np.uint8)
                result, served = await self.run_served(name, version, False, probe)
            except ServiceError as e:
                return error_response(503, "unhealthy", f"{name}@{version}: {e.detail}", retry_headers())
            if result["image"].shape[:2] != probe.shape[:2]:
                return error_response(503, "unhealthy", f"{name}@{served} answered the wrong size")
            # still serving an earlier version (the promoted one cannot be loaded): healthy, and says so
            return {"status": "ok", "model": name, "version": served,
                    **({"promoted": version} if served != version else {})}
        return error_response(503, "no_model", f"the store {self.config.store} has no promoted model",
                              retry_headers())

    @api.post("/v1/models/{name}/translate", summary="Translate an image (the same size comes back)",
              response_class=Response, responses=api_docs.TRANSLATE_RESPONSES, openapi_extra={"requestBody": api_docs.TRANSLATE_BODY})
    async def translate(self, name: str, request: Request, version: str | None = VERSION_QUERY,
                        as_job: bool | None = ASYNC_QUERY):
        check_name(name)
        body = await read_body(request, self.config.max_upload_bytes)
        data, form = await upload_fields(request, body, "image")
        del body
        asked = version if version is not None else form.get("version") or None
        version = await self.resolve(name, asked)
        # the header only: on the loop for the usual small upload (a thread's round trip costs more than
        # Pillow reading a header); large ones and TIFF (GDAL reads those) on a thread
        if len(data) <= 2**20 and imageio.sniff_format(data) != "TIFF":
            pixels = check_upload(data, self.config.max_pixels)
        else:
            pixels = await asyncio.to_thread(check_upload, data, self.config.max_pixels)
        fmt = output_format(request.headers.get("accept"))
        if (not as_job and (as_job is not None or pixels <= self.config.async_pixels)
                and pixels <= self.config.tile_threshold):
            # the common case: the compressed upload goes to the model replica, which decodes it in the batch
            # and answers encoded bytes (a decoded array is several times larger, and over Ray's 100 KB
            # inline limit it would go through the object store). A header that cannot be read ends there
            # as a bad image.
            result, version = await self.run_served(name, version, asked is not None,
                                                    {"upload": data, "format": fmt})
            content = result["content"]
        else:  # a job, or a tiled run (async=false): decoded here, the job keeps the array
            image, alpha = await asyncio.to_thread(decode_upload, data, self.config.max_pixels)
            del data
            h, w = image.shape[:2]
            if as_job if as_job is not None else h * w > self.config.async_pixels:
                record = {"model": name, "version": version, "width": w, "height": h, "format": fmt}
                try:
                    job = await asyncio.to_thread(self.jobs.create, record, image,
                                                  None if alpha is None else imageio.image_to_array(alpha)[:, :, 0])
                except JobsFull as e:
                    raise ServiceError(503, "too_many_jobs", str(e), {"Retry-After": str(e.retry_after)}) from None
                del image, alpha
                self.start_job(job, asked is not None)
                view = self.job_view(request, job)
                return JSONResponse(view, status_code=202, headers={"Location": view["url"], "Retry-After": "1"})
            result, version = await self.run_served(name, version, asked is not None, image)
            content = await asyncio.to_thread(encode_result, result["image"], alpha, fmt)
        return Response(content, media_type="image/png" if fmt == "PNG" else "image/jpeg", headers={
            "X-Model": name, "X-Model-Version": version, "X-Batch-Size": str(result["batch_size"]),
            "Content-Disposition": f'inline; filename="{name}-{version}.{fmt.lower().replace("jpeg", "jpg")}"'})

    @api.get("/v1/translations/{job_id}", summary="A translation job's progress; once done, its result's URL",
             responses={200: {"model": api_docs.JobBody, "description": "the job"}, **api_docs.errors(400, 404)})
    async def translation(self, job_id: str, request: Request):
        return self.job_view(request, await self.job_record(job_id))

    @api.get("/v1/translations/{job_id}/result", summary="A finished job's image, full size",
             response_class=Response, responses={200: {"description": "the translation", "content": {"image/png": {"schema": api_docs.BINARY},
                                                                           "image/jpeg": {"schema": api_docs.BINARY}}},
                        **api_docs.errors(400, 404, 409)})
    async def translation_result(self, job_id: str):
        job = await self.job_record(job_id)
        if job["state"] == "failed":
            raise ServiceError(job.get("status") or 500, job.get("error") or "failed", job.get("detail"))
        if job["state"] != "done":
            done, total = job.get("done", 0), job.get("total", 0)
            raise ServiceError(409, "not_ready", f"job {job_id} is {job['state']} ({done} of {total or '?'} tile runs "
                                                 "done)", retry_headers())
        path = self.jobs.folder(job_id) / job["result_file"]
        ext = path.suffix
        return FileResponse(path, media_type=job["media_type"], headers={
            "X-Model": job["model"], "X-Model-Version": job["version"],
            "Content-Disposition": f'attachment; filename="{job["model"]}-{job["version"]}{ext}"'})

    @api.delete("/v1/translations/{job_id}", status_code=204, summary="Cancel a job, or drop its result",
                responses=api_docs.errors(400, 404))
    async def delete_translation(self, job_id: str):
        await self.job_record(job_id)
        await asyncio.to_thread(self.jobs.delete, job_id)  # a running job stops at its next progress report
        return Response(status_code=204)

    @api.post("/v1/models/{name}/retrain", summary="Fine-tune a model on uploaded pairs (a job)", status_code=202,
              responses={202: {"description": "the retraining job"}, **api_docs.errors(400, 401, 403, 413)},
              openapi_extra={"requestBody": api_docs.RETRAIN_BODY})
    async def retrain(self, name: str, request: Request):
        check_name(name)
        check_retrain_auth(request.headers.get("authorization"), os.environ.get(TOKEN_ENV))
        retrain = retrain_module()
        body = await read_body(request, self.config.max_zip_bytes)
        data, _ = await upload_fields(request, body, "data")
        if not data:
            raise ServiceError(400, "missing_data", "send a zip of training pairs as the multipart field 'data' "
                                                    "or as the request body")
        try:
            job = await asyncio.to_thread(retrain.submit_from_zip, self.store, name, data, True)
        except PermissionError as e:
            raise ServiceError(403, "forbidden", str(e)) from None
        return JSONResponse(job, status_code=202)

    @api.get("/v1/jobs/{job_id}", summary="A retraining job's status", responses=api_docs.errors(400, 404))
    async def job(self, job_id: str):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}", job_id):
            raise ServiceError(400, "bad_job_id", f"{job_id!r} is not a job id")
        retrain = retrain_module()
        # the store lets any replica (or a restarted one) find the job's record
        kw = {"store": self.store} if "store" in inspect.signature(retrain.job_status).parameters else {}
        try:
            return await asyncio.to_thread(retrain.job_status, job_id, **kw)
        except KeyError:
            raise ServiceError(404, "not_found", f"no job {job_id!r}") from None


# --------------------------------------------------------------------------- building and running
def default_jobs_dir() -> str:
    """A new folder name under the temporary folder (made by the ingress replicas when they start)."""
    return os.path.join(tempfile.gettempdir(), f"i2i-translate-jobs-{uuid.uuid4().hex[:12]}")


def deployment_options(cfg: ServiceConfig, shutdown_wait_s: float | None = None) -> dict[str, dict[str, Any]]:
    """The Serve settings of each deployment, by name, for ``cfg`` (resolved by ``ServiceConfig.from_args``):
    the one place config fields become deployment options. A serve config's ``deployments`` override them.
    ``shutdown_wait_s``: how often a stopping replica looks whether its requests are done (Serve's default,
    2 s, when None: routers elsewhere in a cluster need that long to hear of it)."""
    logging_config = {"enable_access_log": cfg.access_log}
    stopping = {} if shutdown_wait_s is None else {"graceful_shutdown_wait_loop_s": shutdown_wait_s}
    return {
        "ModelServer": dict(
            max_ongoing_requests=cfg.max_ongoing_requests, max_queued_requests=cfg.max_queued_requests,
            ray_actor_options={"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
            autoscaling_config={"min_replicas": cfg.min_replicas,
                                "max_replicas": max(cfg.min_replicas, cfg.max_replicas),
                                "target_ongoing_requests": cfg.max_batch_size},
            logging_config=logging_config, **stopping),
        "Ingress": dict(
            max_ongoing_requests=cfg.ingress_max_ongoing_requests, max_queued_requests=cfg.ingress_max_queued_requests,
            ray_actor_options={"num_cpus": cfg.ingress_num_cpus}, logging_config=logging_config, **stopping),
    }


def http_options(cfg: ServiceConfig, host: str, port: int) -> dict[str, Any]:
    """Serve's HTTP proxy settings: its end-to-end timeout leaves the ingress time to answer 504 itself."""
    return {"host": host, "port": port, "request_timeout_s": cfg.request_timeout_s + 5}


def build_app(store: str | os.PathLike | None = None, *, shutdown_wait_s: float | None = None, **options):
    """The Serve application over the model store ``store``; ``options`` are ServiceConfig fields. Without a
    ``jobs_dir`` the jobs go to a new folder under the temporary folder (the same for every ingress replica).
    ``shutdown_wait_s``: see :func:`deployment_options`."""
    cfg = ServiceConfig.from_args(options, store=str(store or ""))
    cfg.jobs_dir = cfg.jobs_dir or default_jobs_dir()
    deployments = deployment_options(cfg, shutdown_wait_s)
    model = ModelServer.options(**deployments["ModelServer"]).bind(asdict(cfg))
    return Ingress.options(**deployments["Ingress"]).bind(model, asdict(cfg))


def app_builder(args: dict[str, str]):
    """Entry point for ``serve deploy`` / ``serve run serving.app:app_builder store=...`` (args are strings)."""
    return build_app(**dict(args or {}))


# Serve's settings for a small, busy machine; read by Ray's processes, so set before Ray starts
LOCAL_SERVE_ENV = {
    # the HTTP proxy must answer its readiness check within this many seconds, three times, or it is killed and
    # start-up fails: Serve's 5 s was too short on 2 busy CPUs (seen with two training jobs running)
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
    # objects up to 1 MiB travel inline with the call instead of through the object store (Ray's limit is
    # 100 KB): a 256 px upload (133 KB) and its answer. Side by side at 256 px: the raylet's CPU per request
    # 8.1 -> 0.9 ms, all processes' 106 -> 86 ms, 8.5 -> 12.2 req/s (BENCHMARKS.md)
    "RAY_max_direct_call_object_size": str(2**20),
}


def init_local_ray(num_cpus: int | None = None) -> None:
    """Start an embedded local Ray for the service (``LOCAL_SERVE_ENV`` set unless already set)."""

    for k, v in LOCAL_SERVE_ENV.items():
        os.environ.setdefault(k, v)
    local_ray.init(address="local", num_cpus=num_cpus)


def fit_replicas(cfg: ServiceConfig, cpus: float) -> ServiceConfig:
    """``cfg`` with max_replicas lowered to what ``cpus`` can hold next to the ingress (never below
    min_replicas): a replica the autoscaler asks for but Ray cannot place stays pending and Serve
    warns about it every few seconds. Says so when it lowers it."""
    if cfg.num_cpus <= 0 or cpus <= 0:
        return cfg
    fits = max(cfg.min_replicas, int((cpus - cfg.ingress_num_cpus) // cfg.num_cpus))
    if fits >= cfg.max_replicas:
        return cfg
    print(f"note: {cpus:g} CPUs hold at most {fits} model replica(s) of num_cpus {cfg.num_cpus:g} next to the "
          f"ingress; max_replicas {cfg.max_replicas} -> {fits} (lower --num-cpus per replica to run more)")
    return ServiceConfig(**{**asdict(cfg), "max_replicas": fits})


_local_jobs_dirs: list[str] = []  # jobs folders start_local made (its temporary ones), removed by stop_local
STOP_SERVE_S = 5.0  # stop_local lets Serve finish requests in flight for this long, then stops Ray regardless
# a local app's replicas look every 0.2 s whether their requests are done when stopping (Serve's 2 s made
# serve.shutdown take 5.3 s instead of 1.4 s; on one machine no router needs the time to hear of it)
LOCAL_SHUTDOWN_WAIT_S = 0.2


def start_local(store: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 8000, *,
                ray_cpus: int | None = None, name: str = "translate", **options) -> str:
    """Start an embedded local Ray (``ray_cpus`` CPUs; default all), Serve's HTTP proxy on host:port, and the
    app. ``options`` are ServiceConfig fields (``num_cpus`` is per model replica). Returns the URL."""
    import ray

    cfg = ServiceConfig.from_args(options, store=str(store or ""))
    if not cfg.jobs_dir:
        cfg.jobs_dir = default_jobs_dir()
        _local_jobs_dirs.append(cfg.jobs_dir)
    if not ray.is_initialized():
        init_local_ray(ray_cpus)
    cfg = fit_replicas(cfg, ray.cluster_resources().get("CPU", 0.0))
    serve.start(http_options=http_options(cfg, host, port), logging_config={"enable_access_log": cfg.access_log})
    serve_log = logging.getLogger("ray.serve")
    serve_log.addFilter(_not_reconnecting)
    try:
        serve.run(build_app(**asdict(cfg), shutdown_wait_s=LOCAL_SHUTDOWN_WAIT_S), name=name, route_prefix="/")
    finally:
        serve_log.removeFilter(_not_reconnecting)
    return f"http://{host}:{port}"


def _not_reconnecting(record: logging.LogRecord) -> bool:
    """Drops serve.run's "Connecting to existing Serve app ... New http_options/controller_options will not be
    applied": the Serve it finds is the one start_local started a line before with those very options, so the
    line, among the first a user of `translate serve` reads, only misleads."""
    return not record.getMessage().startswith("Connecting to existing Serve app")


def stop_local() -> None:
    """Stop Serve (requests in flight get up to STOP_SERVE_S) and the local Ray, leaving none of its processes
    behind (training.local_ray.shutdown), and remove the jobs folder start_local made."""
    import shutil

    try:
        left = local_ray.shutdown(first=serve.shutdown, first_timeout_s=STOP_SERVE_S)
        if left:
            log.info("stopped %d Ray process(es) that outlived ray.shutdown: %s", len(left), left)
    finally:
        while _local_jobs_dirs:
            shutil.rmtree(_local_jobs_dirs.pop(), ignore_errors=True)


def serve_until_interrupted(store: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
                            **options) -> None:
    """``translate serve``: start, print the URL and a curl example, stay up until Ctrl-C or SIGTERM (which
    ``translate`` turns into KeyboardInterrupt), shut down within about 10 s, leaving no Ray process."""
    url = start_local(store, host, port, **options)
    models = ModelStore(store).names()
    example = models[0] if models else "NAME"
    print(f"serving {ModelStore(store).url} at {url}  (models: {', '.join(models) or 'none yet'})")
    print(f"  upload page: {url}/   API: {url}/docs")
    print(f"  try: curl -F image=@input.png {url}/v1/models/{example}/translate -o translated.png")
    print("  Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the service", flush=True)
    finally:
        stop_local()
        print("stopped", flush=True)
