"""GPU check: every GPU path of the project in one run (at most 9 minutes on one H100/H200), one table.

    python3 -m benchmarks.gpu_check [--json results.json]
    python3 -m benchmarks.gpu_check --only replica [--json results.json]   # the GPU replica alone (~2 minutes)
    python3 -m benchmarks.gpu_check --dry-run [--json dry.json]   # CPU, tiny networks

Sections, each with its own time budget (``BUDGETS``); a section whose packages are missing is
skipped and says why, one that fails or runs out of time shows its error in the table and the
others still run; the table (and the JSON, with ``--json``) is written whatever happens:

* ``env``: GPU, driver-side versions, a bf16 matmul's TFLOP/s beside the GPU's bf16 peak.
* ``train``: Pix2Pix (unet_256 + basic D) and CycleGAN (2 x resnet_9blocks + 2 D) training steps/s
  at batch 1 and 32: float32 (cuDNN's TF32 convolutions, torch's default), bf16 AMP, and bf16 AMP
  with ``torch.compile``; peak GPU memory. Target: a step >= 2x eager float32 at batch 1.
* ``forward``: each generator's forward at batch 32 in bf16 against the GPU's bf16 peak (target >= 40 %).
* ``run``: a short real training run (the Trainer, Pix2Pix on the built-in maps set held in memory,
  no albumentations needed), whose checkpoint then loads, exports to ONNX and translates on the CPU.
* ``ort``: ONNX Runtime's CUDA provider (float32 and float16 models) through ``translate.predictor``:
  latency at batch 1 and images/s at batch 32 for unet_256 and resnet_9blocks, against eager PyTorch
  (float32 and bf16). The predictor refuses a session that silently fell back to the CPU.
* ``service``: the Ray Serve app with one GPU replica, requests/s at concurrency 32 against raw ORT
  CUDA (the predictor on the same GPU, batches of the service's size); target >= 90 %.
* ``convert``: ``translate convert`` (Ray Data) with one GPU actor.
* ``ddp``: data-parallel training with one GPU process: the project's own path (training.world's
  World: NCCL, gradients all-reduced before each optimizer step), started without Ray, checked against
  the same steps without it.
* ``replica``: the GPU model replica's settings (README, "Serving on a GPU"), unet_256 on uint8 images as the
  service's replica runs it, each alone and all together against the baseline (heuristic cuDNN search, NCHW
  kernels, session.run, float input): ``prefer_nhwc``, cuDNN's exhaustive search for one fixed size, IOBinding,
  the uint8 NHWC graph input (``translate export --input uint8-nhwc``); then 1 and 4 replicas (processes, as
  Ray runs them) sharing one GPU, each with its ``gpu_mem_limit`` (a quarter of the GPU), images/s together and
  the GPU memory in use; then JPEG decode of an upload on the GPU (nvJPEG through torchvision) against the CPU
  (Pillow), wall and CPU milliseconds. Without onnxruntime-gpu its ONNX Runtime rows each say "skipped: ..."
  and the JPEG rows still run.

Needs torch >= 2.11 and onnxruntime (the GPU build, onnxruntime-gpu, for ``ort``, ``service`` and
``convert``), Ray for ``service`` and ``convert``, aiohttp for ``service``, torchmetrics for ``run`` and
``ddp`` (the Trainer validates); nothing downloads, and albumentations is not needed. A section that
needs a missing package is "skipped", naming it; the CPU build of onnxruntime in place of onnxruntime-gpu
counts as missing (``ort``, ``service`` and ``convert`` skipped, the ``replica`` section's ONNX Runtime rows
too). Where onnxruntime-gpu is installed but its CUDA provider does not run, CUDA was asked for and is not
skipped: those sections FAIL with translate.errors.CudaProviderError naming why (cuBLAS/cuDNN that do not
load, no GPU visible), and the exit status is 1; onnxruntime-gpu's CUDA
libraries come with torch's nvidia wheels and are loaded first (``import torch``,
``onnxruntime.preload_dlls()``). A GPU machine with torch alone (the device machines here: torch
2.11, the CPU onnxruntime, no Ray, no albumentations) measures ``env``, ``train``, ``forward``, ``run``,
``ddp`` and the ``replica`` section's JPEG rows; ``run`` and ``ddp`` run the Trainer, whose validation needs torchmetrics (the device image's
package list, /work/.library/device/KINDS.md, has 1.9.0; an older list did not name it). Where it is
missing they are skipped naming the remedy: ``make gpu-deps`` here puts torchmetrics and
lightning-utilities (pure Python, the versions of .venv) in .gpu-deps/ for the device call to carry.
Run the check from the checkout's root with that machine's Python, not through ``make``::

    PYTHONPATH=.:.gpu-deps python3 -m benchmarks.gpu_check --json $OUT/gpu.json   # carry: .gpu-deps if made

To measure the rest there, install onnxruntime-gpu in place of onnxruntime, and Ray, from
wheels carried to it (``pip install --no-index --find-links WHEELS onnxruntime-gpu 'ray[serve,data,
train]'``), then run this again with ``--only ort replica service convert``. onnxruntime-gpu's wheel (about
256 MB) is larger than one device call may carry (64 MiB): it must travel in parts over back-to-back calls
while the machine stays warm and be joined there (../shared/KNOWN-TRAPS.md, "The device machine").

``--dry-run`` runs every section on the CPU with tiny networks (the CPU provider in place of CUDA,
gloo in place of NCCL, torch.compile's eager backend): tests/benchmarks/test_gpu_check.py runs it,
so the script cannot rot where no GPU is. Where a GPU is, the same file runs the real check as an
integration test marked ``gpu`` (``pytest -m gpu tests/benchmarks``; skipped without a GPU).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import queue
import signal
import socket
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmarks import serve_load
from benchmarks.harness import Timings, machine, stopwatch, table, time_calls

#: seconds per section (on the GPU: at most 9 minutes in all, the total capped by TOTAL_BUDGET); the dry run has the same
BUDGETS = {"env": 15, "train": 190, "forward": 30, "run": 45, "ort": 50, "service": 60, "convert": 30, "ddp": 25,
           "replica": 120}
TOTAL_BUDGET = 540

#: dense bf16 tensor-core peaks (TFLOP/s) from the vendor's data sheets, by device-name fragment
BF16_PEAKS = (("H200", 989.4), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.4), ("GH200", 989.4),
              ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0))


@dataclass(frozen=True)
class Plan:
    """Sizes of a check: the real one on the GPU, or the dry run on the CPU."""

    device: str = "cuda"
    size: int = 256
    unet: str = "unet_256"
    resnet: str = "resnet_9blocks"
    ngf: int = 64
    ndf: int = 64
    batches: tuple[int, ...] = (1, 32)
    compile_batches: tuple[int, ...] = (1, 32)
    compile_backend: str = "inductor"
    seconds: float = 2.0  # timed seconds per measurement (at least min_iters)
    min_iters: int = 5
    warmup: int = 2  # untimed calls before each timing
    big_batch: int = 32  # forward and ORT throughput
    run_steps: int = 150
    run_images: int = 48
    run_size: int = 256
    run_batch: int = 8
    requests: int = 1500
    concurrency: int = 32
    convert_images: int = 128
    ddp_steps: int = 6
    replicas: int = 4  # model replicas sharing one GPU (num_gpus 0.25 each)
    replica_batch: int = 8  # the service's max_batch_size
    jpeg_sizes: tuple[int, ...] = (256, 1024)


GPU_PLAN = Plan()
#: the dry run: every code path once, at the smallest sizes (a minute on 2 CPUs, most of it Ray's start)
DRY_PLAN = Plan(device="cpu", size=32, unet="unet_32", resnet="resnet_9blocks", ngf=4, ndf=4, batches=(1,),
                compile_batches=(1,), compile_backend="eager", seconds=0.0, min_iters=1, warmup=1, big_batch=2,
                run_steps=4, run_images=4, run_size=32, run_batch=2, requests=16, concurrency=4, convert_images=4,
                ddp_steps=2, replicas=2, replica_batch=2, jpeg_sizes=(64,))


class Timeout(Exception):
    """A section ran past its budget."""


class Skip(Exception):
    """A section cannot run here (a package or the GPU is missing): the reason is shown."""


@dataclass
class Report:
    plan: Plan
    rows: list[dict[str, Any]] = field(default_factory=list)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    #: what a section that ran says beside its status (rows it had to skip)
    section_notes: dict[str, str] = field(default_factory=dict)

    def row(self, section: str, what: str, variant: str, value: float | None, unit: str, **extra) -> dict:
        r = {"section": section, "what": what, "variant": variant, "value": value, "unit": unit, **extra}
        self.rows.append(r)
        print(f"  {section}: {what} [{variant}] {_fmt(value)} {unit} "
              + " ".join(f"{k}={_fmt(v)}" for k, v in extra.items()), flush=True)
        return r

    def target(self, name: str, value: float | None, goal: str, met: bool | None) -> None:
        self.targets.append({"target": name, "value": value, "goal": goal, "met": met})

    def to_json(self) -> dict[str, Any]:
        return {"plan": asdict(self.plan), "machine": self.machine, "sections": self.sections,
                "rows": self.rows, "targets": self.targets}

    def table(self) -> str:
        out = [f"machine: {self.machine.get('summary', '?')}", "",
               table(["section", "status", "seconds", "note"],
                     [(name, s["status"], f"{s['seconds']:.1f}", _cell(s.get("note", "")))
                      for name, s in self.sections.items()]), "",
               table(["section", "what", "variant", "result", "peak memory", "vs baseline", "note"],
                     [(r["section"], r["what"], r["variant"], f"{_fmt(r['value'])} {r['unit']}",
                       f"{r['peak_gb']:.2f} GB" if r.get("peak_gb") is not None else "",
                       f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "", _cell(r.get("note", "")))
                      for r in self.rows])]
        if self.targets:
            met = {True: "yes", False: "NO", None: "not measured"}
            out += ["", table(["target", "value", "goal", "met"],
                              [(t["target"], _fmt(t["value"]), t["goal"], met[t["met"]]) for t in self.targets])]
        return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "-" if v is None else str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")[:300]


# ------------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def deadline(seconds: float):
    """Raise Timeout in this (main) thread once ``seconds`` have passed."""
    def on_alarm(signum, frame):
        raise Timeout(f"over its {seconds:.0f} s budget")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


#: why the sections that run the Trainer need torchmetrics, and how to bring it to a machine without it
METRICS_WHY = ("the Trainer's validation computes PSNR and SSIM with it; to bring it to this machine, run "
               "`make gpu-deps` in the checkout and carry .gpu-deps onto PYTHONPATH")


def need(module: str, why: str = ""):
    """Import ``module`` or skip the section naming what is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Skip(f"{module} is not installed{(' (' + why + ')') if why else ''}: {e}") from None


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float | None:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**30
    return None


