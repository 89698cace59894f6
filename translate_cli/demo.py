"""``translate demo`` (``make demo``): both user stories, end to end, on the built-in sets.

Makes the maps set (aerial photo -> map) and the sketches set (line drawing -> shaded photo),
trains a small Pix2Pix on each on CPU within one time budget (each set's preset: its tested
settings; a finished model is reused on later runs, an interrupted one resumes), exports them to
ONNX, translates held-out pairs and a few drawings made as a hand draws them in the page, writes
side-by-side images and an HTML page, registers both models in a model store (as ``maps`` and
``sketches``) and serves them.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

import translate
from serving.store import ModelStore
from translate.files import write_text_atomic


@dataclass(frozen=True)
class DemoModel:
    """One of the demo's models: the built-in set it learns from and its share of the time budget."""

    kind: str  # the built-in set (translate data make KIND), also the model's name in the store
    count: int  # pairs made (80 % train, 10 % val, 10 % test)
    share: float  # of the training budget
    columns: tuple[str, str, str]  # captions of input, translation, target
    title: str


SIZE = 128  # the side of the demo's images: the sets' presets train at 128 px
# Sketches get the larger share: filling a drawing with a shaded object takes longer to learn than roads and
# water, and 400 pairs, because the objects vary more than map tiles (measured: BENCHMARKS.md, make demo)
DEMOS = (
    DemoModel("maps", count=300, share=0.45, columns=("aerial (input)", "translated", "map (target)"),
              title="aerial photo &rarr; map"),
    DemoModel("sketches", count=400, share=0.55, columns=("sketch (input)", "translated", "photo (target)"),
              title="sketch &rarr; photo"),
)
TRAIN: dict[str, Any] = dict(workers=1, val_every=200, sample_every=200, checkpoint_every=200)  # the rest: each set's preset
MAX_STEPS = 3000
DOODLES = ("mug", "box", "bottle")  # drawn as a hand draws them in the page, the sketches model's input


def seconds_per_step(preset: str = "maps") -> float:
    """The median time of a demo training step (the set's preset) on this machine now, after a warm-up."""
    import time

    import torch

    from training.pix2pix import Pix2Pix, Pix2PixConfig  # lazy: torch

    cfg = Pix2PixConfig(data="-", preset=preset)
    method = Pix2Pix(cfg, torch.device("cpu"))
    assert cfg.batch_size and cfg.size  # preset fields, resolved when the config is made
    batch = {k: torch.rand(cfg.batch_size, 3, cfg.size, cfg.size) * 2 - 1 for k in "AB"}
    for _ in range(3):  # warm-up: the first steps build kernels and caches
        method.step(batch)
    times = []
    for _ in range(8):
        t = time.perf_counter()
        method.step(batch)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]  # the median: one hiccup (a process exiting) does not halve the run


def steps_for_budget(minutes: float, per_step: float) -> int:
    """How many demo steps of ``per_step`` seconds fit in ``minutes`` (at least 100, at most MAX_STEPS)."""
    # 80 % of the budget for steps: the rest goes to data loading, validation, samples and checkpoints
    return int(min(MAX_STEPS, max(100, minutes * 60 * 0.8 / per_step)))


# ----------------------------------------------------------------------------- drawings

