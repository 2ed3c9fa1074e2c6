"""Vectorised numpy drawing for the procedural scenes: object shapes, textures, colours and backgrounds.

Every shape is an implicit function of normalised object coordinates ``(u, v)`` in about ``[-1, 1]``
(``v`` points down, as image rows do); the caller rotates and scales the pixel grid into that frame, so one
boolean expression per shape draws it at any pose without loops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["CATEGORIES", "Category", "background", "blob_mask", "pixel_grid", "render_object", "stroke_mask"]

Array = np.ndarray


@lru_cache(maxsize=32)
def pixel_grid(size: int, scale: float = 1.0, offset: float = 0.0) -> tuple[Array, Array]:
    """Read-only ``(y, x)`` grids [size, size] of ``(index + 0.5) * scale + offset`` (cached)."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(scale) + np.float32(offset)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    y.flags.writeable = False
    x.flags.writeable = False
    return y, x


def _disc(u: Array, v: Array) -> Array:
    return u * u + v * v <= 0.92**2


def _square(u: Array, v: Array) -> Array:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.72


def _triangle(u: Array, v: Array) -> Array:
    # Equilateral, apex up, centroid at the origin.
    s3 = np.sqrt(3.0)
    return (v <= 0.5) & (s3 * u - v <= 1.0) & (-s3 * u - v <= 1.0)


def _star(u: Array, v: Array) -> Array:
    r = np.hypot(u, v)
    theta = np.arctan2(u, -v)  # 0 at the top point
    tri = np.abs(((theta * 5.0 / (2 * np.pi)) % 1.0) - 0.5) * 2.0  # 1 at points, 0 between them
    return r <= 0.42 + 0.53 * tri


def _cross(u: Array, v: Array) -> Array:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.92)) | ((av <= 0.3) & (au <= 0.92))


def _ring(u: Array, v: Array) -> Array:
    r2 = u * u + v * v
    return (r2 <= 0.92**2) & (r2 >= 0.55**2)


def _hexagon(u: Array, v: Array) -> Array:
    d = np.abs(u)
    for angle in (np.pi / 3, 2 * np.pi / 3):
        d = np.maximum(d, np.abs(u * np.cos(angle) + v * np.sin(angle)))
    return d <= 0.82


def _ellipse(u: Array, v: Array) -> Array:
    return (u / 0.95) ** 2 + (v / 0.5) ** 2 <= 1.0


def _diamond(u: Array, v: Array) -> Array:
    return np.abs(u) / 0.58 + np.abs(v) / 0.95 <= 1.0


def _crescent(u: Array, v: Array) -> Array:
    return (u * u + v * v <= 0.92**2) & ((u - 0.42) ** 2 + v * v > 0.72**2)


def _arrow(u: Array, v: Array) -> Array:
    shaft = (np.abs(v) <= 0.22) & (u >= -0.92) & (u <= 0.15)
    head = (u >= 0.1) & (u <= 0.92) & (np.abs(v) <= (0.92 - u) * 0.95)
    return shaft | head


def _heart(u: Array, v: Array) -> Array:
    x = u * 1.2
    y = -v * 1.2 + 0.15
    return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0


@dataclass(frozen=True)
class Category:
    """One object category: a shape, a texture and a colour palette (hue in degrees, with jitter)."""

    name: str
    shape: Callable[[Array, Array], Array]
    texture: str
    hue: float


# 12 categories; textures rotate through the four kinds and hues are spaced 30 degrees apart, so each
# category differs from every other in shape and from most in texture and colour as well.
CATEGORIES: tuple[Category, ...] = (
    Category("disc", _disc, "solid", 0.0),
    Category("square", _square, "stripes", 30.0),
    Category("triangle", _triangle, "checker", 60.0),
    Category("star", _star, "dots", 90.0),
    Category("cross", _cross, "solid", 120.0),
    Category("ring", _ring, "stripes", 150.0),
    Category("hexagon", _hexagon, "checker", 180.0),
    Category("ellipse", _ellipse, "dots", 210.0),
    Category("diamond", _diamond, "solid", 240.0),
    Category("crescent", _crescent, "stripes", 270.0),
    Category("arrow", _arrow, "checker", 300.0),
    Category("heart", _heart, "dots", 330.0),
)


def _hsv_to_rgb(h: float, s: float, v: float) -> Array:
    """One HSV colour (h in degrees, s and v in [0, 1]) as float RGB in [0, 1]."""
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.asarray(rgb, dtype=np.float32) + (v - c)


def _texture(kind: str, u: Array, v: Array, rng: np.random.Generator) -> Array:
    """Where the secondary colour shows (bool), for texture ``kind`` in object coordinates."""
    if kind == "solid":
        return np.zeros(u.shape, dtype=bool)
    period = rng.uniform(0.3, 0.5)
    if kind == "stripes":
        return ((u + v) / period) % 1.0 < 0.5
    if kind == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2) == 1
    # dots
    du = (u / period) % 1.0 - 0.5
    dv = (v / period) % 1.0 - 0.5
    return du * du + dv * dv <= 0.28**2


