"""Deterministic pictures for the parity gate, the demo and benchmarks (numpy + Pillow only)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def sample_image(width: int = 64, height: int | None = None, seed: int = 0) -> Image.Image:
    """A colour gradient with a few filled circles: structure a vision tower reacts to."""
    height = height or width
    rng = np.random.default_rng(seed)
    gx, gy = np.linspace(0, 255, width, dtype=np.float32), np.linspace(0, 255, height, dtype=np.float32)
    pixels = np.stack([np.add.outer(gy, gx) / 2, np.add.outer(gy, gx[::-1]) / 2, np.tile(gx, (height, 1))], axis=-1)
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    for _ in range(3):
        x, y = int(rng.integers(0, max(1, width * 3 // 4))), int(rng.integers(0, max(1, height * 3 // 4)))
        r = int(rng.integers(max(1, side // 8), max(2, side // 4)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse([x, y, x + r, y + r], fill=colour)
    return image