def measure(fn: Callable[[], Any], plan: Plan, warmup: int | None = None) -> Timings:
    """``fn`` timed over at least ``plan.seconds`` and ``plan.min_iters`` calls, each ending with a device sync."""
    return time_calls(fn, plan.min_iters, warmup=plan.warmup if warmup is None else warmup, seconds=plan.seconds,
                      sync=lambda: sync(plan.device))


def bf16_peak(name: str) -> float | None:
    return next((peak for frag, peak in BF16_PEAKS if frag in name), None)


# ----------------------------------------------------------------------------------------- sections
def section_env(rep: Report) -> None:
    import torch

    plan = rep.plan
    m = rep.machine
    host = machine()
    m.update(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
             cudnn=torch.backends.cudnn.version(), cpu=host.cpu, cpus=host.cpus, cpu_flags=list(host.flags),
             dry_run=plan.device == "cpu")
    for mod in ("onnxruntime", "onnx", "ray"):
        with contextlib.suppress(ImportError):
            m[mod] = __import__(mod).__version__
    if plan.device == "cuda":
        m["summary"] = f"{host}, torch {torch.__version__} (CUDA {torch.version.cuda})"
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA GPU (run with --dry-run on a CPU machine)")
        name = torch.cuda.get_device_name(0)
        props = torch.cuda.get_device_properties(0)
        m.update(gpu=name, gpu_memory_gb=round(props.total_memory / 2**30, 1), capability=[props.major, props.minor],
                 tf32_convolutions=torch.backends.cudnn.allow_tf32, bf16_peak_tflops=bf16_peak(name))
        m["summary"] = f"{host}, torch {torch.__version__} (CUDA {torch.version.cuda})"
        n = 8192
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        per_s = time_calls(lambda: a @ b, 10, warmup=3, seconds=1.0, sync=torch.cuda.synchronize).per_second
        tflops = 2 * n**3 * per_s / 1e12
        m["bf16_matmul_tflops"] = tflops
        rep.row("env", f"bf16 matmul {n}^3", "torch", tflops, "TFLOP/s",
                note=f"data-sheet peak {_fmt(m['bf16_peak_tflops'])} TFLOP/s")
    else:
        m["summary"] = f"DRY RUN on CPU ({host}), torch {torch.__version__}: tiny networks"
        rep.row("env", "device", "cpu", None, "", note="dry run: sizes and speeds mean nothing")


