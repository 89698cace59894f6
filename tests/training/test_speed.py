"""How a run uses the machine (training/speed.py): bf16 autocast where the CPU computes bf16 in
hardware, with a loss curve within a stated tolerance of float32's; the model exported in float32
whatever the run's precision; channels-last memory per architecture; torch.compile in place."""
import json

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import tiny_pix2pix_config
from tests.training.toy_trainer import Toy, ToyConfig
from training import speed
from training.cyclegan import CycleGAN, CycleGANConfig
from training.loop import Trainer
from training.pix2pix import Pix2Pix, Pix2PixConfig
from translate.datasets import make_pair
from translate.imageio import image_to_tensor

CPU = torch.device("cpu")


def test_amp_auto_follows_the_device_and_the_method(monkeypatch):
    for native in (True, False):
        monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda native=native: native)  # bound: outlives the loop
        assert speed.resolve_amp(None, CPU, cpu=True) is native  # measured methods: where the CPU has bf16
        assert speed.resolve_amp(None, CPU, cpu=False) is False  # the others: float32 on every CPU
        assert speed.resolve_amp(None, torch.device("cuda")) is True
        for given in (True, False):  # a flag overrides the detection
            assert speed.resolve_amp(given, CPU) is given


def test_native_bf16_is_read_from_the_cpu():
    try:
        flags = next(ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith("flags"))
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags here")
    assert speed.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))


def test_config_json_records_what_the_run_used(tiny_pairs, tmp_path):
    run = Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "p", steps=2)).fit()
    used = json.loads((run / "config.json").read_text())
    assert used["amp"] is speed.cpu_has_native_bf16() and used["channels_last"] is False and used["compile"] is False
    # a method not measured in bf16 on CPU (the toy, like the GAN family) stays float32 there
    toy = Trainer(Toy, ToyConfig(data=str(tiny_pairs), out=str(tmp_path / "t"), steps=1, workers=0, progress=False,
                                 export=False))
    assert toy.config.amp is False and toy.method.autocast().__class__.__name__ == "nullcontext"
    forced = Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "f", amp=False))
    assert forced.config.amp is False


def test_channels_last_is_chosen_per_device_and_architecture():
    cuda = torch.device("cuda")
    assert Pix2PixConfig().channels_last is None  # auto until the device is known
    assert speed.resolve_channels_last(None, "unet_256", cuda) is True
    assert speed.resolve_channels_last(None, "resnet_9blocks", cuda) is False  # instance norm, reflection padding
    assert speed.resolve_channels_last(None, "unet_256", CPU) is False  # fused Adam over channels-last weights
    assert speed.resolve_channels_last(True, "resnet_9blocks", CPU) is True
    assert speed.resolve_channels_last(False, "unet_256", cuda) is False
    assert Pix2Pix(Pix2PixConfig(data="-", size=32, netG="unet_32", ngf=4, ndf=4), CPU).config.channels_last is False
    assert CycleGAN(CycleGANConfig(data="-", size=32, netG="resnet_2blocks", ngf=4, ndf=4, channels_last=True),
                    CPU).config.channels_last is True


def _curves(method: str, amp: bool, steps: int) -> dict[str, np.ndarray]:
    """Losses per step of a tiny run on the built-in maps photos, the same batches for every run."""
    torch.manual_seed(0)
    size = 32
    if method == "pix2pix":
        m = Pix2Pix(Pix2PixConfig(data="-", size=size, netG="unet_32", ngf=8, ndf=8, batch_size=4, amp=amp), CPU)
    else:
        m = CycleGAN(CycleGANConfig(data="-", size=size, netG="resnet_2blocks", ngf=4, ndf=8, batch_size=2, amp=amp),
                     CPU)
    pairs = [make_pair("maps", i, size=size) for i in range(24)]
    A = torch.stack([image_to_tensor(a) for a, _ in pairs])
    B = torch.stack([image_to_tensor(b) for _, b in pairs])
    g = torch.Generator().manual_seed(1)
    rows = []
    for s in range(steps):
        idx = torch.randint(0, len(pairs), (m.config.batch_size,), generator=g)
        m.steps_done = s
        rows.append(m.step({"A": A[idx], "B": B[idx]}))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


#: how far bf16's loss curve may stray from float32's, compared fifth by fifth of the run (window means):
#: relative for the reconstruction losses and G's adversarial loss, absolute for D's, which fall towards 0
#: and swing as G and D trade places. Measured here: reconstruction <= 1.5 %, G adversarial <= 6.3 %, D <= 0.072.
RELATIVE = {"G_L1": 0.05, "cycle_A": 0.05, "cycle_B": 0.05, "idt_A": 0.05, "idt_B": 0.05,
            "G_GAN": 0.15, "G_A": 0.15, "G_B": 0.15}
ABSOLUTE = {"D_real": 0.15, "D_fake": 0.15, "D_A": 0.15, "D_B": 0.15}


