"""CLIPImageProcessor in numpy/Pillow: resize (shortest edge), center crop, rescale, normalize.

Each step follows transformers' implementation (PIL resampling on uint8 pixels, crop offsets rounded
down, rescale in float64 then float32) so that pixel values match it to float rounding.
"""

from __future__ import annotations

from math import ceil

import numpy as np
from PIL import Image

from vlm_export.runtimes.preprocessors.base import ImagePreprocessor, ProcessedImage, register_preprocessor


def resize_output_size(height: int, width: int, size: dict[str, int]) -> tuple[int, int]:
    if "shortest_edge" in size:
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    return size["height"], size["width"]


def center_crop(pixels: np.ndarray, crop_height: int, crop_width: int) -> np.ndarray:
    """(H, W, C) -> (crop_height, crop_width, C), zero-padding an image smaller than the crop."""
    height, width = pixels.shape[:2]
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    if top >= 0 and left >= 0:
        return pixels[top : top + crop_height, left : left + crop_width]
    new_h, new_w = max(crop_height, height), max(crop_width, width)
    padded = np.zeros((new_h, new_w, pixels.shape[2]), dtype=pixels.dtype)
    top_pad, left_pad = ceil((new_h - height) / 2), ceil((new_w - width) / 2)
    padded[top_pad : top_pad + height, left_pad : left_pad + width] = pixels
    top, left = top + top_pad, left + left_pad
    return padded[max(top, 0) : max(top, 0) + crop_height, max(left, 0) : max(left, 0) + crop_width]


@register_preprocessor("clip")
class ClipPreprocessor(ImagePreprocessor):
    def pixel_values(self, image: Image.Image) -> np.ndarray:
        p = self.params
        if p.get("do_convert_rgb", True) and image.mode != "RGB":
            image = image.convert("RGB")
        if p.get("do_resize", True):
            height, width = resize_output_size(image.height, image.width, p["size"])
            image = image.resize((width, height), resample=Image.Resampling(p.get("resample", 3)))
        pixels = np.asarray(image)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if p.get("do_center_crop", True):
            crop = p["crop_size"]
            pixels = center_crop(pixels, crop["height"], crop["width"])
        values = pixels.astype(np.float32)
        if p.get("do_rescale", True):
            values = (pixels.astype(np.float64) * p["rescale_factor"]).astype(np.float32)
        if p.get("do_normalize", True):
            mean = np.asarray(p["image_mean"], dtype=np.float32)
            std = np.asarray(p["image_std"], dtype=np.float32)
            values = (values - mean) / std
        return np.ascontiguousarray(values.transpose(2, 0, 1), dtype=np.float32)

    def __call__(self, image: Image.Image) -> ProcessedImage:
        tokens = self.image_tokens
        return ProcessedImage(
            pixel_values=self.pixel_values(image)[None],
            prompt_text=tokens.token * tokens.tokens_per_tile,
        )
