"""CPU speed of the project against the reference implementation, side by side in one run.

    python -m benchmarks.cpu_speed --reference ../shared/reference/pytorch-CycleGAN-and-pix2pix \\
        [--threads 2] [--rounds 7] [--groups pix2pix cyclegan unet_256 resnet_9blocks] [--levers]
        [--compile pix2pix cyclegan]

Four figures at 256x256, batch 1: the Pix2Pix training step (unet_256 + basic D), the CycleGAN
step (2 x resnet_9blocks + 2 basic D), and unet_256 and resnet_9blocks inference (the project:
ONNX Runtime through translate.predictor; the reference: its eager PyTorch generator).

Inference also runs the same .onnx file on the predictor's other engine, OpenVINO (``--engine
openvino``, where the package is installed): fp32 always, bf16 where the CPU has avx512_bf16 or
AMX (else its row says ``n/a (no avx512_bf16)``), each with its grey levels off ONNX Runtime's
output. These rows decide what ``--engine auto`` picks (translate/engines.py): OpenVINO is worth it
only where it is faster at no more than one grey level of mean difference.

Every variant is a child process of its own (its peak RSS is its own), set up once (networks
built, warmed up), then timed in rounds: each round runs every variant of the group in turn,
the order reversed every other round (A B C, C B A, ...), so the machine's drift touches all
alike; each round waits (``--idle``, ``--idle-wait``) for a moment when other processes leave the
CPUs idle. Printed per variant: median and spread (min-max) of the wall time per iteration, the
median process CPU time (all its threads), peak RSS, the ratios to the reference of the medians and
of the minima (on a machine others share, the minimum is the iteration least disturbed by them), and
the load average before and after the group. Only these side-by-side ratios mean anything.

The reference runs unmodified from its own source (``--reference``; it is never copied here), in
child processes of its own whose PYTHONPATH holds its folder (its modules import each other as
top-level ``models``, ``options``, ``util``; no other process sees them): its training step is
``set_input`` + ``optimize_parameters`` of the model that its ``create_model`` builds from its own
option parser (defaults, plus ``--no_dropout`` for CycleGAN, whose generators the project trains
without dropout as the paper did); its inference is its ``networks.define_G`` generator in eval
mode under ``torch.no_grad``.

``--levers`` adds the variants that show each lever alone: float32 or bf16 autocast, NCHW or
channels-last, Adam's foreach or fused implementation, the U-Net's bottleneck convolutions as
matrix products (translate/conv.py) or through oneDNN, eager PyTorch, ONNX Runtime settings (the
predictor's RuntimeOptions: optimisation level, thread spinning, memory arena) and int8 (static QDQ
quantisation calibrated on the built-in maps set); ``--compile GROUP...`` adds torch.compile
(minutes of compilation). Variants
whose arithmetic is not float32 print their fidelity: grey levels of difference (mean, 99th
percentile, max) from the project's float32 ONNX model on maps photos, beside their speed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Timings, cpu_flags, machine, peak_rss_gb, print_row, print_table, stopwatch, time_calls

#: work per iteration in GFLOP (multiply-adds counted twice), for GFLOP/s
WORK = {"pix2pix": 86.9, "cyclegan": 1879.0, "unet_256": 12.1, "resnet_9blocks": 99.1}
EVAL_IMAGES = 4  # maps photos for the fidelity of reduced-precision variants
CALIBRATION_IMAGES = 16  # other maps photos, for int8 calibration


# ----------------------------------------------------------------------------------- the variants
def train_variants(kind: str, args) -> list[tuple[str, dict]]:
    """The reference, the project's defaults, and each lever moved alone from the defaults. The defaults
    are what training/speed.py resolves (read here from the CPU's flags, so this process need not import
    torch): bf16 where the CPU has it in hardware, NCHW (channels-last is for CUDA), fused Adam."""
    ref = {"child": "train_ref", "model": "pix2pix" if kind == "pix2pix" else "cycle_gan"}
    amp = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    cl = False  # training/speed.py: channels-last is for CUDA (U-Nets) only
    layout = {True: "channels-last", False: "NCHW"}
    precision = {True: "bf16", False: "fp32"}
    v = [("reference", ref),
         (f"project defaults ({precision[amp]}, {layout[cl]}, fused Adam)", {"child": "train", "kind": kind})]
    if args.levers:
        v += [(f"{precision[not amp]} instead", {"child": "train", "kind": kind, "amp": not amp}),
              (f"{layout[not cl]} instead", {"child": "train", "kind": kind, "channels_last": not cl}),
              ("foreach Adam instead (the reference's)", {"child": "train", "kind": kind, "fused": False})]
        if kind == "pix2pix":  # the U-Net's bottleneck convolutions through oneDNN, as nn.Conv2d runs them;
            # and, small processes, the fourth corner too (the ResNet's would cost gigabytes more)
            v.append(("oneDNN at the U-Net's bottleneck instead (translate/conv.py off)",
                      {"child": "train", "kind": kind, "matmul_convs": False}))
            v.append((f"{precision[not amp]}, {layout[not cl]}",
                      {"child": "train", "kind": kind, "amp": not amp, "channels_last": not cl}))
    if kind in (args.compile or ()):
        v.append(("defaults + torch.compile", {"child": "train", "kind": kind, "compile": True}))
    return v


def infer_variants(net: str, args) -> list[tuple[str, dict]]:
    v = [("reference eager", {"child": "infer_ref", "net": net}),
         ("project ORT (translate.predictor)", {"child": "infer_ort", "net": net, "model": "fp32"})]
    v += openvino_variants(net)
    if args.levers:
        v += [("eager fp32 (project's test-time form)", {"child": "infer_eager", "net": net}),
              ("eager bf16 channels-last", {"child": "infer_eager", "net": net, "bf16": True}),
              ("ORT --graph-optimization extended (no NCHWc)",
               {"child": "infer_ort", "net": net, "model": "fp32", "runtime": {"graph_optimization": "extended"}}),
              ("ORT --no-spinning", {"child": "infer_ort", "net": net, "model": "fp32",
                                     "runtime": {"spinning": False}}),
              ("ORT --no-memory-arena", {"child": "infer_ort", "net": net, "model": "fp32",
                                         "runtime": {"memory_arena": False}}),
              ("ORT int8 (QDQ, per channel)", {"child": "infer_ort", "net": net, "model": "int8"})]
    return v


def openvino_variants(net: str, flags: set[str] | None = None, installed: bool | None = None
                      ) -> list[tuple[str, dict]]:
    """The same fp32 .onnx file on OpenVINO through the predictor (``--engine openvino``): fp32, and bf16 where
    ``flags`` (this CPU's) have bf16 instructions. A variant that cannot run here carries ``na``, the reason its
    row gives instead of figures."""
    flags = cpu_flags() if flags is None else flags
    installed = _installed("openvino") if installed is None else installed
    missing = "" if installed else "n/a (openvino not installed: pip install openvino)"
    v = []
    for precision in ("fp32", "bf16"):
        spec = {"child": "infer_ort", "net": net, "model": "fp32",
                "runtime": {"engine": "openvino", "precision": precision}}
        if missing:
            spec["na"] = missing
        elif precision == "bf16" and not {"avx512_bf16", "amx_bf16"} & flags:
            spec["na"] = "n/a (no avx512_bf16)"
        v.append((f"project OpenVINO {precision} (--engine openvino)", spec))
    return v


# ------------------------------------------------------------------------------------- children
def _torch(threads: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch


def _random_pair(torch):
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 256, 256, generator=g) * 2 - 1, torch.rand(1, 3, 256, 256, generator=g) * 2 - 1


def setup_train_ref(spec: dict, args):
    """The reference's own model, built by its option parser, one step = set_input + optimize_parameters."""
    torch = _torch(args.threads)
    tmp = tempfile.mkdtemp(prefix="ref-bench-")
    sys.argv = ["train.py", "--dataroot", tmp, "--name", "bench", "--model", spec["model"], "--checkpoints_dir", tmp]
    if spec["model"] == "cycle_gan":
        sys.argv.append("--no_dropout")
    from models import create_model  # the reference's modules (this child's PYTHONPATH: REFERENCE_CHILDREN)
    from options.train_options import TrainOptions

    opt = TrainOptions().parse()
    opt.device = torch.device("cpu")
    model = create_model(opt)
    model.setup(opt)
    a, b = _random_pair(torch)
    data = {"A": a, "B": b, "A_paths": ["a.png"], "B_paths": ["b.png"]}

    def step():
        model.set_input(data)
        model.optimize_parameters()
    return step, {}


def setup_train(spec: dict, args):
    """The project's method on one fixed batch (what the loop calls ``step`` with)."""
    torch = _torch(args.threads)
    from training.cyclegan import CycleGAN, CycleGANConfig  # lazy: torch, in the child only
    from training.pix2pix import Pix2Pix, Pix2PixConfig  # lazy: torch, in the child only

    if not spec.get("matmul_convs", True):
        import translate.conv  # lazy: torch, in the child only

        translate.conv.MAX_PIXELS = 0  # every convolution through nn.Conv2d's own path (oneDNN)
    cls, config_cls = (Pix2Pix, Pix2PixConfig) if spec["kind"] == "pix2pix" else (CycleGAN, CycleGANConfig)
    cfg = config_cls(data="-", size=256, amp=spec.get("amp"), channels_last=spec.get("channels_last"),
                     compile=spec.get("compile", False))
    m = cls(cfg, torch.device("cpu"))
    if not spec.get("fused", True):  # Adam's default (foreach) implementation, as the reference uses
        m.optimizers = {k: torch.optim.Adam(o.param_groups[0]["params"], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
                        for k, o in m.optimizers.items()}
    if cfg.compile:
        m.compile()
    a, b = _random_pair(torch)
    batch = {"A": a, "B": b}
    return (lambda: m.step(batch)), {"amp": cfg.amp, "channels_last": cfg.channels_last}


def _eval_inputs(args):
    import numpy as np

    return np.load(Path(args.workdir) / "eval_inputs.npy")  # N x 3 x 256 x 256 float32 in [-1, 1]


def setup_infer_ref(spec: dict, args):
    """The reference's generator (its define_G with its defaults for the network), eval, no_grad."""
    torch = _torch(args.threads)
    from models import networks  # the reference's (this child's PYTHONPATH: REFERENCE_CHILDREN)

    unet = spec["net"].startswith("unet")
    G = networks.define_G(3, 3, 64, spec["net"], "batch" if unet else "instance", unet, "normal", 0.02).eval()
    x = torch.from_numpy(_eval_inputs(args)[:1])

    def run():
        with torch.no_grad():
            G(x)
    return run, {}


def setup_infer_eager(spec: dict, args):
    """The project's test-time generator in eager PyTorch (float32, or bf16 autocast + channels-last)."""
    import contextlib

    import numpy as np

    torch = _torch(args.threads)
    G = _project_generator(spec["net"])
    bf16 = spec.get("bf16", False)
    if bf16:
        G = G.to(memory_format=torch.channels_last)

    def forward(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        if bf16:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), (torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()):
            return G(t).float().numpy()
    inputs = _eval_inputs(args)
    _save_outputs(args, spec, [forward(x[None]) for x in inputs])
    return (lambda: forward(inputs[:1])), {}


def _project_generator(net: str):
    """The generator every project variant uses: seed 0, the method's defaults, test-time form."""
    import torch

    from translate.networks import define_G, to_inference  # lazy: torch, in the child only

    torch.manual_seed(0)
    unet = net.startswith("unet")
    return to_inference(define_G(net, norm="batch" if unet else "instance", use_dropout=unet), batch_stats=unet)


def setup_infer_ort(spec: dict, args):
    """The project's predictor: its defaults (ONNX Runtime), or one of its RuntimeOptions changed (one of them
    the engine: OpenVINO on the same file)."""
    from translate.predictor import Predictor, RuntimeOptions  # lazy: ONNX Runtime, in the child only

    path = str(Path(args.workdir) / f"{spec['net']}.{spec['model']}.onnx")
    inputs = _eval_inputs(args)
    # ONNX Runtime unless the variant names the engine: "auto" would pick OpenVINO on a CPU with bf16
    runtime = RuntimeOptions(threads=args.threads, **{"engine": "onnxruntime", **spec.get("runtime", {})})
    forward = Predictor(path, device="cpu", runtime=runtime).run
    _save_outputs(args, spec, [forward(x[None]) for x in inputs])
    return (lambda: forward(inputs[:1])), {}


def _save_outputs(args, spec: dict, outputs: list) -> None:
    import numpy as np

    y = np.concatenate(outputs)
    grey = np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)
    np.save(Path(args.workdir) / f"out-{spec['label_id']}.npy", grey)


SETUPS = {"train_ref": setup_train_ref, "train": setup_train, "infer_ref": setup_infer_ref,
          "infer_eager": setup_infer_eager, "infer_ort": setup_infer_ort}
#: the children that import the reference's modules: only their PYTHONPATH holds its folder
REFERENCE_CHILDREN = ("train_ref", "infer_ref")


def child_main(args) -> None:
    """Set up, say ready, then time ``run N`` requests from the parent until ``quit``."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)  # replies; whatever the code prints goes to stderr
    os.dup2(2, 1)
    spec = json.loads(args.child)
    with stopwatch() as setup:
        fn, info = SETUPS[spec["child"]](spec, args)
        for _ in range(args.warmup):
            fn()
    proto.write(json.dumps({"ready": True, "setup_s": setup.wall, **info}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        t = time_calls(fn, cmd["n"])
        proto.write(json.dumps({"wall": t.wall, "cpu": t.cpu}) + "\n")
    proto.write(json.dumps({"peak_rss_gb": peak_rss_gb()}) + "\n")


class Child:
    def __init__(self, label: str, spec: dict, args):
        self.label, self.spec = label, spec
        self.log = open(Path(args.workdir) / f"log-{spec['label_id']}.txt", "w")
        cmd = [sys.executable, "-m", __spec__.name, "--timed-variant", json.dumps(spec), "--threads",
               str(args.threads), "--workdir", args.workdir, "--warmup", str(args.warmup)]
        env = None
        if spec["child"] in REFERENCE_CHILDREN:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(Path(args.reference).resolve()), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)
        self.ready = self._read()
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.died = ""  # why it stopped answering, if it did (the others go on)

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"{self.label}: the child process died (exit status {self.proc.returncode}); its log: "
                               f"{self.log.name}\n"
                               + Path(self.log.name).read_text()[-3000:])
        return json.loads(line)

    def run(self, n: int) -> None:
        if self.died:
            return
        try:
            self.proc.stdin.write(json.dumps({"op": "run", "n": n}) + "\n")
            self.proc.stdin.flush()
            r = self._read()
        except (BrokenPipeError, RuntimeError):
            self.proc.wait()
            self.died = f"died after {len(self.wall)} timed iterations (exit status {self.proc.returncode})"
            print(f"  {self.label}: {self.died}; its log: {self.log.name}; the others go on", flush=True)
            return
        self.wall += r["wall"]
        self.cpu += r["cpu"]

    def finish(self) -> float | None:
        if self.died:
            return None
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.flush()
        peak = self._read()["peak_rss_gb"]
        self.proc.wait()
        return peak


# ------------------------------------------------------------------------------------- the parent
def prepare(workdir: Path, nets: list[str], int8: bool) -> None:
    """Models and maps photos every inference child reads: float32 ONNX (as the project exports
    them), int8 versions, evaluation inputs."""
    import numpy as np
    import torch

    from translate.datasets import make_pair  # lazy: torch, in the child only
    from translate.export import export_generator  # lazy: torch, in the child only
    from translate.imageio import to_network  # lazy: torch, in the child only

    torch.set_num_threads(2)
    inputs = to_network(np.stack([make_pair("maps", i, size=256)[0] for i in range(EVAL_IMAGES)]))
    np.save(workdir / "eval_inputs.npy", inputs)
    for net in nets:
        G = _project_generator(net)
        data, _ = export_generator(G, {"arch": {"input_nc": 3}, "batch_stats": True}, check=False)
        (workdir / f"{net}.fp32.onnx").write_bytes(data)
        if int8:
            quantize_int8(workdir / f"{net}.fp32.onnx", workdir / f"{net}.int8.onnx")


def quantize_int8(src: Path, dst: Path) -> None:
    """Static int8 quantisation (QDQ, per-channel weights, uint8 activations) calibrated on maps photos."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from translate.datasets import make_pair  # lazy: torch, in the child only
    from translate.imageio import to_network  # lazy: torch, in the child only

    class Maps(CalibrationDataReader):
        def __init__(self):
            self.it = (to_network(make_pair("maps", 10_000 + i, size=256)[0][None]) for i in range(CALIBRATION_IMAGES))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": np.ascontiguousarray(x)}

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(dst), Maps(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def fidelity(workdir: Path, label_id: str, base_id: str) -> str:
    import numpy as np

    a, b = workdir / f"out-{label_id}.npy", workdir / f"out-{base_id}.npy"
    if label_id == base_id or not a.exists() or not b.exists():
        return ""
    d = np.abs(np.load(a).astype(int) - np.load(b).astype(int))
    return f"{d.mean():.2f} / {np.percentile(d, 99):.0f} / {d.max()}"


def run_group(name: str, variants: list[tuple[str, dict]], args, workdir: Path) -> dict:
    unit_ms = name not in ("pix2pix", "cyclegan")
    iters = args.infer_iters if unit_ms else args.train_iters
    for i, (_, spec) in enumerate(variants):
        spec["label_id"] = f"{name}-{i}"
    unavailable = [(label, spec["na"]) for label, spec in variants if "na" in spec]  # a row each, no figures
    variants = [(label, spec) for label, spec in variants if "na" not in spec]
    print(f"\n## {name}: {len(variants)} variants, {args.rounds} rounds of {iters} iterations each", flush=True)
    load_before = os.getloadavg()
    children = []
    try:
        for label, spec in variants:
            try:
                children.append(Child(label, spec, args))
            except RuntimeError as e:
                if not children:  # the reference: nothing to compare with
                    raise
                print(f"  left out: {e}", flush=True)
                continue
            print(f"  ready: {label} ({children[-1].ready['setup_s']:.1f} s)"
                  + "".join(f", {k} {v}" for k, v in children[-1].ready.items() if k not in ("ready", "setup_s")),
                  flush=True)
        for r in range(args.rounds):
            idle = wait_for_idle(args.idle, args.idle_wait)
            for ch in (children if r % 2 == 0 else children[::-1]):
                ch.run(iters)
            print(f"  round {r + 1} (CPUs {idle:.0%} idle before): "
                  + ", ".join(f"{Timings(c.wall[-iters:]).median * (1000 if unit_ms else 1):.3g}" if c.wall else "-"
                              for c in children),
                  flush=True)
        peaks = [ch.finish() for ch in children]
    finally:
        for ch in children:
            if ch.proc.poll() is None:
                ch.proc.kill()
    load_after = os.getloadavg()
    scale, unit = (1000, "ms") if unit_ms else (1, "s")
    ref = Timings(children[0].wall)
    base_id = variants[1][1]["label_id"]
    rows = []
    for ch, peak in zip(children, peaks, strict=True):
        if not ch.wall:
            rows.append({"variant": ch.label, "died": ch.died})
            continue
        t = Timings(ch.wall, ch.cpu)
        rows.append({"variant": ch.label, "median": t.median * scale, "min": t.min * scale, "max": t.max * scale,
                     "cpu": t.cpu_median * scale, "peak_rss_gb": peak, "vs_reference": t.median / ref.median,
                     "vs_reference_min": t.min / ref.min, "gflops": WORK[name] / t.median,
                     "fidelity": fidelity(workdir, ch.spec["label_id"], base_id) if unit_ms else "",
                     "info": {k: v for k, v in ch.ready.items() if k not in ("ready", "setup_s")}})
    rows += [{"variant": label, "na": why} for label, why in unavailable]
    print(f"\n{name}, {unit} per iteration (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"{len(children[0].wall)} iterations per variant):\n")
    print_table(["variant", f"median {unit}", "spread (min-max)", f"CPU {unit}", "GFLOP/s", "peak RSS",
                 "vs reference (medians)", "vs reference (minima)",
                 *(["grey levels off ORT fp32 (mean / p99 / max)"] if unit_ms else [])])
    for r in rows:
        if "died" in r or "na" in r:
            print_row(r["variant"], r.get("died") or r["na"])
            continue
        print_row(r["variant"], f"{r['median']:.3g}", f"{r['min']:.3g}-{r['max']:.3g}", f"{r['cpu']:.3g}",
                  f"{r['gflops']:.0f}", "-" if r["peak_rss_gb"] is None else f"{r['peak_rss_gb']:.2f} GB",
                  f"{r['vs_reference']:.2f}x", f"{r['vs_reference_min']:.2f}x", *([r["fidelity"]] if unit_ms else []))
    return {"group": name, "load_before": load_before, "load_after": load_after, "rows": rows}


def idle_share(seconds: float = 1.0) -> float:
    """The share of the machine's CPU time that was idle over ``seconds`` (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    i0, t0 = sample()
    time.sleep(seconds)
    i1, t1 = sample()
    return (i1 - i0) / max(1, t1 - t0)


def wait_for_idle(share: float, max_wait: float) -> float:
    """Wait (at most ``max_wait`` seconds) until others leave ``share`` of the CPUs idle: on a shared machine
    rounds then run in its quieter moments. Returns the idle share seen last."""
    deadline = time.monotonic() + max_wait
    idle = idle_share()
    while idle < share and time.monotonic() < deadline:
        idle = idle_share(2.0)
    return idle


def _installed(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return bool(version(dist))
    except PackageNotFoundError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", help="the reference implementation's source folder "
                    "(e.g. ../shared/reference/pytorch-CycleGAN-and-pix2pix)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--train-iters", type=int, default=2, help="training steps per variant per round")
    ap.add_argument("--infer-iters", type=int, default=5, help="forward passes per variant per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations after set-up")
    ap.add_argument("--groups", nargs="+", default=["pix2pix", "cyclegan", "unet_256", "resnet_9blocks"],
                    choices=list(WORK))
    ap.add_argument("--levers", action="store_true", help="also each lever alone (see above)")
    ap.add_argument("--compile", nargs="+", default=[], choices=("pix2pix", "cyclegan"), metavar="GROUP",
                    help="also torch.compile on these training steps (pix2pix, cyclegan: minutes of compilation)")
    ap.add_argument("--idle", type=float, default=0.8, help="before each round, wait for this share of the CPUs "
                    "to be idle (a shared machine's quieter moments) ...")
    ap.add_argument("--idle-wait", type=float, default=120.0, help="... for at most this many seconds")
    ap.add_argument("--json", help="write the results as JSON here too")
    # a name of its own: on the shared machine children of this script were ended by a SIGTERM from outside,
    # and other benchmarks' children are called "--child"
    ap.add_argument("--timed-variant", dest="child", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
        return
    if args.prepare:
        prepare(Path(args.workdir), **json.loads(args.prepare))
        return
    if not args.reference:
        ap.error("--reference is required (the reference implementation's source folder)")
    if not (Path(args.reference) / "models" / "networks.py").exists():
        ap.error(f"{args.reference}: not the reference implementation's source (no models/networks.py)")
    workdir = Path(tempfile.mkdtemp(prefix="cpu-speed-"))
    args.workdir = str(workdir)
    from importlib.metadata import version

    ort_dist = next(d for d in ("onnxruntime-gpu", "onnxruntime") if _installed(d))
    described = (f"{machine()}, {args.threads} threads, torch {version('torch')}, {ort_dist} {version(ort_dist)}, "
                 f"openvino {version('openvino') if _installed('openvino') else 'not installed'}")
    print(f"machine: {described}\nwork folder: {workdir}", flush=True)
    nets = [g for g in args.groups if g in ("unet_256", "resnet_9blocks")]
    if nets:  # in a child of its own: this process stays small, and so do the children it forks
        subprocess.run([sys.executable, "-m", __spec__.name, "--prepare",
                        json.dumps({"nets": nets, "int8": args.levers}), "--workdir", str(workdir)], check=True)
    results = []
    for g in args.groups:
        variants = train_variants(g, args) if g in ("pix2pix", "cyclegan") else infer_variants(g, args)
        results.append(run_group(g, variants, args, workdir))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": described, "args": {k: v for k, v in vars(args).items()
                                                                             if k not in ("child",)},
                                               "groups": results}, indent=2))


if __name__ == "__main__":
    main()
