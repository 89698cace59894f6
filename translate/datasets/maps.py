"""The ``maps`` set: A is an aerial photo, B the same place as a flat Google-Maps-style map.

As in the pix2pix ``maps`` set: roads, city blocks, roofs with shadows, parks with tree
canopy, rivers/lakes/coast. Every map colour follows from what the aerial shows.

A tile is drawn in two stages. :func:`_scene` lays out a :class:`MapScene` (district,
street grid, extra roads, water, parks, road cuts, buildings), then :func:`_render_aerial`
paints it as a photo and :func:`_render_map` as a flat map, so the two are pixel-aligned.
Lengths are in units ``u1`` (one pixel at 256 px), so a tile looks alike at every size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..class_maps import Palette
from .drawing import (
    F32,
    check_size,
    curve_distance,
    dilate,
    disk,
    erode,
    normal_ppf,
    pixel_grid,
    rgb,
    shift,
    spaced_positions,
    to_u8,
    value_noise,
)

__all__ = ["make_maps_pair", "MAPS_PALETTE", "MapScene", "MAP_BG", "MAP_PARK", "MAP_WATER", "MAP_BUILDING", "MAP_BUILDING_LINE",
           "MAP_ROAD", "MAP_ROAD_LINE"]

# map palette (Google Maps style of the pix2pix maps set)
MAP_BG = rgb(242, 239, 233)
MAP_PARK = rgb(200, 230, 160)
MAP_WATER = rgb(170, 211, 223)
MAP_BUILDING = rgb(228, 222, 213)
MAP_BUILDING_LINE = rgb(211, 203, 193)
MAP_ROAD = {1: rgb(255, 255, 255), 2: rgb(253, 216, 138), 3: rgb(247, 176, 84)}
MAP_ROAD_LINE = {1: rgb(206, 201, 194), 2: rgb(226, 178, 96), 3: rgb(206, 134, 56)}

# the classes of the map side (B), for its class-map scores; the thin outlines are not classes of
# their own: they snap to the nearest class, and lie at the class borders that scoring ignores
MAPS_PALETTE = Palette(np.array([MAP_BG, MAP_PARK, MAP_WATER, MAP_BUILDING, MAP_ROAD[1], MAP_ROAD[2], MAP_ROAD[3]],
                                np.uint8),
                       ("background", "park", "water", "building", "street", "main road", "highway"), side="B")

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

# district type -> (block length, block depth, lot width, share of lots built on,
# share of blocks that are one big building, building height range), lengths in u1
_DISTRICTS: dict[str, tuple[float, float, float, float, float, tuple[float, float]]] = {
    "downtown": (70, 45, 16, 0.9, 0.2, (3, 8)),
    "residential": (66, 40, 15, 0.8, 0.0, (1.5, 3)),
    "mixed": (64, 42, 14, 0.8, 0.1, (2, 5)),
    "industrial": (90, 70, 28, 0.7, 0.45, (2, 4)),
}
_DISTRICT_P = [0.3, 0.3, 0.3, 0.1]


# --------------------------------------------------------------------------- scene records

@dataclass(frozen=True)
class _District:
    """Densities and sizes of the tile's neighbourhood (lengths in pixels)."""

    name: str
    block_u: float
    block_v: float
    lot: float
    density: float
    big_p: float
    height: tuple[float, float]


@dataclass(frozen=True)
class _Streets:
    """The street grid, in a frame (u, v) rotated against the tile."""

    u: np.ndarray  # every pixel's coordinates in the frame
    v: np.ndarray
    us: np.ndarray  # grid line positions along u and along v
    vs: np.ndarray
    cell_u: np.ndarray  # every pixel's grid cell: index of the grid line after it
    cell_v: np.ndarray
    minor_w: float  # road widths
    major_w: float
    hw_w: float


@dataclass
class _RoadNet:
    """Roads drawn so far; the steps below update the arrays in place."""

    road: np.ndarray  # uint8 class: 0 none, 1 minor, 2 major, 3 highway
    marks: np.ndarray  # lane markings (aerial only)
    bridge_ok: np.ndarray  # roads that may cross rivers


