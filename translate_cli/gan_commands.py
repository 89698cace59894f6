"""`translate sample` and `translate edit` for GAN runs (and a VAE's decoder), and their side of `evaluate`.

    translate sample RUN --n 64 [--class K] [--truncation T] --out samples.png
    translate sample RUN --grid [SIDE] --out plane.png      (a 2-D latent: the decoder over the latent plane)
    translate edit RUN --toward CLASS [--steps 20] [--eta 0.5] --out strip.png
    translate evaluate RUN [--data DIR] [--inception WEIGHTS.pth] [--samples N]   (a VAE: ELBO, bits/dim)
"""
from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from translate.errors import ConfigError
from translate.kinds import kind

if TYPE_CHECKING:
    import torch


def _save_grid(x: torch.Tensor, out: str, nrow: int) -> None:
    from training.gan import image_grid  # lazy: torch
    from translate.imageio import save_image, tensor_to_array  # lazy: PIL

    save_image(tensor_to_array(image_grid(x, nrow=nrow) * 2 - 1), out)


def _seeded(seed: int) -> torch.Generator:
    import torch  # lazy: torch (registering these commands must not load it)

    return torch.Generator().manual_seed(seed)


def load_gan(path, use_ema: bool = True):
    """(G, metadata) of a GAN run; a ConfigError naming the path for any other model."""
    from translate.generators import load_generator  # lazy: torch

    G, meta = load_generator(path, use_ema=use_ema)
    if not kind(meta["kind"]).samples:
        raise ConfigError("run", f"{path}: a {meta['kind']} model, not a GAN run (sample and edit need latents)")
    return G, meta


def cmd_sample(args) -> None:
    import torch  # lazy: torch

    with torch.no_grad():
        _sample(args)


def _sample(args) -> None:
    from translate.gan.data import render_points  # lazy: torch
    from translate.gan.networks import sample_labels, sample_latents  # lazy: torch
    from translate.imageio import save_image  # lazy: PIL

    if args.n < 1:
        raise ConfigError("n", f"must be >= 1, got {args.n}")
    G, meta = load_gan(args.run, use_ema=not args.no_ema)
    if args.grid is not None:
        _sample_plane(G, meta, args)
        return
    g = _seeded(args.seed)
    z = sample_latents(args.n, G.nz, args.truncation, generator=g)
    y = sample_labels(args.n, G.num_classes, args.cls)
    x = G(z, y)
    if meta["data_kind"] == "points":
        save_image(render_points(x, meta["name"]), args.out)
    else:
        _save_grid(x, args.out, nrow=8 if y is not None and args.cls is None else math.ceil(math.sqrt(args.n)))
    print(json.dumps({"out": args.out, "n": args.n, "class": args.cls, "truncation": args.truncation,
                      "ema": meta["ema"], "step": meta["step"]}))


def _sample_plane(G, meta: dict, args) -> None:
    """The generator over an even grid of its 2-D latent plane (Gaussian quantiles), one image."""
    from translate.vae import latent_grid  # lazy: torch

    if args.grid < 2:
        raise ConfigError("grid", f"must be >= 2 points a side, got {args.grid}")
    if G.nz != 2 or G.num_classes or meta["data_kind"] != "images":
        raise ConfigError("grid", f"{args.run}: --grid draws a 2-D latent plane of images; this generator takes "
                          f"{G.nz} latents{' and a class' if G.num_classes else ''} and draws {meta['data_kind']} "
                          "(train a VAE with --latent-dim 2, or a GAN on images with --nz 2)")
    _save_grid(G(latent_grid(args.grid)), args.out, nrow=args.grid)
    print(json.dumps({"out": args.out, "grid": args.grid, "step": meta["step"]}))


