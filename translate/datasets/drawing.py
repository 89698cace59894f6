"""Drawing helpers shared by the built-in data sets: numpy arrays in, numpy arrays out.

* canvas: :func:`check_size`, :func:`pixel_grid` (cached coordinate grids);
* noise: :func:`value_noise` (smooth, unit std), :func:`normal_ppf` (a threshold on it);
* masks: :func:`shift`, :func:`disk`, :func:`dilate`, :func:`erode`, :func:`boundary`,
  :func:`fill_polygon`, :func:`thin` (to one-pixel lines), :func:`drop_small_components`;
* lines and outlines: :func:`spaced_positions`, :func:`curve_distance` (signed distance
  to a wavy curve), :func:`chaikin`, :func:`round_poly`, :func:`spline`, :func:`ellipse`;
* sketches: :func:`ink_sketch` (lines drawn with a pen, black on white: the A side of the
  ``sketches`` set and of photos paired by their edges);
* colours: :func:`rgb`, :func:`to_u8`.

Images are float32 HWC in [0, 255] while drawn, uint8 once done. Only numpy and OpenCV.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError

F32 = np.float32


# --------------------------------------------------------------------------- canvas

def check_size(size: int) -> int:
    """The side of a square canvas: an integer >= 16."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ConfigError("size", f"must be an integer >= 16, got {size!r}")
    return int(size)


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
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


# --------------------------------------------------------------------------- noise

def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise with features about ``cell`` pixels across; ~zero mean, unit std."""
    if cell <= 1.0:
        return rng.standard_normal((h, w), dtype=F32)
    gh = int(math.ceil(h / cell)) + 3
    gw = int(math.ceil(w / cell)) + 3
    g = rng.standard_normal((gh, gw), dtype=F32)
    uh, uw = int(round(gh * cell)), int(round(gw * cell))
    up = cv2.resize(g, (uw, uh), interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, max(1, uh - h - int(cell))))
    ox = int(rng.integers(0, max(1, uw - w - int(cell))))
    out = up[oy:oy + h, ox:ox + w]
    if cell >= 3:  # soften the cubic grid pattern
        k = int(cell // 2) * 2 + 1
        out = cv2.GaussianBlur(out, (k, k), cell / 4.0)
    s = float(out.std())
    return (out - float(out.mean())) / (s if s > 1e-6 else 1.0)


def normal_ppf(p: float) -> float:
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
        return -normal_ppf(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


# --------------------------------------------------------------------------- masks

def shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx) pixels, zero-filled (no wrap-around)."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] = \
        a[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return out


_KERNELS: dict[int, np.ndarray] = {}


def disk(r: int) -> np.ndarray:
    """A disk-shaped structuring element of radius ``r`` (cached)."""
    if r not in _KERNELS:
        _KERNELS[r] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return _KERNELS[r]


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` grown by a disk of radius ``r``."""
    if r <= 0:
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), disk(r)).astype(bool)


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` shrunk by a disk of radius ``r`` (the image border does not erode)."""
    if r <= 0:
        return mask.copy()
    return cv2.erode(mask.astype(np.uint8), disk(r), borderType=cv2.BORDER_REPLICATE).astype(bool)


def boundary(label: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label (a 1-px line per border)."""
    b = np.zeros(label.shape, bool)
    b[:, :-1] |= label[:, :-1] != label[:, 1:]
    b[:-1, :] |= label[:-1, :] != label[1:, :]
    return b


def fill_polygon(shape: tuple[int, int], poly: np.ndarray) -> np.ndarray:
    """Boolean mask of the polygon ``poly`` (x, y pixel coordinates, sub-pixel precise)."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


# a pixel's 8 neighbours as hit-or-miss kernels (1: set, -1: clear, 0: either): the classic thinning pair of
# structuring elements and their rotations by 90 degrees (Gonzalez & Woods)
_THIN = [np.rot90(k, r).astype(np.int32) for k in (np.array([[-1, -1, -1], [0, 1, 0], [1, 1, 1]]),
                                                    np.array([[0, -1, -1], [1, 1, -1], [0, 1, 0]]))
         for r in range(4)]


def thin(mask: np.ndarray, max_iterations: int = 64) -> np.ndarray:
    """``mask`` thinned to lines one pixel wide (its topology kept), by repeated hit-or-miss thinning."""
    m: np.ndarray = mask.astype(np.uint8)
    for _ in range(max_iterations):
        before = int(m.sum())
        for k in _THIN:
            m &= 1 - cv2.morphologyEx(m, cv2.MORPH_HITMISS, k, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        if int(m.sum()) == before:
            break
    return m.astype(bool)


def drop_small_components(mask: np.ndarray, min_extent: float) -> np.ndarray:
    """``mask`` without its 8-connected pieces whose bounding box is shorter than ``min_extent`` pixels
    both ways (specks and short scratches)."""
    n, label, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]) >= min_extent
    return keep[label]


# --------------------------------------------------------------------------- sketches

def ink_sketch(lines: np.ndarray, pen: int, size: int, drawn: np.ndarray | None = None) -> np.ndarray:
    """Lines (a boolean mask on a supersampled canvas) drawn with a pen ``pen`` canvas pixels wide, and the
    strokes ``drawn`` as they are, black on white, reduced to ``size``; uint8 RGB."""
    ink = dilate(lines, pen // 2) if pen > 2 else lines | shift(lines, 1, 1)
    if drawn is not None:
        ink = ink | drawn
    ink = cv2.resize(ink.astype(F32), (size, size), interpolation=cv2.INTER_AREA)
    sk = 255 - 255 * np.clip(ink * 1.6, 0, 1)
    return np.repeat(to_u8(sk)[..., None], 3, axis=2)


# --------------------------------------------------------------------------- lines and outlines

def spaced_positions(rng: np.random.Generator, lo: float, hi: float, spacing: float,
                     jitter: float = 0.3) -> np.ndarray:
    """Increasing positions from below ``lo`` to above ``hi``, about ``spacing`` apart."""
    pos = [lo - rng.uniform(0.2, 1.0) * spacing]
    while pos[-1] <= hi:
        pos.append(pos[-1] + spacing * rng.uniform(1 - jitter, 1 + jitter))
    return np.asarray(pos, F32)


def curve_distance(xx: np.ndarray, yy: np.ndarray, size: int, angle: float, offset: float,
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


def chaikin(pts: ArrayLike, iterations: int = 3, closed: bool = True) -> np.ndarray:
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


def round_poly(pts, frac: float = 0.2, iterations: int = 3) -> np.ndarray:
    """A polygon with rounded corners (``frac`` of each edge takes part in the rounding)."""
    p = np.asarray(pts, np.float64)
    q = np.roll(p, -1, axis=0)
    out = np.empty((len(p) * 3, 2))
    out[0::3] = p
    out[1::3] = p + (q - p) * frac
    out[2::3] = p + (q - p) * (1 - frac)
    return chaikin(out, iterations)


def spline(pts, closed: bool = True, n: int = 12) -> np.ndarray:
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


def ellipse(cx: float, cy: float, rx: float, ry: float, t0: float = 0.0, t1: float = 2 * math.pi,
            n: int = 64) -> np.ndarray:
    """``n`` points on the ellipse arc from angle ``t0`` to ``t1``."""
    t = np.linspace(t0, t1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


# --------------------------------------------------------------------------- colours

def rgb(*c: float) -> np.ndarray:
    """A float32 colour."""
    return np.array(c, F32)


def to_u8(img: np.ndarray) -> np.ndarray:
    """A float image in [0, 255] rounded and clipped to uint8."""
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