@dataclass(frozen=True)
class _Lots:
    """Blocks cut into lots, each with its own setbacks."""

    lot_id: np.ndarray  # every pixel's lot
    n: int  # number of lot ids
    built: np.ndarray  # pixels inside a built lot's setbacks
    axis_pos: np.ndarray  # signed distance from the lot's long axis (the ridge of a gable roof)


@dataclass(frozen=True)
class MapScene:
    """One tile's geometry: the class masks shared by the aerial and the map side.

    Per-pixel arrays are ``size x size``; ``roof_idx``, ``heights`` and ``gable`` are
    indexed by building id (``bid``, -1 where there is no building).
    """

    size: int
    u1: float  # one unit: one pixel at 256 px
    district: str
    road: np.ndarray  # uint8 class: 0 none, 1 minor, 2 major, 3 highway
    roads: np.ndarray  # road > 0
    marks: np.ndarray
    water: np.ndarray
    park: np.ndarray
    sidewalk: np.ndarray
    building: np.ndarray
    bid: np.ndarray
    axis_pos: np.ndarray
    roof_idx: np.ndarray
    heights: np.ndarray
    gable: np.ndarray


# --------------------------------------------------------------------------- scene

def _scene(rng: np.random.Generator, size: int) -> MapScene:
    """Geometry of one tile, in the order its random numbers are drawn."""
    S = size
    u1 = S / 256.0
    district = _district(rng, u1)
    streets = _street_grid(rng, S, u1, district)
    net = _grid_roads(rng, S, u1, streets)
    _extra_roads(rng, S, u1, streets, net)
    water, river = _water(rng, S)
    park, big_park = _parks(rng, S, streets)
    _cut_roads(rng, S, u1, net, water, river, big_park, streets.major_w)
    roads = net.road > 0
    park &= ~roads & ~water
    lots = _lots(rng, u1, streets, district)
    near_road = dilate(roads, max(1, int(round(2.5 * u1))))  # the sidewalk
    building = lots.built & ~near_road & ~dilate(water, max(1, int(4 * u1))) & ~park
    if S >= 48:  # drop slivers cut by diagonal roads
        building = cv2.morphologyEx(building.astype(np.uint8), cv2.MORPH_OPEN, disk(1)).astype(bool)
    roof_idx = rng.choice(len(_ROOFS), size=lots.n, p=_ROOF_WEIGHTS)
    heights = rng.uniform(district.height[0], district.height[1], lots.n).astype(F32) * u1 * 1.5
    gable = rng.random(lots.n) < (0.75 if district.name == "residential" else 0.15)
    return MapScene(size=S, u1=u1, district=district.name, road=net.road, roads=roads, marks=net.marks,
                    water=water, park=park, sidewalk=near_road & ~roads & ~water & ~park, building=building,
                    bid=np.where(building, lots.lot_id, -1), axis_pos=lots.axis_pos, roof_idx=roof_idx,
                    heights=heights, gable=gable)


def _district(rng: np.random.Generator, u1: float) -> _District:
    """The district type sets densities and sizes; a random scale varies them."""
    name = rng.choice(list(_DISTRICTS), p=_DISTRICT_P)
    block_u, block_v, lot, density, big_p, height = _DISTRICTS[name]
    scale = rng.uniform(0.8, 1.25)
    return _District(str(name), block_u * (scale * u1), block_v * (scale * u1), lot * (scale * u1), density, big_p,
                     height)


def _street_grid(rng: np.random.Generator, S: int, u1: float, district: _District) -> _Streets:
    """A jittered grid of streets, nearly axis-aligned or at any angle."""
    yy, xx = pixel_grid(S, S)
    theta = rng.uniform(-0.06, 0.06) if rng.random() < 0.45 else rng.uniform(0, math.pi / 2)
    c, s = math.cos(theta), math.sin(theta)
    x, y = xx - S / 2, yy - S / 2
    u = x * c + y * s
    v = -x * s + y * c
    half = 0.72 * S
    us = spaced_positions(rng, -half, half, district.block_u)
    vs = spaced_positions(rng, -half, half, district.block_v)
    if rng.random() < 0.5:
        us, vs = vs, us
    minor_w = max(1.6, rng.uniform(4.0, 6.0) * u1)
    major_w = max(2.6, rng.uniform(8.0, 11.0) * u1)
    hw_w = max(3.6, rng.uniform(12.0, 16.0) * u1)
    cell_u = np.clip(np.searchsorted(us, u), 1, len(us) - 1)
    cell_v = np.clip(np.searchsorted(vs, v), 1, len(vs) - 1)
    return _Streets(u, v, us, vs, cell_u, cell_v, minor_w, major_w, hw_w)


