"""The ``sketches`` set: A is a black line drawing on white, B the shaded object photo.

Like the HED edges of edges2shoes / edges2handbags: the sketch holds the outline and
the inner detail lines of an object (shoes, handbags, mugs, bottles, boxes), the photo
the same object shaded on a light background.

An object is built as a :class:`SketchObject`: painted :class:`Part` polygons and
:class:`DetailLine` strokes in a unit box (one builder per object type). The renderer
places it on a supersampled canvas, labels its parts, shades a height field, adds seams,
detail lines and the background for the photo, and draws every part border and detail
line for the sketch, so the two are pixel-aligned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, cast

import cv2
import numpy as np

from .drawing import (
    F32,
    boundary,
    chaikin,
    check_size,
    ellipse,
    erode,
    fill_polygon,
    ink_sketch,
    pixel_grid,
    rgb,
    round_poly,
    shift,
    spline,
    to_u8,
    value_noise,
)

__all__ = ["make_sketches_pair", "SketchObject", "Part", "DetailLine"]

_SS = 2  # supersampling of the sketch/photo renderer

_COLOURS = np.array([
    (34, 34, 38), (232, 230, 224), (118, 74, 44), (188, 148, 100), (176, 36, 42), (36, 46, 92),
    (60, 112, 182), (128, 128, 134), (218, 140, 160), (58, 118, 72), (210, 190, 158), (108, 30, 44),
    (224, 188, 60), (218, 118, 48), (90, 60, 110), (70, 70, 76), (150, 96, 60), (40, 150, 160),
], F32)
_METALS = np.array([(212, 175, 90), (196, 198, 204), (176, 140, 80)], F32)


# --------------------------------------------------------------------------- object records

@dataclass
class Part:
    """A painted region of an object; its label id is its 1-based position in the object's parts."""

    poly: np.ndarray  # outline in the unit box
    colour: np.ndarray
    clip: int | None = None  # only where this part (label id) was painted before
    hole: np.ndarray | None = None  # an outline cut out of the part
    gloss: float = 0.3
    texture: float = 3.0  # std of the per-pixel noise; above 1 also a coarse grain
    name: str = ""


@dataclass
class DetailLine:
    """A stroke drawn on the object (laces, stitching, zips), in both the sketch and the photo."""

    pts: np.ndarray  # points in the unit box (a spline through them when more than two)
    colour: np.ndarray | None = None  # None: dark grey
    width: float = 1.0  # in pixels at 256 px
    closed: bool = False
    within: int | None = None  # only inside this part (label id)


@dataclass
class SketchObject:
    """An object as painted parts (polygons in a unit box) and detail lines."""

    shading: str = "dome"  # the height field: "dome" (rounded edges), "cyl" (a turned body) or "flat"
    roundness: float = 0.2  # dome radius, as a fraction of the object's size
    parts: list[Part] = field(default_factory=list)
    lines: list[DetailLine] = field(default_factory=list)

    def part(self, poly, colour, clip: int | None = None, hole=None, gloss: float = 0.3, texture: float = 3.0,
             name: str = "") -> int:
        """Add a part painted over the earlier ones; returns its label id."""
        self.parts.append(Part(np.asarray(poly, np.float64), np.asarray(colour, F32), clip,
                               None if hole is None else np.asarray(hole, np.float64), gloss, texture, name))
        return len(self.parts)

    def line(self, pts, colour=None, width: float = 1.0, closed: bool = False, within: int | None = None) -> None:
        self.lines.append(DetailLine(np.asarray(pts, np.float64), colour, width, closed, within))


# --------------------------------------------------------------------------- colours

def _shade(c, f) -> np.ndarray:
    return np.clip(np.asarray(c, F32) * f, 0, 255)


def _contrast_colour(c) -> np.ndarray:
    c = np.asarray(c, F32)
    lum = float(c @ np.array([0.3, 0.59, 0.11], F32))
    return _shade(c, 0.55) if lum > 90 else np.clip(c + 80, 0, 255)


def _pick_colour(rng: np.random.Generator, exclude=None) -> np.ndarray:
    while True:
        c = _COLOURS[rng.integers(len(_COLOURS))]
        if exclude is None or np.abs(c - exclude).sum() > 90:
            return np.clip(c * rng.uniform(0.9, 1.1) + rng.normal(0, 6, 3), 0, 255).astype(F32)


