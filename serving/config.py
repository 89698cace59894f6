"""The service's settings: :class:`ServiceConfig`, the one list of what an operator may tune.

Its fields are the flags of ``translate serve`` (:func:`translate.options.add_arguments`), the
keyword options of :func:`serving.app.build_app` and :func:`serving.local_service.start_local`, and the
``args`` of a ``serve deploy`` config (serve_config.yaml, strings typed by :func:`translate.options.coerce`).
:func:`serving.app.deployment_options` turns them into the Serve deployments' settings.

:data:`FAST_PATHS` are Ray Serve's own fast paths, which are not fields: they are environment variables that
Serve's controller, proxies and replicas read when they start (``translate serve --fast-paths``; on a cluster,
the environment of ``ray start``).

Light on purpose (no Ray, no FastAPI): the CLI builds its parser from it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from translate.engines import ENGINES, choose
from translate.errors import ConfigError
from translate.object_storage import is_url, split_url
from translate.options import coerce, opt

from .store import ModelStore

#: Ray Serve's fast paths, by name: the environment each sets (read from Ray's source, ray/serve/_private/constants.py).
#: throughput: Serve's throughput-optimized mode (user code and the router on the replica's own loop, gRPC between
#:   deployments, direct ingress: the ingress replica takes HTTP itself, request-path logs buffered, GC frozen).
#: haproxy: HAProxy in place of Serve's Python HTTP proxy (it forces direct ingress; no custom request router on
#:   the ingress), with one thread per core up to 4 (Serve's default is 4 whatever the machine).
#: grpc: deployment handles call replicas over gRPC instead of Ray actor calls (messages up to
#:   RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH, 4 MiB by default; Serve passes larger ones by reference).
#: oneloop: the part of the throughput-optimized mode that keeps every replica's work on one event loop: user code
#:   and the handles' request router on the replica's own loop instead of a loop each in its own thread (Serve's
#:   performance guide; it said these would become Serve's defaults in 2.54, and in 2.60 they are not). A deployment's
#:   blocking work must then leave the loop (the service's does: asyncio.to_thread).
FAST_PATHS = {
    "throughput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
    "grpc": {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"},
    "oneloop": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"},
}
HAPROXY_MAX_THREADS = 4
#: the fast paths on by default (``translate serve``, :func:`serving.local_service.start_local`): HAProxy alone cut
#: the CPU the service spends beyond the model from 25.9 to 17.6 ms per request at concurrency 1 (23.7 to 17.1 at
#: 32) with 19 % more requests/s; throughput-optimized mode and gRPC changed nothing measurable here and all three
#: together had a worse p99 at 32; one loop per replica on top of HAProxy stayed within the runs' spread in two
#: sittings (BENCHMARKS.md, "Ray Serve's fast paths", 2026-12-07)
DEFAULT_FAST_PATHS: tuple[str, ...] = ("haproxy",)


def fast_path_env(names: list[str] | tuple[str, ...], cpus: int | None = None) -> dict[str, str]:
    """The environment of Ray's processes for the fast paths ``names`` (keys of :data:`FAST_PATHS`) on a machine of
    ``cpus`` cores (default: this one's). An unknown name is a ConfigError naming ``fast_paths``."""
    env: dict[str, str] = {}
    for name in names:
        if name not in FAST_PATHS:
            raise ConfigError("fast_paths", f"unknown fast path {name!r}; known: {', '.join(FAST_PATHS)}")
        env.update(FAST_PATHS[name])
    if "haproxy" in names:
        env["RAY_SERVE_HAPROXY_NBTHREAD"] = str(max(1, min(HAPROXY_MAX_THREADS, cpus or os.cpu_count() or 1)))
    return env


def jobs_capacity(cfg: "ServiceConfig") -> int:
    """max_jobs' auto: the requests the model replicas hold at once (max_replicas x max_ongoing_requests)."""
    return max(cfg.min_replicas, cfg.max_replicas) * (cfg.max_ongoing_requests or 2 * cfg.max_batch_size)


@dataclass
class ServiceConfig:
    """Everything an operator may tune; ``None`` means auto, resolved by :meth:`from_args`."""

    store: str = opt("", "model store: a folder or s3://BUCKET/PREFIX ('' = $TRANSLATE_STORE on the replicas, "
                     "else ./models)")
    max_upload_bytes: int = opt(256 * 2**20, "largest request body of a translation, in bytes (an 8192 x 8192 "
                                              "PNG photo is about 150 MB; the body is held in memory)")
    max_zip_bytes: int = opt(200 * 2**20, "largest retraining upload, in bytes (the zip is held in memory)")
    max_pixels: int = opt(8192 * 8192, "largest upload in pixels; larger ones are refused from their header, "
                                       "before decoding")
    tile_threshold: int = opt(2048 * 2048, "images with more pixels are translated tile by tile, in bounded memory "
                                           "(translate.tiling, as `translate predict` does)")
    async_pixels: int | None = opt(None, "uploads with more pixels become a job (202 and a job URL) unless the "
                                         "request says async=false (auto: tile_threshold)")
    max_jobs: int | None = opt(None, "translation jobs queued or running at once, over every ingress replica; "
                                     "beyond it 503 with Retry-After. Finished jobs do not count (see "
                                     "jobs_disk_budget_mb) (auto: max_replicas x max_ongoing_requests, what the "
                                     "model replicas hold at once)")
    job_ttl_s: float = opt(900.0, "seconds a finished job and its result are kept at most")
    jobs_disk_budget_mb: int = opt(2048, "megabytes of finished jobs' results kept in jobs_dir; beyond it the "
                                         "least recently fetched results are removed first, then the oldest "
                                         "never fetched")
    job_workers: int = opt(1, "jobs one ingress replica runs at once (each holds its image; the rest queue)")
    jobs_dir: str = opt("", "folder or s3://BUCKET/PREFIX of the jobs' state and results ('' = a new temporary "
                            "folder; with ingress replicas on several nodes, object storage or a shared file "
                            "system)")
    request_timeout_s: float = opt(60.0, "seconds the ingress waits for the model before it answers 504")
    max_batch_size: int = opt(8, "largest batch of requests per model call")
    batch_wait_timeout_s: float = opt(0.01, "seconds a batch waits to fill before it runs")
    max_ongoing_requests: int | None = opt(None, "requests a model replica holds at once (auto: 2 x max_batch_size, "
                                                 "so one batch fills while another runs; Serve's default of 5 would "
                                                 "cap every batch at 5)")
    max_queued_requests: int = opt(64, "requests queued per model deployment; beyond it 503 with Retry-After")
    ingress_max_ongoing_requests: int = opt(256, "requests the ingress replica holds at once")
    ingress_max_queued_requests: int = opt(512, "requests queued for the ingress; beyond it 503 with Retry-After")
    min_replicas: int = opt(1, "autoscaling floor of model replicas")
    max_replicas: int = opt(2, "autoscaling limit of model replicas")
    num_cpus: float = opt(1.0, "CPUs reserved per model replica")
    num_gpus: float = opt(0.0, "GPUs per model replica (ONNX Runtime uses CUDA when a GPU is there); a fraction "
                               "below 1 puts several replicas on one GPU (0.25: four), each with its own num_cpus "
                               "and its share of the GPU's memory (gpu_mem_limit)")
    gpu_mem_limit: int | None = opt(None, "bytes of GPU memory ONNX Runtime may take per model replica (auto: the "
                                          "GPU's memory x num_gpus when num_gpus is a fraction, else no limit; Ray "
                                          "does not keep replicas sharing a GPU out of each other's memory)")
    prefer_nhwc: bool = opt(False, "ONNX Runtime's CUDA provider runs convolutions in NHWC (tensor cores' layout; "
                                   "see benchmarks/gpu_check.py)")
    gpu_decode: bool = opt(False, "decode JPEG uploads on the model replica's GPU (torchvision's nvJPEG) where one is "
                                  "and torchvision is installed, else on the CPU as always")
    ingress_num_cpus: float = opt(0.25, "CPUs reserved for the ingress replica")
    threads: int | None = opt(None, "the engine's intra-op threads per model replica (auto: its default, one per "
                                    "core); 1 can serve small models faster on a small machine, see BENCHMARKS.md")
    engine: str = opt("auto", "what runs the models in a model replica: onnxruntime, or openvino (CPU only; pip "
                              "install openvino on every node); auto, by each replica's CPU: openvino in bf16 where the CPU "
                              "has bf16 instructions and openvino is installed (measured 1.4-2.2x ONNX Runtime's "
                              "speed within a grey level, BENCHMARKS.md), onnxruntime elsewhere", choices=ENGINES)
    colocate: bool = opt(False, "run the models in the ingress replicas: one deployment, no model replicas and no "
                                "call between replicas (on 2 cores: 8.7 instead of 16 ms of CPU per request beyond "
                                "the model, 2.1x the requests/s at concurrency 32; BENCHMARKS.md, 'Colocated'). Each "
                                "ingress replica then takes num_cpus and num_gpus on top of ingress_num_cpus and "
                                "scales from min_replicas to max_replicas. What it trades: a replica that dies takes "
                                "its requests in flight and the translation jobs it runs with it (split, a model "
                                "replica's death is a 503 and a retry), and models are not routed to the replicas that hold them "
                                "(each loads what it is asked for)")
    access_log: bool = opt(False, "Serve's per-request access log lines in the replicas' and proxy's logs (off: "
                                  "they cost about 5 ms of CPU per request on 2 cores, an eighth of the total, "
                                  "see BENCHMARKS.md; errors are logged either way)")

    @classmethod
    def from_args(cls, args: dict[str, Any] | None = None, **kw) -> "ServiceConfig":
        """From strings (serve config ``args``) or typed values; unknown keys or bad values are a ConfigError.

        The one place the autos are resolved and the store root made absolute (replicas may run elsewhere).
        """
        cfg = cls(**coerce(cls, {**(args or {}), **kw}, ConfigError))
        cfg.store = ModelStore(cfg.store or None).url  # an absolute folder or a URL: replicas may run elsewhere
        if cfg.max_batch_size < 1:
            raise ConfigError("max_batch_size", "must be at least 1")
        if not cfg.max_ongoing_requests:  # 0 meant auto before it was None
            cfg.max_ongoing_requests = 2 * cfg.max_batch_size
        if cfg.async_pixels is None:
            cfg.async_pixels = cfg.tile_threshold
        if cfg.max_jobs is None:
            cfg.max_jobs = jobs_capacity(cfg)
        if is_url(cfg.jobs_dir):
            split_url(cfg.jobs_dir, "jobs_dir")  # no credentials, query or empty bucket in it
        check_replica_resources(cfg.num_cpus, cfg.num_gpus, cfg.gpu_mem_limit)
        for name in ("max_pixels", "tile_threshold", "max_jobs", "job_workers", "jobs_disk_budget_mb"):
            if getattr(cfg, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(cfg, name)}")
        if cfg.engine == "openvino" and cfg.num_gpus:
            raise ConfigError("engine", "openvino runs on the CPU: num_gpus 0 with it, or engine onnxruntime for GPUs")
        choose(cfg.engine, device="cpu")  # a ConfigError when openvino is asked for and not installed
        if cfg.max_ongoing_requests < cfg.max_batch_size:
            raise ConfigError("max_ongoing_requests", f"must be at least max_batch_size ({cfg.max_batch_size}) "
                                                      "or batches never fill")
        return cfg


def check_replica_resources(num_cpus: float, num_gpus: float, gpu_mem_limit: int | None) -> None:
    """A ConfigError naming the field of a model replica's resources Ray or ONNX Runtime would refuse: GPUs are
    a fraction below 1 (replicas sharing a GPU) or whole GPUs, and a memory limit is for a replica with a GPU."""
    if num_cpus < 0:
        raise ConfigError("num_cpus", f"must be at least 0, got {num_cpus}")
    if num_gpus < 0 or (num_gpus > 1 and num_gpus != int(num_gpus)):
        raise ConfigError("num_gpus", f"must be 0, a fraction below 1 (several replicas on one GPU) or a whole "
                                      f"number of GPUs, got {num_gpus}")
    if gpu_mem_limit is not None:
        if gpu_mem_limit < 1:
            raise ConfigError("gpu_mem_limit", f"must be a number of bytes >= 1, got {gpu_mem_limit}")
        if not num_gpus:
            raise ConfigError("gpu_mem_limit", "limits a GPU replica's memory: set num_gpus above 0 too")