def _wobbly(rng: np.random.Generator, pts, size: int, wobble: float = 0.006) -> np.ndarray:
    """The polyline ``pts`` (unit square) as a hand draws it: resampled densely, bent by a slow random drift."""
    pts = np.asarray(pts, float)
    length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    s = np.linspace(0, length[-1], max(8, int(64 * length[-1])))
    line = np.stack([np.interp(s, length, pts[:, 0]), np.interp(s, length, pts[:, 1])], 1)
    k = max(3, len(s) // 6)  # the drift changes direction a few times a stroke
    knots = rng.normal(0, wobble, (len(s) // k + 2, 2))
    at = np.arange(len(s)) / k
    drift = np.stack([np.interp(at, np.arange(len(knots)), knots[:, i]) for i in range(2)], 1)
    return (line + drift) * size


def _arc(cx: float, cy: float, rx: float, ry: float, t0: float = 0.0, t1: float = 2 * math.pi) -> np.ndarray:
    t = np.linspace(t0, t1, 40)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def doodle(kind: str, size: int = 256, pen: int = 3, seed: int = 0) -> np.ndarray:
    """A mug, a box or a bottle drawn as a person draws one in the page: a few wobbly black strokes of a round
    pen ``pen`` pixels wide on white, outlines only; uint8 ``size`` x ``size`` x 3."""
    if kind == "mug":
        x0, x1, top, bottom = 0.2, 0.66, 0.18, 0.81
        strokes = [_arc((x0 + x1) / 2, top, (x1 - x0) / 2, 0.05), [(x0, top), (x0, bottom)], [(x1, top), (x1, bottom)],
                   _arc((x0 + x1) / 2, bottom, (x1 - x0) / 2, 0.05, 0, math.pi),
                   _arc(x1, 0.5, 0.14, 0.16, -math.pi / 2 + 0.3, math.pi / 2 - 0.3),
                   _arc(x1, 0.5, 0.07, 0.09, -math.pi / 2 + 0.5, math.pi / 2 - 0.5)]
    elif kind == "box":
        a, b, c, d, h = (0.15, 0.35), (0.55, 0.45), (0.85, 0.3), (0.45, 0.2), 0.38
        strokes = [[a, b, c, d, a], [a, (a[0], a[1] + h), (b[0], b[1] + h), b], [(b[0], b[1] + h), (c[0], c[1] + h), c]]
    elif kind == "bottle":
        strokes = [[(0.44, 0.1), (0.56, 0.1), (0.56, 0.2), (0.44, 0.2), (0.44, 0.1)],
                   [(0.45, 0.2), (0.45, 0.3), (0.3, 0.42), (0.3, 0.88), (0.7, 0.88), (0.7, 0.42), (0.55, 0.3),
                    (0.55, 0.2)],
                   [(0.3, 0.55), (0.7, 0.55)], [(0.3, 0.72), (0.7, 0.72)]]
    else:
        raise ValueError(f"no doodle of a {kind!r} (known: {', '.join(DOODLES)})")
    import cv2

    rng = np.random.default_rng(seed)
    img = np.full((size, size), 255, np.uint8)
    for stroke in strokes:
        pts = np.round(_wobbly(rng, stroke, size) * 16).astype(np.int32)
        cv2.polylines(img, [pts], False, 0, pen, cv2.LINE_AA, shift=4)
    return np.repeat(img[..., None], 3, axis=2)


# ----------------------------------------------------------------------------- pictures

def _label(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 16), "white")
    out.paste(img, (0, 16))
    ImageDraw.Draw(out).text((4, 2), text, fill="black")
    return out


def _side_by_side(cols: list[tuple[str, Image.Image]]) -> Image.Image:
    tiles = [_label(im, t) for t, im in cols]
    out = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), max(t.height for t in tiles)),
                    "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + 4
    return out


def _stack(rows: list[Image.Image]) -> Image.Image:
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 4 for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + 4
    return sheet


# ----------------------------------------------------------------------------- the demo

def _train(demo: DemoModel, data: Path, run: Path, minutes: float) -> Path:
    """The demo model of ``demo`` in ``run`` (trained now, resumed, or found there); its ONNX file."""
    from training.loop import Trainer  # lazy: torch
    from training.pix2pix import Pix2Pix, Pix2PixConfig  # lazy: torch
    from translate.export import export_run  # lazy: torch

    model = run / "model.onnx"
    if model.exists():
        print(f"  reusing the trained {demo.kind} model {model} (delete {run} to train again)")
        return model
    if (run / "checkpoints" / "latest.pt").exists():
        print(f"  resuming the interrupted {demo.kind} training in {run}")
        trainer = Trainer(Pix2Pix, Pix2PixConfig(), resume=run, overrides={"time_limit": minutes})
    else:
        steps = steps_for_budget(minutes, seconds_per_step(demo.kind))
        print(f"  training Pix2Pix on {demo.kind} on CPU: {steps} steps, at most {minutes:.2g} minutes -> {run}")
        trainer = Trainer(Pix2Pix, Pix2PixConfig(data=str(data), out=str(run), time_limit=minutes, steps=steps,
                                                 **TRAIN))
    trainer.fit()
    if not model.exists():  # stopped by the time budget: export what we have
        export_run(run)
    return model


def _results(demo: DemoModel, predictor, data: Path, out: Path, n_show: int) -> tuple[dict, list[str]]:
    """Scores on the held-out pairs and ``out/results/KIND/*.png`` (input | translation | target); the picture
    of the first ``n_show`` goes to ``out/KIND.png``."""
    from translate import data as tdata  # lazy: torch
    from translate.evaluate import evaluate  # lazy: torch
    from translate.imageio import save_image  # lazy: PIL

    scores = evaluate(predictor, data, split="test", progress=False)
    rows, names = [], []
    for src in tdata.find_pairs(data, "test")[:n_show]:
        a, b = tdata.load_pair(src)
        row = _side_by_side([(demo.columns[0], a), (demo.columns[1], predictor(a)), (demo.columns[2], b)])
        save_image(np.asarray(row), out / "results" / demo.kind / f"{src.name}.png")
        rows.append(row)
        names.append(f"results/{demo.kind}/{src.name}.png")
    save_image(np.asarray(_stack(rows)), out / f"{demo.kind}.png")
    return scores, names


