"""Pix2Pix speed on CPU: training step (unet_256 + basic D, 256x256, batch 1) and generator
inference (unet_256, 256x256), each variant in its own process for a clean peak-memory reading.

    python -m benchmarks.pix2pix_cpu [--threads 2] [--steps 10] [--runs 30]

Prints a Markdown table; copy it with the machine description into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.harness import machine, peak_rss_gb, print_row, print_table, time_calls


def child_train(variant: str, steps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from training.pix2pix import Pix2Pix, Pix2PixConfig  # lazy: torch, in the child only

    # "nchw" is the reference implementation's layout and optimizer; the math is the same in both
    cfg = Pix2PixConfig(data="-", size=256, channels_last=variant == "ours")
    m = Pix2Pix(cfg, torch.device("cpu"))
    if variant == "nchw":  # the reference's optimizer: Adam with its default (foreach) implementation
        m.optimizers = {k: torch.optim.Adam(m.networks[k].parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
                        for k in ("G", "D")}
    g = torch.Generator().manual_seed(0)
    batch = {"A": torch.rand(1, 3, 256, 256, generator=g) * 2 - 1, "B": torch.rand(1, 3, 256, 256, generator=g) * 2 - 1}
    return {"s_per_step": time_calls(lambda: m.step(batch), steps, warmup=3).mean}


def child_infer(variant: str, runs: int, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from translate.export import export_generator  # lazy: torch, in the child only
    from translate.networks import define_G, to_inference  # lazy: torch, in the child only
    from translate.predictor import Predictor  # lazy: ONNX Runtime, in the child only

    torch.manual_seed(0)
    G = to_inference(define_G("unet_256", norm="batch", use_dropout=True), batch_stats=True)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32)
    if variant == "eager":
        xt = torch.from_numpy(x)
        fn = lambda: G(xt)  # noqa: E731
        ctx = torch.no_grad()
    else:
        data, _ = export_generator(G, {"arch": {"input_nc": 3}, "batch_stats": True}, check=False)
        p = Predictor(data, threads=threads)
        fn = lambda: p.run(x)  # noqa: E731
        import contextlib

        ctx = contextlib.nullcontext()
    with ctx:
        t = time_calls(fn, runs, warmup=3)
    return {"ms_median": 1000 * t.median, "ms_min": 1000 * t.min}


def run_child(kind: str, variant: str, args) -> dict:
    out = subprocess.run([sys.executable, "-m", __spec__.name, "--child", kind, "--variant", variant, "--threads",
                          str(args.threads), "--steps", str(args.steps), "--runs", str(args.runs)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--child")
    ap.add_argument("--variant")
    args = ap.parse_args()
    if args.child:
        res = (child_train if args.child == "train" else child_infer)(
            args.variant, args.steps if args.child == "train" else args.runs, args.threads)
        res["peak_rss_gb"] = peak_rss_gb()
        print(json.dumps(res))
        return
    import onnxruntime
    import torch

    print(f"machine: {machine()}, {args.threads} threads, torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}\n")
    print_table(["what", "variant", "time", "peak RSS"])
    train = {v: run_child("train", v, args) for v in ("nchw", "ours")}
    for v, r in train.items():
        label = "NCHW + foreach Adam (reference layout)" if v == "nchw" else "channels-last + fused Adam (default here)"
        print_row("train step unet_256 + basic D, 256px, batch 1", label, f"{r['s_per_step']:.3f} s/step",
                  f"{r['peak_rss_gb']:.2f} GB")
    infer = {v: run_child("infer", v, args) for v in ("eager", "onnxruntime")}
    for v, r in infer.items():
        print_row("inference unet_256, 256px, batch 1", v, f"{r['ms_median']:.1f} ms (min {r['ms_min']:.1f})",
                  f"{r['peak_rss_gb']:.2f} GB")
    print(f"\ntrain speed-up {train['nchw']['s_per_step'] / train['ours']['s_per_step']:.2f}x; "
          f"ORT vs eager {infer['eager']['ms_median'] / infer['onnxruntime']['ms_median']:.2f}x")


if __name__ == "__main__":
    main()
