"""Reading training data from object storage: a Pix2Pix step's time with ``--data`` on a local S3 server (moto's,
as the tests start it) beside the same images on disk, side by side in one run.

    python -m benchmarks.s3_read [--size 256] [--net unet_256] [--images 64] [--steps 20] [--workers 2]

Both runs are the training loop's own (its data loader, ``--workers`` processes fetching ahead); each timed call is
one step: waiting for the batch, then the method's step. Rounds alternate disk and S3 so that drift in the
machine's load falls on both. The images are JPEG A|B pairs (procedural, nothing downloads). The local server
costs no network time: what is measured is the client's cost (requests, the event loop, copies), the part a
bucket in the same region adds besides latency, which the data loader's prefetching hides while it is shorter
than a step.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.harness import machine, print_row, print_table, time_calls


def make_pairs(root: Path, images: int, size: int) -> None:
    """``images`` aligned A|B JPEGs of ``size`` px per side: smooth noise (compresses like a photo)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for i in range(images):
        small = rng.integers(0, 256, (max(2, size // 16), max(4, size // 8), 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((2 * size, size), Image.Resampling.BICUBIC)
        img.save(root / "train" / f"{i:05d}.jpg", quality=90)


def upload(root: Path, url: str) -> None:
    from translate import object_storage

    for path in sorted(root.rglob("*.jpg")):
        object_storage.put_file(path, f"{url}/{path.relative_to(root).as_posix()}")


def step_timer(data: str, out: Path, args):
    """A training loop on ``data`` and a call that runs one of its steps (the batch's wait included)."""
    from training.loop import Trainer  # lazy: torch
    from training.method_base import to_device  # lazy: torch
    from training.pix2pix import Pix2Pix, Pix2PixConfig  # lazy: torch

    config = Pix2PixConfig(data=data, out=str(out), size=args.size, load_size=args.size, netG=args.net,
                           batch_size=1, steps=10**6, workers=args.workers, progress=False, export=False,
                           val_fraction=0.01, device="cpu")
    loop = Trainer(Pix2Pix, config)
    batches = iter(loop._loader())  # the loop's own loader: its workers, its prefetching
    return lambda: loop.method.step(to_device(next(batches), loop.device))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--net", default="unet_256")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round and source")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="data loader workers (the trainers' default)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    from tests.s3_server import s3_environment

    with tempfile.TemporaryDirectory(prefix="s3-read-") as tmp_name:
        tmp = Path(tmp_name)
        make_pairs(tmp / "pairs", args.images, args.size)
        with s3_environment(tmp / "cache", "bench") as server:
            import torch

            if args.threads:
                torch.set_num_threads(args.threads)
            upload(tmp / "pairs", "s3://bench/pairs")
            print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; S3: moto at "
                  f"{server.endpoint}\n")
            steps = {"disk": step_timer(str(tmp / "pairs"), tmp / "run-disk", args),
                     "s3": step_timer("s3://bench/pairs", tmp / "run-s3", args)}
            wall: dict[str, list[float]] = {k: [] for k in steps}
            for _ in range(args.rounds):
                for name, step in steps.items():
                    wall[name] += time_calls(step, args.steps, warmup=args.warmup).wall
    disk, s3 = statistics.median(wall["disk"]), statistics.median(wall["s3"])
    print_table(["data", "Pix2Pix step (median)", "min", "steps timed"])
    for name, times in wall.items():
        print_row(f"{name} ({args.images} aligned JPEG pairs, {args.size} px, {args.net}, data loader workers: "
                  f"{args.workers})",
                  f"{1000 * statistics.median(times):.1f} ms", f"{1000 * min(times):.1f} ms", len(times))
    print(f"\nS3 vs disk: {100 * (s3 - disk) / disk:+.1f} % of a step")


if __name__ == "__main__":
    main()
