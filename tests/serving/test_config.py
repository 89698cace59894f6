"""One way from a config to settings: ServiceConfig -> `translate serve` flags, build_app's deployment
options and serve_config.yaml; ConvertOptions and RetrainOptions -> their commands' flags. No Ray is started."""
import dataclasses
import time
from pathlib import Path

import pytest
import yaml

from serving.config import ServiceConfig
from translate.errors import ConfigError
from translate_cli.main import main

SERVE_CONFIG = Path(__file__).parents[2] / "serving" / "serve_config.yaml"
# http_options that are not ServiceConfig's: a cluster listens on every interface, `translate serve` on --host
INTENDED_HTTP_DIFFERENCES = {"host": "a cluster's proxies listen on every interface", "port": "from the command line"}


def test_every_service_option_has_help_and_auto_is_resolved_in_from_args(tmp_path):
    for f in dataclasses.fields(ServiceConfig):
        assert f.metadata.get("help"), f"{f.name} has no help text"
    cfg = ServiceConfig.from_args({}, store=str(tmp_path), max_batch_size=4)
    assert cfg.max_ongoing_requests == 8 and cfg.threads is None and cfg.store == str(tmp_path.resolve())
    assert ServiceConfig.from_args({"max_ongoing_requests": "0"}).max_ongoing_requests == 16  # 0 meant auto
    typed = ServiceConfig.from_args({"num_cpus": "0.5", "access_log": "false", "threads": "auto", "max_replicas": "3"})
    assert (typed.num_cpus, typed.access_log, typed.threads, typed.max_replicas) == (0.5, False, None, 3)
    with pytest.raises(ConfigError, match="max_ongoing_requests"):
        ServiceConfig.from_args({}, max_batch_size=8, max_ongoing_requests=4)
    with pytest.raises(ConfigError, match="max_batch_size"):
        ServiceConfig.from_args({}, max_batch_size=0)
    with pytest.raises(ConfigError, match="replicas: unknown option"):
        ServiceConfig.from_args({"replicas": "2"})
    with pytest.raises(ConfigError, match="num_cpus: 'many' is not a valid float"):
        ServiceConfig.from_args({"num_cpus": "many"})


def test_serve_config_yaml_agrees_with_the_service_config():
    from serving import app

    application = yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]
    args = application["args"]
    names = {f.name for f in dataclasses.fields(ServiceConfig)}
    assert set(args) <= names, f"not ServiceConfig fields: {set(args) - names}"
    cfg = ServiceConfig.from_args(args)  # every value parses
    # Serve lets a `deployments:` block override what build_app derives from the args: each setting in one place
    assert "deployments" not in application, "serve_config.yaml repeats deployment options: set them under args"
    model = app.deployment_options(cfg)["ModelServer"]
    assert model["ray_actor_options"] == {"num_cpus": args["num_cpus"], "num_gpus": args["num_gpus"]}
    http = yaml.safe_load(SERVE_CONFIG.read_text())["http_options"]
    expected = app.http_options(cfg, http["host"], http["port"])
    for key, value in http.items():
        if key not in INTENDED_HTTP_DIFFERENCES:
            assert value == expected[key], f"http_options.{key}: {value} in the YAML, {expected[key]} from the args"


def test_build_app_applies_the_config_and_the_decorators_hold_none_of_it(tmp_path):
    from serving import app

    application = app.build_app(tmp_path, max_replicas=3, num_cpus=0.5, num_gpus=0.25, max_batch_size=4,
                                 max_queued_requests=7, ingress_num_cpus=0.75, access_log=False)
    ingress = application._bound_deployment
    model = ingress.init_args[0]._bound_deployment
    assert (model.name, ingress.name) == ("ModelServer", "Ingress")
    assert model.ray_actor_options == {"num_cpus": 0.5, "num_gpus": 0.25} and ingress.ray_actor_options == {
        "num_cpus": 0.75}
    assert (model.max_ongoing_requests, model.max_queued_requests) == (8, 7)
    scaling = model._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_ongoing_requests) == (1, 3, 4)
    assert not model.logging_config["enable_access_log"] and not ingress.logging_config["enable_access_log"]
    applied = app.deployment_options(ServiceConfig.from_args({}))
    for decorated in (app.ModelServer, app.Ingress):
        in_decorator = decorated._deployment_config.user_configured_option_names
        assert not in_decorator & set(applied[decorated.name]), f"{decorated.name}'s decorator sets config fields"