def _method(kind: str, plan: Plan, batch: int, mode: str):
    import torch

    from training.cyclegan import CycleGAN, CycleGANConfig  # lazy: torch
    from training.pix2pix import Pix2Pix, Pix2PixConfig  # lazy: torch

    common = dict(data="-", size=plan.size, ngf=plan.ngf, ndf=plan.ndf, batch_size=batch, device=plan.device,
                  amp=mode != "fp32", progress=False)
    if kind == "pix2pix":
        m = Pix2Pix(Pix2PixConfig(netG=plan.unet, **common), torch.device(plan.device))
    else:
        m = CycleGAN(CycleGANConfig(netG=plan.resnet, **common), torch.device(plan.device))
    if mode == "compile":
        torch._dynamo.reset()  # a fresh compilation per configuration (no dynamic shapes carried over)
        m.compile(backend=plan.compile_backend)
    return m


def _batch(plan: Plan, n: int, size: int | None = None, seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    s = size or plan.size
    return {k: (torch.rand(n, 3, s, s, generator=g) * 2 - 1).to(plan.device) for k in ("A", "B")}


def section_train(rep: Report) -> None:
    import torch

    plan = rep.plan
    torch.backends.cudnn.benchmark = True  # as the training loop sets it on CUDA
    work = [(kind, b, mode) for mode in ("fp32", "bf16") for kind in ("pix2pix", "cyclegan") for b in plan.batches]
    work += [(kind, b, "compile") for b in plan.compile_batches for kind in ("pix2pix", "cyclegan")]  # slowest last
    base: dict[tuple[str, int], float] = {}
    best: dict[str, float] = {}
    try:
        _train_rows(rep, work, base, best)
    finally:  # also when the budget ends inside the compiled runs
        for kind in ("pix2pix", "cyclegan"):
            v = best.get(kind)
            rep.target(f"{kind} train step at batch 1 vs eager fp32", v, ">= 2x",
                       None if v is None or plan.device != "cuda" else v >= 2.0)


def _train_rows(rep: Report, work: list, base: dict, best: dict) -> None:
    plan = rep.plan
    for kind, b, mode in work:
        reset_peak(plan.device)
        with stopwatch() as first:
            m = _method(kind, plan, b, mode)
            batch = _batch(plan, b)
            m.step(batch)  # the first step: cuDNN's search, compilation
            sync(plan.device)
        per_s = measure(lambda: m.step(batch), plan, warmup=min(1, plan.warmup)).per_second
        cl = m.config.channels_last
        r = rep.row("train", f"{kind} step, batch {b}", {"fp32": "fp32 (TF32 convs)", "bf16": "bf16 AMP",
                                                          "compile": "bf16 AMP + compile"}[mode] if plan.device ==
                    "cuda" else mode, per_s, "steps/s", peak_gb=peak_gb(plan.device), images_per_s=per_s * b,
                    note=f"{'channels-last' if cl else 'NCHW'}; first step {first.wall:.1f} s")
        if mode == "fp32":
            base[(kind, b)] = per_s
        elif (kind, b) in base:
            r["ratio"] = per_s / base[(kind, b)]
            if b == 1:
                best[kind] = max(best.get(kind, 0.0), r["ratio"])
        m = batch = None  # freed before the next configuration (the closures above are done with them)


def _generator(net: str, plan: Plan):
    import torch

    from translate.networks import define_G, to_inference  # lazy: torch

    torch.manual_seed(0)
    unet = net.startswith("unet")
    return to_inference(define_G(net, ngf=plan.ngf, norm="batch" if unet else "instance", use_dropout=unet),
                        batch_stats=True)


def _flops(G, plan: Plan) -> float:
    """FLOPs of one forward of one image at the plan's size (counted by torch)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, plan.size, plan.size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        G(x)
    return float(counter.get_total_flops())


def section_forward(rep: Report) -> None:
    import torch

    plan = rep.plan
    peak = rep.machine.get("bf16_peak_tflops")
    for net in (plan.unet, plan.resnet):
        G = _generator(net, plan)
        flops = _flops(G, plan) * plan.big_batch
        G = G.to(plan.device, memory_format=torch.channels_last)
        x = torch.randn(plan.big_batch, 3, plan.size, plan.size, device=plan.device).contiguous(
            memory_format=torch.channels_last)
        reset_peak(plan.device)
        with torch.no_grad(), torch.autocast(plan.device, dtype=torch.bfloat16):
            per_s = measure(lambda: G(x), plan).per_second
        tflops = flops * per_s / 1e12
        pct = tflops / peak if peak else None
        rep.row("forward", f"{net} forward, batch {plan.big_batch}", "bf16 autocast, channels-last", tflops,
                "TFLOP/s", peak_gb=peak_gb(plan.device), images_per_s=per_s * plan.big_batch,
                note=f"{flops / plan.big_batch / 1e9:.1f} GFLOP per image"
                     + (f"; {pct:.0%} of bf16 peak" if pct else ""))
        rep.target(f"{net} forward at batch {plan.big_batch}, share of bf16 peak", pct, ">= 40 %",
                   None if pct is None else pct >= 0.40)
        G = x = None


class _MapsInMemory:
    """The built-in maps set drawn once and held as tensors (no files, no albumentations)."""

    def __init__(self, n: int, size: int, offset: int = 0):
        from translate.datasets import make_pair  # lazy: torch
        from translate.imageio import image_to_tensor  # lazy: torch

        self.items = []
        for i in range(offset, offset + n):
            a, b = make_pair("maps", i, size=size)
            self.items.append({"A": image_to_tensor(a), "B": image_to_tensor(b), "name": f"maps-{i}"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key  # EpochSampler yields (index, seed)
        return self.items[index % len(self.items)]


def _maps_pix2pix(plan: Plan, images: int, out: Path, steps: int, **kw):
    """(the Pix2Pix trainer with the maps set held in memory, its config): the same trainer and loop as
    ``translate train pix2pix``, without files or albumentations."""
    from training.pix2pix import Pix2Pix, Pix2PixConfig  # lazy: torch

    train, val = _MapsInMemory(images, plan.run_size), _MapsInMemory(4, plan.run_size, offset=10_000)

    class MapsPix2Pix(Pix2Pix):
        def datasets(self):
            return train, val

    net = "unet_256" if plan.run_size >= 256 else f"unet_{plan.run_size}"
    settings = dict(data="maps (in memory)", out=str(out), size=plan.run_size, netG=net, ngf=plan.ngf, ndf=plan.ndf,
                    norm="instance", batch_size=plan.run_batch, steps=steps, device=plan.device, workers=0,
                    log_every=max(1, steps // 10), val_every=steps, sample_every=steps, checkpoint_every=steps,
                    progress=False, export=True)
    return MapsPix2Pix, Pix2PixConfig(**{**settings, **kw})


def section_run(rep: Report) -> None:
    import numpy as np
    import torch

    from training.loop import Trainer  # lazy: torch
    from translate.imageio import from_network, to_network  # lazy: torch
    from translate.predictor import Predictor, RuntimeOptions  # lazy: ONNX Runtime

    need("torchmetrics", METRICS_WHY)
    plan = rep.plan
    out = Path(tempfile.mkdtemp(prefix="gpu-check-run-"))
    MapsPix2Pix, cfg = _maps_pix2pix(plan, plan.run_images, out / "run", plan.run_steps)
    net = cfg.netG
    with stopwatch() as lap:
        trainer = Trainer(MapsPix2Pix, cfg)
        run_dir = trainer.fit()
    logs = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    l1 = [r["G_L1"] for r in logs if "G_L1" in r]
    val_l1 = trainer.last_val.get("val/l1")
    rep.row("run", f"pix2pix {net} on maps, {plan.run_steps} steps of batch {plan.run_batch}", plan.device,
            plan.run_steps / lap.wall, "steps/s (with validation, samples, checkpoint, export)",
            note=f"G_L1 {l1[0]:.2f} -> {l1[-1]:.2f}; val L1 {_fmt(val_l1)}; amp {trainer.config.amp}")
    # the checkpoint, read back on the CPU: the exported model against the PyTorch generator on the CPU
    from translate.generators import load_generator  # lazy: torch

    G, _ = load_generator(run_dir)
    # ONNX Runtime, as the row says (auto runs OpenVINO bf16 on a CPU with avx512_bf16 or AMX, off PyTorch by more)
    p = Predictor(run_dir / "model.onnx", device="cpu", runtime=RuntimeOptions(engine="onnxruntime"))
    a = (trainer.val_set.items[0]["A"].numpy().transpose(1, 2, 0) + 1) * 127.5
    a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    with torch.no_grad():
        ref = from_network(G(torch.from_numpy(to_network(a[None]))).numpy())[0]
    got = p.translate_array(a)
    diff = np.abs(ref.astype(int) - got.astype(int))
    rep.row("run", "checkpoint -> CPU export -> ORT CPU", "vs PyTorch CPU", float(diff.max()), "grey levels max",
            note=f"mean {diff.mean():.3f}; providers {p.providers}")
    if diff.max() > 2:
        raise RuntimeError(f"the exported model differs from its checkpoint by {diff.max()} grey levels")
    if plan.run_steps >= 50 and not l1[-1] < l1[0]:
        raise RuntimeError(f"training did not lower G_L1 ({l1[0]:.3f} -> {l1[-1]:.3f})")


def _ort_models(net: str, plan: Plan) -> tuple[Any, dict[str, bytes]]:
    import onnx

    from translate.export import export_generator  # lazy: torch

    G = _generator(net, plan)
    data, _ = export_generator(G, {"arch": {"input_nc": 3}, "batch_stats": True}, check=True)
    models = {"fp32": data}
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        models["fp16"] = convert_float_to_float16(onnx.load_from_string(data), keep_io_types=True).SerializeToString()
    except Exception as e:  # noqa: BLE001 - shown in the table, fp32 still measured
        models["fp16 (conversion failed)"] = repr(e).encode()
    return G, models


def require_ort_cuda() -> list[str]:
    """CUDA is asked for: ONNX Runtime must run a model on its CUDA provider, or this raises
    translate.errors.CudaProviderError naming why (the CPU build installed, libraries that do not load,
    no GPU visible), rather than measure the CPU under the CUDA rows. Returns the session's providers.

    The libraries onnxruntime-gpu needs (cuBLAS, cuDNN) come with torch's nvidia wheels: the predictor
    loads them first (``import torch``, ``onnxruntime.preload_dlls()``)."""
    from onnx import TensorProto, helper

    from translate.predictor import Predictor  # lazy: ONNX Runtime

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # ONNX Runtime 1.31 reads at most 13; onnx 1.23 writes 14 by default
    return Predictor(model.SerializeToString(), device="cuda").providers  # CudaProviderError when not on CUDA


def section_ort(rep: Report) -> None:
    import numpy as np
    import torch

    need("onnxruntime")
    plan = rep.plan
    _skip_without_ort_cuda(plan)
    from translate.predictor import Predictor  # lazy: ONNX Runtime
    from translate.tiling import TileConfig  # lazy: ONNX

    rng = np.random.default_rng(0)
    x1 = rng.uniform(-1, 1, (1, 3, plan.size, plan.size)).astype(np.float32)
    xb = rng.uniform(-1, 1, (plan.big_batch, 3, plan.size, plan.size)).astype(np.float32)
    for net in (plan.unet, plan.resnet):
        G, models = _ort_models(net, plan)
        results = {}
        for variant, model in models.items():
            if "failed" in variant:
                rep.row("ort", net, variant, None, "", note=model.decode()[:200])
                continue
            p = Predictor(model, device=plan.device, tiling=TileConfig(threshold=None))  # raises if not on CUDA
            lat = measure(lambda: p.run(x1), plan).median * 1000
            ips = measure(lambda: p.run(xb), plan).per_second * plan.big_batch
            err = float(np.abs(p.run(x1) - G(torch.from_numpy(x1)).detach().numpy()).max())
            results[f"ORT {variant}"] = (lat, ips)
            rep.row("ort", f"{net} batch 1 latency", f"ORT {variant}", lat, "ms",
                    note=f"providers {p.providers[:1]}; max diff vs PyTorch fp32 {err:.3g}")
            rep.row("ort", f"{net} batch {plan.big_batch}", f"ORT {variant}", ips, "images/s")
            p = None
        Gd = G.to(plan.device)
        for variant, dtype in (("eager fp32", None), ("eager bf16", torch.bfloat16)):
            def run(x):
                with torch.no_grad(), (torch.autocast(plan.device, dtype=dtype) if dtype else contextlib.nullcontext()):
                    return Gd(torch.from_numpy(x).to(plan.device)).float().cpu().numpy()
            lat = measure(lambda: run(x1), plan).median * 1000
            ips = measure(lambda: run(xb), plan).per_second * plan.big_batch
            results[variant] = (lat, ips)
            rep.row("ort", f"{net} batch 1 latency", variant, lat, "ms", note="from and to numpy, like the predictor")
            rep.row("ort", f"{net} batch {plan.big_batch}", variant, ips, "images/s")
        for r in rep.rows:  # ratios against eager fp32, for this network
            if r["section"] == "ort" and r["what"].startswith(net + " ") and r["variant"] in results:
                lat, ips = results["eager fp32"]
                r["ratio"] = (lat / r["value"]) if r["unit"] == "ms" else (r["value"] / ips)
        G = Gd = None


def section_service(rep: Report) -> None:
    import asyncio

    import numpy as np

    plan = rep.plan
    need("ray", "Ray Serve runs the service")
    need("aiohttp", "the load client")
    need("onnxruntime")
    _skip_without_ort_cuda(plan)
    from serving import local_service as service  # lazy: Ray
    from serving.store import ModelStore  # lazy: Ray's section only
    from translate.predictor import Predictor, RuntimeOptions  # lazy: ONNX Runtime

    model = _ort_models(plan.unet, plan)[1]["fp32"]
    max_batch = 8
    p = Predictor(model, device=plan.device, runtime=RuntimeOptions(engine="onnxruntime"))  # "raw ORT"
    images = [np.random.default_rng(i).integers(0, 256, (plan.size, plan.size, 3), dtype=np.uint8)
              for i in range(max_batch)]
    raw = measure(lambda: p.translate_arrays(images), plan).per_second * max_batch
    p = None
    rep.row("service", f"raw ORT {plan.unet}, uint8 arrays, batch {max_batch}", plan.device, raw, "images/s")
    store = ModelStore(tempfile.mkdtemp(prefix="gpu-check-store-"))
    store.register("bench", model)
    gpus = 1.0 if plan.device == "cuda" else 0.0
    with socket.socket() as s:  # a free port: other services may run on this machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = service.start_local(store.root, port=port, min_replicas=1, max_replicas=1, max_batch_size=max_batch,
                              batch_wait_timeout_s=0.005, max_queued_requests=4096, num_gpus=gpus)
    try:
        endpoint = f"{url}/v1/models/bench/translate"
        body = serve_load.test_image(plan.size)  # serve_load's test image and load client
        asyncio.run(serve_load.load(endpoint, body, plan.concurrency, max(8, plan.requests // 10)))  # warm-up
        r = asyncio.run(serve_load.load(endpoint, body, plan.concurrency, plan.requests))
    finally:
        with contextlib.suppress(Exception):
            from ray import serve

            serve.shutdown()  # Ray itself stays up for the convert section
    share = r["rps"] / raw
    rep.row("service", f"HTTP, one {'GPU' if gpus else 'CPU'} replica, concurrency {plan.concurrency}",
            f"{plan.requests} requests", r["rps"], "req/s", ratio=share,
            note=f"p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, mean batch {r['batch']:.2f}, errors {r['errors']}")
    rep.target(f"service req/s at concurrency {plan.concurrency} vs raw ORT", share, ">= 90 %",
               share >= 0.9 if plan.device == "cuda" else None)
    if r["errors"]:
        raise RuntimeError(f"{r['errors']} of {plan.requests} requests failed: {r['statuses']}")


def section_convert(rep: Report) -> None:
    from PIL import Image

    plan = rep.plan
    need("ray", "translate convert runs on Ray Data")
    need("onnxruntime")
    _skip_without_ort_cuda(plan)
    from serving.convert import convert  # lazy: Ray
    from translate.datasets import make_pair  # lazy: torch

    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-convert-"))
    (tmp / "in").mkdir()
    for i in range(plan.convert_images):
        Image.fromarray(make_pair("maps", i, size=plan.size)[0]).save(tmp / "in" / f"{i:04d}.png")
    model = tmp / "model.onnx"
    model.write_bytes(_ort_models(plan.unet, plan)[1]["fp32"])
    with stopwatch() as lap:
        summary = convert(model, tmp / "in", tmp / "out", workers=1, device=plan.device, progress=False)
    done = len(list((tmp / "out").glob("*.png")))
    rep.row("convert", f"{plan.convert_images} maps photos, {plan.unet}", f"one {plan.device} actor",
            done / lap.wall, "images/s (with Ray start-up)", note=f"failed {len(summary.failed)}")
    if done != plan.convert_images or summary.failed:
        raise RuntimeError(f"converted {done} of {plan.convert_images}; failed: {summary.failed[:3]}")


def section_ddp(rep: Report) -> None:
    """The project's data-parallel path with one GPU process: the Trainer joined to a one-process
    torch.distributed world (NCCL; gloo in the dry run) through training.world.World, as each
    Ray Train worker of ``--processes N`` is, but started here without Ray (World needs only an
    initialised process group). The project averages gradients with an all-reduce before each optimizer
    step rather than wrapping networks in DistributedDataParallel (training/distributed.py says why); this
    is that path. Checked against the same steps without a world: the same losses and weights."""
    import torch
    import torch.distributed as dist

    from training.loop import Trainer  # lazy: torch
    from training.world import World  # lazy: torch
    from translate.checkpoint import load_checkpoint  # lazy: torch

    need("torchmetrics", METRICS_WHY)
    plan = rep.plan
    if not dist.is_available():
        raise Skip("torch.distributed is not available in this build")
    backend = "nccl" if plan.device == "cuda" else "gloo"
    out = Path(tempfile.mkdtemp(prefix="gpu-check-ddp-"))
    runs, seconds = {}, {}
    for name in ("plain", "world"):
        method, cfg = _maps_pix2pix(plan, 2 * plan.run_batch, out / name, plan.ddp_steps, export=False,
                                    log_every=1, val_every=0, sample_every=10 * plan.ddp_steps)
        world = None
        if name == "world":
            with socket.socket() as sock:  # a free port: other jobs may run on this machine
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if plan.device == "cuda":
                torch.cuda.set_device(0)
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
            world = World(rank=0, size=1)
        try:
            with stopwatch() as lap:
                runs[name] = Trainer(method, cfg, world=world).fit()
            seconds[name] = lap.wall
        finally:
            if world is not None:
                dist.destroy_process_group()

    def losses(run: Path) -> list[float]:
        rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        return [r["G_L1"] for r in rows if "G_L1" in r]

    weights = {n: load_checkpoint(r / "checkpoints" / "latest.pt")["networks"]["G"] for n, r in runs.items()}
    diff = max(float((weights["world"][k].float() - v.float()).abs().max()) for k, v in weights["plain"].items()
               if v.is_floating_point())
    a, b = losses(runs["world"]), losses(runs["plain"])
    rep.row("ddp", f"pix2pix, {plan.ddp_steps} steps of batch {plan.run_batch}",
            f"training.world World, 1 {plan.device} process, {backend}", plan.ddp_steps / seconds["world"],
            "steps/s (set-up and first steps included)", ratio=seconds["plain"] / seconds["world"],
            note=f"without a world {plan.ddp_steps / seconds['plain']:.3g} steps/s; G_L1 {a[-1]:.4f} vs {b[-1]:.4f}; "
                 f"max weight diff {diff:.2g}; no Ray (Ray Train starts these processes with --processes N)")
    # the CPU is deterministic: the same weights to the bit; cuDNN's kernel choice may differ between two runs,
    # and Adam turns tiny gradient differences near 0 into whole steps of lr, so on the GPU the losses are compared
    same = diff <= 1e-6 if plan.device == "cpu" else all(abs(x - y) <= 0.01 * abs(y) + 1e-4 for x, y in zip(a, b, strict=True))
    if len(a) != len(b) or not all(map(math.isfinite, a)) or not same:
        raise RuntimeError(f"one process in a world does not train as one without (max weight diff {diff:.3g}, "
                           f"G_L1 {a} vs {b})")


def ort_cuda_missing() -> str | None:
    """Why ONNX Runtime's CUDA provider cannot even be asked for here, as a missing package is (the CPU build of
    onnxruntime installed, as on the lent GPU machines, or none): the ORT rows are then skipped naming the remedy.
    None where the GPU build is installed; whether its CUDA provider then works is :func:`require_ort_cuda`'s to
    say (a failure, not a skip: CUDA was asked for and is there)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        return f"onnxruntime is not installed ({e}): install onnxruntime-gpu"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"onnxruntime-gpu is not installed: onnxruntime {ort.__version__} here is the CPU build (no "
                "CUDAExecutionProvider); install onnxruntime-gpu in its place (README, 'Serving on a GPU')")
    return None


