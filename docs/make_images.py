"""The pictures of README.md about sketches and photo pairs, made from the code as it is.

    python docs/make_images.py pairings                     # docs/images/edges_pairing.png, photo_pairings.png
    python docs/make_images.py drawn demo/runs/sketches     # docs/images/drawn_to_photo.png from a sketches model

``pairings``: the photos of the built-in sketches set next to the set's own sketches and to what
``translate data pair edges`` draws of them, and scikit-learn's two bundled photos (a temple, a
flower) through the four pairings. ``drawn``: drawings made as a hand draws them in the page
(translate_cli.demo.doodle), at the page's size and at the model's, and what the model makes of them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    im = Image.new("RGB", (img.shape[1], img.shape[0] + 14), "white")
    im.paste(Image.fromarray(img), (0, 14))
    ImageDraw.Draw(im).text((3, 1), text, fill="black")
    return np.asarray(im)


def _grid(rows: list[list[np.ndarray]], gap: int = 4) -> Image.Image:
    h = max(t.shape[0] for r in rows for t in r)
    w = max(sum(t.shape[1] for t in r) + gap * (len(r) - 1) for r in rows)
    sheet = Image.new("RGB", (w, len(rows) * (h + gap)), "white")
    for i, r in enumerate(rows):
        x = 0
        for t in r:
            sheet.paste(Image.fromarray(t), (x, i * (h + gap)))
            x += t.shape[1] + gap
    return sheet


def sample_photos() -> list[tuple[str, np.ndarray]]:
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "images"
    return [(name, np.asarray(Image.open(folder / f"{name}.jpg").convert("RGB"))) for name in ("china", "flower")]


def pairings(size: int = 128) -> None:
    from translate.datasets import PAIRINGS, make_pair, pair_photo
    from translate.datasets.photo_pairs import PairOptions

    rows, row = [], []
    for i in range(8):  # two objects a row: photo | the set's sketch | edges of the photo
        sketch, photo = make_pair("sketches", i, size=size, seed=0)
        edges, _ = pair_photo("edges", photo, size=size, name=str(i))
        row += [_caption(photo, "photo"), _caption(sketch, "sketches set"), _caption(edges, "data pair edges")]
        if len(row) == 6:
            rows.append(row)
            row = []
    _grid(rows).save(OUT / "edges_pairing.png", optimize=True)
    rows = []
    for name, photo in sample_photos():
        row = [_caption(pair_photo("edges", photo, size=size, name=name)[1], f"{name} (B)")]
        for kind in PAIRINGS:
            a, _ = pair_photo(kind, photo, size=size, name=name, options=PairOptions(size=size, factor=4))
            row.append(_caption(a, kind))
        rows.append(row)
    _grid(rows).save(OUT / "photo_pairings.png", optimize=True)
    print(f"wrote {OUT / 'edges_pairing.png'} and {OUT / 'photo_pairings.png'}")


def drawn(model: str) -> None:
    import translate
    from translate_cli.demo import DOODLES, SIZE, doodle

    predictor = translate.load(model)
    rows = []
    for kind in DOODLES:
        row = []
        for size, pen in ((2 * SIZE, 3), (SIZE, 2)):
            d = doodle(kind, size, pen)
            out = np.asarray(predictor(Image.fromarray(d)))
            row += [_caption(d, f"drawn, {size} px"), _caption(out, "sketches model")]
        rows.append(row)
    _grid(rows).save(OUT / "drawn_to_photo.png", optimize=True)
    print(f"wrote {OUT / 'drawn_to_photo.png'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("pairings")
    d = sub.add_parser("drawn")
    d.add_argument("model", help="a sketches model: .onnx, run directory or checkpoint")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    pairings() if args.what == "pairings" else drawn(args.model)


if __name__ == "__main__":
    main()
