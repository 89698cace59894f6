"""The service on this machine: ``translate serve`` and the tests start the app of :mod:`serving.app` on
an embedded local Ray (``start_local``: Serve's settings for a small, busy machine, the model replicas
fitted to its CPUs) and stop it with none of Ray's processes left behind (``stop_local``, through
training.local_ray); ``serve_until_interrupted`` is the command, up until Ctrl-C or SIGTERM.
"""
import logging
import os
import shutil
import time
from dataclasses import asdict

import ray
from ray import serve

from serving.app import build_app, http_options
from serving.config import DEFAULT_FAST_PATHS, ServiceConfig, fast_path_env, jobs_capacity
from serving.store import ModelStore
from serving.translation_jobs import default_jobs_dir
from training import local_ray

log = logging.getLogger(__name__)


# Serve's settings for a small, busy machine; read by Ray's processes, so set before Ray starts
LOCAL_SERVE_ENV = {
    # the HTTP proxy must answer its readiness check within this many seconds, three times, or it is killed and
    # start-up fails: Serve's 5 s was too short on 2 busy CPUs (seen with two training jobs running)
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
    # objects up to 1 MiB travel inline with the call instead of through the object store (Ray's limit is
    # 100 KB): a 256 px upload and its answer, so the raylet does no object-store work per request
    # (BENCHMARKS.md, "Service throughput")
    "RAY_max_direct_call_object_size": str(2**20),
    # with HAProxy (direct ingress) a stopping ingress replica keeps serving for at least this long, for load
    # balancers in front of it to let it go (Serve's 30 s). Here HAProxy is the only one and reloads within a second;
    # 30 s made serve.shutdown outlast stop_local's STOP_SERVE_S, so ray.shutdown ran while it was still inside
    # Ray, and the process crashed now and then (a segfault or an abort in the test suite, at the service's stop)
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}


def init_local_ray(num_cpus: int | None = None, fast_paths: tuple[str, ...] = DEFAULT_FAST_PATHS) -> None:
    """Start an embedded local Ray for the service (``LOCAL_SERVE_ENV`` set unless already set), with Ray Serve's
    ``fast_paths`` (serving.config.FAST_PATHS) in the environment its processes start with."""
    for k, v in LOCAL_SERVE_ENV.items():
        os.environ.setdefault(k, v)
    os.environ.update(fast_path_env(fast_paths, num_cpus))
    local_ray.init(address="local", num_cpus=num_cpus)


def fit_replicas(cfg: ServiceConfig, cpus: float) -> ServiceConfig:
    """``cfg`` with max_replicas lowered to what ``cpus`` can hold next to the ingress (never below
    min_replicas): a replica the autoscaler asks for but Ray cannot place stays pending and Serve
    warns about it every few seconds. Says so when it lowers it."""
    if cfg.num_cpus <= 0 or cpus <= 0:
        return cfg
    if cfg.colocate:  # the replicas are the ingress's, each with the ingress's CPUs too
        fits = max(cfg.min_replicas, int(cpus // (cfg.num_cpus + cfg.ingress_num_cpus)))
    else:
        fits = max(cfg.min_replicas, int((cpus - cfg.ingress_num_cpus) // cfg.num_cpus))
    if fits >= cfg.max_replicas:
        return cfg
    where = "with the ingress in each" if cfg.colocate else "next to the ingress"
    print(f"note: {cpus:g} CPUs hold at most {fits} model replica(s) of num_cpus {cfg.num_cpus:g} {where}; "
          f"max_replicas {cfg.max_replicas} -> {fits} (lower --num-cpus per replica to run more)")
    changed: dict = {"max_replicas": fits}
    if cfg.max_jobs == jobs_capacity(cfg):  # max_jobs auto (what the model replicas hold): follows the replicas
        changed["max_jobs"] = jobs_capacity(ServiceConfig(**{**asdict(cfg), **changed}))
    return ServiceConfig(**{**asdict(cfg), **changed})


_local_jobs_dirs: list[str] = []  # jobs folders start_local made (its temporary ones), removed by stop_local
STOP_SERVE_S = 5.0  # stop_local lets Serve finish requests in flight for this long, then stops Ray regardless
# a local app's replicas look every 0.2 s whether their requests are done when stopping: Serve's 2 s, which
# leaves routers elsewhere in a cluster time to hear of it, only slows serve.shutdown on one machine
LOCAL_SHUTDOWN_WAIT_S = 0.2


def start_local(store: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 8000, *,
                ray_cpus: int | None = None, name: str = "translate",
                fast_paths: tuple[str, ...] = DEFAULT_FAST_PATHS,
                **options) -> str:
    """Start an embedded local Ray (``ray_cpus`` CPUs; default all; Ray Serve's ``fast_paths`` on), Serve's HTTP
    proxy on host:port, and the app. ``options`` are ServiceConfig fields (``num_cpus`` is per model replica).
    Returns the URL. A Ray already running keeps the fast paths it was started with."""
    cfg = ServiceConfig.from_args(options, store=str(store or ""))
    if not cfg.jobs_dir:
        cfg.jobs_dir = default_jobs_dir()
        _local_jobs_dirs.append(cfg.jobs_dir)
    if not ray.is_initialized():
        init_local_ray(ray_cpus, fast_paths)
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
