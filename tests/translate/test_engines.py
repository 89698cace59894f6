"""The predictor's engines (translate/engines.py): OpenVINO gives ONNX Runtime's pixels (within a grey level) on
every path of the predictor, `auto` chooses by the CPU's flags, and a missing package is one line naming the flag."""
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from tests.serving.conftest import tiny_multimodal_onnx, tiny_onnx
from translate import engines
from translate.errors import ConfigError
from translate.predictor import Predictor, RuntimeOptions
from translate.tiling import TileConfig
from translate_cli.main import main

BF16_CPU = {"avx2", "avx512f", "avx512_bf16"}
AVX2_CPU = {"avx2", "fma"}

#: the tests that run OpenVINO itself; pyproject's dev extra (what `make test` installs) has it
needs_openvino = pytest.mark.skipif(not engines.openvino_installed(),
                                    reason="openvino is not installed (pip install openvino, or the dev extra that "
                                           "`make test` installs)")


@pytest.fixture(scope="module")
def unet():
    return tiny_onnx("unet_32", batch_stats=True)  # per-image statistics: tiled in several passes


@pytest.fixture(scope="module")
def resnet():
    """A small ResNet with instance norm: tiled, its statistics are measured exactly, a pass per layer."""
    import torch

    from translate.export import export_generator
    from translate.networks import define_G, to_inference

    torch.manual_seed(0)
    arch = dict(name="resnet_2blocks", ngf=8, norm="instance")
    return export_generator(to_inference(define_G(**arch), batch_stats=False), {"arch": arch, "batch_stats": False},
                            check=False)[0]


def openvino_predictor(model, **kw):
    return Predictor(model, device="cpu", runtime=RuntimeOptions(engine="openvino", precision="fp32"), **kw)


def grey_levels_off(a, b):
    """Mean and worst difference in grey levels between two lists of images (each pair of one shape)."""
    d = np.concatenate([np.abs(x.astype(int) - y.astype(int)).ravel() for x, y in zip(a, b, strict=True)])
    return d.mean(), d.max()