def _skip_without_ort_cuda(plan: Plan) -> None:
    """On the GPU: skip the section where onnxruntime-gpu is not installed, fail it where its CUDA provider does not
    run; the dry run measures the CPU provider."""
    if plan.device == "cuda":
        if why := ort_cuda_missing():
            raise Skip(why)
        require_ort_cuda()


#: the settings of a GPU model replica, each alone and all together: (CudaOptions fields, uint8 NHWC input).
#: The baseline is ONNX Runtime's CUDA provider as the predictor ran it before them: the heuristic cuDNN search,
#: NCHW kernels, session.run, float NCHW input converted from the pixels on the CPU.
REPLICA_SETTINGS: dict[str, tuple[dict[str, Any], bool]] = {
    "baseline": ({"io_binding": False}, False),
    "prefer_nhwc": ({"io_binding": False, "prefer_nhwc": True}, False),
    "exhaustive search (fixed size)": ({"io_binding": False, "fixed_size": True}, False),
    "IOBinding": ({"io_binding": True}, False),
    "uint8 NHWC input": ({"io_binding": False}, True),
    "all together": ({"io_binding": True, "prefer_nhwc": True, "fixed_size": True}, True),
}


def _replica_worker(path: str, device: str, mem_limit: int | None, size: int, batch: int, seconds: float,
                    threads: int, start, done, release, results) -> None:
    """One model replica in a process of its own (as Ray runs each), sharing the GPU with the others: its own
    session with its ``gpu_mem_limit``, timed between two barriers so that every replica runs at once."""
    try:
        import numpy as np

        from translate.cuda_options import CudaOptions  # lazy: the parent's imports are not the child's
        from translate.predictor import Predictor  # lazy: ONNX Runtime
        from translate.tiling import TileConfig  # lazy: ONNX

        p = Predictor(path, device=device, threads=threads, tiling=TileConfig(threshold=None),
                      cuda=CudaOptions(gpu_mem_limit=mem_limit))
        images = [np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8) for i in range(batch)]
        p.translate_arrays(images)  # warm-up: the arena grows, cuDNN searches
        start.wait(timeout=300)
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < seconds:
            p.translate_arrays(images)
            n += batch
        results.put({"images": n, "seconds": time.perf_counter() - t0, "providers": p.providers[:1]})
    except BaseException as e:  # noqa: BLE001 - the parent shows it
        results.put({"error": f"{type(e).__name__}: {e}"})
        start.abort()
    with contextlib.suppress(Exception):
        done.wait(timeout=300)  # the parent reads the GPU's memory while every replica still holds its own
        release.wait(timeout=300)


