"""The translation service: a Ray Serve app with an HTTP ingress and a batching model deployment.

``HTTP request -> Ingress (body and pixel limits, format allow-list, decode with
translate.imageio) -> ModelServer (one replica holds several models through
@serve.multiplexed, requests are grouped with @serve.batch) -> translate.predictor.Predictor
(ONNX Runtime) -> Ingress (alpha restored, PNG or JPEG) -> response``.

Routes::

    GET  /                              the upload page (static/index.html)
    GET  /v1/models                     names, versions, metadata, the promoted version
    GET  /healthz                       200 only when a model answers a real tiny translation
    POST /v1/models/{name}/translate    multipart field ``image`` or the raw body; ``version``
                                        as query or form field; PNG, or JPEG for Accept: image/jpeg
    POST /v1/models/{name}/retrain      a zip of training pairs; Authorization: Bearer <token>
    GET  /v1/jobs/{job_id}              a retraining job's status

Every refusal is a 4xx with a JSON body ``{"error": CODE, "detail": ...}``; overload is a
503 with ``Retry-After``. ``build_app`` returns the application; ``app_builder`` is the
same for ``serve deploy`` configs (see serve_config.yaml); ``start_local`` runs it on an
embedded local Ray.
"""
import asyncio
import hmac
import io
import inspect
import logging
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from training import local_ray
from serving.config import ServiceConfig
from serving.store import ModelStore, NotFoundError, StoreError, check_name, parse_model_id
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


def decode_upload(data: bytes, max_pixels: int) -> tuple[np.ndarray, Any]:
    """Untrusted bytes -> (uint8 RGB array, alpha channel or None); ServiceError for every refusal."""
    if not data:
        raise ServiceError(400, "missing_image", "the upload is empty: send the image as the multipart field "
                                                 "'image' or as the request body")
    fmt = imageio.sniff_format(data)
    if fmt not in ALLOWED_FORMATS:
        raise ServiceError(415, "unsupported_format", f"not a {', '.join(ALLOWED_FORMATS)} image "
                                                      f"(first bytes {data[:8]!r})")
    try:
        img = imageio.decode(data, source="upload", max_pixels=max_pixels)
    except ImageError as e:
        if claimed_pixels(data) > max_pixels:
            raise ServiceError(413, "too_many_pixels", str(e)) from None
        raise ServiceError(400, "bad_image", str(e)) from None
    rgb, alpha = imageio.split_alpha(img)
    return imageio.image_to_array(rgb), alpha


def encode_result(y: np.ndarray, alpha, fmt: str) -> bytes:
    """Translated uint8 array + the alpha set aside -> PNG (alpha restored) or JPEG (composited on white)."""
    out = imageio.array_to_image(y)
    if alpha is not None:
        out = out.convert("RGBA")
        out.putalpha(alpha)
        if fmt == "JPEG":
            out = imageio.to_rgb(out)
    return imageio.encode(out, fmt, compress_level=RESPONSE_PNG_LEVEL)


# Serve pickles a deployment class when it is decorated: everything it uses is defined above it.
def retrain_module():
    """serving.retraining.jobs, imported lazily (it brings training in); 501 where it is missing."""
    try:
        from serving.retraining import jobs
    except ModuleNotFoundError as e:
        if e.name not in ("serving.retraining", "serving.retraining.jobs"):
            raise
        raise ServiceError(501, "not_implemented", "retraining is not available in this installation") from None
    return jobs


# --------------------------------------------------------------------------- model deployment
# settings that come from ServiceConfig are applied in build_app (deployment_options), not here
@serve.deployment(name="ModelServer", backpressure_config={"retry_after_s": RETRY_AFTER_S})
class ModelServer:
    """Runs translate.predictor.Predictor on batches of same-model requests (grouped by size inside)."""

    def __init__(self, config: dict):
        self.config = ServiceConfig(**config)
        self.store = ModelStore(self.config.store)
        self.translate_batch.set_max_batch_size(self.config.max_batch_size)
        self.translate_batch.set_batch_wait_timeout_s(self.config.batch_wait_timeout_s)

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def load_model(self, model_id: str):
        from translate.predictor import Predictor

        name, version = parse_model_id(model_id)  # the id may come from a client header: allow-list it

        def load():  # from an object store: downloaded once into this node's cache, checksum-verified
            return Predictor(self.store.model_path(name, version), threads=self.config.threads)

        return await asyncio.to_thread(load)

    @serve.batch  # sizes set from the config in __init__
    async def translate_batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
        model = await self.load_model(serve.get_multiplexed_model_id())
        outs = await asyncio.to_thread(model.translate_arrays, images)
        return [(y, len(images)) for y in outs]

    async def __call__(self, image: np.ndarray) -> dict:
        """uint8 HxWx3 -> {'image': uint8 HxWxC, 'batch_size': n} or {'status', 'error', 'detail'}."""
        try:
            y, n = await self.translate_batch(image)
        except TranslateError as e:
            status, code = translate_error_status(e)
            return {"status": status, "error": code, "detail": str(e)}
        return {"image": y, "batch_size": n}