def images():
    """Two images of one size (one batch) and one of another, neither a multiple of the networks' 32."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (45, 70, 3), dtype=np.uint8), rng.integers(0, 256, (45, 70, 3), dtype=np.uint8),
            rng.integers(0, 256, (33, 40, 3), dtype=np.uint8)]


@needs_openvino
@pytest.mark.parametrize("net", ["unet", "resnet"])
@pytest.mark.parametrize("threshold", [None, 0], ids=["whole", "tiled"])
def test_openvino_gives_onnxruntimes_pixels_padded_batched_and_tiled(net, threshold, request):
    model = request.getfixturevalue(net)
    # small tiles: several tiles and a pass per normalisation layer, whose sub-graphs' pixel counts OpenVINO
    # folds into one tensor of several names (each must still be found by its own)
    tiling = TileConfig(threshold=threshold, tile=32, overlap=16)
    ov = openvino_predictor(model, tiling=tiling)
    assert (ov.engine, ov.precision, ov.providers) == ("openvino", "fp32", ["OpenVINO CPU (fp32)"])
    ort = Predictor(model, device="cpu", tiling=tiling, runtime=RuntimeOptions(engine="onnxruntime"))
    assert ort.engine == "onnxruntime" and ort.providers == ["CPUExecutionProvider"]
    got, want = ov.translate_arrays(images()), ort.translate_arrays(images())
    assert [g.shape for g in got] == [w.shape for w in want] == [a.shape for a in images()]
    assert ov.last_tiling["mode"] == ("tiled" if threshold == 0 else "whole")
    mean, worst = grey_levels_off(got, want)
    assert mean <= 1 and worst <= 2, (mean, worst)
    # the network's own numbers, before rounding to grey levels
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 40, 52)).astype(np.float32)
    np.testing.assert_allclose(ov.run(x), ort.run(x), atol=1e-3)


@needs_openvino
def test_openvino_reads_the_files_metadata_and_a_multimodal_models_codes():
    model = tiny_multimodal_onnx()
    ov, ort = openvino_predictor(model), Predictor(model, device="cpu", runtime=RuntimeOptions(engine="onnxruntime"))
    assert ov.metadata == ort.metadata and ov.latent_size == ort.latent_size == 4 and ov.size_multiple == 32
    codes = ov.latents(3, seed=5)
    a = images()[0]
    got, want = ov.translate_samples(a, codes), ort.translate_samples(a, codes)
    assert grey_levels_off(got, want)[1] <= 2
    assert grey_levels_off(got[:1], got[1:2])[0] > 5  # the codes reach the network: different answers
    # the inputs under the file's names: the tiled runner binds the code by its name (OpenVINO's first name
    # for it was the Cast's after it)
    assert [i.name for i in ov.session.get_inputs()] == [i.name for i in ort.session.get_inputs()]
    tiling = TileConfig(threshold=0, tile=32, overlap=16, statistics="exact")
    ov, ort = (Predictor(model, device="cpu", tiling=tiling, runtime=ov.runtime),
               Predictor(model, device="cpu", tiling=tiling, runtime=ort.runtime))
    got, want = ov.translate_array(a, z=codes[1]), ort.translate_array(a, z=codes[1])
    assert ov.last_tiling["mode"] == "tiled" and grey_levels_off([got], [want])[1] <= 2


@needs_openvino
def test_openvino_sessions_run_from_several_threads_at_once(unet):
    """The service runs batches in worker threads: each thread's answer is its own image's."""
    ov = openvino_predictor(unet)
    inputs = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(4)]
    alone = [ov(a) for a in inputs]
    together: dict[int, list] = {i: [] for i in range(4)}

    def work(i):
        for _ in range(5):
            together[i].append(ov(inputs[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        for y in together[i]:
            np.testing.assert_array_equal(y, alone[i])


def test_auto_chooses_openvino_only_on_a_cpu_with_bf16_and_openvino_installed(monkeypatch):
    """benchmarks/cpu_speed.py's figures (BENCHMARKS.md): OpenVINO bf16 faster within a grey level on bf16 CPUs."""
    monkeypatch.setattr(engines, "openvino_installed", lambda: True)
    assert engines.choose("auto", flags=AVX2_CPU) == ("onnxruntime", "fp32")
    assert engines.choose("auto", flags=BF16_CPU) == ("openvino", "bf16")
    assert engines.choose("auto", flags={"amx_bf16", "amx_tile"}) == ("openvino", "bf16")
    assert engines.choose("auto", "fp32", flags=BF16_CPU) == ("openvino", "fp32")
    assert engines.choose("auto", device="cuda", flags=BF16_CPU) == ("onnxruntime", "fp32")  # a GPU: ONNX Runtime's
    assert engines.choose("auto", device="auto", cuda=lambda: True, flags=BF16_CPU) == ("onnxruntime", "fp32")
    assert engines.choose("auto", device="auto", flags=BF16_CPU) == ("openvino", "bf16")  # no GPU: the CPU's
    assert engines.choose("onnxruntime", flags=BF16_CPU) == ("onnxruntime", "fp32")  # asked for: fp32 on any CPU
    assert engines.choose("openvino", flags=AVX2_CPU) == ("openvino", "fp32")  # asked for: fp32 here
    with pytest.raises(ConfigError, match="precision: bf16 needs a CPU with avx512_bf16 or amx_bf16"):
        engines.choose("openvino", "bf16", flags=AVX2_CPU)
    with pytest.raises(ConfigError, match="precision: bf16 runs on --engine openvino only"):
        engines.choose("onnxruntime", "bf16", flags=BF16_CPU)
    with pytest.raises(ConfigError, match="engine: openvino runs on the CPU"):
        engines.choose("openvino", device="cuda", flags=BF16_CPU)
    monkeypatch.setattr(engines, "openvino_installed", lambda: False)
    assert engines.choose("auto", flags=BF16_CPU) == ("onnxruntime", "fp32")


@needs_openvino
def test_the_predictor_takes_autos_choice_from_this_cpus_flags(unet, monkeypatch):
    monkeypatch.setattr(engines, "cpu_flags", lambda: BF16_CPU)
    p = Predictor(unet, device="cpu")
    assert (p.engine, p.precision, p.providers) == ("openvino", "bf16", ["OpenVINO CPU (bf16)"])
    assert Predictor(unet, providers=["CPUExecutionProvider"]).engine == "onnxruntime"  # ONNX Runtime's providers
    monkeypatch.setattr(engines, "cpu_flags", lambda: AVX2_CPU)
    assert Predictor(unet, device="cpu").engine == "onnxruntime"


