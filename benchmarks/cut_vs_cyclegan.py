"""CycleGAN, CUT and FastCUT side by side: seconds per training step and peak memory on the same data, the same
steps and the same machine, each method in its own process (so each peak RSS is its own).

    python -m benchmarks.cut_vs_cyclegan [--size 128] [--steps 10] [--warmup 2] [--threads 2] [--device cpu]

The data is one built-in paired set (maps, written once to a temporary folder), which every method takes as
unpaired halves (training/translation_data.py); each method runs its default networks (resnet_9blocks, basic
PatchGAN, 64 filters) at ``--size``, batch 1, in float32 (``--amp`` to let each resolve its own setting). Smaller
networks (``--netG resnet_1blocks --ngf 4 --ndf 4 --size 32 --steps 2``) only check that it runs. On CUDA the
memory column adds the GPU's peak allocation. Prints a Markdown table and each method's time relative to
CycleGAN's; copy it with the machine line into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import machine, peak_rss_gb, print_row, print_table, time_calls

#: (label, method, config overrides) of each row, CycleGAN first: the others are measured against it
VARIANTS: dict[str, tuple[str, dict]] = {
    "CycleGAN": ("cyclegan", {}),
    "CUT": ("cut", {"mode": "cut"}),
    "FastCUT": ("cut", {"mode": "fastcut"}),
}


def child(variant: str, args: argparse.Namespace) -> dict:
    """Build ``variant`` on ``args.data``, take ``warmup`` untimed steps and time ``steps`` more on the data's batches."""
    import torch

    torch.set_num_threads(args.threads)
    import training  # lazy: torch, in the child only
    from training.method_base import to_device  # lazy: torch, in the child only

    name, overrides = VARIANTS[variant]
    method = training.method(name)
    device = torch.device(args.device)
    config = method.config_class(data=args.data, size=args.size, netG=args.netG, ngf=args.ngf, ndf=args.ndf,
                                 batch_size=1, workers=0, device=args.device, amp=args.amp, **overrides)
    config.validate()
    torch.manual_seed(0)
    m = method(config, device)
    train, _ = m.datasets()
    keys = iter(range(10**9))
    n = len(train)

    def step() -> None:
        i = next(keys)
        batch = torch.utils.data.default_collate([train[(i % n, 0)]])
        m.step(to_device(batch, device))
        m.steps_done += 1

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    t = time_calls(step, args.steps, warmup=args.warmup, sync=sync)
    out = {"s_per_step": t.median, "s_min": t.min, "peak_rss_gb": peak_rss_gb(), "amp": bool(config.amp),
           "parameters": sum(p.numel() for net in m.networks.values() for p in net.parameters())}
    if device.type == "cuda":
        out["gpu_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def run_child(variant: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", __spec__.name, "--child", variant, "--data", args.data, "--size", str(args.size),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads), "--netG",
           args.netG, "--ngf", str(args.ngf), "--ndf", str(args.ndf), "--device", args.device,
           *(["--amp"] if args.amp is None else [])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description="CycleGAN, CUT and FastCUT: time per step and peak memory, side by side")
    ap.add_argument("--size", type=int, default=128, help="crop size the networks train on")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per method (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each method's process")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--amp", action="store_const", const=None, default=False,
                    help="each method's own AMP setting (default: float32 for all)")
    ap.add_argument("--netG", default="resnet_9blocks")
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--count", type=int, default=24, help="images of the data set written for the run")
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    import torch

    from translate.datasets import make_dataset  # lazy: torch

    print(f"machine: {machine()}, {args.threads} threads, torch {torch.__version__}\n"
          f"{args.netG}, ngf {args.ngf}, ndf {args.ndf}, {args.size} px, batch 1, {args.device}, "
          f"{'each its own AMP' if args.amp is None else 'float32'}; {args.steps} timed steps after {args.warmup}\n")
    with tempfile.TemporaryDirectory() as tmp:
        args.data = str(Path(tmp) / "maps")
        make_dataset("maps", args.data, count=args.count, size=args.size, seed=0, progress=False)
        header = ["method", "time per step (median, min)", "x CycleGAN", "peak RSS", "parameters"]
        if args.device == "cuda":
            header.insert(4, "GPU peak")
        print_table(header)
        base = None
        for variant in VARIANTS:
            r = run_child(variant, args)
            base = base or r["s_per_step"]
            row = [variant, f"{r['s_per_step']:.3f} s ({r['s_min']:.3f})", f"{r['s_per_step'] / base:.2f}x",
                   f"{r['peak_rss_gb']:.2f} GB", f"{r['parameters'] / 1e6:.2f} M"]
            if args.device == "cuda":
                row.insert(4, f"{r['gpu_peak_gb']:.2f} GB")
            print_row(*row)


if __name__ == "__main__":
    main()