def _grid_roads(rng: np.random.Generator, S: int, u1: float, st: _Streets) -> _RoadNet:
    """Roads along the grid lines: minor ones with gaps, maybe one major avenue each way."""
    net = _RoadNet(road=np.zeros((S, S), np.uint8), marks=np.zeros((S, S), bool), bridge_ok=np.zeros((S, S), bool))
    drop = rng.uniform(0.05, 0.3)
    for lines, coord, cells_other, n_other, along in ((st.us, st.u, st.cell_v, len(st.vs), st.v),
                                                      (st.vs, st.v, st.cell_u, len(st.us), st.u)):
        k = len(lines)
        cls = np.ones(k, np.uint8)
        if rng.random() < 0.55:  # one avenue of the grid is a major road
            cls[rng.integers(1, k - 1)] = 2
        width = np.where(cls == 2, st.major_w, st.minor_w * rng.uniform(0.85, 1.15, k)).astype(F32)
        keep = rng.random((k, n_other + 1)) >= drop
        keep[cls == 2] = True
        idx = np.clip(np.searchsorted(lines, coord), 1, k - 1)
        lo, hi = lines[idx - 1], lines[idx]
        near = np.where(coord - lo < hi - coord, idx - 1, idx)
        d = np.abs(coord - lines[near])
        on = (d < width[near] / 2) & keep[near, cells_other]
        net.road = np.maximum(net.road, np.where(on, cls[near], 0).astype(np.uint8))
        is_major = on & (cls[near] == 2)
        net.bridge_ok |= is_major
        dash = (np.mod(along, 9 * u1 + 2) < 5 * u1 + 1)
        net.marks |= is_major & (d < max(0.5, 0.6 * u1)) & dash
    return net


def _extra_roads(rng: np.random.Generator, S: int, u1: float, st: _Streets, net: _RoadNet) -> None:
    """Maybe a major road and a highway off the grid: straight diagonals or curves."""
    yy, xx = pixel_grid(S, S)
    extras = []
    if rng.random() < 0.6:
        extras.append(2)
    if rng.random() < 0.15:
        extras.append(3)
    for cls_e in extras:
        w = st.major_w if cls_e == 2 else st.hw_w
        curved = rng.random() < 0.5
        d, p = curve_distance(xx, yy, S, rng.uniform(0, math.pi), rng.uniform(-0.3, 0.3) * S,
                              rng.uniform(0.05, 0.25) * S if curved else 0.0,
                              rng.uniform(1.2, 2.5) * S, rng.uniform(0, 2 * math.pi))
        ad = np.abs(d)
        on = ad < w / 2
        net.road[on] = np.maximum(net.road[on], cls_e)
        net.bridge_ok |= on
        if cls_e == 3:
            net.marks |= on & (ad < max(0.5, 0.7 * u1))  # median line
            lane = np.abs(ad - w / 4) < max(0.4, 0.5 * u1)
            net.marks |= on & lane & (np.mod(p, 10 * u1 + 2) < 5 * u1 + 1)
        else:
            net.marks |= on & (ad < max(0.5, 0.6 * u1)) & (np.mod(p, 9 * u1 + 2) < 5 * u1 + 1)


