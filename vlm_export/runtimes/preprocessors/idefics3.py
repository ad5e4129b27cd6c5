"""Idefics3ImageProcessor (SmolVLM) in numpy/Pillow: resize, split into tiles plus a global image.

The steps and their order follow transformers: resize the longest edge, then (with image splitting) round
both sides up to multiples of the tile size, cut row-major tiles and add the whole image resized to one
tile; without splitting the image is resized to one square tile. Each image's prompt text is the
processor's expansion: ``<fake_token_around_image><row_r_col_c><image>*n`` per tile, then the global
image between ``<global-img>`` and ``<fake_token_around_image>``.

Images are converted to RGB before resizing (transformers resizes first and composites RGBA on white
afterwards), so RGB inputs match it exactly and other modes may differ by resampling rounding.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from vlm_export.runtimes.preprocessors.base import ImagePreprocessor, ProcessedImage, register_preprocessor

MAX_IMAGE_SIZE = 4096  # transformers' absolute cap on the resized side


def resize_longest_edge(height: int, width: int, longest: int) -> tuple[int, int]:
    aspect = width / height
    if width >= height:
        width, height = longest, int(longest / aspect)
        height += height % 2
    else:
        height, width = longest, int(longest * aspect)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    if width >= height and width > MAX_IMAGE_SIZE:
        width, height = MAX_IMAGE_SIZE, int(MAX_IMAGE_SIZE / aspect)
    elif height > width and height > MAX_IMAGE_SIZE:
        height, width = MAX_IMAGE_SIZE, int(MAX_IMAGE_SIZE * aspect)
    return max(height, 1), max(width, 1)


def round_up_to_tiles(height: int, width: int, tile: int) -> tuple[int, int]:
    aspect = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = math.ceil(int(width / aspect) / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = math.ceil(int(height * aspect) / tile) * tile
    return height, width


def image_prompt(rows: int, cols: int, seq_len: int, fake: str, image: str, global_img: str) -> str:
    tile = image * seq_len
    if rows == 0 and cols == 0:
        return f"{fake}{global_img}{tile}{fake}"
    text = ""
    for r in range(rows):
        for c in range(cols):
            text += f"{fake}<row_{r + 1}_col_{c + 1}>{tile}"
        text += "\n"
    return text + f"\n{fake}{global_img}{tile}{fake}"


@register_preprocessor("idefics3")
class Idefics3Preprocessor(ImagePreprocessor):
    def _resize(self, image: Image.Image, height: int, width: int) -> Image.Image:
        if (image.height, image.width) == (height, width):
            return image
        return image.resize((width, height), resample=Image.Resampling(self.params.get("resample", 1)))

    def tiles(self, image: Image.Image) -> tuple[list[Image.Image], int, int]:
        p = self.params
        if image.mode != "RGB":
            image = image.convert("RGB")
        if p.get("do_resize", True):
            image = self._resize(image, *resize_longest_edge(image.height, image.width, p["size"]["longest_edge"]))
        tile = p["max_image_size"]["longest_edge"]
        if not p.get("do_image_splitting", True):
            return [self._resize(image, tile, tile)], 0, 0
        image = self._resize(image, *round_up_to_tiles(image.height, image.width, tile))
        height, width = image.height, image.width
        if height <= tile and width <= tile:
            return [image], 0, 0
        rows, cols = math.ceil(height / tile), math.ceil(width / tile)
        tile_h, tile_w = math.ceil(height / rows), math.ceil(width / cols)
        crops = [
            image.crop((c * tile_w, r * tile_h, min((c + 1) * tile_w, width), min((r + 1) * tile_h, height)))
            for r in range(rows)
            for c in range(cols)
        ]
        return [*crops, self._resize(image, tile, tile)], rows, cols

    def normalize(self, image: Image.Image) -> np.ndarray:
        p = self.params
        pixels = np.asarray(image)
        values = pixels.astype(np.float32)
        if p.get("do_rescale", True):
            values = (pixels.astype(np.float64) * p["rescale_factor"]).astype(np.float32)
        if p.get("do_normalize", True):
            values = (values - np.asarray(p["image_mean"], np.float32)) / np.asarray(p["image_std"], np.float32)
        return values.transpose(2, 0, 1)

    def __call__(self, image: Image.Image) -> ProcessedImage:
        tiles, rows, cols = self.tiles(image)
        p = self.params
        text = image_prompt(
            rows,
            cols,
            self.image_tokens.tokens_per_tile,
            p["fake_image_token"],
            self.image_tokens.token,
            p["global_image_token"],
        )
        return ProcessedImage(np.ascontiguousarray(np.stack([self.normalize(t) for t in tiles]), np.float32), text)