# --------------------------------------------------------------------------- objects: shoes

def _shoe(rng: np.random.Generator, style: str | None = None) -> SketchObject:
    if style is None:
        style = str(rng.choice(["sneaker", "sneaker", "boot", "heel", "loafer"]))
    main = _pick_colour(rng)
    accent = _pick_colour(rng, exclude=main) if rng.random() < 0.6 else _shade(main, rng.choice([0.7, 1.25]))
    o = SketchObject("dome", roundness=0.14)
    if style == "heel":
        _heel(rng, o, main, accent)
    else:
        _flat_shoe(rng, o, style, main, accent)
    return o


def _heel(rng: np.random.Generator, o: SketchObject, main: np.ndarray, accent: np.ndarray) -> None:
    """A high-heeled shoe: heel, upper, sole, the inside showing, maybe a contrasting toe."""
    o.roundness = 0.1
    sole_c = _shade(main, 0.5) if rng.random() < 0.5 else rgb(40, 36, 34)
    heel_h = rng.uniform(0.25, 0.4)
    seat = 0.95 - heel_h
    top = seat - rng.uniform(0.12, 0.22)
    hx0, hx1 = rng.uniform(0.84, 0.88), rng.uniform(0.9, 0.94)
    heel = [(0.8, seat + 0.06), (0.97, seat + 0.06), (hx1 + 0.02, seat + 0.12), (hx1, 0.97), (hx0, 0.97),
            (hx0 - 0.02, seat + 0.12)]
    o.part(heel, sole_c, gloss=0.6, texture=1.0, name="heel")
    upper = spline([(0.0, 0.9), (0.02, 0.82), (0.1, 0.78), (0.3, 0.74), (0.42, top + 0.12),
                    (0.62, top + 0.1), (0.82, top + 0.02), (0.97, top), (1.0, seat + 0.06),
                    (0.9, seat + 0.1), (0.55, 0.86), (0.25, 0.95), (0.05, 0.95)])
    u = o.part(upper, main, gloss=0.8, texture=1.5, name="upper")
    o.part(chaikin([(0.0, 0.92), (0.25, 0.95), (0.55, 0.86), (0.82, seat + 0.09), (0.99, seat + 0.07),
                    (0.99, seat + 0.1), (0.55, 0.9), (0.25, 0.99), (0.0, 0.96)], 2), sole_c, gloss=0.4,
           texture=1.0, name="sole")
    opening = spline([(0.4, top + 0.13), (0.6, top + 0.13), (0.85, top + 0.05), (0.96, top + 0.02),
                      (0.88, top + 0.09), (0.6, top + 0.2)])
    o.part(opening, _shade(main, 0.45), clip=u, gloss=0.1, name="inside")
    if rng.random() < 0.4:  # a contrasting toe or a bow
        o.part(ellipse(0.0, 0.92, rng.uniform(0.12, 0.2), 0.14), accent, clip=u, gloss=0.8, name="toe")


def _flat_shoe(rng: np.random.Generator, o: SketchObject, style: str, main: np.ndarray, accent: np.ndarray) -> None:
    """A sneaker, boot or loafer: upper, trim, laces, sole."""
    sole_bot = 0.97
    sole_h = rng.uniform(0.04, 0.07) if style == "loafer" else rng.uniform(0.07, 0.12)
    st = sole_bot - sole_h  # top of the sole
    if style == "boot":
        pts, h, lace_pts = _boot_outline(rng, st)
    else:
        pts, h, lace_pts = _low_shoe_outline(rng, style, st)
    u = o.part(spline(pts, n=10), main, gloss=0.5 if style == "loafer" else 0.3, texture=3.0, name="upper")
    _shoe_trim(rng, o, style, u, st, h, main, accent)
    lace_c = rgb(240, 240, 236) if rng.random() < 0.6 else _contrast_colour(main)
    for lp in lace_pts:
        o.line(lp, colour=lace_c, width=2.0)
    _shoe_sole(rng, o, style, u, st, sole_bot, sole_h, main)