def test_colocate_builds_one_deployment_with_the_model_replicas_resources_and_scaling(tmp_path, capsys):
    from serving import app, local_service

    application = app.build_app(tmp_path, colocate=True, min_replicas=2, max_replicas=3, num_cpus=0.5, num_gpus=0.25,
                                max_batch_size=4, ingress_num_cpus=0.25)
    ingress = application._bound_deployment
    assert ingress.name == "Ingress" and ingress.init_args[0] is None  # no model deployment bound into it
    assert ingress.ray_actor_options == {"num_cpus": 0.75, "num_gpus": 0.25}
    scaling = ingress._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_ongoing_requests) == (2, 3, 4)
    assert set(app.deployment_options(ServiceConfig.from_args({"colocate": "true"}))) == {"Ingress"}
    # on 2 CPUs: replicas of 1 + 0.25 CPUs, each with its ingress; split, the ingress's 0.25 once beside 1-CPU replicas
    colocated = local_service.fit_replicas(ServiceConfig.from_args({"colocate": "true", "max_replicas": 4}), 2.0)
    split = local_service.fit_replicas(ServiceConfig.from_args({"max_replicas": 4, "num_cpus": 0.5}), 2.0)
    assert (colocated.max_replicas, split.max_replicas) == (1, 3)
    assert "with the ingress in each" in capsys.readouterr().out


def test_serve_flags_reach_the_deployments(tmp_path, monkeypatch, capsys):
    """`translate serve --num-cpus 0.5` is CPUs per model replica (it used to size the local Ray instead)."""
    import ray

    from serving import local_service

    seen = {}
    real_sleep = time.sleep

    def sleep(seconds):
        if seconds >= 3600:  # serve_until_interrupted staying up: stop it as Ctrl-C does
            raise KeyboardInterrupt
        real_sleep(seconds)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    monkeypatch.setattr(local_service, "init_local_ray",
                        lambda num_cpus=None, fast_paths=(): seen.update(ray_cpus=num_cpus, fast_paths=fast_paths))
    monkeypatch.setattr(local_service.serve, "start", lambda **kw: seen.setdefault("http", kw["http_options"]))
    monkeypatch.setattr(local_service.serve, "run", lambda application, **kw: seen.setdefault("app", application))
    monkeypatch.setattr(local_service, "stop_local", lambda: None)
    monkeypatch.setattr(time, "sleep", sleep)
    main(["serve", "--store", str(tmp_path), "--port", "8123", "--num-cpus", "0.5", "--num-gpus", "1",
          "--max-replicas", "3", "--max-batch-size", "4", "--threads", "1", "--max-upload-bytes", "1000",
          "--max-pixels", "4096", "--request-timeout-s", "9", "--no-access-log", "--fast-paths", "haproxy", "grpc",
          "--engine", "onnxruntime"])
    assert "Ctrl-C to stop" in capsys.readouterr().out
    assert seen["fast_paths"] == ("haproxy", "grpc")
    assert seen["ray_cpus"] is None and seen["http"] == {"host": "127.0.0.1", "port": 8123, "request_timeout_s": 14}
    ingress = seen["app"]._bound_deployment
    model = ingress.init_args[0]._bound_deployment
    assert model.ray_actor_options == {"num_cpus": 0.5, "num_gpus": 1.0}
    assert model._deployment_config.autoscaling_config.max_replicas == 3 and model.max_ongoing_requests == 8
    cfg = ServiceConfig(**ingress.init_args[1])
    assert (cfg.threads, cfg.max_upload_bytes, cfg.max_pixels, cfg.access_log, cfg.engine) == (
        1, 1000, 4096, False, "onnxruntime")
    assert cfg.store == str(tmp_path.resolve())