# --------------------------------------------------------------------------- ingress
api = FastAPI(title="i2i-translate", docs_url=None, redoc_url=None)


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

    # ------------------------------------------------------------------ helpers
    async def resolve(self, name: str, version: str | None) -> str:
        """The version to serve: the one asked for, else the promoted one (nothing is downloaded here)."""
        return await asyncio.to_thread(self.store.resolve, name, version)

    async def run_served(self, name: str, version: str, pinned: bool, image: np.ndarray) -> tuple[dict, str]:
        """Run the model; when the promoted version cannot be loaded (its file corrupt or missing, the
        store unreachable) keep answering with the version this replica served before it. Asked for
        by number (``pinned``), a version is that version or an error."""
        try:
            result = await self.run_model(f"{name}@{version}", image)
        except ServiceError as e:
            before = self.last_served.get(name)
            if pinned or e.error not in ("model_unavailable", "store_unavailable") or before in (None, version):
                raise
            log.warning("%s@%s cannot be served (%s); still serving %s", name, version, e.detail, before)
            return await self.run_model(f"{name}@{before}", image), before
        if not pinned:
            self.last_served[name] = version
        return result, version

    async def run_model(self, model_id: str, image: np.ndarray) -> dict:
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        handle = self.handles.get(model_id)
        if handle is None:
            if len(self.handles) > 256:
                self.handles.clear()
            handle = self.handles[model_id] = self.model_server.options(multiplexed_model_id=model_id)
        response = handle.remote(image)
        try:
            result = await asyncio.wait_for(response, timeout=self.config.request_timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise ServiceError(504, "timeout", f"the model did not answer within {self.config.request_timeout_s:g} s",
                               retry_headers()) from None
        except (BackPressureError, DeploymentUnavailableError) as e:
            raise ServiceError(503, "overloaded", f"the service is busy ({e}); retry later", retry_headers()) from None
        if "error" in result:
            raise ServiceError(result["status"], result["error"], result["detail"])
        return result

    # ------------------------------------------------------------------ routes
    @api.get("/", response_class=HTMLResponse)
    async def page(self):
        return HTMLResponse(self.page)

    @api.get("/v1/models")
    async def models(self):
        return {"models": await asyncio.to_thread(self.store.list)}

    @api.get("/healthz")
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

    @api.post("/v1/models/{name}/translate")
    async def translate(self, name: str, request: Request, version: str | None = None):
        check_name(name)
        body = await read_body(request, self.config.max_upload_bytes)
        data, form = await upload_fields(request, body, "image")
        asked = version if version is not None else form.get("version") or None
        version = await self.resolve(name, asked)
        image, alpha = await asyncio.to_thread(decode_upload, data, self.config.max_pixels)
        result, version = await self.run_served(name, version, asked is not None, image)
        fmt = output_format(request.headers.get("accept"))
        content = await asyncio.to_thread(encode_result, result["image"], alpha, fmt)
        return Response(content, media_type="image/png" if fmt == "PNG" else "image/jpeg", headers={
            "X-Model": name, "X-Model-Version": version, "X-Batch-Size": str(result["batch_size"]),
            "Content-Disposition": f'inline; filename="{name}-{version}.{fmt.lower().replace("jpeg", "jpg")}"'})

    @api.post("/v1/models/{name}/retrain")
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

    @api.get("/v1/jobs/{job_id}")
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
def deployment_options(cfg: ServiceConfig) -> dict[str, dict[str, Any]]:
    """The Serve settings of each deployment, by name, for ``cfg`` (resolved by ``ServiceConfig.from_args``):
    the one place config fields become deployment options. A serve config's ``deployments`` override them."""
    logging_config = {"enable_access_log": cfg.access_log}
    return {
        "ModelServer": dict(
            max_ongoing_requests=cfg.max_ongoing_requests, max_queued_requests=cfg.max_queued_requests,
            ray_actor_options={"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
            autoscaling_config={"min_replicas": cfg.min_replicas,
                                "max_replicas": max(cfg.min_replicas, cfg.max_replicas),
                                "target_ongoing_requests": cfg.max_batch_size},
            logging_config=logging_config),
        "Ingress": dict(
            max_ongoing_requests=cfg.ingress_max_ongoing_requests, max_queued_requests=cfg.ingress_max_queued_requests,
            ray_actor_options={"num_cpus": cfg.ingress_num_cpus}, logging_config=logging_config),
    }


def http_options(cfg: ServiceConfig, host: str, port: int) -> dict[str, Any]:
    """Serve's HTTP proxy settings: its end-to-end timeout leaves the ingress time to answer 504 itself."""
    return {"host": host, "port": port, "request_timeout_s": cfg.request_timeout_s + 5}


def build_app(store: str | os.PathLike | None = None, **options):
    """The Serve application over the model store ``store``; ``options`` are ServiceConfig fields."""
    cfg = ServiceConfig.from_args(options, store=str(store or ""))
    deployments = deployment_options(cfg)
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


def start_local(store: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 8000, *,
                ray_cpus: int | None = None, name: str = "translate", **options) -> str:
    """Start an embedded local Ray (``ray_cpus`` CPUs; default all), Serve's HTTP proxy on host:port, and the
    app. ``options`` are ServiceConfig fields (``num_cpus`` is per model replica). Returns the URL."""
    import ray

    cfg = ServiceConfig.from_args(options, store=str(store or ""))
    if not ray.is_initialized():
        init_local_ray(ray_cpus)
    cfg = fit_replicas(cfg, ray.cluster_resources().get("CPU", 0.0))
    serve.start(http_options=http_options(cfg, host, port), logging_config={"enable_access_log": cfg.access_log})
    serve.run(build_app(**asdict(cfg)), name=name, route_prefix="/")
    return f"http://{host}:{port}"


def stop_local() -> None:
    import ray

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def serve_until_interrupted(store: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
                            **options) -> None:
    """``translate serve``: start, print the URL and a curl example, stay up until Ctrl-C, shut down."""
    import time

    url = start_local(store, host, port, **options)
    models = ModelStore(store).names()
    example = models[0] if models else "NAME"
    print(f"serving {ModelStore(store).url} at {url}  (models: {', '.join(models) or 'none yet'})")
    print(f"  upload page: {url}/")
    print(f"  try: curl -F image=@input.png {url}/v1/models/{example}/translate -o translated.png")
    print("  Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the service", flush=True)
    finally:
        stop_local()