def _water(rng: np.random.Generator, S: int) -> tuple[np.ndarray, bool]:
    """No water, a river, a lake or a coast; and whether it is a river (bridges cross it)."""
    yy, xx = pixel_grid(S, S)
    water = np.zeros((S, S), bool)
    river = False
    wt = rng.choice(["none", "river", "lake", "coast"], p=[0.42, 0.28, 0.12, 0.18])
    if wt in ("river", "coast"):
        gx = np.linspace(-S, S, 24).astype(F32)
        gv = (np.cumsum(rng.standard_normal(24)) * 0.02 * S).astype(F32)
        gv -= gv.mean()
        gv = cv2.GaussianBlur(gv.reshape(1, -1), (5, 1), 1.0).ravel().astype(F32)
        if wt == "river":
            d, _ = curve_distance(xx, yy, S, rng.uniform(0, math.pi), rng.uniform(-0.25, 0.25) * S,
                                  rng.uniform(0.0, 0.2) * S, rng.uniform(0.8, 2.0) * S,
                                  rng.uniform(0, 2 * math.pi), (gx, gv))
            water = np.abs(d) < rng.uniform(0.06, 0.16) * S
            river = True
        else:
            d, _ = curve_distance(xx, yy, S, rng.uniform(0, 2 * math.pi), rng.uniform(0.05, 0.35) * S,
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
    return water, river


def _parks(rng: np.random.Generator, S: int, st: _Streets) -> tuple[np.ndarray, np.ndarray]:
    """Parks (whole blocks, or one large park region), and the large region alone."""
    park = np.zeros((S, S), bool)
    park_block = rng.random((len(st.us) + 1, len(st.vs) + 1)) < rng.uniform(0.0, 0.22)
    park |= park_block[st.cell_u, st.cell_v]
    big_park = np.zeros((S, S), bool)
    if rng.random() < 0.35:
        n = value_noise(rng, S, S, rng.uniform(0.35, 0.6) * S)
        big_park = n > rng.uniform(0.0, 1.0)
        park |= big_park
    return park, big_park


def _cut_roads(rng: np.random.Generator, S: int, u1: float, net: _RoadNet, water: np.ndarray, river: bool,
               big_park: np.ndarray, major_w: float) -> None:
    """Water and big parks interrupt minor roads; majors cross rivers on bridges.

    A tile left almost without roads gets one straight major road (over any water).
    """
    water_cut = water & ~(net.bridge_ok & river)
    net.road[(net.road == 1) & (dilate(water, max(1, int(3 * u1))) | big_park)] = 0
    net.road[water_cut] = 0
    if (net.road > 0).mean() < 0.01:  # always some road in a tile
        yy, xx = pixel_grid(S, S)
        d, p = curve_distance(xx, yy, S, rng.uniform(0, math.pi), rng.uniform(-0.2, 0.2) * S, 0.0, S, 0.0)
        on = np.abs(d) < major_w / 2
        net.road[on] = np.maximum(net.road[on], 2)
        net.marks |= on & (np.abs(d) < max(0.5, 0.6 * u1)) & (np.mod(p, 9 * u1 + 2) < 5 * u1 + 1)
        water &= ~on
    net.marks &= net.road > 0


def _lots(rng: np.random.Generator, u1: float, st: _Streets, district: _District) -> _Lots:
    """Each block cut into lots (or left whole for a big building); which are built, with setbacks."""
    cell_u, cell_v = st.cell_u, st.cell_v
    lu = st.us[cell_u] - st.us[cell_u - 1]
    lv = st.vs[cell_v] - st.vs[cell_v - 1]
    n_u = np.maximum(1, np.round((np.diff(st.us) - st.minor_w) / district.lot)).astype(np.int64)
    n_v = np.maximum(1, np.round((np.diff(st.vs) - st.minor_w) / (district.lot * rng.uniform(0.8, 1.4)))
                     ).astype(np.int64)
    big = rng.random((len(st.us) + 1, len(st.vs) + 1)) < district.big_p
    bigpx = big[cell_u, cell_v]
    nu = np.where(bigpx, 1, n_u[cell_u - 1])
    nv = np.where(bigpx, 1, n_v[cell_v - 1])
    tu = (st.u - st.us[cell_u - 1]) / lu
    tv = (st.v - st.vs[cell_v - 1]) / lv
    a = np.minimum((tu * nu).astype(np.int64), nu - 1)
    b = np.minimum((tv * nv).astype(np.int64), nv - 1)
    off_u = np.concatenate([[0], np.cumsum(n_u)])
    off_v = np.concatenate([[0], np.cumsum(n_v)])
    gu = off_u[cell_u - 1] + a
    gv = off_v[cell_v - 1] + b
    NU, NV = int(off_u[-1]) + 1, int(off_v[-1]) + 1
    present = rng.random((NU, NV)) < district.density
    margin = (rng.uniform(0.6, 3.5, (4, NU, NV)) * u1 * (1.3 if district.name == "residential" else 1.0)
              ).astype(F32)
    m_u0, m_u1, m_v0, m_v1 = (m[gu, gv] for m in margin)
    # position within the lot
    lot_u = lu / nu
    lot_v = lv / nv
    pu = tu * lu - a * lot_u
    pv = tv * lv - b * lot_v
    inside = (pu > m_u0) & (lot_u - pu > m_u1) & (pv > m_v0) & (lot_v - pv > m_v1)
    # a gable's ridge runs along the longer side of the lot
    axis_pos = np.where(lot_u > lot_v, pv - (m_v0 + lot_v - m_v1) / 2, pu - (m_u0 + lot_u - m_u1) / 2)
    return _Lots(lot_id=gu * NV + gv, n=NU * NV, built=inside & present[gu, gv], axis_pos=axis_pos)


# --------------------------------------------------------------------------- the map side

def _render_map(sc: MapScene) -> np.ndarray:
    """The flat map: palette colours by class, outlined buildings and roads."""
    S = sc.size
    img = np.empty((S, S, 3), F32)
    img[:] = MAP_BG
    img[sc.park] = MAP_PARK
    img[sc.water] = MAP_WATER
    bld = sc.building
    img[bld] = MAP_BUILDING
    if S >= 64:
        img[bld & ~erode(bld, 1)] = MAP_BUILDING_LINE
    road = sc.road
    lw = max(1, int(round(sc.u1)))
    for cls in (1, 2, 3):
        m = road == cls
        if m.any():
            ring = dilate(m, lw) & ~m
            img[ring & (road < cls) | ring & (road == 0)] = MAP_ROAD_LINE[cls]
    for cls in (1, 2, 3):
        img[road == cls] = MAP_ROAD[cls]
    return to_u8(img)


# --------------------------------------------------------------------------- the aerial side

def _render_aerial(rng: np.random.Generator, sc: MapScene) -> np.ndarray:
    """The aerial photo: ground, parks, water, roads, roofs, shadows, trees, cars, then the camera."""
    img = _ground(rng, sc)
    _grass(rng, sc, img)
    _water_surface(rng, sc, img)
    img[sc.sidewalk] += rgb(24, 24, 24)  # sidewalks lighter
    _asphalt(rng, sc, img)
    _roofs(rng, sc, img)
    sun = rng.uniform(0, 2 * math.pi)  # shadows fall towards (dy, dx)
    dy, dx = math.sin(sun), math.cos(sun)
    _building_shadows(sc, img, dy, dx)
    _trees(rng, sc, img, dy, dx)
    _cars(rng, sc, img)
    return _camera(rng, sc, img)


def _ground(rng: np.random.Generator, sc: MapScene) -> np.ndarray:
    """Concrete / dirt / dry yards, mottled; olive yards between houses in residential districts."""
    S, u1 = sc.size, sc.u1
    img: np.ndarray = np.empty((S, S, 3), F32)
    base = [rgb(150, 147, 138), rgb(158, 150, 132), rgb(140, 138, 132), rgb(146, 140, 122)][rng.integers(4)]
    low = value_noise(rng, S, S, 40 * u1)
    mid = value_noise(rng, S, S, 7 * u1)
    fine = rng.standard_normal((S, S), dtype=F32)
    img[:] = base
    img += (9 * low + 7 * mid + 5 * fine)[..., None]
    if sc.district == "residential":
        yard = np.clip(value_noise(rng, S, S, 12 * u1) * 0.8, 0, 1)[..., None] * 0.4
        img = img * (1 - yard) + rgb(128, 124, 98) * yard
    return img


def _grass(rng: np.random.Generator, sc: MapScene, img: np.ndarray) -> None:
    """Parks: grass, one of three greens."""
    S, u1 = sc.size, sc.u1
    grass = rng.choice([0, 1, 2])
    gcol = [rgb(92, 124, 62), rgb(104, 130, 70), rgb(84, 112, 60)][grass]
    gnoise = (8 * value_noise(rng, S, S, 10 * u1) + 5 * rng.standard_normal((S, S), dtype=F32))[..., None]
    gimg = gcol + gnoise * rgb(0.8, 1.0, 0.6)
    img[sc.park] = gimg[sc.park]


def _water_surface(rng: np.random.Generator, sc: MapScene, img: np.ndarray) -> None:
    """Water: dark blue-green, smooth variation, ripples, lighter near the shore."""
    S, u1, water = sc.size, sc.u1, sc.water
    wcol = [rgb(40, 72, 86), rgb(46, 82, 88), rgb(34, 62, 80), rgb(52, 88, 96)][rng.integers(4)]
    if water.any():
        wv = (6 * value_noise(rng, S, S, 50 * u1) + 3 * value_noise(rng, S, S, 3 * u1)
              + 2 * rng.standard_normal((S, S), dtype=F32))[..., None]
        dist = cv2.distanceTransform(water.astype(np.uint8), cv2.DIST_L2, 3)
        shallow = np.exp(-dist / (4 * u1 + 0.5))[..., None]
        wimg = wcol + wv + shallow * rgb(16, 18, 8)
        img[water] = wimg[water]


def _asphalt(rng: np.random.Generator, sc: MapScene, img: np.ndarray) -> None:
    """Roads: asphalt (highways darker) with lane markings."""
    S, u1 = sc.size, sc.u1
    acol = [rgb(78, 78, 80), rgb(88, 86, 84), rgb(68, 70, 74), rgb(96, 95, 92)][rng.integers(4)]
    anoise = (5 * value_noise(rng, S, S, 6 * u1) + 4 * rng.standard_normal((S, S), dtype=F32))[..., None]
    aimg = acol + anoise
    aimg[sc.road == 3] -= 6
    img[sc.roads] = aimg[sc.roads]
    mk = sc.marks
    img[mk] = img[mk] * 0.3 + rgb(215, 205, 160) * 0.7


def _roofs(rng: np.random.Generator, sc: MapScene, img: np.ndarray) -> None:
    """Buildings: roof colours, gables, parapet edges, rooftop clutter."""
    S, u1, bld = sc.size, sc.u1, sc.building
    if not bld.any():
        return
    bid = sc.bid[bld]
    rc = _ROOFS[sc.roof_idx[bid]]
    # per-building brightness jitter, derived from the id
    jit = ((bid * 2654435761) % 1000 / 1000.0 - 0.5).astype(F32) * 30
    rc = rc + jit[:, None]
    rn = (4 * value_noise(rng, S, S, 3 * u1) + 4 * rng.standard_normal((S, S), dtype=F32))[bld]
    rc = rc + rn[:, None]
    g = sc.gable[bid]
    side = sc.axis_pos[bld] > 0
    shade = np.where(g, np.where(side, 0.78, 1.08), 1.0).astype(F32)
    rc = rc * shade[:, None]
    img[bld] = rc
    edge = bld & ~erode(bld, 1)
    img[edge] *= 0.82
    if S >= 64:
        clutter = bld & erode(bld, 2) & (value_noise(rng, S, S, 1.5 * u1) > 2.2)
        img[clutter] = img[clutter] * 0.5 + 110


def _building_shadows(sc: MapScene, img: np.ndarray, dy: float, dx: float) -> None:
    """Each building casts a shadow as long as it is high, towards (dy, dx)."""
    S, bld = sc.size, sc.building
    if not bld.any():
        return
    hmap = np.zeros((S, S), F32)
    hmap[bld] = sc.heights[sc.bid[bld]]
    shadow = np.zeros((S, S), bool)
    for step in range(1, int(math.ceil(float(hmap.max()))) + 1):
        shadow |= shift(hmap >= step, int(round(dy * step)), int(round(dx * step)))
    shadow &= ~bld
    img[shadow] *= _SHADOW


def _trees(rng: np.random.Generator, sc: MapScene, img: np.ndarray, dy: float, dx: float) -> None:
    """Round hill-shaded crowns with their shadows, clumped in parks, a few in the city."""
    S = sc.size
    pts, r_mean = _tree_sites(rng, sc)
    if not pts.size:
        return
    src = np.full((S, S), 255, np.uint8)
    src.ravel()[pts] = 0
    dist, lab = cv2.distanceTransformWithLabels(src, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    radius = (r_mean * rng.uniform(0.6, 1.4, pts.size)).astype(F32)
    radius = np.maximum(radius, 1.2)
    rpx = radius[lab - 1]
    canopy = (dist < rpx) & ~sc.roads & ~sc.building & ~sc.water
    hgt = np.sqrt(np.clip(1 - (dist / rpx) ** 2, 0, 1)) * rpx
    hgt = cv2.GaussianBlur(hgt, (3, 3), 0.7)
    gy = cv2.Sobel(hgt, cv2.CV_32F, 0, 1, ksize=3) / 8
    gx = cv2.Sobel(hgt, cv2.CV_32F, 1, 0, ksize=3) / 8
    # light comes from opposite the shadow direction, fairly low
    lz = 0.9
    lit = (gx * dx + gy * dy + lz) / np.sqrt(gx * gx + gy * gy + 1) / math.sqrt(1 + lz * lz)
    lit = np.clip(0.3 + 1.1 * lit, 0.4, 1.45)
    tcol = [rgb(50, 82, 34), rgb(58, 90, 40), rgb(44, 76, 36), rgb(62, 88, 36)][rng.integers(4)]
    tex = 1 + 0.13 * rng.standard_normal((S, S), dtype=F32)
    tint = 1 + 0.08 * rng.standard_normal((pts.size, 3)).astype(F32)
    timg = tcol * tint[lab - 1] * (lit * tex)[..., None]
    tsh = np.zeros((S, S), bool)
    for step in (1, 2, 3):
        tsh |= shift(canopy, int(round(dy * step * r_mean / 2)), int(round(dx * step * r_mean / 2)))
    tsh &= ~canopy & ~sc.building & ~sc.water
    img[tsh] *= _SHADOW * 1.1
    img[canopy] = timg[canopy]


def _tree_sites(rng: np.random.Generator, sc: MapScene) -> tuple[np.ndarray, float]:
    """Flat pixel indices of tree centres, and the mean crown radius."""
    S, u1 = sc.size, sc.u1
    free = ~sc.roads & ~sc.building & ~sc.water & ~sc.sidewalk
    clump = value_noise(rng, S, S, max(2.0, 24 * u1))
    r_mean = rng.uniform(2.5, 4.5) * u1
    n_all = int(S * S / (r_mean * r_mean) * 0.9)
    cand = rng.integers(0, S * S, size=n_all)
    park_thr = float(normal_ppf(1 - rng.uniform(0.35, 0.9)))
    in_parks = cand[sc.park.ravel()[cand] & (clump.ravel()[cand] > park_thr)]
    n_city = int(S * S / (r_mean * r_mean) * rng.uniform(0.0, 0.02))
    cand = rng.integers(0, S * S, size=n_city)
    in_city = cand[free.ravel()[cand]]
    return np.unique(np.concatenate([in_parks, in_city])), r_mean


def _cars(rng: np.random.Generator, sc: MapScene, img: np.ndarray) -> None:
    """Cars: small coloured rectangles on the roads (off the lane markings)."""
    S, u1, roads = sc.size, sc.u1, sc.roads
    road_idx = np.flatnonzero(roads & ~sc.marks)
    if not (road_idx.size and S >= 64):
        return
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


def _camera(rng: np.random.Generator, sc: MapScene, img: np.ndarray) -> np.ndarray:
    """Colour grading, haze, vignetting-like shading, blur and sensor noise; to uint8."""
    S, u1 = sc.size, sc.u1
    grade = rng.uniform(0.92, 1.08, 3).astype(F32) * rng.uniform(0.9, 1.1)
    img = img * grade
    haze = rng.uniform(0, 0.1)
    img = img * (1 - haze) + haze * rgb(175, 180, 185)
    img *= (1 + 0.04 * value_noise(rng, S, S, 80 * u1))[..., None]
    sigma = rng.uniform(0.45, 0.85) * max(u1, 0.5)
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(1.5, 3.5), (S, S, 1)).astype(F32)
    return to_u8(img)


# --------------------------------------------------------------------------- the pair

def make_maps_pair(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One (aerial, map) pair, uint8 ``size x size x 3``, pixel-aligned."""
    size = check_size(size)
    sc = _scene(rng, size)
    aerial = _render_aerial(rng, sc)
    return aerial, _render_map(sc)