def test_convert_flags_come_from_convert_options(tmp_path, monkeypatch, capsys):
    from serving import convert as convert_module
    from translate.raster import RasterOptions

    calls = []

    def fake_convert(model, in_dir, out_dir, **kw):
        calls.append(kw)
        return convert_module.ConvertSummary(str(model), str(in_dir), str(out_dir), kw["fmt"])

    monkeypatch.setattr(convert_module, "convert", fake_convert)
    main(["convert", "m.onnx", str(tmp_path), str(tmp_path / "out")])
    main(["convert", "m.onnx", str(tmp_path), str(tmp_path / "out"), "--workers", "3", "--format", "jpg",
          "--device", "cpu", "--engine", "openvino", "--direction", "BtoA", "--quiet", "--store", "s3://bucket/models",
          "--bands", "4,3,2", "--stretch", "1,99", "--compress", "zstd", "--cog", "--samples", "3", "--seed", "7"])
    assert calls == [convert_module.ConvertOptions().kwargs(),
                     dict(workers=3, fmt="jpg", device="cpu", engine="openvino", direction="BtoA", progress=False,
                          store="s3://bucket/models",
                          raster=RasterOptions(bands="4,3,2", stretch="1,99", compress="zstd", cog=True),
                          samples=3, seed=7)]
    assert calls[0] == dict(workers=2, fmt="png", device="auto", engine="auto", direction=None, progress=True,
                            store=None, raster=RasterOptions(), samples=1, seed=0)
    assert "wrote 0 images" in capsys.readouterr().out


def test_retrain_flags_come_from_retrain_options(tmp_path, monkeypatch, capsys):
    from serving.retraining import jobs
    from serving.retraining.promotion import DEFAULT_STEPS

    calls = []

    def fake_run_retrain(store, name, data, **kw):
        calls.append((name, data, kw))
        return {"id": "0123456789ab", "outcome": {"promoted": True}}

    monkeypatch.setattr(jobs, "run_retrain", fake_run_retrain)
    main(["retrain", "maps", "--data", str(tmp_path), "--store", str(tmp_path)])
    main(["retrain", "maps", "--data", str(tmp_path), "--store", str(tmp_path), "--steps", "30", "--quiet"])
    assert calls == [("maps", str(tmp_path), {"steps": DEFAULT_STEPS, "progress": True}),
                     ("maps", str(tmp_path), {"steps": 30, "progress": False})]
    assert '"promoted": true' in capsys.readouterr().out


def test_fast_paths_are_the_environment_serve_reads():
    from serving.config import fast_path_env

    assert fast_path_env(()) == {}
    assert fast_path_env(("throughput", "haproxy", "grpc"), cpus=2) == {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_NBTHREAD": "2",
        "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}
    assert fast_path_env(("haproxy",), cpus=64)["RAY_SERVE_HAPROXY_NBTHREAD"] == "4"
    assert fast_path_env(("oneloop",)) == {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                                           "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}
    with pytest.raises(ConfigError, match="fast_paths: unknown fast path 'turbo'"):
        fast_path_env(("turbo",))


def test_serve_runs_the_measured_fast_paths_unless_told_otherwise():
    from serving.config import DEFAULT_FAST_PATHS
    from translate_cli.main import build_parser

    parser = build_parser("serve")
    assert DEFAULT_FAST_PATHS == ("haproxy",)  # BENCHMARKS.md, "Ray Serve's fast paths"
    assert parser.parse_args(["serve"]).fast_paths == ["haproxy"]
    assert parser.parse_args(["serve", "--fast-paths"]).fast_paths == []  # Serve's own defaults
    assert parser.parse_args(["serve", "--fast-paths", "grpc"]).fast_paths == ["grpc"]