def _replicas_on_one_gpu(rep: Report, path: str, n: int, gpu_bytes: int | None) -> tuple[float, str]:
    """(images/s of ``n`` replicas together, a note): each replica a process with its share of the GPU's memory
    (serving.model_server.replica_cuda_options' rule, translate.cuda_options.replica_gpu_mem_limit)."""
    import multiprocessing as mp

    from translate.cuda_options import replica_gpu_mem_limit

    plan = rep.plan
    share = 1.0 / n
    limit = replica_gpu_mem_limit(share if n > 1 else 1.0, None, gpu_bytes)
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    start, done, release = ctx.Barrier(n), ctx.Barrier(n + 1), ctx.Barrier(n + 1)
    results = ctx.Queue()
    threads = 1 if plan.device == "cpu" else 0
    procs = [ctx.Process(target=_replica_worker, daemon=True,
                         args=(path, plan.device, limit, plan.size, plan.replica_batch, max(plan.seconds, 0.5),
                               threads, start, done, release, results)) for _ in range(n)]
    try:
        for proc in procs:
            proc.start()
        got: list[dict[str, Any]] = []
        while len(got) < n:
            try:
                got.append(results.get(timeout=1))
            except queue.Empty:
                dead = [proc.exitcode for proc in procs if proc.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a replica process died (exit codes {dead})") from None
        errors = [g["error"] for g in got if "error" in g]
        if errors:
            raise RuntimeError(f"a replica failed: {errors[0]}")
        used = ""
        with contextlib.suppress(Exception):
            done.wait(timeout=60)
            if plan.device == "cuda":
                import torch

                free, total = torch.cuda.mem_get_info()
                used = f"; GPU memory in use {(total - free) / 2**30:.1f} GB of {total / 2**30:.0f}"
        per_s = sum(g["images"] / g["seconds"] for g in got)
        note = (f"{n} processes, num_gpus {share:.2g} each, gpu_mem_limit "
                f"{'none' if limit is None else f'{limit / 2**30:.1f} GB'} each{used}; providers {got[0]['providers']}")
        return per_s, note
    finally:
        with contextlib.suppress(Exception):
            release.wait(timeout=5)
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


def _jpeg_rows(rep: Report) -> None:
    """JPEG decode of an upload on the GPU (torchvision's nvJPEG, translate.gpu_jpeg) against the CPU decoder
    (translate.uploads.decode_upload, Pillow): milliseconds and CPU milliseconds per image, as the replica runs
    them (the pixels come back to the host)."""
    import io

    import numpy as np
    from PIL import Image

    from translate import gpu_jpeg, uploads
    from translate.datasets import make_pair  # lazy: torch

    plan = rep.plan
    try:
        import torchvision  # noqa: F401
        tv_missing = ""
    except ImportError as e:
        tv_missing = f"torchvision is not installed ({e})"
    for size in plan.jpeg_sizes:
        photo = make_pair("maps", 0, size=size)[0]
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "JPEG", quality=90)
        data = buf.getvalue()
        what = f"JPEG decode {size}x{size} ({len(data) // 1024} KB)"
        cpu_pixels = uploads.decode_upload(data, 2**31)[0]
        t = measure(lambda: uploads.decode_upload(data, 2**31), rep.plan)
        base = t.median
        rep.row("replica", what, "CPU (Pillow)", base * 1000, "ms", note=f"CPU {statistics.median(t.cpu) * 1000:.2f} ms")
        if tv_missing:
            rep.row("replica", what, "GPU (nvJPEG)", None, "", note=f"skipped: {tv_missing}")
            continue
        device = "cuda" if plan.device == "cuda" else "cpu"
        got = gpu_jpeg.decode_jpeg(data, device=device)
        if got is None:
            rep.row("replica", what, f"torchvision on {device}", None, "",
                    note=f"skipped: torchvision's decode_jpeg on {device} did not decode it (the CPU decoder serves)")
            continue
        t = measure(lambda: gpu_jpeg.decode_jpeg(data, device=device), rep.plan)
        diff = int(np.abs(got.astype(int) - cpu_pixels).max())
        rep.row("replica", what, "GPU (nvJPEG)" if device == "cuda" else "torchvision on cpu (dry run)",
                t.median * 1000, "ms", ratio=base / t.median,
                note=f"CPU {statistics.median(t.cpu) * 1000:.2f} ms; max diff vs Pillow {diff} grey levels")


