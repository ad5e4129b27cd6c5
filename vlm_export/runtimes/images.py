"""Opening user images: paths, PIL images or arrays in, decoded PIL images out, with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlm_export.errors import ImageError

_FIX = "pass a complete PNG, JPEG or WebP file"
ImageInput = str | Path | Image.Image | np.ndarray


def load_image(image: ImageInput) -> Image.Image:
    """Decode fully now, so a truncated file fails here with its name rather than mid-pipeline."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.dtype != np.uint8:
            raise ImageError(f"image array must be uint8 HxW or HxWxC, got {image.dtype} {image.shape}")
        return Image.fromarray(image)
    path = Path(image)
    if not path.is_file():
        raise ImageError(f"image {path} does not exist", fix="check the path")
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except UnidentifiedImageError:
        raise ImageError(f"cannot read image {path}: not an image format Pillow knows", fix=_FIX) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}", fix=_FIX) from None