@pytest.fixture
def one_thread():
    """Tiny networks: a second thread only waits for the first (and much longer on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method,steps", [("pix2pix", 200), ("cyclegan", 100)])
def test_bf16_loss_curve_stays_within_tolerance_of_float32(method, steps, one_thread):
    fp32, bf16 = _curves(method, False, steps), _curves(method, True, steps)
    assert set(fp32) == set(bf16) <= set(RELATIVE) | set(ABSOLUTE)
    for k in fp32:
        a, b = fp32[k].reshape(5, -1).mean(1), bf16[k].reshape(5, -1).mean(1)
        off = np.abs(a - b) / (np.abs(a) if k in RELATIVE else 1.0)
        assert off.max() <= RELATIVE.get(k, ABSOLUTE.get(k)), (k, a, b)
    # and it learned: the reconstruction loss fell by a third or more in both precisions
    key = "G_L1" if method == "pix2pix" else "cycle_B"
    for curve in (fp32, bf16):
        assert curve[key][-steps // 5:].mean() < 0.67 * curve[key][:steps // 5].mean()


def test_a_bf16_run_exports_a_float32_model(tiny_pairs, tmp_path):
    run = Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "r", steps=4, amp=True, export=True)).fit()
    model = onnx.load(run / "model.onnx")
    float_types = {onnx.TensorProto.FLOAT}
    assert {t.data_type for t in model.graph.initializer} <= float_types | {onnx.TensorProto.INT64}
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # and it computes what the float32 PyTorch generator of the checkpoint computes (the export's own check)
    from translate.export import export_model

    assert export_model(run, tmp_path / "again.onnx") < 1e-4


def test_compile_keeps_checkpoints_and_leaves_test_time_copies_eager(tiny_pairs, tmp_path):
    t = Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "c", amp=False))
    keys = {k: list(n.state_dict()) for k, n in t.method.networks.items()}
    t.method.compile(backend="eager")  # tracing only: quick, and what --compile changes about the modules
    assert all(n._compiled_call_impl is not None for n in t.method.networks.values())
    assert {k: list(n.state_dict()) for k, n in t.method.networks.items()} == keys  # checkpoints unchanged
    batch = torch.utils.data.default_collate([t.train_set[(i, i)] for i in range(4)])
    assert np.isfinite(list(t.method.step(batch).values())).all()
    G = t.method.eval_generators()["AtoB"]
    assert all(m._compiled_call_impl is None for m in G.modules())


def test_the_compile_flag_compiles_the_networks(tiny_pairs, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("training.method_base.compile_networks", lambda nets, device=None, **kw: seen.append(sorted(nets)))
    Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "on", compile=True))
    Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "off"))
    assert seen == [["D", "G"]]


def _method(method: str, **kw):
    torch.manual_seed(0)
    if method == "pix2pix":
        return Pix2Pix(Pix2PixConfig(data="-", size=32, netG="unet_32", ngf=8, ndf=8, batch_size=2, amp=False, **kw),
                       CPU)
    return CycleGAN(CycleGANConfig(data="-", size=32, netG="resnet_2blocks", ngf=4, ndf=8, batch_size=2, amp=False,
                                   **kw), CPU)


@pytest.mark.parametrize("method", ["pix2pix", "cyclegan"])
def test_channels_last_computes_what_contiguous_memory_does(method, one_thread):
    nchw, cl = _method(method, channels_last=False), _method(method, channels_last=True)
    assert next(cl.networks["G" if method == "pix2pix" else "G_A"].parameters()).is_contiguous(
        memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(3)
    batches = [{"A": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, "B": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1}
               for _ in range(3)]
    for k, net in nchw.networks.items():  # the same weights, the same outputs (to float32 rounding)
        if k.startswith("D"):
            continue  # the steps below run the discriminators
        x = batches[0]["A"]
        with torch.no_grad():
            a, b = net.eval()(x), cl.networks[k].eval()(x.contiguous(memory_format=torch.channels_last))
        net.train(), cl.networks[k].train()
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (k, float((a - b).abs().max()))
    for i, batch in enumerate(batches):  # and training steps: the same losses
        la, lb = nchw.step(dict(batch)), cl.step(dict(batch))
        for k in la:
            assert la[k] == pytest.approx(lb[k], rel=1e-4, abs=1e-5), (i, k, la[k], lb[k])


def test_speed_flags_are_typed_and_validated_with_the_field_named(tiny_pairs, tmp_path, monkeypatch, caplog):
    from translate.errors import ConfigError
    from translate.options import coerce

    for field_, bad in (("amp", "maybe"), ("compile", "2"), ("channels_last", "sometimes")):
        with pytest.raises(ConfigError, match=field_):
            coerce(Pix2PixConfig, {field_: bad}, ConfigError)
    assert coerce(Pix2PixConfig, {"amp": "auto", "channels_last": "auto", "compile": "yes"}, ConfigError) == \
        {"amp": None, "channels_last": None, "compile": True}
    # --compile where torch cannot compile: said before the run starts, naming what is missing
    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="compile.*C\\+\\+ compiler|compile.*compiler"):
        Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "c", compile=True))
    assert not (tmp_path / "c").exists()
    # bf16 asked for on a CPU that would emulate it: allowed, with a warning that says so
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING"):
        assert speed.resolve_amp(True, CPU) is True
    assert "emulated" in caplog.text and "--no-amp" in caplog.text


def test_the_train_command_shows_the_speed_flags(capsys):
    from translate_cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "pix2pix", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--amp, --no-amp", "--compile, --no-compile", "--channels-last, --no-channels-last"):
        assert flag in text
    args = build_parser().parse_args(["train", "cyclegan", "--data", "x", "--no-amp", "--channels-last"])
    assert (args.amp, args.channels_last, args.compile) == (False, True, None)


def test_onnx_runtime_options_are_validated_and_reach_the_session():
    from translate.errors import ConfigError
    from translate.predictor import RuntimeOptions

    with pytest.raises(ConfigError, match="graph_optimization.*all"):
        RuntimeOptions(graph_optimization="fastest")
    with pytest.raises(ConfigError, match="threads"):
        RuntimeOptions(threads=-1)
    import onnxruntime as ort

    so = RuntimeOptions(threads=1, graph_optimization="extended", spinning=False, memory_arena=False).session_options()
    assert so.intra_op_num_threads == 1 and not so.enable_cpu_mem_arena
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