def section_replica(rep: Report) -> None:
    """A GPU model replica's settings, each alone and all together, on unet_256 (uint8 images in, uint8 out,
    as the service's replica runs them): cuDNN's NHWC kernels (prefer_nhwc), the exhaustive convolution search for
    one fixed size, IOBinding, the uint8 NHWC graph input (`translate export --input uint8-nhwc`); then several
    replicas sharing one GPU, each with its gpu_mem_limit, against one; then JPEG decode on the GPU against the CPU.
    Without onnxruntime-gpu (the lent machines as they come) the ONNX Runtime rows are skipped naming it and the
    JPEG rows still run; the dry run measures the CPU provider (where the CUDA options do nothing)."""
    plan = rep.plan
    why = ort_cuda_missing() if plan.device == "cuda" else None
    if why is None:
        try:
            need("onnxruntime")
        except Skip as e:
            why = str(e)
    if why is not None:
        for name in [*REPLICA_SETTINGS, f"{plan.replicas} replicas on one GPU"]:
            rep.row("replica", f"{plan.unet}, batch {plan.replica_batch}", name, None, "", note=f"skipped: {why}")
        rep.section_notes["replica"] = f"ONNX Runtime rows skipped: {why}"
    else:
        if plan.device == "cuda":
            require_ort_cuda()
        _ort_replica_rows(rep)
    _jpeg_rows(rep)


