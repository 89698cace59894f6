"""The translation service's app builder: the two deployments bound into one Serve application.

``build_app`` returns the application (``ModelServer`` from :mod:`serving.model_server` bound into the
``Ingress`` of :mod:`serving.ingress`; with ``colocate``, the ingress alone, running the models itself), with the settings of :class:`~serving.config.ServiceConfig`
applied to each deployment here (``deployment_options``) and to Serve's HTTP proxy (``http_options``);
``app_builder`` is the same for ``serve deploy`` / ``serve run`` configs, which name it as
``serving.app:app_builder`` (see serve_config.yaml). :mod:`serving.local_service` runs it on an
embedded local Ray (``translate serve``).
"""
import os
from dataclasses import asdict
from typing import Any, cast

from ray.serve import Deployment

from serving.config import ServiceConfig
from serving.ingress import Ingress
from serving.model_server import ModelServer
from serving.translation_jobs import default_jobs_dir


def deployment_options(cfg: ServiceConfig, shutdown_wait_s: float | None = None) -> dict[str, dict[str, Any]]:
    """The Serve settings of each deployment, by name, for ``cfg`` (resolved by ``ServiceConfig.from_args``):
    the one place config fields become deployment options. With ``colocate`` there is one deployment, the ingress,
    with the model replicas' CPUs and GPUs on top of its own and their autoscaling. A serve config's ``deployments`` override them.
    ``shutdown_wait_s``: how often a stopping replica looks whether its requests are done (Serve's default,
    2 s, when None: routers elsewhere in a cluster need that long to hear of it)."""
    logging_config = {"enable_access_log": cfg.access_log}
    stopping = {} if shutdown_wait_s is None else {"graceful_shutdown_wait_loop_s": shutdown_wait_s}
    scaling = {"min_replicas": cfg.min_replicas, "max_replicas": max(cfg.min_replicas, cfg.max_replicas),
               "target_ongoing_requests": cfg.max_batch_size}
    ingress = dict(max_ongoing_requests=cfg.ingress_max_ongoing_requests,
                   max_queued_requests=cfg.ingress_max_queued_requests,
                   ray_actor_options={"num_cpus": cfg.ingress_num_cpus}, logging_config=logging_config, **stopping)
    if cfg.colocate:  # the ingress replicas run the models: the model replicas' resources and scaling are theirs
        ingress["ray_actor_options"] = {"num_cpus": cfg.ingress_num_cpus + cfg.num_cpus, "num_gpus": cfg.num_gpus}
        return {"Ingress": {**ingress, "autoscaling_config": scaling}}
    return {
        "ModelServer": dict(
            max_ongoing_requests=cfg.max_ongoing_requests, max_queued_requests=cfg.max_queued_requests,
            ray_actor_options={"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus}, autoscaling_config=scaling,
            logging_config=logging_config, **stopping),
        "Ingress": ingress,
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
    # @serve.deployment made each class a Deployment; mypy keeps a decorated class's own type
    model = None if cfg.colocate else cast(Deployment, ModelServer).options(**deployments["ModelServer"]).bind(asdict(cfg))
    return cast(Deployment, Ingress).options(**deployments["Ingress"]).bind(model, asdict(cfg))


def app_builder(args: dict[str, str]):
    """Entry point for ``serve deploy`` / ``serve run serving.app:app_builder store=...`` (args are strings)."""
    options: dict[str, Any] = dict(args or {})  # strings, typed by ServiceConfig.from_args
    return build_app(**options)