def test_the_cpu_flags_are_read_from_proc_cpuinfo():
    try:
        line = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags"))
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags here")
    flags = set(line.split(":", 1)[1].split())
    assert engines.cpu_flags() == flags
    assert engines.cpu_has_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_openvino_missing_is_one_line_naming_the_flag_and_the_install(unet, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino fails, as where it is not installed
    with pytest.raises(ConfigError, match=r"engine: --engine openvino needs the openvino package.*pip install openvino"):
        Predictor(unet, runtime=RuntimeOptions(engine="openvino"))
    with pytest.raises(ConfigError, match="pip install openvino"):
        engines.OpenVinoSession(unet)
    monkeypatch.setattr(engines, "cpu_flags", lambda: BF16_CPU)
    assert Predictor(unet, device="cpu").engine == "onnxruntime"  # auto falls back to what is there
    model = tmp_path / "m.onnx"
    model.write_bytes(unet)
    image = tmp_path / "in.png"
    Image.fromarray(images()[0]).save(image)
    with pytest.raises(SystemExit) as e:
        main(["predict", str(model), str(image), "--out", str(tmp_path / "out"), "--engine", "openvino"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "--engine openvino" in err and "pip install openvino" in err


def test_convert_refuses_a_missing_openvino_before_ray_starts(unet, tmp_path, monkeypatch):
    import ray

    from serving.convert import convert

    monkeypatch.setitem(sys.modules, "openvino", None)
    (tmp_path / "in").mkdir()
    model = tmp_path / "m.onnx"
    model.write_bytes(unet)
    started = ray.is_initialized()
    with pytest.raises(ConfigError, match="--engine: --engine openvino needs the openvino package"):
        convert(model, tmp_path / "in", tmp_path / "out", engine="openvino", progress=False)
    assert ray.is_initialized() == started


@needs_openvino
def test_predict_runs_on_openvino_from_the_command_line(unet, tmp_path, monkeypatch):
    from translate import predictor

    made = []  # the OpenVINO sessions the predictor makes, with their precision

    class Spy(engines.OpenVinoSession):
        def __init__(self, model, threads=None, precision="fp32"):
            made.append((threads, precision))
            super().__init__(model, threads, precision)

    monkeypatch.setattr(predictor, "OpenVinoSession", Spy)
    model = tmp_path / "m.onnx"
    model.write_bytes(unet)
    Image.fromarray(images()[2]).save(tmp_path / "in.png")
    predict = ["predict", str(model), str(tmp_path / "in.png"), "--out"]
    main([*predict, str(tmp_path / "onnxruntime"), "--engine", "onnxruntime"])
    assert made == []
    main([*predict, str(tmp_path / "openvino"), "--engine", "openvino", "--precision", "fp32", "--threads", "1"])
    assert made == [(1, "fp32")]  # the flags reached the predictor's session
    ours, theirs = (np.asarray(Image.open(tmp_path / e / "in.png")) for e in ("openvino", "onnxruntime"))
    assert ours.shape == theirs.shape == images()[2].shape
    assert grey_levels_off([ours], [theirs])[1] <= 2


@needs_openvino
def test_convert_hands_its_engine_to_ray_and_its_actors_predictor(unet, tmp_path, monkeypatch):
    """convert's engine reaches the Ray run (CLI -> convert: tests/serving/test_config.py), and the actor's
    Translator builds its predictor on it; "auto" is resolved by the actor's own CPU."""
    import serving.convert as convert_module

    model = tmp_path / "m.onnx"
    model.write_bytes(unet)
    (tmp_path / "in").mkdir()
    Image.fromarray(images()[0]).save(tmp_path / "in" / "a.png")
    handed = []
    monkeypatch.setattr(convert_module, "_run_on_ray", lambda *a: handed.append(a[-1]))  # a[-1]: the engine
    for engine in ("auto", "openvino"):
        convert_module.convert(model, tmp_path / "in", tmp_path / engine, engine=engine, progress=False)
    assert handed == ["auto", "openvino"]
    for engine, flags, want in (("openvino", AVX2_CPU, "openvino"), ("onnxruntime", BF16_CPU, "onnxruntime"),
                                ("auto", BF16_CPU, "openvino"), ("auto", AVX2_CPU, "onnxruntime")):
        monkeypatch.setattr(engines, "cpu_flags", lambda flags=flags: flags)
        t = convert_module.Translator(unet, str(tmp_path / "in"), str(tmp_path / "out"), "png", "cpu", 1,
                                      engine=engine)
        assert t.predictor.engine == want, (engine, flags)


@needs_openvino
def test_serves_engine_reaches_the_model_replicas_predictor(unet, tmp_path, monkeypatch):
    from serving.config import ServiceConfig
    from serving.model_server import load_predictor

    model = tmp_path / "m.onnx"
    model.write_bytes(unet)
    monkeypatch.setattr(engines, "cpu_flags", lambda: AVX2_CPU)
    for engine, want in (("openvino", "openvino"), ("onnxruntime", "onnxruntime"), ("auto", "onnxruntime")):
        cfg = ServiceConfig.from_args({"store": str(tmp_path / "store"), "engine": engine, "threads": "1"})
        assert load_predictor(model, cfg).engine == want
    monkeypatch.setattr(engines, "cpu_flags", lambda: BF16_CPU)
    p = load_predictor(model, ServiceConfig.from_args({"store": str(tmp_path / "store")}))
    assert (p.engine, p.precision) == ("openvino", "bf16")  # auto, on a replica whose CPU has bf16
    with pytest.raises(ConfigError, match="openvino runs on the CPU"):
        ServiceConfig.from_args({"store": str(tmp_path / "store"), "engine": "openvino", "num_gpus": "1"})
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ConfigError, match="pip install openvino"):  # said when serve starts, not per request
        ServiceConfig.from_args({"store": str(tmp_path / "store"), "engine": "openvino"})