def _ort_replica_rows(rep: Report) -> None:
    import numpy as np

    from translate.cuda_options import CudaOptions  # lazy: the section's own
    from translate.export import export_generator, with_input_layout  # lazy: torch
    from translate.predictor import Predictor, gpu_memory_bytes  # lazy: ONNX Runtime
    from translate.tiling import TileConfig  # lazy: ONNX

    plan = rep.plan
    data, _ = export_generator(_generator(plan.unet, plan), {"arch": {"input_nc": 3}, "batch_stats": True},
                               check=False)
    models = {False: data, True: with_input_layout(data, "uint8-nhwc")[0]}
    images = [np.random.default_rng(i).integers(0, 256, (plan.size, plan.size, 3), dtype=np.uint8)
              for i in range(plan.replica_batch)]
    cpu = plan.device == "cpu"
    base: dict[str, float] = {}
    reference = None
    for name, (fields, uint8) in REPLICA_SETTINGS.items():
        p = Predictor(models[uint8], device=plan.device, tiling=TileConfig(threshold=None), cuda=CudaOptions(**fields))
        out = p.translate_arrays(images)
        reference = out if reference is None else reference
        diff = max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(out, reference, strict=True))
        if diff > 8:  # the same network: a layout or a binding that mixes pixels up, not rounding
            raise RuntimeError(f"{name}: the output differs from the baseline's by {diff} grey levels")
        lat = measure(lambda: p.translate_arrays(images[:1]), plan).median * 1000
        ips = measure(lambda: p.translate_arrays(images), plan).per_second * len(images)
        variant = f"{name} (CPU provider: dry run)" if cpu else name
        ignored = cpu and ("prefer_nhwc" in fields or "fixed_size" in fields)
        note = (f"providers {p.providers[:1]}, IOBinding {p.binding_device or 'off'}, input {p.input_layout}; "
                f"max diff vs baseline {diff} grey levels" + ("; the CUDA options do nothing on the CPU" if ignored else ""))
        r1 = rep.row("replica", f"{plan.unet} batch 1 latency", variant, lat, "ms", note=note)
        r2 = rep.row("replica", f"{plan.unet} batch {len(images)}", variant, ips, "images/s")
        if name == "baseline":
            base = {"lat": lat, "ips": ips}
        r1["ratio"], r2["ratio"] = base["lat"] / lat, ips / base["ips"]
        p = None  # its GPU memory freed before the next setting's session
    with tempfile.TemporaryDirectory(prefix="gpu-check-replica-") as tmp:
        path = str(Path(tmp) / "model.onnx")
        Path(path).write_bytes(data)
        gpu_bytes = gpu_memory_bytes() if not cpu else None
        one = None
        for n in (1, plan.replicas):
            per_s, note = _replicas_on_one_gpu(rep, path, n, gpu_bytes)
            r = rep.row("replica", f"{plan.unet} batch {plan.replica_batch}, replicas sharing one "
                                   f"{'CPU (dry run)' if cpu else 'GPU'}", f"{n} replica{'s' if n > 1 else ''}",
                        per_s, "images/s (all replicas)", note=note)
            one = per_s if one is None else one
            r["ratio"] = per_s / one


