"""The ingress: the Serve deployment that answers HTTP, its routes and its error handlers.

``HTTP request -> Ingress (body and pixel limits, format allow-list: from the header, nothing
decoded; translate.uploads.upload_pixels) -> the compressed upload -> ModelServer (serving.model_server:
decoded, translated and encoded in the batch's worker thread) -> the encoded bytes -> Ingress ->
response``. Bytes, not arrays, cross between the processes: a decoded array is several times larger
and, over Ray's 100 KB inline limit, goes through the object store.

Routes::

    GET  /                              the upload page (static/index.html): upload or draw
    GET  /docs, /openapi.json           the API described (Swagger UI served from the package, no CDN),
                                        with this service's limits
    GET  /v1/models                     names, versions, metadata, the promoted version; the limits
    GET  /healthz                       200 only when a model answers a real tiny translation
    POST /v1/models/{name}/translate    multipart field ``image`` or the raw body; ``version``
                                        as query or form field; PNG, or JPEG for Accept: image/jpeg.
                                        Over ``async_pixels`` (or with ``?async=true``): 202 and a job.
                                        A multimodal model's several answers: ``samples`` and ``seed``
                                        (a JSON body of base64 images, or ``grid=true``: one image)
    GET  /v1/translations/{id}          a translation job's progress; once done, its result's URL
    GET  /v1/translations/{id}/result   the translated image, full size (``?delete=true``: and the job goes)
    DELETE /v1/translations/{id}        cancel a job, or drop its result
    POST /v1/models/{name}/retrain      a zip of training pairs; Authorization: Bearer <token>
    GET  /v1/jobs/{job_id}              a retraining job's status

Jobs (uploads over ``async_pixels``, or ``?async=true``) and images over ``tile_threshold`` pixels
are decoded on the ingress (translate.uploads.decode_upload) and run one at a time on the model
replica, outside the request batches (``ModelServer.translate_large``, which streams its progress back;
tile by tile above ``tile_threshold``, translate.tiling). Every refusal is an answer of
:mod:`serving.http_layer`.
"""
import asyncio
import base64
import functools
import inspect
import logging
import os
import re
import secrets
import time
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import api_docs
from serving.config import ServiceConfig
from serving.http_layer import (
    RETRY_AFTER_S,
    TOKEN_ENV,
    ServiceError,
    check_retrain_auth,
    encode_result,
    error_response,
    output_format,
    read_body,
    retry_headers,
    translate_error_status,
    upload_fields,
)
from serving.model_server import LocalModels
from serving.retraining import jobs as retraining_jobs
from serving.retraining import upload as retraining_upload
from serving.store import ModelStore, check_name
from serving.translation_jobs import HEARTBEAT_S, JOB_ID, JobGone, JobsFull, JobStore, default_jobs_dir, public_view
from translate import imageio, uploads
from translate.errors import TranslateError
from translate.predictor import MAX_SAMPLES

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
STORE_POLL_S = 2.0  # an object store's pointer and version list are read at most this often per ingress replica
PROGRESS_EVERY_S = 0.5  # a job's progress is written at most this often
SWEEP_EVERY_S = 30.0  # expired jobs are removed this often
# Serve's gRPC path between deployments (the fast paths `grpc` and `throughput`, serving.config.FAST_PATHS) carries
# messages up to this many bytes and fails larger ones: those go as Ray objects (by reference) instead
GRPC_MAX_MESSAGE = int(os.environ.get("RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH", 4 * 2**20))
# Swagger UI's files, from the fastapi-offline package: /docs works with no network
DOCS_STATIC = "/static-docs"
DOCS_FILES = resources.files("fastapi_offline") / "static"


# Serve pickles a deployment class when it is decorated: everything it uses is defined above it.
def package_version() -> str:
    try:
        return metadata.version("i2i-translate")
    except metadata.PackageNotFoundError:
        return "0.0.0"


async def consume_stream(stream, progress: Callable[[int, int], None] | None) -> dict:
    """The result of a large translation's stream (``ModelServer.translate_large``'s, or ``LocalModels.stream_large``
    itself when colocated), passing its progress reports on. A local stream is closed however this ends (its work
    stops at the next tile)."""
    try:
        async for msg in stream:
            if "done" in msg:
                if progress is not None:
                    progress(msg["done"], msg["total"])
                continue
            return msg
    finally:
        if inspect.isasyncgen(stream):
            await stream.aclose()
    raise ServiceError(503, "model_unavailable", "the model replica ended the translation without a result",
                       retry_headers())