def _drawn(predictor, out: Path) -> list[str]:
    """The sketches model on drawings made as in the page (at the page's size and at the model's)."""
    from translate.imageio import save_image  # lazy: PIL

    names = []
    for kind in DOODLES:
        cols = []
        for size, pen in ((2 * SIZE, 3), (SIZE, 2)):
            drawing = Image.fromarray(doodle(kind, size, pen))
            cols += [(f"drawn {kind}, {size} px", drawing), ("translated", predictor(drawing))]
        save_image(np.asarray(_side_by_side(cols)), out / "results" / "drawn" / f"{kind}.png")
        names.append(f"results/drawn/{kind}.png")
    return names


def run_demo(out: Path, minutes: float = 4.0, n_show: int = 8, serve: bool = False) -> Path:
    from translate.datasets import make_dataset  # lazy: OpenCV

    out = Path(out)
    print(f"[1/5] the built-in sets, {SIZE} px")
    for demo in DEMOS:
        data = out / demo.kind
        if (data / "dataset.json").exists():
            print(f"  reusing the {demo.kind} set in {data}")
        else:
            print(f"  making the {demo.kind} set in {data}")
            make_dataset(demo.kind, data, count=demo.count, size=SIZE, seed=0)
    models = {}
    for i, demo in enumerate(DEMOS):
        print(f"[{2 + i}/5] {demo.kind}: {html.unescape(demo.title)}")
        models[demo.kind] = _train(demo, out / demo.kind, out / "runs" / demo.kind, minutes * demo.share)

    print("[4/5] translating held-out pairs and drawings with ONNX Runtime")
    sections, summary = [], []
    for demo in DEMOS:
        predictor = translate.load(models[demo.kind])
        scores, names = _results(demo, predictor, out / demo.kind, out, n_show)
        drawn = _drawn(predictor, out) if demo.kind == "sketches" else []
        sections.append((demo, scores, names, drawn))
        picture = (out / f"{demo.kind}.png").resolve()
        summary.append(f"  {demo.kind} test set ({scores['count']} pairs): L1 {scores['l1']:.3f}, "
                       f"PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.3f}: {picture}")
    page = out / "index.html"
    write_text_atomic(page, _html(sections, models))
    print("[5/5] done")
    print("\n".join(summary))
    print(f"  drawings:   {(out / 'results' / 'drawn').resolve()}")
    print(f"  HTML page:  {page.resolve()}")
    print(f"  try: translate predict {models['maps']} {out / 'maps'}/test --out {out}/predicted")
    store = out / "models"
    for demo in DEMOS:
        register_demo_model(store, models[demo.kind], models[demo.kind].parent, name=demo.kind)
    if serve:
        from serving.local_service import serve_until_interrupted  # lazy: Ray

        serve_until_interrupted(store)
    return page


def register_demo_model(store_root: Path, model: Path, run: Path, name: str = "maps") -> Path:
    """Put a demo model into a model store (once: a second run finds the same file there)."""
    import hashlib


    store = ModelStore(store_root)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    known = [v["version"] for m in store.list() if m["name"] == name for v in m["versions"]
             if v.get("sha256") == digest]
    version = known[-1] if known else store.register(name, model, checkpoint=run, promote=True)
    print(f"  model store: {store.root.resolve()} ({name} {version})")
    return store.root


def _html(sections: list, models: dict[str, Path]) -> str:
    parts = []
    for demo, scores, names, drawn in sections:
        summary = {k: scores[k] for k in ("count", "l1", "psnr", "ssim")}
        imgs = "\n".join(f'<figure><img src="{html.escape(n)}" alt="{html.escape(n)}"></figure>' for n in names)
        doodles = "".join(f'<figure><img src="{html.escape(n)}" alt="{html.escape(n)}"></figure>' for n in drawn)
        parts.append(f"""<h2>{demo.title}</h2>
<p>Held-out pairs of the built-in {demo.kind} set: input, the model's translation, and the target.
Model: <code>{html.escape(str(models[demo.kind]))}</code>, served as <code>{demo.kind}</code>.</p>
<p>Test set: <code>{html.escape(json.dumps(summary))}</code></p>
{('<h3>Drawn as in the page</h3>' + doodles) if drawn else ''}
{imgs}""")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pix2Pix demo: maps and sketches</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}
figure{{margin:0 0 1rem}} img{{image-rendering:pixelated;max-width:100%}}
code{{background:#f4f4f4;padding:.1rem .3rem}}</style></head>
<body><h1>Pix2Pix demo</h1>
{"".join(parts)}
</body></html>
"""