def _boot_outline(rng: np.random.Generator, st: float) -> tuple[list, None, list]:
    """A boot's outline points, no opening height, and its lace strokes."""
    top = rng.uniform(0.0, 0.12)
    pts = [(0.03, st + 0.03), (0.01, st - 0.07), (0.07, st - 0.15), (0.25, st - 0.22), (0.4, st - 0.32),
           (0.46, st - 0.45), (0.47, top + 0.06), (0.49, top), (0.84, top - 0.01), (0.86, top + 0.06),
           (0.84, st - 0.4), (0.9, st - 0.2), (0.985, st - 0.08), (0.97, st + 0.03)]

    def front(y):
        return 0.46 + 0.02 * (st - 0.45 - y) / max(st - 0.45 - top, 1e-3)

    ys = np.linspace(top + 0.1, st - 0.4, int(rng.integers(3, 6)))
    lace_pts = [[(front(y) + 0.015, y), (front(y) + 0.08, y + 0.03)] for y in ys]
    return pts, None, lace_pts


def _low_shoe_outline(rng: np.random.Generator, style: str, st: float) -> tuple[list, float, list]:
    """A sneaker's or loafer's outline points, the height of its opening, and its lace strokes."""
    h = rng.uniform(0.38, 0.5) * (0.75 if style == "loafer" else 1.0)
    pts = [(0.03, st + 0.03), (0.01, st - 0.06), (0.06, st - 0.14), (0.2, st - 0.19), (0.38, st - h * 0.6),
           (0.5, st - h * 0.8), (0.55, st - h * 0.95), (0.62, st - h), (0.66, st - h * 0.88),
           (0.8, st - h * 0.82), (0.92, st - h * 1.0), (0.97, st - h * 0.8), (0.985, st - 0.15), (0.97, st + 0.03)]
    lace_pts = []
    if style == "sneaker":
        n_l = int(rng.integers(3, 6))
        for k in range(n_l):
            t = (k + 0.6) / (n_l + 0.4)
            cx_, cy_ = 0.3 + 0.24 * t, st - 0.19 - (h * 0.8 - 0.19) * t
            lace_pts.append([(cx_ - 0.04, cy_ - 0.035), (cx_ + 0.045, cy_ + 0.03)])
    return pts, h, lace_pts


def _shoe_trim(rng: np.random.Generator, o: SketchObject, style: str, u: int, st: float, h: float | None,
               main: np.ndarray, accent: np.ndarray) -> None:
    """Parts on the upper ``u``: lining, toe cap, heel counter, side stripe."""
    if style != "boot":  # inner lining where the opening shows
        assert h is not None  # only a boot's outline has no opening height
        o.part(spline([(0.63, st - h * 0.97), (0.8, st - h * 0.86), (0.92, st - h * 0.97),
                       (0.85, st - h * 0.8), (0.7, st - h * 0.8)]),
               _shade(main, 0.4), clip=u, gloss=0.1, name="lining")
    # toe cap / heel counter in the accent colour
    if rng.random() < 0.7:
        o.part(ellipse(0.0, st, rng.uniform(0.15, 0.25), rng.uniform(0.1, 0.16)), accent, clip=u, name="toe")
    if rng.random() < 0.7:
        o.part(ellipse(1.02, st, rng.uniform(0.15, 0.25), rng.uniform(0.15, 0.28)), accent, clip=u,
               name="counter")
    if style == "sneaker" and rng.random() < 0.7:  # side stripe / swoosh
        y0 = st - 0.05
        sw = spline([(0.3, y0), (0.55, y0 - 0.04), (0.85, y0 - 0.2), (0.6, y0 - 0.09), (0.35, y0 - 0.02)], n=10)
        o.part(sw, accent if rng.random() < 0.5 else _pick_colour(rng, exclude=main), clip=u, name="stripe")