_MARGIN = 1.15  # the patch spans [-1.15, 1.15] so rotated, stretched shapes are never cut at its edge


def render_object(
    category: Category, size: int, angle: float, aspect: float, rng: np.random.Generator
) -> tuple[Array, Array]:
    """Draw one object into a ``size`` x ``size`` patch.

    Returns ``(mask, rgb)``: a bool [size, size] mask and float32 [size, size, 3] colours in [0, 1]; the
    colours are defined everywhere, the caller composites them through the mask.
    """
    y, x = pixel_grid(size, 2.0 * _MARGIN / size, -_MARGIN)
    c, s = np.cos(angle), np.sin(angle)
    u = (c * x + s * y) * aspect
    v = (-s * x + c * y) / aspect
    mask = category.shape(u, v)
    hue = category.hue + rng.uniform(-10.0, 10.0)
    primary = _hsv_to_rgb(hue, rng.uniform(0.65, 0.95), rng.uniform(0.7, 0.95))
    secondary = _hsv_to_rgb(hue + rng.uniform(-20.0, 20.0), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.45))
    alt = _texture(category.texture, u, v, rng)
    rgb = np.where(alt[..., None], secondary, primary).astype(np.float32)
    shade = 1.0 + 0.12 * (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1))  # a little lighting
    return mask, rgb * shade[..., None].astype(np.float32)


@lru_cache(maxsize=32)
def _interpolation(g: int, size: int) -> Array:
    """The [size, g] matrix of 1-D linear interpolation from g samples to size (corners aligned)."""
    pos = np.linspace(0, g - 1, size)
    i0 = np.clip(np.floor(pos).astype(int), 0, g - 2)
    t = pos - i0
    weights = np.zeros((size, g), dtype=np.float32)
    weights[np.arange(size), i0] = 1 - t
    weights[np.arange(size), i0 + 1] = t
    return weights


def _upsample(grid: Array, size: int) -> Array:
    """Bilinearly upsample a small [g, g, C] grid to [size, size, C] (two small matrix products)."""
    w = _interpolation(grid.shape[0], size)
    return (w @ grid.transpose(2, 0, 1) @ w.T).transpose(1, 2, 0)


def background(size: int, rng: np.random.Generator) -> Array:
    """A textured background: muted base colour, smooth colour noise and a faint random pattern."""
    base = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.75))
    cells = int(rng.integers(3, 7))
    smooth = _upsample(rng.normal(0.0, 0.09, size=(cells, cells, 3)).astype(np.float32), size)
    y, x = pixel_grid(size, 1.0 / size)
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(4.0, 14.0)
    pattern = np.sin(2 * np.pi * freq * (np.cos(angle) * x + np.sin(angle) * y)) * rng.uniform(0.0, 0.06)
    canvas = smooth + pattern[..., None]
    canvas += base
    return canvas.astype(np.float32, copy=False)


Window = tuple[slice, slice]


def _window(size: int, lo: Array, hi: Array) -> tuple[Window, Array, Array]:
    """The pixel window [lo, hi) (x, y, clipped to the image) and its pixel-centre grids ``(y, x)``."""
    x0, y0 = (max(0, int(np.floor(v))) for v in lo)
    x1, y1 = (min(size, int(np.ceil(v)) + 1) for v in hi)
    y, x = pixel_grid(size)
    return (slice(y0, y1), slice(x0, x1)), y[y0:y1, x0:x1], x[y0:y1, x0:x1]


def stroke_mask(size: int, p0: Array, p1: Array, width: float) -> tuple[Window, Array]:
    """Pixels within ``width / 2`` of the segment p0-p1 (x, y pixels): a window and its bool mask."""
    window, y, x = _window(size, np.minimum(p0, p1) - width, np.maximum(p0, p1) + width)
    d = p1 - p0
    t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0.0, 1.0)
    return window, np.hypot(x - p0[0] - t * d[0], y - p0[1] - t * d[1]) <= width / 2


def blob_mask(size: int, centre: Array, radius: float, rng: np.random.Generator) -> tuple[Window, Array]:
    """A small irregular blob (a wobbly disc): a window and its bool mask."""
    window, y, x = _window(size, centre - 1.3 * radius, centre + 1.3 * radius)
    theta = np.arctan2(y - centre[1], x - centre[0])
    wobble = 1 + 0.3 * np.sin(3 * theta + rng.uniform(0, 6.3)) * rng.uniform(0, 1)
    return window, np.hypot(x - centre[0], y - centre[1]) <= radius * wobble
