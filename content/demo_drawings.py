"""The study's offline demo data: cartoon cats and dogs drawn with Pillow, one image at a
time (study.yml declares `generator: content/demo_drawings.py:draw` under `data:`).

catdog-report calls ``draw(rng, class_name, size)`` for every image of a synthetic profile,
with a random generator of its own seeded from ``(seed, split, class, index)``; everything
drawn depends on that generator alone, so the same seed gives byte-identical files. Each
animal sits on a cluttered background, and a deliberate fraction carries ambiguous features
(round-eared cats, perky-eared dogs, occlusion, low contrast) so that a small CNN has to
learn rather than memorise one cue.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS: dict[str, str] = {"cats": "cat", "dogs": "dog"}
"""The animal each class folder of study.yml (data.classes) holds."""

_SS = 2  # supersampling factor used for anti-aliased drawing

Color = tuple[int, int, int]
Point = tuple[float, float]

# Fur colours shared by both classes, so colour alone does not tell the class.
_FUR: tuple[Color, ...] = (
    (222, 140, 62),  # ginger
    (120, 78, 45),  # brown
    (40, 36, 34),  # black
    (128, 128, 132),  # grey
    (236, 232, 222),  # white
    (226, 200, 150),  # cream
    (190, 150, 100),  # tan
    (80, 60, 50),  # dark brown
    (170, 160, 150),  # silver-beige
    (200, 110, 60),  # rust
)
_CAT_IRIS: tuple[Color, ...] = ((120, 190, 60), (220, 190, 40), (210, 140, 40), (90, 150, 210))
_PINK: Color = (232, 140, 150)
_TONGUE: Color = (220, 80, 100)


def _jitter(rng: np.random.Generator, color: Color, amount: float) -> Color:
    """Return color with each channel shifted by a random amount."""
    arr = np.asarray(color, dtype=np.float64) + rng.normal(0.0, amount, 3)
    return tuple(int(v) for v in np.clip(arr, 0, 255))  # type: ignore[return-value]


def _mix(a: Color, b: Color, t: float) -> Color:
    """Linear blend of two colours (t=0 gives a, t=1 gives b)."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _random_color(rng: np.random.Generator) -> Color:
    """Random RGB colour; about a third of the time one near a fur colour."""
    if rng.random() < 0.35:
        return _jitter(rng, _FUR[int(rng.integers(len(_FUR)))], 30.0)
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _ellipse_pts(
    cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 28
) -> list[Point]:
    """Polygon approximating an ellipse rotated by angle (degrees)."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    a = math.radians(angle)
    ca, sa = math.cos(a), math.sin(a)
    return [(cx + xi * ca - yi * sa, cy + xi * sa + yi * ca) for xi, yi in zip(x, y, strict=True)]


def _bezier(p0: Point, p1: Point, p2: Point, n: int = 16) -> list[Point]:
    """Points on a quadratic Bezier curve."""
    t = np.linspace(0.0, 1.0, n)
    x = (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t**2 * p2[0]
    y = (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t**2 * p2[1]
    return list(zip(x.tolist(), y.tolist(), strict=True))


# --------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, n: int) -> Image.Image:
    """Random backdrop: gradient, blotchy noise, stripes or flat, plus clutter shapes."""
    kind = int(rng.integers(4))
    c1, c2 = _random_color(rng), _random_color(rng)
    if kind == 0:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * math.pi)
        ramp = np.linspace(-1.0, 1.0, n)
        t = (math.cos(a) * ramp[None, :] + math.sin(a) * ramp[:, None]) * 0.5 + 0.5
        arr = (
            np.asarray(c1, np.float32) * (1 - t[..., None])
            + np.asarray(c2, np.float32) * t[..., None]
        )
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    elif kind == 1:  # low-frequency colour noise
        k = int(rng.integers(3, 10))
        base = rng.uniform(0, 1, (k, k, 1))
        arr = np.asarray(c1, np.float32) * (1 - base) + np.asarray(c2, np.float32) * base
        arr = arr + rng.normal(0, 18, (k, k, 3))
        small = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        img = small.resize((n, n), Image.Resampling.BICUBIC)
    else:
        img = Image.new("RGB", (n, n), c1)
    draw = ImageDraw.Draw(img)
    if kind == 2:  # stripes at a random angle
        width = float(rng.uniform(0.04, 0.15)) * n
        a = rng.uniform(0, math.pi)
        dx, dy = math.cos(a), math.sin(a)
        for k in range(-int(1.5 * n / width) - 2, int(1.5 * n / width) + 2, 2):
            ox, oy = n / 2 + dx * k * width, n / 2 + dy * k * width
            px, py = -dy * 2 * n, dx * 2 * n
            draw.line([(ox - px, oy - py), (ox + px, oy + py)], fill=c2, width=int(width))
    for _ in range(int(rng.integers(0, 7))):
        _clutter_shape(rng, draw, n, rng.uniform(0.08, 0.45) * n, None)
    return img


def _clutter_shape(
    rng: np.random.Generator, draw: ImageDraw.ImageDraw, n: int, s: float, center: Point | None
) -> None:
    """Draw one random rectangle, ellipse, polygon or thick line of size about s."""
    cx, cy = center if center is not None else (rng.uniform(0, n), rng.uniform(0, n))
    color = _random_color(rng)
    kind = int(rng.integers(4))
    w, h = s * rng.uniform(0.5, 1.2), s * rng.uniform(0.5, 1.2)
    if kind == 0:
        draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=color)
    elif kind == 1:
        draw.polygon(_ellipse_pts(cx, cy, w / 2, h / 2, rng.uniform(0, 180)), fill=color)
    elif kind == 2:
        k = int(rng.integers(3, 7))
        ang = np.sort(rng.uniform(0, 2 * math.pi, k))
        rad = rng.uniform(0.4, 1.0, k) * s / 2
        draw.polygon(
            [(cx + r * math.cos(t), cy + r * math.sin(t)) for t, r in zip(ang, rad, strict=True)],
            fill=color,
        )
    else:
        a = rng.uniform(0, math.pi)
        dx, dy = math.cos(a) * s, math.sin(a) * s
        draw.line(
            [(cx - dx, cy - dy), (cx + dx, cy + dy)],
            fill=color,
            width=max(1, int(s * rng.uniform(0.05, 0.2))),
        )


# --------------------------------------------------------------------------- animal parts


class _Look:
    """Random appearance of one animal (colours and ambiguous-feature switches)."""

    def __init__(self, rng: np.random.Generator, kind: str) -> None:
        """Draw colours and feature switches for one animal of the given kind."""
        self.fur = _jitter(rng, _FUR[int(rng.integers(len(_FUR)))], 14.0)
        light = sum(self.fur) > 420
        other = _jitter(rng, _FUR[int(rng.integers(len(_FUR)))], 14.0)
        self.patch = other if rng.random() < 0.45 else None
        self.pale = _mix(self.fur, (245, 240, 230), float(rng.uniform(0.35, 0.8)))
        self.dark = _mix(self.fur, (20, 15, 15), float(rng.uniform(0.3, 0.6)))
        self.line = (70, 50, 50) if light else (235, 225, 215)
        self.outline = _mix(self.fur, (0, 0, 0), 0.55)
        if kind == "cat":
            self.round_ears = rng.random() < 0.15  # ambiguous: rounded cat ears
            self.slit_eyes = rng.random() < 0.8
            self.whiskers = rng.random() < 0.85
            self.tail = rng.random() < 0.85
            self.ear_color = self.fur
        else:
            self.perky_ears = rng.random() < 0.15  # ambiguous: pointed dog ears
            self.short_muzzle = rng.random() < 0.12  # ambiguous: pug-like face
            self.tongue = rng.random() < 0.45
            self.tail = rng.random() < 0.7
            u = rng.random()
            self.ear_color = (
                self.dark if u < 0.6 else (self.patch or self.dark) if u < 0.8 else self.fur
            )


def _cat_ears(
    d: ImageDraw.ImageDraw, hx: float, hy: float, r: float, rng: np.random.Generator, look: _Look
) -> None:
    """Pointed triangular ears with pink insides (rounded for ambiguous cats)."""
    tall = rng.uniform(0.45, 0.75) * r
    spread = rng.uniform(0.0, 0.15) * r
    for sgn in (-1, 1):
        b0 = (hx + sgn * 0.92 * r, hy - 0.25 * r)
        b1 = (hx + sgn * 0.18 * r, hy - 0.95 * r)
        tip = (hx + sgn * (0.78 * r + spread), hy - 0.9 * r - tall)
        if look.round_ears:
            mx, my = (b0[0] + b1[0]) / 2, (b0[1] + b1[1]) / 2 - 0.15 * r
            d.polygon(
                _ellipse_pts(mx, my, 0.42 * r, 0.4 * r, sgn * 40),
                fill=look.ear_color,
                outline=look.outline,
            )
            d.polygon(_ellipse_pts(mx, my, 0.24 * r, 0.22 * r, sgn * 40), fill=_PINK)
            continue
        d.polygon([b0, tip, b1], fill=look.ear_color, outline=look.outline)
        cx, cy = (b0[0] + b1[0] + tip[0]) / 3, (b0[1] + b1[1] + tip[1]) / 3
        inner = [
            (cx + (p[0] - cx) * 0.55, cy + (p[1] - cy) * 0.55 + 0.05 * r) for p in (b0, tip, b1)
        ]
        d.polygon(inner, fill=_PINK)


def _dog_ears(
    d: ImageDraw.ImageDraw, hx: float, hy: float, r: float, rng: np.random.Generator, look: _Look
) -> None:
    """Floppy drooping ears hanging at the sides (perky for ambiguous dogs)."""
    if look.perky_ears:
        tall = rng.uniform(0.5, 0.8) * r
        for sgn in (-1, 1):
            b0 = (hx + sgn * 0.95 * r, hy - 0.2 * r)
            b1 = (hx + sgn * 0.15 * r, hy - 0.95 * r)
            tip = (hx + sgn * 0.85 * r, hy - 0.85 * r - tall)
            d.polygon([b0, tip, b1], fill=look.ear_color, outline=look.outline)
        return
    length = rng.uniform(0.8, 1.25) * r
    tilt = rng.uniform(5, 30)
    for sgn in (-1, 1):
        ex = hx + sgn * rng.uniform(0.8, 1.0) * r
        ey = hy - 0.45 * r + length * 0.5
        d.polygon(
            _ellipse_pts(ex, ey, 0.28 * r, length / 2, -sgn * tilt),
            fill=look.ear_color,
            outline=look.outline,
        )


def _cat_face(d: ImageDraw.ImageDraw, hx: float, hy: float, r: float, rng: np.random.Generator,
              look: _Look) -> None:
    """Almond eyes with slit pupils, small pink nose, 'w' mouth and whiskers."""
    iris = _jitter(rng, _CAT_IRIS[int(rng.integers(len(_CAT_IRIS)))], 10.0)
    ey = hy - rng.uniform(0.05, 0.2) * r
    ew, eh = rng.uniform(0.16, 0.22) * r, rng.uniform(0.09, 0.14) * r
    for sgn in (-1, 1):
        ex = hx + sgn * 0.4 * r
        d.polygon(_ellipse_pts(ex, ey, ew, eh, sgn * 12), fill=iris, outline=(20, 20, 20))
        if look.slit_eyes:
            d.ellipse(
                [ex - 0.03 * r, ey - eh * 0.95, ex + 0.03 * r, ey + eh * 0.95], fill=(10, 10, 10)
            )
        else:
            d.ellipse(
                [ex - 0.08 * r, ey - 0.08 * r, ex + 0.08 * r, ey + 0.08 * r], fill=(10, 10, 10)
            )
    # little cheeks and nose
    ny = hy + 0.28 * r
    for sgn in (-1, 1):
        d.ellipse(
            [
                hx + sgn * 0.15 * r - 0.16 * r,
                ny + 0.02 * r,
                hx + sgn * 0.15 * r + 0.16 * r,
                ny + 0.28 * r,
            ],
            fill=look.pale,
        )
    d.polygon(
        [(hx - 0.09 * r, ny - 0.03 * r), (hx + 0.09 * r, ny - 0.03 * r), (hx, ny + 0.08 * r)],
        fill=_PINK,
    )
    lw = max(1, round(0.03 * r))
    d.line([(hx, ny + 0.08 * r), (hx, ny + 0.16 * r)], fill=(60, 40, 40), width=lw)
    for sgn in (-1, 1):
        d.arc(
            [hx + (sgn - 1) * 0.1 * r, ny + 0.06 * r, hx + (sgn + 1) * 0.1 * r, ny + 0.26 * r],
            0,
            180,
            fill=(60, 40, 40),
            width=lw,
        )
    if look.whiskers:
        ww = max(1, round(0.022 * r))
        for sgn in (-1, 1):
            for k in (-1, 0, 1):
                x0 = hx + sgn * 0.25 * r
                y0 = ny + 0.15 * r + k * 0.05 * r
                x1 = hx + sgn * rng.uniform(1.05, 1.35) * r
                y1 = y0 + k * 0.16 * r + rng.normal(0, 0.03) * r
                d.line([(x0, y0), (x1, y1)], fill=look.line, width=ww)


def _dog_face(d: ImageDraw.ImageDraw, hx: float, hy: float, r: float, rng: np.random.Generator,
              look: _Look) -> None:
    """Round dark eyes, long pale muzzle with big dark nose, sometimes a tongue."""
    ey = hy - rng.uniform(0.12, 0.3) * r
    er = rng.uniform(0.09, 0.13) * r
    for sgn in (-1, 1):
        ex = hx + sgn * rng.uniform(0.32, 0.4) * r
        d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(25, 15, 10))
        hr = er * 0.35
        d.ellipse(
            [ex - er * 0.3 - hr, ey - er * 0.3 - hr, ex - er * 0.3 + hr, ey - er * 0.3 + hr],
            fill=(250, 250, 250),
        )
    if look.short_muzzle:
        mw, mh, my = 0.38 * r, 0.3 * r, hy + 0.35 * r
    else:
        mw, mh, my = (
            rng.uniform(0.4, 0.5) * r,
            rng.uniform(0.38, 0.5) * r,
            hy + rng.uniform(0.45, 0.6) * r,
        )
    d.ellipse([hx - mw, my - mh, hx + mw, my + mh], fill=look.pale, outline=look.outline)
    ny = my - mh * 0.45
    nw, nh = rng.uniform(0.16, 0.22) * r, rng.uniform(0.1, 0.14) * r
    d.ellipse([hx - nw, ny - nh, hx + nw, ny + nh], fill=(20, 15, 15))
    lw = max(1, round(0.035 * r))
    mouth_y = my + mh * 0.45
    d.line([(hx, ny + nh), (hx, mouth_y)], fill=(40, 25, 25), width=lw)
    if look.tongue:
        tw = mw * 0.35
        d.ellipse(
            [hx - tw, mouth_y - 0.05 * r, hx + tw, mouth_y + rng.uniform(0.3, 0.45) * r],
            fill=_TONGUE,
            outline=(150, 40, 60),
        )
    d.arc(
        [hx - mw * 0.6, mouth_y - 0.2 * r, hx, mouth_y + 0.05 * r],
        20,
        160,
        fill=(40, 25, 25),
        width=lw,
    )
    d.arc(
        [hx, mouth_y - 0.2 * r, hx + mw * 0.6, mouth_y + 0.05 * r],
        20,
        160,
        fill=(40, 25, 25),
        width=lw,
    )


def _body(d: ImageDraw.ImageDraw, hx: float, hy: float, r: float, kind: str,
          rng: np.random.Generator, look: _Look) -> None:
    """Sitting body with front legs and a tail (long thin for cats, short thick for dogs)."""
    side = 1 if rng.random() < 0.5 else -1
    bw = r * (rng.uniform(0.8, 1.0) if kind == "cat" else rng.uniform(0.95, 1.2))
    bh = r * rng.uniform(1.1, 1.4)
    bx, by = hx + side * rng.uniform(0.0, 0.3) * r, hy + 0.6 * r + bh
    if look.tail:
        base = (bx + side * bw * 0.8, by + bh * 0.6)
        if kind == "cat":
            width = max(2, int(0.16 * r))
            tip = (base[0] + side * rng.uniform(0.6, 1.1) * r, base[1] - rng.uniform(1.0, 1.8) * r)
            ctrl = (
                base[0] + side * rng.uniform(1.2, 1.8) * r,
                base[1] + rng.uniform(-0.2, 0.3) * r,
            )
        else:
            width = max(3, int(0.28 * r))
            tip = (base[0] + side * rng.uniform(0.4, 0.7) * r, base[1] - rng.uniform(0.4, 0.8) * r)
            ctrl = (base[0] + side * 0.5 * r, base[1] - 0.05 * r)
        pts = _bezier(base, ctrl, tip)
        d.line(pts, fill=look.outline, width=width + 2, joint="curve")
        d.line(pts, fill=look.patch or look.fur, width=width, joint="curve")
    d.polygon(
        _ellipse_pts(bx, by, bw, bh, side * rng.uniform(0, 8)), fill=look.fur, outline=look.outline
    )
    if look.patch is not None:
        d.polygon(
            _ellipse_pts(bx - side * 0.2 * r, by + 0.1 * r, bw * 0.5, bh * 0.6), fill=look.pale
        )
    lw = r * (0.17 if kind == "cat" else 0.25)
    for sgn in (-1, 1):
        lx = bx + sgn * bw * 0.4
        d.rounded_rectangle(
            [lx - lw, by - 0.1 * bh, lx + lw, by + bh * 1.02],
            radius=lw,
            fill=look.fur,
            outline=look.outline,
        )
        d.ellipse(
            [lx - lw * 1.2, by + bh * 1.02 - lw * 1.1, lx + lw * 1.2, by + bh * 1.02 + lw * 0.5],
            fill=look.pale,
            outline=look.outline,
        )


def _head(d: ImageDraw.ImageDraw, hx: float, hy: float, r: float, kind: str,
          rng: np.random.Generator, look: _Look) -> None:
    """Head outline with ears, optional fur patch and the face of the given kind."""
    if kind == "cat":
        _cat_ears(d, hx, hy, r, rng, look)
        rx, ry = r * rng.uniform(1.0, 1.12), r * rng.uniform(0.85, 0.98)
    else:
        rx, ry = r * rng.uniform(0.9, 1.02), r * rng.uniform(0.92, 1.08)
        if look.perky_ears:
            _dog_ears(d, hx, hy, r, rng, look)
    d.ellipse(
        [hx - rx, hy - ry, hx + rx, hy + ry],
        fill=look.fur,
        outline=look.outline,
        width=max(1, int(0.03 * r)),
    )
    if look.patch is not None:
        sgn = 1 if rng.random() < 0.5 else -1
        if rng.random() < 0.5:  # a patch over one side of the crown
            d.chord(
                [hx - rx, hy - ry, hx + rx, hy + ry],
                210 + sgn * 35,
                330 + sgn * 35,
                fill=look.patch,
            )
        else:  # a spot round one eye
            ex, ey, er = hx + sgn * 0.4 * r, hy - 0.15 * r, rng.uniform(0.25, 0.35) * r
            d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=look.patch)
    if kind == "cat":
        _cat_face(d, hx, hy, r, rng, look)
    else:
        if not look.perky_ears:
            _dog_ears(d, hx, hy, r, rng, look)
        _dog_face(d, hx, hy, r, rng, look)


def _animal_layer(rng: np.random.Generator, kind: str, n: int) -> tuple[Image.Image, Point, float]:
    """Draw the animal on a transparent canvas; return it, the head centre and radius."""
    layer = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    look = _Look(rng, kind)
    full_body = rng.random() < 0.5
    if full_body:
        r = n * rng.uniform(0.12, 0.19)
        hx = n * rng.uniform(0.3, 0.7)
        hy = n * rng.uniform(0.18, 0.4)
        _body(d, hx, hy, r, kind, rng, look)
    else:
        r = n * rng.uniform(0.2, 0.34)
        hx = n * 0.5 + rng.uniform(-0.2, 0.2) * n
        hy = n * 0.5 + rng.uniform(-0.15, 0.2) * n
    _head(d, hx, hy, r, kind, rng, look)
    angle = float(rng.normal(0.0, 10.0))
    if full_body and rng.random() < 0.5:
        layer = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        hx = n - 1 - hx
    layer = layer.rotate(angle, resample=Image.Resampling.BILINEAR, center=(hx, hy))
    return layer, (hx, hy), r


def _finish(rng: np.random.Generator, img: Image.Image) -> Image.Image:
    """Photo-like degradations: low contrast, colour cast, blur and sensor noise."""
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.15:  # low contrast
        k = float(rng.uniform(0.35, 0.6))
        arr = arr.mean() + (arr - arr.mean()) * k
    arr = arr * rng.uniform(0.92, 1.08, 3).astype(np.float32) + rng.normal(0, 6, 3).astype(
        np.float32
    )
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    blur = float(rng.uniform(0.0, 1.2))
    if blur > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, dtype=np.float32)
    sigma = float(rng.uniform(2.0, 10.0))
    arr = arr + rng.normal(0.0, sigma, arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def draw(rng: np.random.Generator, class_name: str, size: int) -> Image.Image:
    """Draw one synthetic cartoon photo of a class of the study (``cats`` or ``dogs``).

    Args:
        rng: Source of all randomness; the result depends only on its state.
        class_name: A class folder of study.yml: ``"cats"`` or ``"dogs"``.
        size: Width and height of the square output image, in pixels.

    Returns:
        An RGB ``PIL.Image.Image`` of ``size`` x ``size`` pixels.

    Raises:
        ValueError: If ``class_name`` is not a known class or ``size`` is too small.
    """
    if class_name not in KINDS:
        raise ValueError(f"class_name must be one of {list(KINDS)}, got {class_name!r}")
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    kind = KINDS[class_name]
    n = size * _SS
    img = _background(rng, n).convert("RGBA")
    layer, (hx, hy), r = _animal_layer(rng, kind, n)
    img.alpha_composite(layer)
    if rng.random() < 0.2:  # foreground clutter hiding part of the head
        d = ImageDraw.Draw(img)
        a = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.6, 1.1) * r
        _clutter_shape(
            rng, d, n, rng.uniform(0.8, 1.4) * r, (hx + math.cos(a) * dist, hy + math.sin(a) * dist)
        )
    img = img.convert("RGB").reduce(_SS)
    return _finish(rng, img)