# --------------------------------------------------------------------------- routes and error handlers
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


SAMPLES_QUERY = Query(None, description=f"a multimodal model's answers to the one upload, 1 to {MAX_SAMPLES}, each "
                                         "from a latent code drawn from seed: several come back as a JSON body "
                                         "(SamplesBody) or, with grid=true, as one image; a one-answer model takes 1")
SEED_QUERY = Query(None, description="the seed of the samples' codes (>= 0): the same seed, the same images "
                                     "(default: a fresh one, said in X-Seed)")
GRID_QUERY = Query(False, description="true: the samples side by side in one image (PNG or JPEG)")
DELETE_QUERY = Query(False, description="true: delete the job once its result is sent (frees its place in the "
                                        "jobs' disk budget at once; otherwise a fetched result is the first "
                                        "removed when the budget is full, and any is removed job_ttl_s after the "
                                        "job finished)")
RESULT_BLOCK = 2**20  # a job's result is sent in blocks of this many bytes


def read_blocks(f, then: Callable[[], None] | None = None) -> Iterator[bytes]:
    """A file's bytes in blocks, closing it at the end (run on Starlette's thread pool: a bucket's reads block).
    ``then`` runs once the whole file is read, before its last block is sent: done before the client has it."""
    with f:
        block = f.read(RESULT_BLOCK)
        while True:
            following = f.read(RESULT_BLOCK) if block else b""
            if not following and then is not None:
                then()
            if block:
                yield block
            if not following:
                return
            block = following


def samples_body(name: str, version: str, seed: int, contents: list[bytes], fmt: str) -> dict:
    """The JSON answer of several samples (api_docs.SamplesBody)."""
    return {"model": name, "version": version, "seed": seed, "samples": len(contents),
            "media_type": f"image/{fmt.lower()}", "images": [base64.b64encode(c).decode("ascii") for c in contents]}


