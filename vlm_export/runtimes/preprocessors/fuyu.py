"""FuyuImageProcessor + the image part of FuyuProcessor in numpy/Pillow: images become patch rows.

Fuyu has no vision tower. An image larger than ``size`` is scaled down to fit (aspect kept, bilinear),
padded at the bottom/right with ``padding_value`` up to ``size``, rescaled and normalized, then cut back
to whole patches covering the image and flattened patch by patch in (row, column, channel) order.
In the prompt each row of patches is that many image tokens followed by one newline token.
"""

from __future__ import annotations

from math import ceil

import numpy as np
from PIL import Image

from vlm_export.errors import ImageError
from vlm_export.runtimes.preprocessors.base import ImagePreprocessor, ProcessedImage, register_preprocessor


def fit_size(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int]:
    """Downscale only, keeping the aspect ratio (sizes truncated as transformers does)."""
    if height <= target_height and width <= target_width:
        return height, width
    scale = min(target_height / height, target_width / width)
    return int(height * scale), int(width * scale)


def patchify(pixels: np.ndarray, patch_height: int, patch_width: int) -> np.ndarray:
    """(C, H, W) with H, W multiples of the patch -> (patches, patch_height * patch_width * C)."""
    channels, height, width = pixels.shape
    rows, cols = height // patch_height, width // patch_width
    grid = pixels.reshape(channels, rows, patch_height, cols, patch_width)
    return np.ascontiguousarray(grid.transpose(1, 3, 2, 4, 0).reshape(rows * cols, -1))


@register_preprocessor("fuyu")
class FuyuPreprocessor(ImagePreprocessor):
    def patches(self, image: Image.Image) -> tuple[np.ndarray, int, int]:
        p = self.params
        if image.mode != "RGB":
            image = image.convert("RGB")
        target_h, target_w = p["size"]["height"], p["size"]["width"]
        if p.get("do_resize", True):
            height, width = fit_size(image.height, image.width, target_h, target_w)
            if (height, width) != (image.height, image.width):
                image = image.resize((width, height), resample=Image.Resampling(p.get("resample", 2)))
        if image.height > target_h or image.width > target_w:
            raise ImageError(
                f"image of {image.width}x{image.height} is larger than the model's {target_w}x{target_h} "
                "and its processor does not resize",
                fix="resize the image first",
            )
        height, width = image.height, image.width
        pixels = np.asarray(image)
        ph, pw = p["patch_size"]["height"], p["patch_size"]["width"]
        # only the padding inside the last partial patch row/column survives the crop below
        crop_h, crop_w = min(target_h, ceil(height / ph) * ph), min(target_w, ceil(width / pw) * pw)
        padded = np.full((crop_h, crop_w, pixels.shape[2]), p.get("padding_value", 1.0), dtype=np.float64)
        padded[:height, :width] = pixels
        values = padded.astype(np.float32)
        if p.get("do_rescale", True):
            values = (padded * p["rescale_factor"]).astype(np.float32)
        if p.get("do_normalize", True):
            mean = np.asarray(p["image_mean"], dtype=np.float32)
            std = np.asarray(p["image_std"], dtype=np.float32)
            values = (values - mean) / std
        return patchify(values.transpose(2, 0, 1), ph, pw), crop_h // ph, crop_w // pw

    def __call__(self, image: Image.Image) -> ProcessedImage:
        patches, rows, cols = self.patches(image)
        row_ids = [self.image_tokens.token_id] * cols + [self.params["newline_token_id"]]
        row_text = self.image_tokens.token * cols + self.params["newline_token"]
        return ProcessedImage(pixel_values=patches, prompt_text=row_text * rows, prompt_ids=row_ids * rows)
