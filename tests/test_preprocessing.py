"""The numpy/Pillow CLIP preprocessor against transformers' CLIPImageProcessor."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import CLIPImageProcessor

from tests.conftest import picture
from vlm_export.export.preprocessing import clip_preprocessing
from vlm_export.manifest import ImageTokens
from vlm_export.runtimes.preprocessors import create_preprocessor

TOKENS = ImageTokens("<image>", "<image>", 4, 25)

PROCESSORS = {
    "llava-1.5": CLIPImageProcessor(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    ),
    "square-bilinear": CLIPImageProcessor(
        size={"height": 40, "width": 56}, do_center_crop=False, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ),
    "crop-larger-than-image": CLIPImageProcessor(
        size={"shortest_edge": 20}, crop_size={"height": 32, "width": 24}, resample=3
    ),
}

IMAGES = [
    ("wide", (640, 360), "RGB"),
    ("tall", (300, 700), "RGB"),
    ("tiny", (7, 5), "RGB"),
    ("rgba", (120, 90), "RGBA"),
    ("grey", (90, 120), "L"),
    ("palette", (64, 64), "P"),
]


@pytest.mark.parametrize("proc_name", list(PROCESSORS))
@pytest.mark.parametrize(("name", "size", "mode"), IMAGES, ids=[i[0] for i in IMAGES])
def test_pixels_match_transformers(proc_name, name, size, mode):
    hf = PROCESSORS[proc_name]
    image = picture(sum(map(ord, name)), size, mode)
    expected = hf(images=image, return_tensors="np")["pixel_values"]
    ours = create_preprocessor(clip_preprocessing(hf), TOKENS)(image).pixel_values
    assert ours.shape == expected.shape
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_prompt_text_expands_to_tokens_per_tile():
    processed = create_preprocessor(clip_preprocessing(PROCESSORS["llava-1.5"]), TOKENS)(picture(1))
    assert processed.prompt_text == "<image>" * 25