@serve.deployment(name="Ingress", backpressure_config={"retry_after_s": RETRY_AFTER_S})
@serve.ingress(api)
class Ingress:
    def __init__(self, model_server, config: dict):
        self.config = ServiceConfig(**config)
        assert self.config.async_pixels is not None  # resolved by ServiceConfig.from_args before the app is built
        self.async_pixels: int = self.config.async_pixels
        # the promoted version is polled (an object store's is read at most every STORE_POLL_S; a folder's per
        # request), so a promotion from any node reaches every replica without a restart
        self.store = ModelStore(self.config.store, max_staleness_s=STORE_POLL_S)
        self.last_served: dict[str, str] = {}  # per name: the promoted version this replica last served
        self.model_server = model_server  # None when this replica runs the models itself (colocate)
        self.local = LocalModels(self.config) if model_server is None else None
        self.handles: dict[tuple[str, bool], Any] = {}  # per model id, by reference or not: options() builds anew
        self.page_html = (STATIC / "index.html").read_text()
        assert self.config.max_jobs is not None  # resolved by ServiceConfig.from_args likewise
        self.jobs = JobStore(self.config.jobs_dir or default_jobs_dir(), self.config.max_jobs, self.config.job_ttl_s,
                             self.config.jobs_disk_budget_mb * 2**20)
        self.running: dict[str, asyncio.Task] = {}  # the jobs this replica runs (or queues), by id
        self.job_slots = asyncio.Semaphore(self.config.job_workers)  # bound to the replica's loop on first use
        self.keeper: asyncio.Task | None = None
        self._openapi: dict | None = None

    # ------------------------------------------------------------------ helpers
    async def resolve(self, name: str, version: str | None) -> str:
        """The version to serve: the one asked for, else the promoted one (nothing is downloaded here)."""
        return await asyncio.to_thread(self.store.resolve, name, version)

    async def run_served(self, name: str, version: str, pinned: bool, image: np.ndarray | dict,
                         progress: Callable[[int, int], None] | None = None,
                         timeout: float | None | Literal["request"] = "request", pixels: int = 0) -> tuple[dict, str]:
        """Run the model; when the promoted version cannot be loaded (its file corrupt or missing, the
        store unreachable) keep answering with the version this replica served before it. Asked for
        by number (``pinned``), a version is that version or an error. ``pixels``: an upload's, from its header."""
        try:
            result = await self.run_model(f"{name}@{version}", image, progress, timeout, pixels)
        except ServiceError as e:
            before = self.last_served.get(name)
            if pinned or e.error not in ("model_unavailable", "store_unavailable") or before in (None, version):
                raise
            log.warning("%s@%s cannot be served (%s); still serving %s", name, version, e.detail, before)
            return await self.run_model(f"{name}@{before}", image, progress, timeout, pixels), before
        if not pinned:
            self.last_served[name] = version
        return result, version

    async def run_model(self, model_id: str, image: np.ndarray | dict,
                        progress: Callable[[int, int], None] | None = None,
                        timeout: float | None | Literal["request"] = "request", pixels: int = 0) -> dict:
        """One image through the model deployment: batched (an array, or an upload checked by its header:
        see ``ModelServer.__call__``), or an array above tile_threshold (or with a ``progress`` listener)
        one at a time on ``translate_large``. ``timeout``: seconds, None for none. ``pixels``: an upload's.
        A request or answer that may pass Serve's gRPC message limit goes by reference (:data:`GRPC_MAX_MESSAGE`)."""
        timeout = self.config.request_timeout_s if timeout == "request" else timeout
        large = progress is not None or (isinstance(image, np.ndarray)
                                         and image.shape[0] * image.shape[1] > self.config.tile_threshold)
        if self.local is not None:  # colocate: run here (a timeout cancels the run's coroutine itself)
            work = self.local.stream_large(model_id, image) if large and isinstance(image, np.ndarray) else None
            waiting = consume_stream(work, progress) if work is not None else self.local.translate(model_id, image)
            cancel: Callable[[], Any] = lambda: None  # noqa: E731
        else:
            if isinstance(image, np.ndarray):
                largest = image.nbytes  # the answer is an array of the same size
            else:  # the answer: a PNG of the image, at most about 4 bytes a pixel at the fast zlib level (alpha kept)
                largest = max(len(image["upload"]), 4 * pixels + 2**16)
            by_reference = largest > GRPC_MAX_MESSAGE
            handle = self.handles.get((model_id, by_reference))
            if handle is None:
                if len(self.handles) > 256:
                    self.handles.clear()
                handle = self.model_server.options(multiplexed_model_id=model_id)
                # a handle sends by reference anyway unless gRPC is on: then only what could pass its limit
                handle = self.handles[(model_id, by_reference)] = (handle.options(_by_reference=True)
                                                                  if by_reference else handle)
            if large:
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
            await asyncio.to_thread(self.jobs.drop_input, job_id)  # deleted elsewhere: its input is still here

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
        return HTMLResponse(self.page_html)

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self):
        if self._openapi is None:  # self.app: the FastAPI app this replica serves (set by Serve's wrapper)
            self._openapi = api_docs.openapi_schema(api.title, package_version(), self.app.routes, self.config)
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
                        as_job: bool | None = ASYNC_QUERY, samples: int | None = SAMPLES_QUERY,
                        seed: int | None = SEED_QUERY, grid: bool = GRID_QUERY):
        check_name(name)
        many = samples is not None or seed is not None or grid  # codes drawn from a seed: a multimodal model's
        if samples is not None and not 1 <= samples <= MAX_SAMPLES:
            raise ServiceError(400, "bad_samples", f"samples: must be from 1 to {MAX_SAMPLES}, got {samples}")
        if seed is not None and seed < 0:
            raise ServiceError(400, "bad_seed", f"seed: must be >= 0, got {seed}")
        body = await read_body(request, self.config.max_upload_bytes)
        data, form = await upload_fields(request, body, ("image", "version"), uploads.is_image)
        del body
        asked = version if version is not None else form.get("version") or None
        version = await self.resolve(name, asked)
        if not data:
            raise ServiceError(400, "missing_image", "the upload is empty: send the image as the multipart field "
                                                     "'image' or as the request body")
        # the header only (format allow-list, pixels), nothing decoded: on the loop for the usual small upload
        # (a thread's round trip costs more than Pillow reading a header); large ones and TIFF (GDAL reads
        # those) on a thread
        if len(data) <= 2**20 and imageio.sniff_format(data) != "TIFF":
            pixels = uploads.upload_pixels(data, self.config.max_pixels)
        else:
            pixels = await asyncio.to_thread(uploads.upload_pixels, data, self.config.max_pixels)
        fmt = output_format(request.headers.get("accept"))
        small = not as_job and (as_job is not None or pixels <= self.async_pixels) and pixels <= self.config.tile_threshold
        if many:
            if not small:
                raise ServiceError(400, "bad_samples", f"samples, seed and grid are answered in the request, for "
                                                       f"images up to {min(self.async_pixels, self.config.tile_threshold):,} "
                                                       f"pixels (this one has {pixels:,}): send a smaller image, or "
                                                       "leave them out")
            drawn = seed if seed is not None else secrets.randbelow(2**31)  # a fresh one, said in X-Seed
            item = {"upload": data, "format": fmt, "samples": samples or 1, "seed": drawn, "grid": grid}
            try:
                # the answer holds K images: its size bound (the gRPC limit's test) counts them all
                result, version = await self.run_served(name, version, asked is not None, item,
                                                        pixels=pixels * (samples or 1))
            except ServiceError as e:
                if e.error != "bad_samples":
                    raise
                raise ServiceError(400, "bad_samples", f"samples: {name}@{version} gives one answer (it takes no "
                                                       "latent code): ask for samples=1, or leave samples out") from None
            headers = {"X-Model": name, "X-Model-Version": version, "X-Batch-Size": str(result["batch_size"]),
                       "X-Seed": str(drawn), "X-Samples": str(samples or 1)}
            if "contents" in result and len(result["contents"]) > 1:
                return JSONResponse(samples_body(name, version, drawn, result["contents"], fmt), headers=headers)
            content = result["content"] if "content" in result else result["contents"][0]
            ext = fmt.lower().replace("jpeg", "jpg")
            return Response(content, media_type=f"image/{fmt.lower()}", headers={
                **headers, "Content-Disposition": f'inline; filename="{name}-{version}-{drawn}.{ext}"'})
        if small:
            # the common case: the compressed upload goes to the model replica, which decodes it in the batch
            # and answers encoded bytes (a decoded array is several times larger, and over Ray's 100 KB
            # inline limit it would go through the object store). A header that cannot be read ends there
            # as a bad image.
            result, version = await self.run_served(name, version, asked is not None,
                                                    {"upload": data, "format": fmt}, pixels=pixels)
            content = result["content"]
        else:  # a job, or a tiled run (async=false): decoded here, the job keeps the array
            image, alpha = await asyncio.to_thread(uploads.decode_upload, data, self.config.max_pixels)
            del data
            h, w = image.shape[:2]
            if as_job if as_job is not None else h * w > self.async_pixels:
                record = {"model": name, "version": version, "width": w, "height": h, "format": fmt}
                try:
                    job = await asyncio.to_thread(self.jobs.create, record, image, alpha)
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
    async def translation_result(self, job_id: str, delete: bool = DELETE_QUERY):
        job = await self.job_record(job_id)
        if job["state"] == "failed":
            raise ServiceError(job.get("status") or 500, job.get("error") or "failed", job.get("detail"))
        if job["state"] != "done":
            done, total = job.get("done", 0), job.get("total", 0)
            raise ServiceError(409, "not_ready", f"job {job_id} is {job['state']} ({done} of {total or '?'} tile runs "
                                                 "done)", retry_headers())
        result = await asyncio.to_thread(self.jobs.open_result, job, not delete)
        ext = Path(job["result_file"]).suffix
        # streamed in blocks (a folder's file or a bucket's object alike); with delete=true the job goes once read
        then = functools.partial(self.jobs.delete, job_id, missing_ok=True) if delete else None
        return StreamingResponse(read_blocks(result, then), media_type=job["media_type"], headers={
            "X-Model": job["model"], "X-Model-Version": job["version"], "Content-Length": str(job["result_bytes"]),
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
        body = await read_body(request, self.config.max_zip_bytes)
        data, _ = await upload_fields(request, body, ("data",), retraining_upload.is_zip)
        if not data:
            raise ServiceError(400, "missing_data", "send a zip of training pairs as the multipart field 'data' "
                                                    "or as the request body")
        try:
            job = await asyncio.to_thread(retraining_jobs.submit_from_zip, self.store, name, data, True)
        except PermissionError as e:
            raise ServiceError(403, "forbidden", str(e)) from None
        return JSONResponse(job, status_code=202)

    @api.get("/v1/jobs/{job_id}", summary="A retraining job's status", responses=api_docs.errors(400, 404))
    async def job(self, job_id: str):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}", job_id):
            raise ServiceError(400, "bad_job_id", f"{job_id!r} is not a job id")
        try:  # the store lets any replica (or a restarted one) find the job's record
            return await asyncio.to_thread(retraining_jobs.job_status, job_id, self.store)
        except KeyError:
            raise ServiceError(404, "not_found", f"no job {job_id!r}") from None