def _shoe_sole(rng: np.random.Generator, o: SketchObject, style: str, u: int, st: float, sole_bot: float,
               sole_h: float, main: np.ndarray) -> None:
    """Midsole and outsole band, maybe stitching along the top of the sole."""
    sole_c = [rgb(238, 236, 230), rgb(40, 38, 38), rgb(176, 130, 80), _shade(main, 0.6)][rng.integers(4)]
    sole = spline([(-0.01, st - 0.015), (0.3, st), (0.7, st), (1.005, st - 0.015), (1.01, sole_bot - 0.025),
                   (0.93, sole_bot), (0.2, sole_bot), (0.02, sole_bot - 0.035)], n=10)
    s_id = o.part(sole, sole_c, gloss=0.2, texture=1.5, name="sole")
    if style != "loafer" and rng.random() < 0.6:
        o.part([(-0.1, sole_bot - sole_h * 0.35), (1.1, sole_bot - sole_h * 0.35), (1.1, 1.1), (-0.1, 1.1)],
               _shade(sole_c, 0.55) if sole_c[0] > 100 else rgb(90, 86, 80), clip=s_id, name="outsole")
    if rng.random() < 0.4:  # stitching along the top of the sole
        o.line([(0.08, st - 0.03), (0.5, st - 0.025), (0.92, st - 0.03)], colour=_contrast_colour(main),
               width=0.8, within=u)


# --------------------------------------------------------------------------- objects: the others

def _handbag(rng: np.random.Generator) -> SketchObject:
    main = _pick_colour(rng)
    o = SketchObject("dome", roundness=0.15)
    top, bot = rng.uniform(0.35, 0.5), 1.0
    inset = rng.uniform(0.0, 0.12)
    body = round_poly([(inset, top), (1 - inset, top), (1.0, bot), (0.0, bot)], rng.uniform(0.08, 0.25))
    # handle(s) behind the body top
    hr_y = rng.uniform(0.22, 0.35) * (top / 0.45)
    hw = rng.uniform(0.018, 0.04)
    hx = rng.uniform(0.22, 0.35)
    handle_c = main if rng.random() < 0.6 else _shade(main, 0.7)
    outer = ellipse(0.5, top + 0.02, hx + hw, hr_y + hw, math.pi, 2 * math.pi, 48)
    inner = ellipse(0.5, top + 0.02, hx - hw, hr_y - hw, 2 * math.pi, math.pi, 48)
    o.part(np.vstack([outer, inner]), handle_c, gloss=0.5, texture=2.0, name="handle")
    b = o.part(body, main, gloss=0.45, texture=3.0, name="body")
    kind = rng.choice(["flap", "zip", "tote"])
    if kind == "flap":
        _handbag_flap(rng, o, b, main, top, bot, inset)
    elif kind == "zip":
        o.line([(inset + 0.05, top + 0.035), (1 - inset - 0.05, top + 0.035)], colour=rgb(200, 190, 160),
               width=2.0)
        if rng.random() < 0.7:  # front pocket
            py = top + (bot - top) * rng.uniform(0.3, 0.5)
            o.part(round_poly([(0.15, py), (0.85, py), (0.85, bot - 0.08), (0.15, bot - 0.08)], 0.15),
                   _shade(main, rng.choice([0.8, 1.15])), clip=b, name="pocket")
    else:  # tote: a contrasting band
        by = top + (bot - top) * rng.uniform(0.2, 0.45)
        o.part([(-0.1, by), (1.1, by), (1.1, by + rng.uniform(0.08, 0.18)), (-0.1, by + 0.1)],
               _pick_colour(rng, exclude=main), clip=b, name="band")
    return o


def _handbag_flap(rng: np.random.Generator, o: SketchObject, b: int, main: np.ndarray, top: float, bot: float,
                  inset: float) -> None:
    """A flap over the body ``b``, with a metal clasp and a stitched edge."""
    fy = top + (bot - top) * rng.uniform(0.45, 0.7)
    if rng.random() < 0.5:
        flap = spline([(-0.1, top - 0.05), (1.1, top - 0.05), (1.0, fy - 0.1), (0.5, fy), (0.0, fy - 0.1)], n=10)
    else:
        flap = chaikin([(-0.1, top - 0.05), (1.1, top - 0.05), (1.1, fy), (-0.1, fy)], 2)
    f = o.part(flap, main if rng.random() < 0.5 else _shade(main, 0.82), clip=b, gloss=0.5, name="flap")
    metal = _METALS[rng.integers(len(_METALS))]
    cw = rng.uniform(0.04, 0.07)
    o.part(chaikin([(0.5 - cw, fy - 0.05), (0.5 + cw, fy - 0.05), (0.5 + cw, fy + 0.02),
                    (0.5 - cw, fy + 0.02)], 2), metal, gloss=1.0, texture=0.5, name="clasp")
    o.line([(inset + 0.06, top + 0.03), (1 - inset - 0.06, top + 0.03)], colour=_contrast_colour(main), within=f)