def cmd_edit(args) -> None:
    import torch  # lazy: torch

    from training.classifier import classifier_for_run, edit_toward  # lazy: torch
    from translate.gan.networks import sample_latents  # lazy: torch

    G, meta = load_gan(args.run, use_ema=not args.no_ema)
    if meta["data_kind"] != "images":
        raise ConfigError("run", f"{args.run}: the latent edit needs an image GAN (this run is on {meta['data']})")
    if args.frames < 2:
        raise ConfigError("frames", f"must be >= 2, got {args.frames}")
    C, _ = classifier_for_run(args.run, meta["config"], path=args.classifier)
    g = _seeded(args.seed)
    z = sample_latents(args.n, G.nz, generator=g)
    y = None if not G.num_classes else torch.randint(0, G.num_classes, (args.n,), generator=g)
    outs, scores = edit_toward(G, C, z, args.toward, steps=args.steps, eta=args.eta, y=y)
    keep = sorted({round(i * args.steps / (args.frames - 1)) for i in range(args.frames)})
    strip = torch.stack([outs[i] for i in keep], 1).flatten(0, 1)  # row per sample, column per frame
    _save_grid(strip, args.out, nrow=len(keep))
    print(json.dumps({"out": args.out, "toward": args.toward, "steps": args.steps, "eta": args.eta,
                      "frames": keep, "score_before": float(scores[0].mean()), "score_after": float(scores[-1].mean())}))


def cmd_evaluate(args) -> None:
    """`translate evaluate RUN` for a GAN run: JSON on stdout."""
    from training.gan import evaluate_gan  # lazy: torch

    result = evaluate_gan(args.model, data=args.data, samples=args.samples, inception=args.inception,
                          classifier=args.classifier, seed=args.seed)
    print(json.dumps(result, indent=None if args.compact else 2))


def cmd_evaluate_vae(args) -> None:
    """`translate evaluate RUN` for a VAE run: the ELBO and bits per dimension on held-out images, JSON on stdout."""
    from training.vae import evaluate_vae  # lazy: torch

    result = evaluate_vae(args.model, data=args.data, samples=args.samples, seed=args.seed)
    print(json.dumps(result, indent=None if args.compact else 2))


def register(subparsers) -> None:
    s = subparsers.add_parser("sample", help="draw samples of a GAN or VAE run as an image grid (or a scatter plot, or the latent plane)")
    s.add_argument("run", help="GAN or VAE run directory or checkpoint")
    s.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--class", dest="cls", type=int, default=None,
                   help="class index for a conditional GAN (default: one row per class)")
    s.add_argument("--truncation", type=float, default=0.0,
                   help="redraw latent components with |z| > T (0: no truncation)")
    s.add_argument("--grid", type=int, nargs="?", const=20, default=None, metavar="SIDE",
                   help="a 2-D latent (a VAE with --latent-dim 2): decode an even SIDE x SIDE grid of the latent "
                   "plane, Gaussian quantiles (default 20 a side); --n and --truncation do not apply")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-ema", action="store_true", help="use the raw G weights, not their moving average")
    s.add_argument("--out", required=True, help="output image (.png)")
    s.set_defaults(func=cmd_sample)

    e = subparsers.add_parser("edit", help="steer latents toward a class with a classifier's gradient; "
                              "writes the trajectories as an image strip")
    e.add_argument("run", help="GAN run directory or checkpoint (image data with classes)")
    e.add_argument("--toward", type=int, required=True, help="target class index")
    e.add_argument("--steps", type=int, default=20, help="gradient steps (default 20)")
    e.add_argument("--eta", type=float, default=0.5, help="step size on z (default 0.5)")
    e.add_argument("--n", type=int, default=4, help="trajectories, one row each (default 4)")
    e.add_argument("--frames", type=int, default=8, help="columns of the strip (default 8)")
    e.add_argument("--classifier", help="classifier file (default: RUN/classifier.pt, trained on first use)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-ema", action="store_true", help="use the raw G weights, not their moving average")
    e.add_argument("--out", default="edit.png", help="output image (default edit.png)")
    e.set_defaults(func=cmd_edit)

    ev = subparsers.choices.get("evaluate")
    if ev is not None:  # options of `evaluate` for GAN runs
        ev.add_argument("--inception", help="GAN runs: FID Inception weights file (torch-fidelity's "
                        "weights-inception-2015-12-05-6726825d.pth) for FID/KID; default: a classifier of the data")
        ev.add_argument("--samples", type=int, default=0, help="GAN runs: samples to draw (default 2,500 for "
                        "mixtures; for images max(training images, 1000)); VAE runs: z per held-out image "
                        "(default: the run's --eval-samples)")
        ev.add_argument("--classifier", help="GAN runs: classifier file (default RUN/classifier.pt)")
        ev.add_argument("--seed", type=int, default=0, help="GAN and VAE runs: sampling seed")