SECTIONS: dict[str, Callable[[Report], None]] = {
    "env": section_env, "train": section_train, "forward": section_forward, "run": section_run,
    "ort": section_ort, "service": section_service, "convert": section_convert, "ddp": section_ddp,
    "replica": section_replica}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="on the CPU with tiny networks (what the tests run)")
    ap.add_argument("--json", help="also write the results as JSON to this path")
    ap.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run these sections (env always runs)")
    ap.add_argument("--budget-scale", type=float, default=1.0, help="multiply every section's time budget")
    args = ap.parse_args(argv)
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    rep = Report(plan)
    started = time.monotonic()
    names = ["env"] + [n for n in SECTIONS if n != "env" and (not args.only or n in args.only)]
    try:
        import torch

        torch.manual_seed(0)
        if plan.device == "cpu":
            torch.set_num_threads(min(2, os.cpu_count() or 1))
        for name in names:
            budget = BUDGETS[name] * args.budget_scale
            budget = min(budget, TOTAL_BUDGET * args.budget_scale - (time.monotonic() - started))
            print(f"== {name} (budget {budget:.0f} s)", flush=True)
            status, note = "ok", ""
            with stopwatch() as lap:
                try:
                    if budget <= 1:
                        raise Timeout("no time left in the total budget")
                    with deadline(budget):
                        SECTIONS[name](rep)
                except Skip as e:
                    status, note = "skipped", str(e)
                except Timeout as e:
                    status, note = "timed out", f"{e} (rows measured so far are kept)"
                except Exception as e:  # noqa: BLE001 - the table shows it; the next section runs
                    status, note = "FAILED", f"{type(e).__name__}: {e}"
                    traceback.print_exc()
            if status == "ok":
                note = rep.section_notes.get(name, "")
            rep.sections[name] = {"status": status, "seconds": lap.wall, "cpu_seconds": lap.cpu, "note": note}
            if status != "ok":
                print(f"   {name}: {status}: {note}", flush=True)
            if name == "env" and status == "FAILED" and plan.device == "cuda":
                for rest in names[1:]:  # no GPU: nothing else can run; each says so
                    rep.sections[rest] = {"status": "skipped", "seconds": 0.0, "cpu_seconds": 0.0,
                                          "note": f"not run: env failed ({note})"}
                    print(f"== {rest}: skipped: not run: env failed", flush=True)
                break
    except KeyboardInterrupt:
        rep.sections["interrupted"] = {"status": "interrupted", "seconds": time.monotonic() - started}
    finally:
        with contextlib.suppress(Exception):
            import ray

            if ray.is_initialized():
                ray.shutdown()
        print("\n" + rep.table(), flush=True)
        print(f"\ntotal {time.monotonic() - started:.0f} s", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rep.to_json(), indent=2, default=str))
    return 0 if all(s["status"] in ("ok", "skipped") for s in rep.sections.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
