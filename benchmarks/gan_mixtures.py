"""The GAN family on the 2-D mixtures (PacGAN / VEEGAN protocol), and the truncation trade-off on digits.

    python -m benchmarks.gan_mixtures mixtures [--seeds 5] [--jobs 2] [--steps ring8=15000 grid25=20000]
                                               [--data ring8 grid25]
                                               [--objectives minimax nonsaturating lsgan wgan wgangp hinge
                                                             contrastive mmd]
    python -m benchmarks.gan_mixtures truncation [--steps 3000] [--conditional] [--run RUN]

``mixtures`` trains every objective on every mixture for every seed, each run through the real
training loop (``training.loop.Trainer``) in a worker process with one torch thread, and
prints a Markdown table of mean +- standard error over seeds: modes captured, % high-quality
samples (the ceiling is 98.9 %: a 2-D Gaussian puts 1 - exp(-4.5) of its mass within 3 std),
reverse KL of the mode histogram, and CPU minutes per run; then the published anchors.

The settings are the mixtures' presets in ``training.gan.PRESETS``, what ``translate train gan
--data ring8 --gan-mode NAME`` runs with: MLPs of 3 x 128 for G and D, z of 16, batch 256, EMA
of G (0.999), learning rate constant then linearly decayed to 0 over the second half; per
objective Adam 1e-3 (0.5, 0.999) for the BCE, LSGAN, hinge, contrastive (N = 8) and MMD losses, WGAN-GP with the
authors' toy penalty weight 0.1, Adam 2e-3 (0.5, 0.9) and 2 critic steps, WGAN with its paper's
RMSprop 5e-5 and n_critic 5, c = 0.01 (also run at 1e-3: see --wgan-lr). ``--steps`` overrides
the presets' 15,000 (ring8) and 20,000 (grid25) steps.

``truncation`` trains (or loads) a DCGAN on 16 px digits and measures, at a few truncation
thresholds T, quality against diversity with the digits classifier: unconditional, the mean
max-softmax confidence against the class histogram (classes covered, reverse KL against uniform)
and the mean pairwise distance of the classifier's features; conditional (``--conditional``), the
mean probability of the asked class and accuracy against the within-class feature spread.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks.harness import machine, print_row, print_table, stopwatch

OBJECTIVES = ("minimax", "nonsaturating", "lsgan", "wgan", "wgangp", "hinge", "contrastive", "mmd")
# what a benchmark run does besides the preset's settings: no export, validation only at the end, quiet
QUIET = dict(workers=0, progress=False, export=False, val_every=0, log_every=500, threads=1)
ANCHORS = {  # PacGAN (Lin et al. 2018) Tables 2-3, 2,500 samples, mean over 10 trials
    "ring8": [("GAN (as reported by VEEGAN / PacGAN)", "1 to 6.3", "", ""), ("VEEGAN", "8", "52.9", "0.68"),
              ("PacGAN4", "7.8", "95.9", "0.07")],
    "grid25": [("VEEGAN", "24.6", "40.0", "0.14"), ("PacGAN4", "24.8", "93.6", "0.03")],
}


def one_run(data: str, objective: str, seed: int, steps: int, out: str, extra: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from training.gan import GAN, GANConfig  # lazy: torch, in the worker process
    from training.loop import Trainer  # lazy: torch, in the worker process

    kw = {**QUIET, **({"steps": steps} if steps else {}), **extra}
    cfg = GANConfig(data=data, out=out, gan_mode=objective, seed=seed, **kw)  # the data set's preset for the rest
    cfg.sample_every = cfg.checkpoint_every = cfg.steps
    with stopwatch() as lap:
        trainer = Trainer(GAN, cfg)
        with contextlib.redirect_stdout(io.StringIO()):  # the loop's validation line: the table says it
            trainer.fit()
    val = trainer.last_val
    return {"data": data, "objective": objective, "seed": seed, "modes": val["val/modes"],
            "hq": val["val/high_quality"], "rkl": val["val/reverse_kl"], "cpu_min": lap.cpu / 60,
            "wall_min": lap.wall / 60,
            "steps": cfg.steps,
            "settings": {k: getattr(cfg, k) for k in ("lr", "beta1", "beta2", "n_critic", "optimizer", "lambda_gp")}}


def mean_se(xs: list[float]) -> str:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return "inf"
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return f"{m:.2f}"
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return f"{m:.2f} ± {sd / math.sqrt(len(xs)):.2f}"


def mixtures(args) -> None:
    extra_wgan = {"lr": args.wgan_lr} if args.wgan_lr else {}
    steps = {d: int(v) for d, _, v in (x.rpartition("=") for x in args.steps)}
    steps = {d: steps.get(d, steps.get("", 0)) for d in args.data}  # 0: the preset's
    tasks = [(d, o, s) for d in args.data for o in args.objectives for s in range(args.seeds)]
    root = Path(args.out or tempfile.mkdtemp(prefix="gan_mixtures_"))
    rows = []
    with stopwatch() as sitting, ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(one_run, d, o, s, steps[d], str(root / f"{d}-{o}-{s}"),
                               extra_wgan if o == "wgan" else {}) for d, o, s in tasks]
        for f in futures:
            r = f.result()
            rows.append(r)
            print(f"{r['data']} {r['objective']} seed {r['seed']}: modes {r['modes']:.0f}, HQ {r['hq']:.1f} %, "
                  f"rKL {r['rkl']:.3f}, {r['cpu_min']:.2f} CPU-min", file=sys.stderr, flush=True)
    ran = {d: sorted({r["steps"] for r in rows if r["data"] == d}) for d in args.data}
    print(f"\n{len(tasks)} runs, steps {ran}, {args.jobs} at a time, "
          f"{sitting.wall / 60:.1f} min wall; {machine()}\n")
    for d in args.data:
        print(f"### {d} ({args.seeds} seeds, mean ± s.e.)\n")
        print_table(["objective", "modes", "high quality %", "reverse KL", "CPU-min / run", "every seed at target"])
        k = 8 if d == "ring8" else 25
        goal = 95.0 if d == "ring8" else 90.0
        for o in args.objectives:
            rs = [r for r in rows if r["data"] == d and r["objective"] == o]
            ok = sum(r["modes"] == k and r["hq"] >= goal for r in rs)
            print_row(o, mean_se([r["modes"] for r in rs]), mean_se([r["hq"] for r in rs]),
                      mean_se([r["rkl"] for r in rs]), mean_se([r["cpu_min"] for r in rs]), f"{ok}/{len(rs)}")
        for name, modes, hq, rkl in ANCHORS[d]:
            print_row(f"*{name}* (published)", modes, hq, rkl, "", "")
        print()
    print("settings per objective:",
          {o: next(r["settings"] for r in rows if r["objective"] == o) for o in args.objectives})


def truncation(args) -> None:
    import torch

    torch.set_num_threads(1)
    from training.classifier import classifier_for_run  # lazy: torch
    from training.gan import GAN, GANConfig  # lazy: torch
    from training.loop import Trainer  # lazy: torch
    from translate.gan.metrics import class_histogram, predict  # lazy: torch
    from translate.gan.networks import sample_labels, sample_latents  # lazy: torch
    from translate.generators import load_generator  # lazy: torch

    run = Path(args.run) if args.run else None
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="gan_digits_")) / "run"
        cfg = GANConfig(data="digits", out=str(run), size=16, ngf=32, ndf=32, nz=32, batch_size=64, steps=args.steps,
                        gan_mode="nonsaturating", lr=5e-4, ema_decay=0.999, decay_fraction=0.5, threads=1,
                        conditional=args.conditional, progress=False, val_every=0, sample_every=args.steps,
                        checkpoint_every=args.steps)
        with stopwatch() as lap, contextlib.redirect_stdout(io.StringIO()):
            Trainer(GAN, cfg).fit()
        print(f"trained {run} ({args.steps} steps, {lap.cpu / 60:.1f} CPU-min)", file=sys.stderr)
    G, meta = load_generator(run)
    C, info = classifier_for_run(run, meta["config"])
    k = G.num_classes
    print(f"digits classifier: held-out accuracy {info.get('val_accuracy', float('nan')):.3f}\n")
    print(f"### Truncation on digits 16 px ({args.n} samples per row, {'class-conditional' if k else 'unconditional'} "
          f"DCGAN, {meta['step']} steps)\n")
    print_table(["T", "p(asked class) (quality)", "accuracy", "within-class feature spread (diversity)"] if k else
                ["T", "confidence (quality)", "classes covered", "class reverse KL", "feature spread (diversity)"])
    rows = []
    for t in args.thresholds:
        z = sample_latents(args.n, G.nz, t, generator=torch.Generator().manual_seed(0))
        y = sample_labels(args.n, k)
        with torch.no_grad():
            x = G(z, y)
            pred, probs = predict(C, x)
            f = C.features(x)
        rows.append(x[:args.grid_columns])  # the same z draws in every row: only the threshold changes
        name = "none" if t == 0 else t
        if k:
            spread = sum(torch.pdist(f[y == c][:300]).mean().item() for c in range(k)) / k
            print_row(name, f"{probs[torch.arange(args.n), y].mean():.3f}", f"{(pred == y).float().mean():.3f}",
                      f"{spread:.2f}")
        else:
            h = class_histogram(pred, 10)
            print_row(name, f"{probs.max(1).values.mean():.3f}", h["classes_covered"], f"{h['class_reverse_kl']:.3f}",
                      f"{torch.pdist(f[:1000]).mean().item():.2f}")
    from torchvision.utils import save_image

    grid = Path(args.grid or run.parent / "truncation.png")
    grid.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(rows), grid, nrow=args.grid_columns, normalize=True, value_range=(-1, 1), padding=1)
    print(f"\nsamples, one row per T in the order above (same z draws in each row): {grid}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("mixtures")
    m.add_argument("--seeds", type=int, default=5)
    m.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    m.add_argument("--steps", nargs="+", default=[],
                   help="steps per run: N, or DATA=N per data set (default: the presets', ring8 15000, grid25 20000)")
    m.add_argument("--data", nargs="+", default=["ring8", "grid25"])
    m.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    m.add_argument("--wgan-lr", type=float, default=0.0, help="override WGAN's RMSprop 5e-5")
    m.add_argument("--out", help="keep the run directories here (default: a temporary folder)")
    m.set_defaults(func=mixtures)
    t = sub.add_parser("truncation")
    t.add_argument("--run", help="an unconditional digits GAN run (default: train one)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--n", type=int, default=2000)
    t.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 2.0, 1.0, 0.5, 0.25])
    t.add_argument("--conditional", action="store_true", help="train a class-conditional G (quality: p(asked class))")
    t.add_argument("--grid", help="write the samples here, one row per threshold (default: next to the run)")
    t.add_argument("--grid-columns", type=int, default=20)
    t.set_defaults(func=truncation)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
