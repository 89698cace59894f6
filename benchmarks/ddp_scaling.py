"""Data-parallel training throughput on Ray Train, and what averaging the gradients costs per step.

    python -m benchmarks.ddp_scaling scaling [--processes 1 2 4] [--size 128] [--batch 2] [--steps 30]
    python -m benchmarks.ddp_scaling allreduce [--processes 2] [--repeats 20]

``scaling`` trains Pix2Pix (unet_<size>, instance norm) on the built-in maps set with each number of
processes in turn (each process at ``--batch``, so the global batch grows with the count) and prints
images/s from the run's own metrics (the first steps, with start-up, are left out). With more
processes than cores, processes get a fraction of a CPU each. ``allreduce`` times one gradient
average of the unet_256 generator + basic PatchGAN (57 M floats, what one Pix2Pix step reduces)
between processes on this machine, next to the time of a training step of the same networks.
Prints Markdown tables for BENCHMARKS.md; quote them with the machine (CPU model, cores, load).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.harness import machine, print_row, print_table, stopwatch, time_calls


def described() -> str:
    return f"{machine()}, load average {os.getloadavg()[0]:.1f}"


def scaling(args) -> None:
    import ray

    from training.loop import Trainer  # lazy: torch
    from training.pix2pix import Pix2Pix, Pix2PixConfig  # lazy: torch
    from translate.datasets import make_dataset  # lazy: torch

    root = Path(tempfile.mkdtemp(prefix="ddp-bench-"))
    make_dataset("maps", root / "maps", count=200, size=args.size, seed=0)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for n in args.processes:
            cfg = Pix2PixConfig(data=str(root / "maps"), out=str(root / f"run-{n}"), size=args.size,
                                netG=f"unet_{args.size}", norm="instance", batch_size=args.batch, processes=n,
                                cpus_per_process=min(1.0, os.cpu_count() / n) if n > os.cpu_count() else None,
                                steps=args.steps, log_every=1, val_every=10**9, sample_every=10**9,
                                checkpoint_every=10**9, workers=0, export=False, progress=False)
            with stopwatch() as lap:
                Trainer(Pix2Pix, cfg).fit()
            metrics = [json.loads(x) for x in (root / f"run-{n}" / "metrics.jsonl").read_text().splitlines()]
            rates = [m["it_per_s"] for m in metrics if "it_per_s" in m][args.steps // 3:]  # steady state
            steps_per_s = statistics.median(rates)
            rows.append((n, args.batch * n, steps_per_s, steps_per_s * args.batch * n, lap.wall))
    finally:
        ray.shutdown()
    base = rows[0][3]
    print(f"\nPix2Pix unet_{args.size}, instance norm, {args.batch} images per process a step ({described()})\n")
    print_table(["processes", "global batch", "steps/s (median)", "images/s", "vs 1 process", "wall incl. start-up"],
                [(n, gb, f"{sps:.2f}", f"{ips:.1f}", f"{ips / base:.2f}x", f"{wall:.0f} s")
                 for n, gb, sps, ips, wall in rows])


def _time_allreduce(config: dict) -> None:
    import ray.train
    import torch

    from training.world import World  # lazy: torch, in the Ray Train worker
    from translate.networks import define_D, define_G  # lazy: torch, in the Ray Train worker

    ctx = ray.train.get_context()
    world = World(ctx.get_world_rank(), ctx.get_world_size())
    torch.set_num_threads(config["threads"])
    params = list(define_G("unet_256").parameters()) + list(define_D("basic", 6).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    t = time_calls(lambda: world.average_gradients(params), config["repeats"], warmup=1, before_each=world.barrier)
    if world.is_main:
        n = sum(p.numel() for p in params)
        Path(config["out"]).write_text(json.dumps({"floats": n, "seconds": t.median, "spread": [t.min, t.max]}))


def allreduce(args) -> None:
    import ray
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from training.pix2pix import Pix2Pix, Pix2PixConfig  # lazy: torch

    out = Path(tempfile.mkdtemp(prefix="ddp-ar-")) / "result.json"
    cpus = os.cpu_count() / args.processes
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        TorchTrainer(_time_allreduce, train_loop_config={"repeats": args.repeats, "out": str(out),
                                                         "threads": max(1, int(cpus))},
                     scaling_config=ScalingConfig(num_workers=args.processes, resources_per_worker={"CPU": cpus}),
                     torch_config=TorchConfig(backend="gloo"),
                     run_config=RunConfig(storage_path=str(out.parent / "ray"), name="ar")).fit()
    finally:
        ray.shutdown()
    r = json.loads(out.read_text())
    # a step of the same networks in one process, same threads per process, for scale
    torch.set_num_threads(max(1, int(cpus)))
    m = Pix2Pix(Pix2PixConfig(data="-", size=256), torch.device("cpu"))
    batch = {k: torch.rand(1, 3, 256, 256) * 2 - 1 for k in "AB"}
    step = time_calls(lambda: m.step(batch), 5, warmup=2).mean
    print(f"\nGradient average of unet_256 + basic D ({r['floats'] / 1e6:.1f} M floats, fp32) between "
          f"{args.processes} processes, gloo, {described()}\n")
    print_table(["all-reduce (median)", "spread", "one Pix2Pix 256 px step, batch 1, same threads", "share of a step"])
    print_row(f"{r['seconds'] * 1e3:.0f} ms", f"{r['spread'][0] * 1e3:.0f}-{r['spread'][1] * 1e3:.0f} ms",
              f"{step * 1e3:.0f} ms", f"{r['seconds'] / (step + r['seconds']):.0%}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("scaling")
    s.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--batch", type=int, default=2)
    s.add_argument("--steps", type=int, default=30)
    a = sub.add_parser("allreduce")
    a.add_argument("--processes", type=int, default=2)
    a.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    scaling(args) if args.mode == "scaling" else allreduce(args)


if __name__ == "__main__":
    main()