def _mug(rng: np.random.Generator) -> SketchObject:
    main = _pick_colour(rng)
    o = SketchObject("cyl")
    x0, x1 = 0.05, rng.uniform(0.6, 0.78)
    top, bot = 0.0 + rng.uniform(0.0, 0.1), 1.0
    cx, rx = (x0 + x1) / 2, (x1 - x0) / 2
    ry = rx * rng.uniform(0.18, 0.3)
    taper = rng.uniform(-0.05, 0.08)
    # handle ring on the right, behind the body
    hcy = top + (bot - top) * 0.45
    hrx, hry = rng.uniform(0.14, 0.22), (bot - top) * rng.uniform(0.25, 0.33)
    th = rng.uniform(0.035, 0.06)
    hxc = x1 - 0.04
    o.part(ellipse(hxc, hcy, hrx, hry), main, hole=ellipse(hxc, hcy, hrx - th, hry - th), gloss=0.9,
           texture=0.5, name="handle")
    side_l = [(x0, top), (x0 + taper, bot - ry)]
    bottom = ellipse(cx, bot - ry, rx - taper, ry, math.pi, 0, 32)[::-1]
    body = np.vstack([side_l, bottom, [(x1 - taper, bot - ry), (x1, top)],
                      ellipse(cx, top, rx, ry, 0, -math.pi, 48)])
    b = o.part(body, main, gloss=0.9, texture=0.5, name="body")
    o.part(ellipse(cx, top, rx * 0.9, ry * 0.82), _shade(main, 0.5), gloss=0.3, texture=0.5, name="inside")
    if rng.random() < 0.5:  # coloured band or print
        by = top + (bot - top) * rng.uniform(0.3, 0.55)
        bh = rng.uniform(0.08, 0.2)
        band = np.vstack([ellipse(cx, by, rx + 0.1, ry, math.pi, 0, 32)[::-1],
                          ellipse(cx, by + bh, rx + 0.1, ry, 0, math.pi, 32)[::-1]])
        o.part(band, _pick_colour(rng, exclude=main), clip=b, gloss=0.9, texture=0.5, name="band")
    return o


def _bottle(rng: np.random.Generator) -> SketchObject:
    main = _pick_colour(rng)
    o = SketchObject("cyl")
    rb = rng.uniform(0.2, 0.4)
    rn = rb * rng.uniform(0.25, 0.45)
    shoulder = rng.uniform(0.3, 0.45)
    neck = rng.uniform(0.1, 0.2)
    ys = [0.0, neck, shoulder - 0.05, shoulder + 0.06, 0.9, 1.0]
    rs = [rn, rn, rn + (rb - rn) * 0.6, rb, rb, rb * 0.93]
    prof = spline(list(zip(rs, ys, strict=True)), closed=False, n=8)
    right = np.stack([0.5 + prof[:, 0], prof[:, 1]], 1)
    left = np.stack([0.5 - prof[::-1, 0], prof[::-1, 1]], 1)
    b = o.part(np.vstack([right, left]), main, gloss=0.9, texture=0.5, name="body")
    ch = rng.uniform(0.06, 0.12)
    o.part(chaikin([(0.5 - rn * 1.15, -0.01), (0.5 + rn * 1.15, -0.01), (0.5 + rn * 1.15, ch),
                    (0.5 - rn * 1.15, ch)], 2), _pick_colour(rng, exclude=main), gloss=0.6, name="cap")
    if rng.random() < 0.75:
        ly = rng.uniform(shoulder + 0.1, 0.55)
        lh = rng.uniform(0.15, 0.3)
        o.part([(0, ly), (1, ly), (1, ly + lh), (0, ly + lh)], _pick_colour(rng, exclude=main), clip=b,
               gloss=0.2, name="label")
    return o


