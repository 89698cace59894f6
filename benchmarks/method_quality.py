"""What the newer methods give beside the ones they stand next to, at equal steps on the built-in sets, scored by
the scores of issue 21 (nothing downloaded; the judges are trained here: benchmarks/judges.py):

    python -m benchmarks.method_quality multimodal [--steps 240] [--seeds 3] [--samples 4] [--work DIR]
    python -m benchmarks.method_quality unpaired [--steps 300] [--seeds 2] [--work DIR]

``multimodal``: BicycleGAN beside Pix2Pix on the sketches set (sketch -> photo), both with the set's preset networks.
Each test sketch is translated ``--samples`` times (BicycleGAN: codes drawn from N(0, I); Pix2Pix: its one answer,
as exported). Diversity: the mean pairwise distance between the samples of one input, on the judge's features (and
in grey levels), beside the mean distance between two different real photos (the scale of "different"). Realism:
the Fréchet distance of the judge's features between the first sample of each input and the real photos, with the
real-vs-real figure of the test split's two halves (the noise), and L1 to the target (BicycleGAN at the prior's mean).

``unpaired``: CycleGAN, CUT and FastCUT on the maps set taken as unpaired halves (aerial -> map), the same networks
(``--netG``/``--ngf``, smaller than the paper's so that a run takes minutes here), scored on the held-out pairs by the
class IoU of the outputs' map colours (the set's palette) and by L1.

Mean ± standard deviation over seeds, seconds per run (equal steps; the time column shows the equal-time picture) and
the machine. Copy the tables into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import machine, mean_spread, print_row, print_table
from benchmarks.judges import SEGMENTER_STEPS, photo_judge
from benchmarks.recipe import make_set

#: (label, method, config overrides) of the unpaired rows, CycleGAN first
UNPAIRED: dict[str, tuple[str, dict[str, Any]]] = {
    "CycleGAN": ("cyclegan", {}),
    "CUT": ("cut", {"mode": "cut"}),
    "FastCUT": ("cut", {"mode": "fastcut"}),
}
MULTIMODAL = ("pix2pix", "bicyclegan")


def train(name: str, data: Path, out: Path, steps: int, seed: int, **overrides: Any) -> tuple[Any, float]:
    """(trainer, training seconds) of ``steps`` steps of method ``name`` on ``data`` from ``seed``."""
    import training  # lazy: torch
    from training.loop import Trainer  # lazy: torch

    method = training.method(name)
    config = method.config_class(data=str(data), out=str(out), steps=steps, seed=seed, workers=0, progress=False,
                                 export=False, val_every=0, sample_every=10**9, checkpoint_every=10**9, log_every=50,
                                 **overrides)
    trainer = Trainer(method, config)
    started = time.perf_counter()
    trainer.fit()
    if trainer.step < steps:  # Ctrl-C or SIGTERM stopped the loop: a short run's score would mislead
        raise SystemExit(f"stopped at step {trainer.step} of {steps} in {out}: no table")
    return trainer, time.perf_counter() - started


def held_out_batches(data: Path, size: int, direction: str = "AtoB"):
    """The held-out pairs of ``data`` at ``size``, in batches of 8 (A, B as NCHW in [-1, 1])."""
    import torch

    from translate import data as tdata  # lazy: torch

    test = tdata.PairedImages(tdata.find_pairs(str(data), "test"), size=size, preprocess="resize", train=False,
                              direction=direction)
    return list(torch.utils.data.DataLoader(test, batch_size=8))


def _pairwise(x) -> float:
    """Mean distance between the K rows of ``x`` (K, ...) over its K(K-1)/2 pairs: L2 of feature rows."""
    return float(sum((x[i] - x[j]).norm() for i, j in itertools.combinations(range(len(x)), 2))
                 / (len(x) * (len(x) - 1) / 2))


def multimodal(args: argparse.Namespace, work: Path) -> None:
    import torch

    from translate.gan.metrics import fid_from_features  # lazy: torch

    data = make_set("sketches", work, args.count, 128)
    judge = photo_judge(data, work, steps=args.judge_steps)
    batches = held_out_batches(data, 128)
    real = torch.cat([b["B"] for b in batches])
    real_f = judge(real).float()
    half = len(real) // 2
    real_vs_real = max(0.0, fid_from_features(real_f[:half], real_f[half:2 * half]))
    real_spread = _pairwise(real_f)  # between different photos: the scale of a "different" answer
    rows: dict[str, dict[str, list[float]]] = {m: {} for m in MULTIMODAL}
    for name in MULTIMODAL:
        for seed in range(args.seeds):
            # both at the papers' 2e-4 (the sketches preset trains Pix2Pix faster, at 1.6e-3; BicycleGAN's rate was not measured)
            trainer, seconds = train(name, data, work / "runs" / f"{name}-{seed}", args.steps, seed, lr=2e-4)
            G = trainer.method.eval_generators()["AtoB"]
            codes = torch.Generator().manual_seed(1000 + seed)
            first, feature_div, grey_div, l1 = [], [], [], []
            with torch.no_grad():
                for b in batches:
                    A, n = b["A"], len(b["A"])
                    if name == "bicyclegan":
                        nz = trainer.config.nz
                        outs = [G(A, torch.randn(n, nz, generator=codes)).float().clamp(-1, 1)
                                for _ in range(args.samples)]
                        l1.append((G(A, torch.zeros(n, nz)).float().clamp(-1, 1) - b["B"]).abs().mean((1, 2, 3)))
                    else:
                        out = G(A).float().clamp(-1, 1)
                        outs = [out] * args.samples  # one answer, as exported (its dropout is off at test time)
                        l1.append((out - b["B"]).abs().mean((1, 2, 3)))
                    first.append(outs[0])
                    feats = torch.stack([judge(o).float() for o in outs], 1)  # (n, K, F)
                    pixels = torch.stack(outs, 1)  # (n, K, C, H, W)
                    for i in range(n):
                        feature_div.append(_pairwise(feats[i]))
                        grey_div.append(_pairwise(pixels[i].flatten(1)) * 127.5
                                        / pixels[i][0].numel() ** 0.5)  # RMS grey levels between two samples
            fake_f = judge(torch.cat(first)).float()
            r = rows[name]
            r.setdefault("diversity", []).append(statistics.mean(feature_div) / real_spread)
            r.setdefault("grey", []).append(statistics.mean(grey_div))
            r.setdefault("frechet", []).append(max(0.0, fid_from_features(real_f, fake_f)))
            r.setdefault("l1", []).append(float(torch.cat(l1).mean()))
            r.setdefault("seconds", []).append(seconds)
    print(f"\nsketches -> photo, {args.steps} steps, {args.seeds} seed(s), {args.samples} samples per input, "
          f"{len(real)} test sketches at 128 px; mean ± standard deviation over seeds")
    print(f"judge: the sketches segmenter ({args.judge_steps} steps, benchmarks/judges.py); real vs real Fréchet "
          f"(two halves of the test split): {real_vs_real:.3f}")
    print_table(["method", "diversity (x real spread)", "diversity (RMS grey levels)", "Fréchet distance",
                 "L1 to target", "s / run"])
    for name in MULTIMODAL:
        r = rows[name]
        print_row(name, mean_spread(r["diversity"]), mean_spread(r["grey"], 1), mean_spread(r["frechet"]),
                  mean_spread(r["l1"]),
                  f"{statistics.mean(r['seconds']):.0f}")


def unpaired(args: argparse.Namespace, work: Path) -> None:
    import torch

    from translate.class_maps import palette_beside  # lazy: torch
    from translate.task_score import task_score  # lazy: torch

    data = make_set("maps", work, args.count, args.size)
    batches = held_out_batches(data, args.size)
    targets = torch.cat([b["B"] for b in batches])
    palette = palette_beside(data)
    rows: dict[str, dict[str, list[float]]] = {v: {} for v in UNPAIRED}
    for label, (name, overrides) in UNPAIRED.items():
        for seed in range(args.seeds):
            trainer, seconds = train(name, data, work / "runs" / f"{label}-{seed}", args.steps, seed, size=args.size,
                                     netG=args.netG, ngf=args.ngf, ndf=args.ngf, **overrides)
            G = trainer.method.eval_generators()["AtoB"]
            with torch.no_grad():
                outputs = torch.cat([G(b["A"]).float().clamp(-1, 1) for b in batches])
            r = rows[label]
            r.setdefault("iou", []).append(task_score(outputs, targets, palette=palette).value)
            r.setdefault("l1", []).append(float((outputs - targets).abs().mean()))
            r.setdefault("seconds", []).append(seconds)
    print(f"\nmaps (aerial -> map) as unpaired halves, {args.steps} steps, {args.seeds} seed(s), {args.netG} ngf=ndf="
          f"{args.ngf} at {args.size} px, {len(targets)} held-out pairs; mean ± standard deviation over seeds")
    print_table(["method", "class IoU", "L1", "s / run", "x CycleGAN's time"])
    base = statistics.mean(rows["CycleGAN"]["seconds"])
    for label in UNPAIRED:
        r = rows[label]
        print_row(label, mean_spread(r["iou"]), mean_spread(r["l1"]), f"{statistics.mean(r['seconds']):.0f}",
                  f"{statistics.mean(r['seconds']) / base:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="which", required=True)
    mm = sub.add_parser("multimodal", help="BicycleGAN beside Pix2Pix on sketches: diversity and realism")
    mm.add_argument("--steps", type=int, default=240, help="training steps of every run")
    mm.add_argument("--seeds", type=int, default=3, help="runs per method (seeds 0..N-1)")
    mm.add_argument("--samples", type=int, default=4, help="translations per test sketch")
    mm.add_argument("--count", type=int, default=600, help="pairs made (80%% train, 10%% val, 10%% test)")
    mm.add_argument("--judge-steps", type=int, default=SEGMENTER_STEPS, help="training steps of the judge")
    up = sub.add_parser("unpaired", help="CycleGAN, CUT and FastCUT on maps: class IoU")
    up.add_argument("--steps", type=int, default=300, help="training steps of every run")
    up.add_argument("--seeds", type=int, default=2, help="runs per method (seeds 0..N-1)")
    up.add_argument("--count", type=int, default=300, help="pairs made (80%% train, 10%% val, 10%% test)")
    up.add_argument("--size", type=int, default=128, help="image size")
    up.add_argument("--netG", default="resnet_6blocks", help="every method's generator")
    up.add_argument("--ngf", type=int, default=32, help="filters of G and D")
    for p in (mm, up):
        p.add_argument("--threads", type=int, default=2, help="torch threads")
        p.add_argument("--work", default="", help="folder for the sets, judges and runs (default: a temporary one)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="method-quality-"))
    (multimodal if args.which == "multimodal" else unpaired)(args, work)
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()
