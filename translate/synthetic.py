"""Procedural built-in datasets, so Pix2Pix can be tried with nothing to download.

Two kinds, each a pixel-aligned (A, B) pair drawn from a random scene:

* ``maps``: A is an aerial photo (roads, city blocks, roofs with shadows, parks with
  tree canopy, rivers/lakes/coast), B the same place as a flat Google-Maps-style map,
  as in the pix2pix ``maps`` set. Every map colour follows from what the aerial shows.
* ``sketches``: A is a black line drawing on white (outline and inner detail lines,
  like the HED edges of edges2shoes / edges2handbags), B the shaded object photo
  (shoes, handbags, mugs, bottles, boxes) on a light background.

:func:`make_dataset` writes them in the aligned layout ``OUT/{train,val,test}/NNNNN.png``
(A | B side by side) that :mod:`translate.data` reads, plus ``OUT/dataset.json``.
Image ``i`` comes from ``np.random.default_rng([seed, i])``, so it does not depend on
``count``, and a run is reproducible byte for byte.

Only numpy, OpenCV and Pillow are used; everything is vectorised (about 20-40 ms a
pair at 256 px on one core).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from .errors import ConfigError
from .files import atomic_path, write_text_atomic

__all__ = ["KINDS", "make_maps_pair", "make_sketches_pair", "make_pair", "make_dataset", "split_counts"]

KINDS = ("maps", "sketches")

F32 = np.float32

# --------------------------------------------------------------------------- helpers

_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (yy, xx), float32, cached per size (treat as read-only)."""
    key = (h, w)
    if key not in _GRIDS:
        if len(_GRIDS) > 16:
            _GRIDS.clear()
        yy, xx = np.mgrid[0:h, 0:w].astype(F32)
        yy.setflags(write=False)
        xx.setflags(write=False)
        _GRIDS[key] = (yy, xx)
    return _GRIDS[key]


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise with features about ``cell`` pixels across; ~zero mean, unit std."""
    if cell <= 1.0:
        return rng.standard_normal((h, w), dtype=F32)
    gh = int(math.ceil(h / cell)) + 3
    gw = int(math.ceil(w / cell)) + 3
    g = rng.standard_normal((gh, gw), dtype=F32)
    uh, uw = int(round(gh * cell)), int(round(gw * cell))
    up = cv2.resize(g, (uw, uh), interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, max(1, uh - h - int(cell)) ))
    ox = int(rng.integers(0, max(1, uw - w - int(cell))))
    out = up[oy:oy + h, ox:ox + w]
    if cell >= 3:  # soften the cubic grid pattern
        k = int(cell // 2) * 2 + 1
        out = cv2.GaussianBlur(out, (k, k), cell / 4.0)
    s = float(out.std())
    return (out - float(out.mean())) / (s if s > 1e-6 else 1.0)


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx) pixels, zero-filled (no wrap-around)."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] = \
        a[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return out


_KERNELS: dict[int, np.ndarray] = {}


def _disk(r: int) -> np.ndarray:
    if r not in _KERNELS:
        _KERNELS[r] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return _KERNELS[r]


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), _disk(r)).astype(bool)


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask.copy()
    return cv2.erode(mask.astype(np.uint8), _disk(r), borderType=cv2.BORDER_REPLICATE).astype(bool)


def _boundary(label: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label (a 1-px line per border)."""
    b = np.zeros(label.shape, bool)
    b[:, :-1] |= label[:, :-1] != label[:, 1:]
    b[:-1, :] |= label[:-1, :] != label[1:, :]
    return b


def _rgb(*c: float) -> np.ndarray:
    return np.array(c, F32)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _positions(rng: np.random.Generator, lo: float, hi: float, spacing: float,
               jitter: float = 0.3) -> np.ndarray:
    """Increasing positions from below ``lo`` to above ``hi``, about ``spacing`` apart."""
    pos = [lo - rng.uniform(0.2, 1.0) * spacing]
    while pos[-1] <= hi:
        pos.append(pos[-1] + spacing * rng.uniform(1 - jitter, 1 + jitter))
    return np.asarray(pos, F32)