def _box(rng: np.random.Generator) -> SketchObject:
    main = _pick_colour(rng)
    o = SketchObject("flat", roundness=0.0)
    w, d, h = rng.uniform(0.4, 0.6), rng.uniform(0.25, 0.45), rng.uniform(0.3, 0.6)
    sk = rng.uniform(0.35, 0.55)
    # front-left, front-right and top faces of a box in oblique view
    p_fl_top = (0.0, d * sk)
    p_f_top = (w, d * sk + w * 0.25)
    p_fr_top = (w + d, w * 0.25)
    p_back_top = (d, 0.0)
    down = h
    left = [p_fl_top, p_f_top, (p_f_top[0], p_f_top[1] + down), (p_fl_top[0], p_fl_top[1] + down)]
    right = [p_f_top, p_fr_top, (p_fr_top[0], p_fr_top[1] + down), (p_f_top[0], p_f_top[1] + down)]
    topf = [p_fl_top, p_back_top, p_fr_top, p_f_top]
    o.part(left, _shade(main, 0.95), gloss=0.2, texture=2.0, name="left")
    o.part(right, _shade(main, 0.7), gloss=0.2, texture=2.0, name="right")
    t = o.part(topf, _shade(main, 1.15), gloss=0.2, texture=2.0, name="top")
    if rng.random() < 0.5:  # a lid line or tape across the top
        o.line([((p_fl_top[0] + p_back_top[0]) / 2, (p_fl_top[1] + p_back_top[1]) / 2),
                ((p_f_top[0] + p_fr_top[0]) / 2, (p_f_top[1] + p_fr_top[1]) / 2)],
               colour=_contrast_colour(main), width=2.0, within=t)
    return o


# builders by chance: shoes twice as often as the rest
_OBJECTS: tuple[Callable[[np.random.Generator], SketchObject], ...] = (_shoe, _shoe, _handbag, _mug, _bottle, _box)


# --------------------------------------------------------------------------- rendering

@dataclass(frozen=True)
class _Placement:
    """Where the unit-box drawing lands on the canvas: scale, offset, maybe mirrored."""

    lo: np.ndarray  # the drawing's lower corner
    scale: float
    off: np.ndarray
    flip: bool
    canvas: int

    def __call__(self, p) -> np.ndarray:
        q = (np.asarray(p, np.float64) - self.lo) * self.scale + self.off
        if self.flip:
            q[:, 0] = self.canvas - q[:, 0]
        return q