def _curve_distance(xx: np.ndarray, yy: np.ndarray, size: int, angle: float, offset: float,
                    amp: float, wavelength: float, phase: float,
                    wobble: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance to a sinusoidal curve crossing the tile, and the coordinate along it."""
    c, s = math.cos(angle), math.sin(angle)
    x = xx - size / 2
    y = yy - size / 2
    p = x * c + y * s
    q = -x * s + y * c
    k = 2 * math.pi / wavelength
    arg = k * p + phase
    centre = offset + amp * np.sin(arg)
    slope = amp * k * np.cos(arg)
    if wobble is not None:  # a 1-D noise added to the centre line
        gx, gv = wobble
        centre = centre + np.interp(p, gx, gv).astype(F32)
    return (q - centre) / np.sqrt(1 + slope * slope), p


# --------------------------------------------------------------------------- maps

# map palette (Google Maps style of the pix2pix maps set)
MAP_BG = _rgb(242, 239, 233)
MAP_PARK = _rgb(200, 230, 160)
MAP_WATER = _rgb(170, 211, 223)
MAP_BUILDING = _rgb(228, 222, 213)
MAP_BUILDING_LINE = _rgb(211, 203, 193)
MAP_ROAD = {1: _rgb(255, 255, 255), 2: _rgb(253, 216, 138), 3: _rgb(247, 176, 84)}
MAP_ROAD_LINE = {1: _rgb(206, 201, 194), 2: _rgb(226, 178, 96), 3: _rgb(206, 134, 56)}

# aerial roof palette: greys, browns, reds, light industrial
_ROOFS = np.array([
    (122, 122, 124), (150, 148, 145), (175, 172, 168), (108, 108, 114), (200, 198, 192),
    (125, 100, 82), (140, 112, 90), (105, 85, 72), (160, 130, 105),
    (150, 80, 62), (165, 95, 72), (125, 70, 58), (185, 110, 85),
    (210, 210, 205), (180, 185, 188), (132, 136, 142),
], F32)
_SHADOW = np.array([0.58, 0.61, 0.7], F32)  # shadows are darker and bluish
_ROOF_WEIGHTS = np.array([3, 3, 2, 2, 1, 2, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1], np.float64)
_ROOF_WEIGHTS /= _ROOF_WEIGHTS.sum()


def _maps_scene(rng: np.random.Generator, size: int) -> dict:
    """Geometry of one tile: class masks shared by the aerial and the map side."""
    S = size
    u1 = S / 256.0  # one "unit" = one pixel at 256 px
    yy, xx = _grid(S, S)

    # ---- district type sets densities and sizes
    district = rng.choice(["downtown", "residential", "mixed", "industrial"], p=[0.3, 0.3, 0.3, 0.1])
    if district == "downtown":
        block_u, block_v, lot, density, big_p, height = 70, 45, 16, 0.9, 0.2, (3, 8)
    elif district == "residential":
        block_u, block_v, lot, density, big_p, height = 66, 40, 15, 0.8, 0.0, (1.5, 3)
    elif district == "industrial":
        block_u, block_v, lot, density, big_p, height = 90, 70, 28, 0.7, 0.45, (2, 4)
    else:
        block_u, block_v, lot, density, big_p, height = 64, 42, 14, 0.8, 0.1, (2, 5)
    scale = rng.uniform(0.8, 1.25)
    block_u *= scale * u1
    block_v *= scale * u1
    lot *= scale * u1

    # ---- street grid in a rotated frame
    theta = rng.uniform(-0.06, 0.06) if rng.random() < 0.45 else rng.uniform(0, math.pi / 2)
    c, s = math.cos(theta), math.sin(theta)
    x, y = xx - S / 2, yy - S / 2
    u = x * c + y * s
    v = -x * s + y * c
    half = 0.72 * S
    us = _positions(rng, -half, half, block_u)
    vs = _positions(rng, -half, half, block_v)
    if rng.random() < 0.5:
        us, vs, block_u, block_v = vs, us, block_v, block_u

    minor_w = max(1.6, rng.uniform(4.0, 6.0) * u1)
    major_w = max(2.6, rng.uniform(8.0, 11.0) * u1)
    hw_w = max(3.6, rng.uniform(12.0, 16.0) * u1)

    road = np.zeros((S, S), np.uint8)  # 0 none, 1 minor, 2 major, 3 highway
    marks = np.zeros((S, S), bool)     # lane markings (aerial only)
    bridge_ok = np.zeros((S, S), bool)  # roads that may cross rivers

    cell_u = np.clip(np.searchsorted(us, u), 1, len(us) - 1)
    cell_v = np.clip(np.searchsorted(vs, v), 1, len(vs) - 1)

    drop = rng.uniform(0.05, 0.3)
    for lines, coord, cells_other, n_other, along in ((us, u, cell_v, len(vs), v), (vs, v, cell_u, len(us), u)):
        k = len(lines)
        cls = np.ones(k, np.uint8)
        if rng.random() < 0.55:  # one avenue of the grid is a major road
            cls[rng.integers(1, k - 1)] = 2
        width = np.where(cls == 2, major_w, minor_w * rng.uniform(0.85, 1.15, k)).astype(F32)
        keep = rng.random((k, n_other + 1)) >= drop
        keep[cls == 2] = True
        idx = np.clip(np.searchsorted(lines, coord), 1, k - 1)
        lo, hi = lines[idx - 1], lines[idx]
        near = np.where(coord - lo < hi - coord, idx - 1, idx)
        d = np.abs(coord - lines[near])
        on = (d < width[near] / 2) & keep[near, cells_other]
        road = np.maximum(road, np.where(on, cls[near], 0).astype(np.uint8))
        is_major = on & (cls[near] == 2)
        bridge_ok |= is_major
        dash = (np.mod(along, 9 * u1 + 2) < 5 * u1 + 1)
        marks |= is_major & (d < max(0.5, 0.6 * u1)) & dash

    # ---- extra major roads / highway: straight diagonals or curves
    extras = []
    if rng.random() < 0.6:
        extras.append(2)
    if rng.random() < 0.15:
        extras.append(3)
    for cls_e in extras:
        w = major_w if cls_e == 2 else hw_w
        curved = rng.random() < 0.5
        d, p = _curve_distance(xx, yy, S, rng.uniform(0, math.pi), rng.uniform(-0.3, 0.3) * S,
                               rng.uniform(0.05, 0.25) * S if curved else 0.0,
                               rng.uniform(1.2, 2.5) * S, rng.uniform(0, 2 * math.pi))
        ad = np.abs(d)
        on = ad < w / 2
        road[on] = np.maximum(road[on], cls_e)
        bridge_ok |= on
        if cls_e == 3:
            marks |= on & (ad < max(0.5, 0.7 * u1))  # median line
            lane = np.abs(ad - w / 4) < max(0.4, 0.5 * u1)
            marks |= on & lane & (np.mod(p, 10 * u1 + 2) < 5 * u1 + 1)
        else:
            marks |= on & (ad < max(0.5, 0.6 * u1)) & (np.mod(p, 9 * u1 + 2) < 5 * u1 + 1)

    # ---- water: river, lake or coast
    water = np.zeros((S, S), bool)
    river = False
    wt = rng.choice(["none", "river", "lake", "coast"], p=[0.42, 0.28, 0.12, 0.18])
    if wt in ("river", "coast"):
        gx = np.linspace(-S, S, 24).astype(F32)
        gv = (np.cumsum(rng.standard_normal(24)) * 0.02 * S).astype(F32)
        gv -= gv.mean()
        gv = cv2.GaussianBlur(gv.reshape(1, -1), (5, 1), 1.0).ravel().astype(F32)
        if wt == "river":
            d, _ = _curve_distance(xx, yy, S, rng.uniform(0, math.pi), rng.uniform(-0.25, 0.25) * S,
                                   rng.uniform(0.0, 0.2) * S, rng.uniform(0.8, 2.0) * S,
                                   rng.uniform(0, 2 * math.pi), (gx, gv))
            water = np.abs(d) < rng.uniform(0.06, 0.16) * S
            river = True
        else:
            d, _ = _curve_distance(xx, yy, S, rng.uniform(0, 2 * math.pi), rng.uniform(0.05, 0.35) * S,
                                   rng.uniform(0.0, 0.08) * S, rng.uniform(0.8, 2.0) * S,
                                   rng.uniform(0, 2 * math.pi), (gx, gv))
            water = d > 0
    elif wt == "lake":
        cx, cy = rng.uniform(0.15, 0.85, 2) * S
        r0 = rng.uniform(0.12, 0.3) * S
        ang = np.arctan2(yy - cy, xx - cx)
        r = np.full((S, S), r0, F32)
        for kh in (2, 3, 5):
            r += r0 * rng.uniform(0, 0.25 / kh * 2) * np.cos(kh * ang + rng.uniform(0, 2 * math.pi))
        water = np.hypot(xx - cx, yy - cy) < r

    # ---- parks: whole blocks, or one large park region
    park = np.zeros((S, S), bool)
    park_block = rng.random((len(us) + 1, len(vs) + 1)) < rng.uniform(0.0, 0.22)
    park |= park_block[cell_u, cell_v]
    big_park = np.zeros((S, S), bool)
    if rng.random() < 0.35:
        n = _noise(rng, S, S, rng.uniform(0.35, 0.6) * S)
        big_park = n > rng.uniform(0.0, 1.0)
        park |= big_park

    # water and big parks interrupt minor roads; majors cross rivers on bridges
    water_cut = water & ~(bridge_ok & river)
    road[(road == 1) & (_dilate(water, max(1, int(3 * u1))) | big_park)] = 0
    road[water_cut] = 0
    if (road > 0).mean() < 0.01:  # always some road in a tile
        d, p = _curve_distance(xx, yy, S, rng.uniform(0, math.pi), rng.uniform(-0.2, 0.2) * S,
                               0.0, S, 0.0)
        on = np.abs(d) < major_w / 2
        road[on] = np.maximum(road[on], 2)
        marks |= on & (np.abs(d) < max(0.5, 0.6 * u1)) & (np.mod(p, 9 * u1 + 2) < 5 * u1 + 1)
        water &= ~on
    marks &= road > 0
    roads = road > 0
    park &= ~roads & ~water

    # ---- buildings: lots subdividing each block, with setbacks
    lu = us[cell_u] - us[cell_u - 1]
    lv = vs[cell_v] - vs[cell_v - 1]
    n_u = np.maximum(1, np.round((np.diff(us) - minor_w) / lot)).astype(np.int64)
    n_v = np.maximum(1, np.round((np.diff(vs) - minor_w) / (lot * rng.uniform(0.8, 1.4)))).astype(np.int64)
    big = rng.random((len(us) + 1, len(vs) + 1)) < big_p
    bigpx = big[cell_u, cell_v]
    nu = np.where(bigpx, 1, n_u[cell_u - 1])
    nv = np.where(bigpx, 1, n_v[cell_v - 1])
    tu = (u - us[cell_u - 1]) / lu
    tv = (v - vs[cell_v - 1]) / lv
    a = np.minimum((tu * nu).astype(np.int64), nu - 1)
    b = np.minimum((tv * nv).astype(np.int64), nv - 1)
    off_u = np.concatenate([[0], np.cumsum(n_u)])
    off_v = np.concatenate([[0], np.cumsum(n_v)])
    gu = off_u[cell_u - 1] + a
    gv_ = off_v[cell_v - 1] + b
    NU, NV = int(off_u[-1]) + 1, int(off_v[-1]) + 1
    present = rng.random((NU, NV)) < density
    margin = (rng.uniform(0.6, 3.5, (4, NU, NV)) * u1 * (1.3 if district == "residential" else 1.0)).astype(F32)
    # position within the lot
    lot_u = lu / nu
    lot_v = lv / nv
    pu = tu * lu - a * lot_u
    pv = tv * lv - b * lot_v
    inside = ((pu > margin[0][gu, gv_]) & (lot_u - pu > margin[1][gu, gv_])
              & (pv > margin[2][gu, gv_]) & (lot_v - pv > margin[3][gu, gv_]))
    sidewalk = max(1, int(round(2.5 * u1)))
    near_road = _dilate(roads, sidewalk)
    building = inside & present[gu, gv_] & ~near_road & ~_dilate(water, max(1, int(4 * u1))) & ~park
    if S >= 48:  # drop slivers cut by diagonal roads
        building = cv2.morphologyEx(building.astype(np.uint8), cv2.MORPH_OPEN, _disk(1)).astype(bool)
    bid = np.where(building, gu * NV + gv_, -1)

    # per-building attributes
    nb = NU * NV
    roof_idx = rng.choice(len(_ROOFS), size=nb, p=_ROOF_WEIGHTS)
    heights = rng.uniform(height[0], height[1], nb).astype(F32) * u1 * 1.5
    gable = rng.random(nb) < (0.75 if district == "residential" else 0.15)
    # gable axis: along the longer side of the lot
    long_u = (lot_u > lot_v)
    axis_pos = np.where(long_u, pv - (margin[2][gu, gv_] + lot_v - margin[3][gu, gv_]) / 2,
                        pu - (margin[0][gu, gv_] + lot_u - margin[1][gu, gv_]) / 2)

    sidewalk_ring = near_road & ~roads & ~water & ~park
    return dict(size=S, u1=u1, road=road, roads=roads, marks=marks, water=water, park=park,
                building=building, bid=bid, roof_idx=roof_idx, heights=heights, gable=gable,
                axis_pos=axis_pos, u=u, v=v, district=district, sidewalk=sidewalk_ring, theta=theta,
                big_park=big_park)


def _render_map(sc: dict) -> np.ndarray:
    S = sc["size"]
    img = np.empty((S, S, 3), F32)
    img[:] = MAP_BG
    img[sc["park"]] = MAP_PARK
    img[sc["water"]] = MAP_WATER
    bld = sc["building"]
    img[bld] = MAP_BUILDING
    if S >= 64:
        img[bld & ~_erode(bld, 1)] = MAP_BUILDING_LINE
    road = sc["road"]
    lw = max(1, int(round(sc["u1"])))
    for cls in (1, 2, 3):
        m = road == cls
        if m.any():
            ring = _dilate(m, lw) & ~m
            img[ring & (road < cls) | ring & (road == 0)] = MAP_ROAD_LINE[cls]
    for cls in (1, 2, 3):
        img[road == cls] = MAP_ROAD[cls]
    return _to_u8(img)


def _render_aerial(rng: np.random.Generator, sc: dict) -> np.ndarray:
    S, u1 = sc["size"], sc["u1"]
    water, park, roads, bld = sc["water"], sc["park"], sc["roads"], sc["building"]
    img = np.empty((S, S, 3), F32)

    # ground: concrete / dirt / dry yards, mottled
    base = [_rgb(150, 147, 138), _rgb(158, 150, 132), _rgb(140, 138, 132), _rgb(146, 140, 122)][rng.integers(4)]
    low = _noise(rng, S, S, 40 * u1)
    mid = _noise(rng, S, S, 7 * u1)
    fine = rng.standard_normal((S, S), dtype=F32)
    img[:] = base
    img += (9 * low + 7 * mid + 5 * fine)[..., None]
    if sc["district"] == "residential":  # some olive yards between houses
        yard = np.clip(_noise(rng, S, S, 12 * u1) * 0.8, 0, 1)[..., None] * 0.4
        img = img * (1 - yard) + _rgb(128, 124, 98) * yard

    # grass for parks
    grass = rng.choice([0, 1, 2])
    gcol = [_rgb(92, 124, 62), _rgb(104, 130, 70), _rgb(84, 112, 60)][grass]
    gnoise = (8 * _noise(rng, S, S, 10 * u1) + 5 * rng.standard_normal((S, S), dtype=F32))[..., None]
    gimg = gcol + gnoise * _rgb(0.8, 1.0, 0.6)
    img[park] = gimg[park]

    # water: dark blue-green, smooth variation, ripples, lighter near shore
    wcol = [_rgb(40, 72, 86), _rgb(46, 82, 88), _rgb(34, 62, 80), _rgb(52, 88, 96)][rng.integers(4)]
    if water.any():
        wv = (6 * _noise(rng, S, S, 50 * u1) + 3 * _noise(rng, S, S, 3 * u1)
              + 2 * rng.standard_normal((S, S), dtype=F32))[..., None]
        dist = cv2.distanceTransform(water.astype(np.uint8), cv2.DIST_L2, 3)
        shallow = np.exp(-dist / (4 * u1 + 0.5))[..., None]
        wimg = wcol + wv + shallow * _rgb(16, 18, 8)
        img[water] = wimg[water]

    # sidewalks lighter
    img[sc["sidewalk"]] += _rgb(24, 24, 24)

    # roads: asphalt with markings
    acol = [_rgb(78, 78, 80), _rgb(88, 86, 84), _rgb(68, 70, 74), _rgb(96, 95, 92)][rng.integers(4)]
    anoise = (5 * _noise(rng, S, S, 6 * u1) + 4 * rng.standard_normal((S, S), dtype=F32))[..., None]
    aimg = acol + anoise
    aimg[sc["road"] == 3] -= 6
    img[roads] = aimg[roads]
    mk = sc["marks"]
    img[mk] = img[mk] * 0.3 + _rgb(215, 205, 160) * 0.7

    # buildings: roof colours, gables, parapet edges, rooftop clutter
    if bld.any():
        bid = sc["bid"][bld]
        rc = _ROOFS[sc["roof_idx"][bid]]
        # per-building brightness jitter, derived from the id
        jit = ((bid * 2654435761) % 1000 / 1000.0 - 0.5).astype(F32) * 30
        rc = rc + jit[:, None]
        rn = (4 * _noise(rng, S, S, 3 * u1) + 4 * rng.standard_normal((S, S), dtype=F32))[bld]
        rc = rc + rn[:, None]
        g = sc["gable"][bid]
        side = sc["axis_pos"][bld] > 0
        shade = np.where(g, np.where(side, 0.78, 1.08), 1.0).astype(F32)
        rc = rc * shade[:, None]
        img[bld] = rc
        edge = bld & ~_erode(bld, 1)
        img[edge] *= 0.82
        if S >= 64:
            clutter = bld & _erode(bld, 2) & (_noise(rng, S, S, 1.5 * u1) > 2.2)
            img[clutter] = img[clutter] * 0.5 + 110

    # building shadows (sun from a random side)
    sun = rng.uniform(0, 2 * math.pi)
    dy, dx = math.sin(sun), math.cos(sun)
    hmap = np.zeros((S, S), F32)
    if bld.any():
        hmap[bld] = sc["heights"][sc["bid"][bld]]
        shadow = np.zeros((S, S), bool)
        for step in range(1, int(math.ceil(float(hmap.max()))) + 1):
            shadow |= _shift(hmap >= step, int(round(dy * step)), int(round(dx * step)))
        shadow &= ~bld
        img[shadow] *= _SHADOW

    # trees: round hill-shaded crowns, clumped in parks, a few in the city
    free = ~roads & ~bld & ~water & ~sc["sidewalk"]
    clump = _noise(rng, S, S, max(2.0, 24 * u1))
    r_mean = rng.uniform(2.5, 4.5) * u1
    pts = []
    n_all = int(S * S / (r_mean * r_mean) * 0.9)
    cand = rng.integers(0, S * S, size=n_all)
    park_thr = float(_normal_ppf(1 - rng.uniform(0.35, 0.9)))
    keep = park.ravel()[cand] & (clump.ravel()[cand] > park_thr)
    pts.append(cand[keep])
    n_city = int(S * S / (r_mean * r_mean) * rng.uniform(0.0, 0.02))
    cand = rng.integers(0, S * S, size=n_city)
    pts.append(cand[free.ravel()[cand]])
    pts = np.unique(np.concatenate(pts))
    if pts.size:
        src = np.full((S, S), 255, np.uint8)
        src.ravel()[pts] = 0
        dist, lab = cv2.distanceTransformWithLabels(src, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
        radius = (r_mean * rng.uniform(0.6, 1.4, pts.size)).astype(F32)
        radius = np.maximum(radius, 1.2)
        rpx = radius[lab - 1]
        canopy = (dist < rpx) & ~roads & ~bld & ~water
        hgt = np.sqrt(np.clip(1 - (dist / rpx) ** 2, 0, 1)) * rpx
        hgt = cv2.GaussianBlur(hgt, (3, 3), 0.7)
        gy = cv2.Sobel(hgt, cv2.CV_32F, 0, 1, ksize=3) / 8
        gx = cv2.Sobel(hgt, cv2.CV_32F, 1, 0, ksize=3) / 8
        # light comes from opposite the shadow direction, fairly low
        lz = 0.9
        lit = (gx * dx + gy * dy + lz) / np.sqrt(gx * gx + gy * gy + 1) / math.sqrt(1 + lz * lz)
        lit = np.clip(0.3 + 1.1 * lit, 0.4, 1.45)
        tcol = [_rgb(50, 82, 34), _rgb(58, 90, 40), _rgb(44, 76, 36), _rgb(62, 88, 36)][rng.integers(4)]
        tex = 1 + 0.13 * rng.standard_normal((S, S), dtype=F32)
        tint = 1 + 0.08 * rng.standard_normal((pts.size, 3)).astype(F32)
        timg = tcol * tint[lab - 1] * (lit * tex)[..., None]
        tsh = np.zeros((S, S), bool)
        for step in (1, 2, 3):
            tsh |= _shift(canopy, int(round(dy * step * r_mean / 2)), int(round(dx * step * r_mean / 2)))
        tsh &= ~canopy & ~bld & ~water
        img[tsh] *= _SHADOW * 1.1
        img[canopy] = timg[canopy]

    # cars
    road_idx = np.flatnonzero(roads & ~mk)
    if road_idx.size and S >= 64:
        n_cars = int(road_idx.size / (300 * u1 * u1) * rng.uniform(0.3, 1.0))
        picks = rng.choice(road_idx, size=min(n_cars, road_idx.size), replace=False)
        cy, cx = np.divmod(picks, S)
        cols = rng.choice(np.array([(220, 220, 220), (30, 30, 35), (160, 30, 30), (40, 60, 140),
                                    (190, 190, 195), (120, 120, 125)], F32), size=len(picks))
        cl = max(1, int(round(2 * u1)))
        for oy in range(cl):
            for ox in range(2):
                yy_ = np.clip(cy + oy, 0, S - 1)
                xx_ = np.clip(cx + ox, 0, S - 1)
                ok = roads[yy_, xx_]
                img[yy_[ok], xx_[ok]] = cols[ok]

    # camera: colour grading, haze, blur, sensor noise
    grade = rng.uniform(0.92, 1.08, 3).astype(F32) * rng.uniform(0.9, 1.1)
    img = img * grade
    haze = rng.uniform(0, 0.1)
    img = img * (1 - haze) + haze * _rgb(175, 180, 185)
    img *= (1 + 0.04 * _noise(rng, S, S, 80 * u1))[..., None]
    sigma = rng.uniform(0.45, 0.85) * max(u1, 0.5)
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(1.5, 3.5), (S, S, 1)).astype(F32)
    return _to_u8(img)


def _normal_ppf(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation; |error| < 1e-8)."""
    p = min(max(p, 1e-9), 1 - 1e-9)
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01)
    cc = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
          -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((cc[0] * q + cc[1]) * q + cc[2]) * q + cc[3]) * q + cc[4]) * q + cc[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_ppf(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def make_maps_pair(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One (aerial, map) pair, uint8 ``size x size x 3``, pixel-aligned."""
    size = _check_size(size)
    sc = _maps_scene(rng, size)
    aerial = _render_aerial(rng, sc)
    return aerial, _render_map(sc)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ConfigError("size", f"must be an integer >= 16, got {size!r}")
    return int(size)


# --------------------------------------------------------------------------- sketches

_SS = 2  # supersampling of the sketch/photo renderer

_COLOURS = np.array([
    (34, 34, 38), (232, 230, 224), (118, 74, 44), (188, 148, 100), (176, 36, 42), (36, 46, 92),
    (60, 112, 182), (128, 128, 134), (218, 140, 160), (58, 118, 72), (210, 190, 158), (108, 30, 44),
    (224, 188, 60), (218, 118, 48), (90, 60, 110), (70, 70, 76), (150, 96, 60), (40, 150, 160),
], F32)
_METALS = np.array([(212, 175, 90), (196, 198, 204), (176, 140, 80)], F32)


def _chaikin(pts: np.ndarray, iterations: int = 3, closed: bool = True) -> np.ndarray:
    """Corner cutting: straight edges stay straight, corners get rounded."""
    p = np.asarray(pts, np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0) if closed else p[1:]
        a = p if closed else p[:-1]
        new = np.empty((len(a) * 2, 2))
        new[0::2] = 0.75 * a + 0.25 * q
        new[1::2] = 0.25 * a + 0.75 * q
        if not closed:
            new = np.vstack([p[:1], new, p[-1:]])
        p = new
    return p


def _round_poly(pts, frac: float = 0.2, iterations: int = 3) -> np.ndarray:
    """A polygon with rounded corners (``frac`` of each edge takes part in the rounding)."""
    p = np.asarray(pts, np.float64)
    q = np.roll(p, -1, axis=0)
    out = np.empty((len(p) * 3, 2))
    out[0::3] = p
    out[1::3] = p + (q - p) * frac
    out[2::3] = p + (q - p) * (1 - frac)
    return _chaikin(out, iterations)


def _spline(pts, closed: bool = True, n: int = 12) -> np.ndarray:
    """Catmull-Rom spline through the points (smooth organic outlines)."""
    p = np.asarray(pts, np.float64)
    m = len(p)
    if closed:
        idx = np.arange(m)
        p0, p1, p2, p3 = p[(idx - 1) % m], p[idx], p[(idx + 1) % m], p[(idx + 2) % m]
    else:
        ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
        p0, p1, p2, p3 = ext[:-3], ext[1:-2], ext[2:-1], ext[3:]
    t = np.linspace(0, 1, n, endpoint=False)[:, None, None]
    t2, t3 = t * t, t * t * t
    out = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)
    out = out.transpose(1, 0, 2).reshape(-1, 2)
    if not closed:
        out = np.vstack([out, p[-1:]])
    return out


def _ellipse(cx, cy, rx, ry, t0=0.0, t1=2 * math.pi, n=64) -> np.ndarray:
    t = np.linspace(t0, t1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


class _Obj:
    """An object as painted parts (polygons in a unit box) and detail lines."""

    def __init__(self, shading: str = "dome", roundness: float = 0.2):
        self.parts: list[dict] = []
        self.lines: list[dict] = []
        self.shading = shading
        self.roundness = roundness

    def part(self, poly, colour, clip=None, hole=None, gloss=0.3, texture=3.0, name=""):
        self.parts.append(dict(poly=np.asarray(poly, np.float64), colour=np.asarray(colour, F32), clip=clip,
                               hole=None if hole is None else np.asarray(hole, np.float64), gloss=gloss,
                               texture=texture, name=name))
        return len(self.parts)  # label id

    def line(self, pts, colour=None, width=1.0, closed=False, within=None):
        self.lines.append(dict(pts=np.asarray(pts, np.float64), colour=colour, width=width, closed=closed,
                               within=within))


def _shade(c, f):
    return np.clip(np.asarray(c, F32) * f, 0, 255)


def _contrast_colour(c) -> np.ndarray:
    c = np.asarray(c, F32)
    lum = float(c @ np.array([0.3, 0.59, 0.11], F32))
    return _shade(c, 0.55) if lum > 90 else np.clip(c + 80, 0, 255)


def _pick_colour(rng, exclude=None) -> np.ndarray:
    while True:
        c = _COLOURS[rng.integers(len(_COLOURS))]
        if exclude is None or np.abs(c - exclude).sum() > 90:
            return np.clip(c * rng.uniform(0.9, 1.1) + rng.normal(0, 6, 3), 0, 255).astype(F32)


def _shoe(rng, style: str | None = None) -> _Obj:
    if style is None:
        style = str(rng.choice(["sneaker", "sneaker", "boot", "heel", "loafer"]))
    main = _pick_colour(rng)
    accent = _pick_colour(rng, exclude=main) if rng.random() < 0.6 else _shade(main, rng.choice([0.7, 1.25]))
    o = _Obj("dome", roundness=0.14)
    if style == "heel":
        o.roundness = 0.1
        sole_c = _shade(main, 0.5) if rng.random() < 0.5 else _rgb(40, 36, 34)
        heel_h = rng.uniform(0.25, 0.4)
        seat = 0.95 - heel_h
        top = seat - rng.uniform(0.12, 0.22)
        hx0, hx1 = rng.uniform(0.84, 0.88), rng.uniform(0.9, 0.94)
        heel = [(0.8, seat + 0.06), (0.97, seat + 0.06), (hx1 + 0.02, seat + 0.12), (hx1, 0.97), (hx0, 0.97),
                (hx0 - 0.02, seat + 0.12)]
        o.part(heel, sole_c, gloss=0.6, texture=1.0, name="heel")
        upper = _spline([(0.0, 0.9), (0.02, 0.82), (0.1, 0.78), (0.3, 0.74), (0.42, top + 0.12),
                         (0.62, top + 0.1), (0.82, top + 0.02), (0.97, top), (1.0, seat + 0.06),
                         (0.9, seat + 0.1), (0.55, 0.86), (0.25, 0.95), (0.05, 0.95)])
        u = o.part(upper, main, gloss=0.8, texture=1.5, name="upper")
        o.part(_chaikin([(0.0, 0.92), (0.25, 0.95), (0.55, 0.86), (0.82, seat + 0.09), (0.99, seat + 0.07),
                         (0.99, seat + 0.1), (0.55, 0.9), (0.25, 0.99), (0.0, 0.96)], 2), sole_c, gloss=0.4,
               texture=1.0, name="sole")
        opening = _spline([(0.4, top + 0.13), (0.6, top + 0.13), (0.85, top + 0.05), (0.96, top + 0.02),
                           (0.88, top + 0.09), (0.6, top + 0.2)])
        o.part(opening, _shade(main, 0.45), clip=u, gloss=0.1, name="inside")
        if rng.random() < 0.4:  # a contrasting toe or a bow
            o.part(_ellipse(0.0, 0.92, rng.uniform(0.12, 0.2), 0.14), accent, clip=u, gloss=0.8, name="toe")
        return o

    sole_bot = 0.97
    sole_h = rng.uniform(0.04, 0.07) if style == "loafer" else rng.uniform(0.07, 0.12)
    st = sole_bot - sole_h
    lace_pts = []
    if style == "boot":
        top = rng.uniform(0.0, 0.12)
        pts = [(0.03, st + 0.03), (0.01, st - 0.07), (0.07, st - 0.15), (0.25, st - 0.22), (0.4, st - 0.32),
               (0.46, st - 0.45), (0.47, top + 0.06), (0.49, top), (0.84, top - 0.01), (0.86, top + 0.06),
               (0.84, st - 0.4), (0.9, st - 0.2), (0.985, st - 0.08), (0.97, st + 0.03)]
        front = lambda y: 0.46 + 0.02 * (st - 0.45 - y) / max(st - 0.45 - top, 1e-3)  # noqa: E731
        ys = np.linspace(top + 0.1, st - 0.4, int(rng.integers(3, 6)))
        lace_pts = [[(front(y) + 0.015, y), (front(y) + 0.08, y + 0.03)] for y in ys]
    else:
        h = rng.uniform(0.38, 0.5) * (0.75 if style == "loafer" else 1.0)
        pts = [(0.03, st + 0.03), (0.01, st - 0.06), (0.06, st - 0.14), (0.2, st - 0.19), (0.38, st - h * 0.6),
               (0.5, st - h * 0.8), (0.55, st - h * 0.95), (0.62, st - h), (0.66, st - h * 0.88),
               (0.8, st - h * 0.82), (0.92, st - h * 1.0), (0.97, st - h * 0.8), (0.985, st - 0.15), (0.97, st + 0.03)]
        if style == "sneaker":
            n_l = int(rng.integers(3, 6))
            for k in range(n_l):
                t = (k + 0.6) / (n_l + 0.4)
                cx_, cy_ = 0.3 + 0.24 * t, st - 0.19 - (h * 0.8 - 0.19) * t
                lace_pts.append([(cx_ - 0.04, cy_ - 0.035), (cx_ + 0.045, cy_ + 0.03)])
    upper = _spline(pts, n=10)
    u = o.part(upper, main, gloss=0.5 if style == "loafer" else 0.3, texture=3.0, name="upper")
    if style != "boot":  # inner lining where the opening shows
        o.part(_spline([(0.63, st - h * 0.97), (0.8, st - h * 0.86), (0.92, st - h * 0.97),
                        (0.85, st - h * 0.8), (0.7, st - h * 0.8)]),
               _shade(main, 0.4), clip=u, gloss=0.1, name="lining")
    # toe cap / heel counter in the accent colour
    if rng.random() < 0.7:
        o.part(_ellipse(0.0, st, rng.uniform(0.15, 0.25), rng.uniform(0.1, 0.16)), accent, clip=u, name="toe")
    if rng.random() < 0.7:
        o.part(_ellipse(1.02, st, rng.uniform(0.15, 0.25), rng.uniform(0.15, 0.28)), accent, clip=u,
               name="counter")
    if style == "sneaker" and rng.random() < 0.7:  # side stripe / swoosh
        y0 = st - 0.05
        sw = _spline([(0.3, y0), (0.55, y0 - 0.04), (0.85, y0 - 0.2), (0.6, y0 - 0.09), (0.35, y0 - 0.02)],
                     n=10)
        o.part(sw, accent if rng.random() < 0.5 else _pick_colour(rng, exclude=main), clip=u, name="stripe")
    lace_c = _rgb(240, 240, 236) if rng.random() < 0.6 else _contrast_colour(main)
    for lp in lace_pts:
        o.line(lp, colour=lace_c, width=2.0)
    # sole: midsole and outsole band
    sole_c = [_rgb(238, 236, 230), _rgb(40, 38, 38), _rgb(176, 130, 80), _shade(main, 0.6)][rng.integers(4)]
    sole = _spline([(-0.01, st - 0.015), (0.3, st), (0.7, st), (1.005, st - 0.015), (1.01, sole_bot - 0.025),
                    (0.93, sole_bot), (0.2, sole_bot), (0.02, sole_bot - 0.035)], n=10)
    s_id = o.part(sole, sole_c, gloss=0.2, texture=1.5, name="sole")
    if style != "loafer" and rng.random() < 0.6:
        o.part([(-0.1, sole_bot - sole_h * 0.35), (1.1, sole_bot - sole_h * 0.35), (1.1, 1.1), (-0.1, 1.1)],
               _shade(sole_c, 0.55) if sole_c[0] > 100 else _rgb(90, 86, 80), clip=s_id, name="outsole")
    if rng.random() < 0.4:  # stitching along the top of the sole
        o.line([(0.08, st - 0.03), (0.5, st - 0.025), (0.92, st - 0.03)], colour=_contrast_colour(main),
               width=0.8, within=u)
    return o


def _handbag(rng) -> _Obj:
    main = _pick_colour(rng)
    o = _Obj("dome", roundness=0.15)
    top, bot = rng.uniform(0.35, 0.5), 1.0
    inset = rng.uniform(0.0, 0.12)
    body = _round_poly([(inset, top), (1 - inset, top), (1.0, bot), (0.0, bot)], rng.uniform(0.08, 0.25))
    # handle(s) behind the body top
    hr_y = rng.uniform(0.22, 0.35) * (top / 0.45)
    hw = rng.uniform(0.018, 0.04)
    hx = rng.uniform(0.22, 0.35)
    handle_c = main if rng.random() < 0.6 else _shade(main, 0.7)
    outer = _ellipse(0.5, top + 0.02, hx + hw, hr_y + hw, math.pi, 2 * math.pi, 48)
    inner = _ellipse(0.5, top + 0.02, hx - hw, hr_y - hw, 2 * math.pi, math.pi, 48)
    o.part(np.vstack([outer, inner]), handle_c, gloss=0.5, texture=2.0, name="handle")
    b = o.part(body, main, gloss=0.45, texture=3.0, name="body")
    kind = rng.choice(["flap", "zip", "tote"])
    if kind == "flap":
        fy = top + (bot - top) * rng.uniform(0.45, 0.7)
        if rng.random() < 0.5:
            flap = _spline([(-0.1, top - 0.05), (1.1, top - 0.05), (1.0, fy - 0.1), (0.5, fy), (0.0, fy - 0.1)],
                           n=10)
        else:
            flap = _chaikin([(-0.1, top - 0.05), (1.1, top - 0.05), (1.1, fy), (-0.1, fy)], 2)
        f = o.part(flap, main if rng.random() < 0.5 else _shade(main, 0.82), clip=b, gloss=0.5, name="flap")
        metal = _METALS[rng.integers(len(_METALS))]
        cw = rng.uniform(0.04, 0.07)
        o.part(_chaikin([(0.5 - cw, fy - 0.05), (0.5 + cw, fy - 0.05), (0.5 + cw, fy + 0.02),
                         (0.5 - cw, fy + 0.02)], 2), metal, gloss=1.0, texture=0.5, name="clasp")
        o.line([(inset + 0.06, top + 0.03), (1 - inset - 0.06, top + 0.03)], colour=_contrast_colour(main),
               within=f)
    elif kind == "zip":
        o.line([(inset + 0.05, top + 0.035), (1 - inset - 0.05, top + 0.035)], colour=_rgb(200, 190, 160),
               width=2.0)
        if rng.random() < 0.7:  # front pocket
            py = top + (bot - top) * rng.uniform(0.3, 0.5)
            o.part(_round_poly([(0.15, py), (0.85, py), (0.85, bot - 0.08), (0.15, bot - 0.08)], 0.15),
                   _shade(main, rng.choice([0.8, 1.15])), clip=b, name="pocket")
    else:  # tote: a contrasting band
        by = top + (bot - top) * rng.uniform(0.2, 0.45)
        o.part([(-0.1, by), (1.1, by), (1.1, by + rng.uniform(0.08, 0.18)), (-0.1, by + 0.1)],
               _pick_colour(rng, exclude=main), clip=b, name="band")
    return o


def _mug(rng) -> _Obj:
    main = _pick_colour(rng)
    o = _Obj("cyl")
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
    o.part(_ellipse(hxc, hcy, hrx, hry), main, hole=_ellipse(hxc, hcy, hrx - th, hry - th), gloss=0.9,
           texture=0.5, name="handle")
    side_l = [(x0, top), (x0 + taper, bot - ry)]
    bottom = _ellipse(cx, bot - ry, rx - taper, ry, math.pi, 0, 32)[::-1]
    body = np.vstack([side_l, bottom, [(x1 - taper, bot - ry), (x1, top)],
                      _ellipse(cx, top, rx, ry, 0, -math.pi, 48)])
    b = o.part(body, main, gloss=0.9, texture=0.5, name="body")
    o.part(_ellipse(cx, top, rx * 0.9, ry * 0.82), _shade(main, 0.5), gloss=0.3, texture=0.5, name="inside")
    if rng.random() < 0.5:  # coloured band or print
        by = top + (bot - top) * rng.uniform(0.3, 0.55)
        bh = rng.uniform(0.08, 0.2)
        band = np.vstack([_ellipse(cx, by, rx + 0.1, ry, math.pi, 0, 32)[::-1],
                          _ellipse(cx, by + bh, rx + 0.1, ry, 0, math.pi, 32)[::-1]])
        o.part(band, _pick_colour(rng, exclude=main), clip=b, gloss=0.9, texture=0.5, name="band")
    return o


def _bottle(rng) -> _Obj:
    main = _pick_colour(rng)
    o = _Obj("cyl")
    rb = rng.uniform(0.2, 0.4)
    rn = rb * rng.uniform(0.25, 0.45)
    shoulder = rng.uniform(0.3, 0.45)
    neck = rng.uniform(0.1, 0.2)
    ys = [0.0, neck, shoulder - 0.05, shoulder + 0.06, 0.9, 1.0]
    rs = [rn, rn, rn + (rb - rn) * 0.6, rb, rb, rb * 0.93]
    prof = _spline(list(zip(rs, ys)), closed=False, n=8)
    right = np.stack([0.5 + prof[:, 0], prof[:, 1]], 1)
    left = np.stack([0.5 - prof[::-1, 0], prof[::-1, 1]], 1)
    b = o.part(np.vstack([right, left]), main, gloss=0.9, texture=0.5, name="body")
    ch = rng.uniform(0.06, 0.12)
    o.part(_chaikin([(0.5 - rn * 1.15, -0.01), (0.5 + rn * 1.15, -0.01), (0.5 + rn * 1.15, ch),
                     (0.5 - rn * 1.15, ch)], 2), _pick_colour(rng, exclude=main), gloss=0.6, name="cap")
    if rng.random() < 0.75:
        ly = rng.uniform(shoulder + 0.1, 0.55)
        lh = rng.uniform(0.15, 0.3)
        o.part([(0, ly), (1, ly), (1, ly + lh), (0, ly + lh)], _pick_colour(rng, exclude=main), clip=b,
               gloss=0.2, name="label")
    return o


def _box(rng) -> _Obj:
    main = _pick_colour(rng)
    o = _Obj("flat", roundness=0.0)
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


_OBJECTS: tuple[Callable[[np.random.Generator], _Obj], ...] = (_shoe, _shoe, _handbag, _mug, _bottle, _box)


def _fill(shape: tuple[int, int], poly: np.ndarray) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def _render_object(rng: np.random.Generator, o: _Obj, size: int) -> tuple[np.ndarray, np.ndarray]:
    C = size * _SS
    yy, xx = _grid(C, C)
    # fit the unit-box drawing into the canvas with a margin, random scale/offset/flip
    allp = np.vstack([p["poly"] for p in o.parts])
    lo, hi = allp.min(0), allp.max(0)
    span = np.maximum(hi - lo, 1e-3)
    margin = rng.uniform(0.04, 0.11) * C
    scale = min((C - 2 * margin) / span[0], (C - 2 * margin) / span[1]) * rng.uniform(0.88, 1.0)
    off = (C - span * scale) / 2 + rng.uniform(-0.5, 0.5, 2) * np.maximum(C - 2 * margin - span * scale, 0)
    flip = rng.random() < 0.3

    def tf(p):
        q = (np.asarray(p, np.float64) - lo) * scale + off
        if flip:
            q[:, 0] = C - q[:, 0]
        return q

    label = np.zeros((C, C), np.int32)
    for i, p in enumerate(o.parts, start=1):
        m = _fill((C, C), tf(p["poly"]))
        if p["hole"] is not None:
            m &= ~_fill((C, C), tf(p["hole"]))
        if p["clip"] is not None:
            m &= label == p["clip"]
        label[m] = i
    obj = label > 0
    n = len(o.parts)
    cols = np.zeros((n + 1, 3), F32)
    gloss = np.zeros(n + 1, F32)
    tex = np.zeros(n + 1, F32)
    for i, p in enumerate(o.parts, start=1):
        cols[i], gloss[i], tex[i] = p["colour"], p["gloss"], p["texture"]

    # ---- height field -> normals -> shading
    objsize = float(np.sqrt(obj.sum())) + 1
    dist_obj = cv2.distanceTransform(obj.astype(np.uint8), cv2.DIST_L2, 5)
    bnd = _boundary(label)
    inner = (~bnd).astype(np.uint8)
    dist_part = cv2.distanceTransform(inner, cv2.DIST_L2, 3)
    if o.shading == "cyl":
        # the silhouette of everything but handles and caps sets the cylinder
        sil = obj & ~np.isin(label, [i for i, p in enumerate(o.parts, 1) if p["name"] in ("handle", "cap")])
        rows = sil.any(1)
        left = np.argmax(sil, 1).astype(F32)
        right = (C - 1 - np.argmax(sil[:, ::-1], 1)).astype(F32)
        ctr = np.where(rows, (left + right) / 2, C / 2).astype(F32)
        hw = np.where(rows, np.maximum((right - left) / 2, 1), 1).astype(F32)
        ctr = cv2.GaussianBlur(ctr.reshape(-1, 1), (1, 0), 3.0 * _SS).ravel()
        hw = cv2.GaussianBlur(hw.reshape(-1, 1), (1, 0), 3.0 * _SS).ravel()
        # the body's silhouette sets the cylinder; handles etc. get the generic bump
        t = np.clip((xx - ctr[:, None]) / hw[:, None], -1, 1)
        h = np.sqrt(1 - t * t) * hw[:, None] * 0.8
        h = np.where(rows[:, None] & obj, h, 0)
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
    h = cv2.GaussianBlur(h, (0, 0), 1.0 * _SS)
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
    g = gloss[label]
    shin = 8 + 40 * g
    spec = g * np.power(spec, shin) * 0.9
    if o.shading == "flat":  # faces of a box: a soft gradient instead
        diff = 0.9 + 0.15 * (1 - yy / C) - 0.05 * (xx / C)
    shade = 0.42 + 0.68 * diff
    # ambient occlusion near the outline keeps light objects apart from the light background
    ao = 0.72 + 0.28 * np.minimum(dist_obj / (2.5 * _SS), 1)
    base = cols[label]
    noise = rng.standard_normal((C, C), dtype=F32) * tex[label] + 2 * _noise(rng, C, C, 6 * _SS) * (tex[label] > 1)
    photo = base * (shade * ao)[..., None] + noise[..., None] + (spec * 255)[..., None]

    # seams between parts: a slightly darker/lighter line
    seam = bnd & obj & _erode(obj, 1)
    seam = seam | _shift(seam, 1, 0) | _shift(seam, 0, 1)
    if seam.any():
        sc = base[seam]
        lum = sc @ np.array([0.3, 0.59, 0.11], F32)
        photo[seam] = np.where((lum > 70)[:, None], photo[seam] * 0.62, photo[seam] + 45)

    # detail lines (laces, stitching, zips) in both images
    sketch_lines = np.zeros((C, C), np.uint8)
    lw_sketch = int(rng.integers(2, 4))
    for ln in o.lines:
        pts = tf(_spline(ln["pts"], closed=ln["closed"], n=8) if len(ln["pts"]) > 2 else ln["pts"])
        ip = np.round(pts * 16).astype(np.int32)
        lay = np.zeros((C, C), np.uint8)
        wpx = max(1, int(round(ln["width"] * _SS * size / 256 * 1.5)))
        cv2.polylines(lay, [ip], ln["closed"], 1, wpx, cv2.LINE_8, shift=4)
        m = lay.astype(bool) & obj
        if ln["within"] is not None:
            m &= _erode(label == ln["within"], 1)
        if not m.any():
            continue
        col = ln["colour"] if ln["colour"] is not None else np.array([40, 40, 40], F32)
        photo[m] = np.asarray(col, F32)
        sketch_lines |= m & ~_erode(m, 1) if wpx > 2 * lw_sketch else m

    # background, soft shadow on the floor, light gradient
    bgc = 255 - rng.uniform(0, 10) * np.array([1, 1, 1], F32) - rng.uniform(0, 4, 3).astype(F32)
    bg = np.empty((C, C, 3), F32)
    bg[:] = bgc
    bg *= (1 - 0.04 * (yy / C))[..., None]
    sh_off = int(0.02 * C)
    shadow = cv2.GaussianBlur(_shift(obj.astype(F32), sh_off, sh_off // 2), (0, 0), 0.025 * C)
    bg *= (1 - 0.28 * shadow)[..., None]
    photo = np.where(obj[..., None], photo, bg)
    photo = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
    photo = _to_u8(photo)

    # sketch: all part borders + detail lines, black on white
    edges = _dilate(bnd, lw_sketch // 2) if lw_sketch > 2 else bnd | _shift(bnd, 1, 1)
    ink = (edges | sketch_lines.astype(bool)).astype(F32)
    ink = cv2.resize(ink, (size, size), interpolation=cv2.INTER_AREA)
    sk = 255 - 255 * np.clip(ink * 1.6, 0, 1)
    sketch = np.repeat(_to_u8(sk)[..., None], 3, axis=2)
    return sketch, photo


def make_sketches_pair(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One (sketch, photo) pair, uint8 ``size x size x 3``, pixel-aligned."""
    size = _check_size(size)
    builder = _OBJECTS[int(rng.integers(len(_OBJECTS)))]
    return _render_object(rng, builder(rng), size)


# --------------------------------------------------------------------------- datasets

_MAKERS: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]] = {
    "maps": make_maps_pair,
    "sketches": make_sketches_pair,
}
SPLITS = ("train", "val", "test")
_GENERATOR = "translate.synthetic"


def _check_kind(kind: str) -> str:
    if kind not in _MAKERS:
        raise ConfigError("kind", f"unknown synthetic dataset {kind!r}; expected one of: {', '.join(KINDS)}")
    return kind


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError("seed", f"must be an integer >= 0, got {seed!r}")
    return int(seed)


def make_pair(kind: str, index: int, size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pair ``index`` of a synthetic dataset: what :func:`make_dataset` writes for it, as (A, B)."""
    maker = _MAKERS[_check_kind(kind)]
    return maker(np.random.default_rng([_check_seed(seed), int(index)]), size)


def split_counts(count: int, splits: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, int]:
    """How many of ``count`` images go to train / val / test (val and test rounded, train the rest)."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ConfigError("count", f"must be an integer >= 0, got {count!r}")
    fr = [float(x) for x in splits]
    if len(fr) != 3 or any(not math.isfinite(x) or x < 0 for x in fr) or sum(fr) <= 0:
        raise ConfigError("splits", f"expected three fractions >= 0 (train, val, test), got {tuple(splits)!r}")
    total = sum(fr)
    n_val = int(round(count * fr[1] / total))
    n_test = min(int(round(count * fr[2] / total)), count - n_val)
    return {"train": int(count) - n_val - n_test, "val": n_val, "test": n_test}


def _stale_files(out: Path) -> list[Path]:
    """Image files already under the split folders of ``out``."""
    files = []
    for split in SPLITS:
        d = out / split
        if d.is_dir():
            files += [p for p in d.iterdir() if p.is_file() and p.suffix.lower() in
                      (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")]
    return files


def _is_ours(out: Path) -> bool:
    try:
        return json.loads((out / "dataset.json").read_text("utf-8")).get("generator") == _GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def make_dataset(kind: str, out: str | os.PathLike, count: int = 400, size: int = 256, seed: int = 0,
                 splits: Sequence[float] = (0.8, 0.1, 0.1), progress: bool = True) -> dict:
    """Write a synthetic paired dataset in the aligned layout and return its summary.

    Files are ``out/{train,val,test}/{i:05d}.png`` (A | B side by side, ``2*size`` x ``size``);
    indices run over train, then val, then test. Image ``i`` depends only on
    (``kind``, ``seed``, ``i``, ``size``), never on ``count``. Each file is written atomically.
    ``out`` may be new, empty, or an earlier synthetic dataset (whose images are replaced);
    a folder holding other images is refused rather than mixed into.
    """
    kind = _check_kind(kind)
    size = _check_size(size)
    seed = _check_seed(seed)
    counts = split_counts(count, splits)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} exists and is not a folder")
    existing = _stale_files(out) if out.is_dir() else []
    if existing and not _is_ours(out):
        raise ConfigError("out", f"{out} already holds images ({existing[0]}) and is not a synthetic dataset; "
                                 "choose a new or empty folder")
    names: list[tuple[str, int]] = []
    i = 0
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        for _ in range(counts[split]):
            names.append((split, i))
            i += 1
    keep = {out / split / f"{idx:05d}.png" for split, idx in names}
    for p in existing:  # ours, left over from an earlier run with another count or split
        if p not in keep and re.fullmatch(r"\d{5}\.png", p.name):
            p.unlink(missing_ok=True)

    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(names), desc=f"synthetic {kind}", unit="img")
        except ImportError:  # pragma: no cover - tqdm is a dependency
            bar = None
    maker = _MAKERS[kind]
    try:
        for split, idx in names:
            a, b = maker(np.random.default_rng([seed, idx]), size)
            img = Image.fromarray(np.concatenate([a, b], axis=1))
            with atomic_path(out / split / f"{idx:05d}.png") as tmp:
                img.save(tmp, format="PNG", compress_level=3)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    summary = {
        "kind": kind,
        "out": str(out),
        "counts": counts,
        "count": len(names),
        "size": size,
        "seed": seed,
        "splits": [float(x) for x in splits],
        "layout": "aligned",  # A | B side by side
        "A": "aerial photo" if kind == "maps" else "sketch",
        "B": "map" if kind == "maps" else "photo",
        "generator": _GENERATOR,
    }
    write_text_atomic(out / "dataset.json", json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m translate.synthetic",
                                 description="Write a built-in synthetic paired dataset (aligned A|B layout).")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    summary = make_dataset(args.kind, args.out, count=args.count, size=args.size, seed=args.seed,
                           progress=not args.quiet)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