def _render_object(rng: np.random.Generator, o: SketchObject, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(sketch, photo) of ``o``, drawn on a ``_SS`` times supersampled canvas and reduced to ``size``."""
    C = size * _SS
    place = _place(rng, o, C)
    label = _label_parts(o, place, C)
    obj = label > 0
    bnd = boundary(label)
    dist_obj = cv2.distanceTransform(obj.astype(np.uint8), cv2.DIST_L2, 5)
    h = _height_field(o, label, obj, bnd, dist_obj)
    photo, base = _shaded_photo(rng, o, label, h, dist_obj)
    _seams(photo, base, bnd, obj)
    lw_sketch = int(rng.integers(2, 4))
    sketch_lines = _detail_lines(o, place, label, obj, photo, lw_sketch, size)
    photo = _on_background(rng, photo, obj, size)
    return ink_sketch(bnd, lw_sketch, size, drawn=sketch_lines.astype(bool)), photo


def _place(rng: np.random.Generator, o: SketchObject, C: int) -> _Placement:
    """Fit the drawing into the canvas with a margin, at a random scale and offset, maybe mirrored."""
    allp = np.vstack([p.poly for p in o.parts])
    lo, hi = allp.min(0), allp.max(0)
    span = np.maximum(hi - lo, 1e-3)
    margin = rng.uniform(0.04, 0.11) * C
    scale = min((C - 2 * margin) / span[0], (C - 2 * margin) / span[1]) * rng.uniform(0.88, 1.0)
    off = (C - span * scale) / 2 + rng.uniform(-0.5, 0.5, 2) * np.maximum(C - 2 * margin - span * scale, 0)
    flip = rng.random() < 0.3
    return _Placement(lo, scale, off, flip, C)


def _label_parts(o: SketchObject, place: _Placement, C: int) -> np.ndarray:
    """Each pixel's part label (0: background); later parts paint over earlier ones."""
    label = np.zeros((C, C), np.int32)
    for i, p in enumerate(o.parts, start=1):
        m = fill_polygon((C, C), place(p.poly))
        if p.hole is not None:
            m &= ~fill_polygon((C, C), place(p.hole))
        if p.clip is not None:
            m &= label == p.clip
        label[m] = i
    return label


def _height_field(o: SketchObject, label: np.ndarray, obj: np.ndarray, bnd: np.ndarray,
                  dist_obj: np.ndarray) -> np.ndarray:
    """The object's relief: its body shape (by ``o.shading``) plus a rounded edge on every part."""
    C = label.shape[0]
    objsize = float(np.sqrt(obj.sum())) + 1
    inner = (~bnd).astype(np.uint8)
    dist_part = cv2.distanceTransform(inner, cv2.DIST_L2, 3)
    if o.shading == "cyl":
        h = _cylinder_height(o, label, obj)
        r_edge = 0.03 * objsize
    elif o.shading == "flat":
        h = np.zeros((C, C), F32)
        r_edge = 0.02 * objsize
    else:
        R = max(2.0, o.roundness * objsize)
        d = np.minimum(dist_obj / R, 1)
        h = R * np.sqrt(1 - (1 - d) ** 2)
        r_edge = 0.03 * objsize
    de = np.minimum(dist_part / max(r_edge, 1.0), 1)
    h = h + max(r_edge, 1.0) * 0.6 * np.sqrt(1 - (1 - de) ** 2)
    h = np.where(obj, h, 0).astype(F32)
    return cv2.GaussianBlur(h, (0, 0), 1.0 * _SS)


def _cylinder_height(o: SketchObject, label: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """A turned body: each row a half cylinder across the silhouette of all but handles and caps."""
    C = label.shape[0]
    yy, xx = pixel_grid(C, C)
    sil = obj & ~np.isin(label, [i for i, p in enumerate(o.parts, 1) if p.name in ("handle", "cap")])
    rows = cast(np.ndarray, sil.any(1))  # a 2-d mask's rows: an array (typed as maybe a scalar)
    left = np.argmax(sil, 1).astype(F32)
    right = (C - 1 - np.argmax(sil[:, ::-1], 1)).astype(F32)
    ctr: np.ndarray = np.where(rows, (left + right) / 2, C / 2).astype(F32)
    hw: np.ndarray = np.where(rows, np.maximum((right - left) / 2, 1), 1).astype(F32)
    ctr = cv2.GaussianBlur(ctr.reshape(-1, 1), (1, 0), 3.0 * _SS).ravel()
    hw = cv2.GaussianBlur(hw.reshape(-1, 1), (1, 0), 3.0 * _SS).ravel()
    # the body's silhouette sets the cylinder; handles etc. get the generic bump
    t = np.clip((xx - ctr[:, None]) / hw[:, None], -1, 1)
    h = np.sqrt(1 - t * t) * hw[:, None] * 0.8
    return np.where(rows[:, None] & obj, h, 0)


def _lighting(h: np.ndarray, g: np.ndarray, flat: bool) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse shade and specular highlight of the height field ``h`` with per-pixel gloss ``g``."""
    C = h.shape[0]
    yy, xx = pixel_grid(C, C)
    gx = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3) / 8
    nz = 1 / np.sqrt(gx * gx + gy * gy + 1)
    nx, ny = -gx * nz, -gy * nz
    L = np.array([-0.45, -0.6, 0.66])
    L = L / np.linalg.norm(L)
    V = np.array([0.0, 0.0, 1.0])
    H = (L + V) / np.linalg.norm(L + V)
    diff = np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0, 1)
    spec = np.clip(nx * H[0] + ny * H[1] + nz * H[2], 0, 1)
    shin = 8 + 40 * g
    spec = g * np.power(spec, shin) * 0.9
    if flat:  # faces of a box: a soft gradient instead
        diff = 0.9 + 0.15 * (1 - yy / C) - 0.05 * (xx / C)
    return 0.42 + 0.68 * diff, spec


def _shaded_photo(rng: np.random.Generator, o: SketchObject, label: np.ndarray, h: np.ndarray,
                  dist_obj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lit, textured object (float, background not yet drawn), and its flat part colours."""
    C = label.shape[0]
    n = len(o.parts)
    cols = np.zeros((n + 1, 3), F32)
    gloss = np.zeros(n + 1, F32)
    tex = np.zeros(n + 1, F32)
    for i, p in enumerate(o.parts, start=1):
        cols[i], gloss[i], tex[i] = p.colour, p.gloss, p.texture
    shade, spec = _lighting(h, gloss[label], o.shading == "flat")
    # ambient occlusion near the outline keeps light objects apart from the light background
    ao = 0.72 + 0.28 * np.minimum(dist_obj / (2.5 * _SS), 1)
    base = cols[label]
    noise = rng.standard_normal((C, C), dtype=F32) * tex[label] + 2 * value_noise(rng, C, C, 6 * _SS) * (tex[label] > 1)
    photo = base * (shade * ao)[..., None] + noise[..., None] + (spec * 255)[..., None]
    return photo, base


def _seams(photo: np.ndarray, base: np.ndarray, bnd: np.ndarray, obj: np.ndarray) -> None:
    """Seams between parts: a darker line on light parts, a lighter one on dark parts."""
    seam = bnd & obj & erode(obj, 1)
    seam = seam | shift(seam, 1, 0) | shift(seam, 0, 1)
    if seam.any():
        sc = base[seam]
        lum = sc @ np.array([0.3, 0.59, 0.11], F32)
        photo[seam] = np.where((lum > 70)[:, None], photo[seam] * 0.62, photo[seam] + 45)


def _detail_lines(o: SketchObject, place: _Placement, label: np.ndarray, obj: np.ndarray, photo: np.ndarray,
                  lw_sketch: int, size: int) -> np.ndarray:
    """Paint the detail lines (laces, stitching, zips) into the photo; return their sketch strokes."""
    C = label.shape[0]
    sketch_lines = np.zeros((C, C), np.uint8)
    for ln in o.lines:
        pts = place(spline(ln.pts, closed=ln.closed, n=8) if len(ln.pts) > 2 else ln.pts)
        ip = np.round(pts * 16).astype(np.int32)
        lay = np.zeros((C, C), np.uint8)
        wpx = max(1, int(round(ln.width * _SS * size / 256 * 1.5)))
        cv2.polylines(lay, [ip], ln.closed, 1, wpx, cv2.LINE_8, shift=4)
        m = lay.astype(bool) & obj
        if ln.within is not None:
            m &= erode(label == ln.within, 1)
        if not m.any():
            continue
        col = ln.colour if ln.colour is not None else np.array([40, 40, 40], F32)
        photo[m] = np.asarray(col, F32)
        # a stroke much wider than the sketch's pen is drawn as its outline
        sketch_lines |= m & ~erode(m, 1) if wpx > 2 * lw_sketch else m
    return sketch_lines


def _on_background(rng: np.random.Generator, photo: np.ndarray, obj: np.ndarray, size: int) -> np.ndarray:
    """The object on a light background with a soft floor shadow, reduced to ``size``; uint8."""
    C = obj.shape[0]
    yy, _ = pixel_grid(C, C)
    bgc = 255 - rng.uniform(0, 10) * np.array([1, 1, 1], F32) - rng.uniform(0, 4, 3).astype(F32)
    bg = np.empty((C, C, 3), F32)
    bg[:] = bgc
    bg *= (1 - 0.04 * (yy / C))[..., None]
    sh_off = int(0.02 * C)
    shadow = cv2.GaussianBlur(shift(obj.astype(F32), sh_off, sh_off // 2), (0, 0), 0.025 * C)
    bg *= (1 - 0.28 * shadow)[..., None]
    photo = np.where(obj[..., None], photo, bg)
    photo = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
    return to_u8(photo)


# --------------------------------------------------------------------------- the pair

def make_sketches_pair(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One (sketch, photo) pair, uint8 ``size x size x 3``, pixel-aligned."""
    size = check_size(size)
    builder = _OBJECTS[int(rng.integers(len(_OBJECTS)))]
    return _render_object(rng, builder(rng), size)
