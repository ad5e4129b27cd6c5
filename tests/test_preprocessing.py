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


# ---- Idefics3 / SmolVLM tiling -----------------------------------------------------------------------
IDEFICS3 = {
    "smolvlm": dict(size={"longest_edge": 2048}, max_image_size={"longest_edge": 512}, do_image_splitting=True),
    "smolvlm-no-split": dict(
        size={"longest_edge": 2048}, max_image_size={"longest_edge": 512}, do_image_splitting=False
    ),
    "tiny": dict(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True),
}


@pytest.mark.parametrize("proc_name", list(IDEFICS3))
@pytest.mark.parametrize("size", [(512, 512), (640, 360), (300, 700), (33, 17), (1000, 1000)])
def test_idefics3_tiles_and_prompt_match_transformers(proc_name, size):
    from transformers import Idefics3ImageProcessor

    from tests.conftest import real_tiles
    from vlm_export.models.idefics3 import Idefics3Family  # noqa: F401  (the family this kind serves)
    from vlm_export.runtimes.preprocessors.idefics3 import image_prompt

    hf = Idefics3ImageProcessor(resample=1, image_mean=[0.5] * 3, image_std=[0.5] * 3, **IDEFICS3[proc_name])
    image = picture(size[0] + size[1], size)
    expected = hf(images=[[image]], return_tensors="np", return_row_col_info=True)
    params = {
        "kind": "idefics3",
        **{k: getattr(hf, k) for k in ("do_resize", "size", "do_image_splitting", "max_image_size", "do_rescale")},
        **{k: getattr(hf, k) for k in ("rescale_factor", "do_normalize", "image_mean", "image_std")},
        "resample": 1,
        "fake_image_token": "<fake>",
        "global_image_token": "<global-img>",
    }
    processed = create_preprocessor(params, ImageTokens("<image>", "<image>", 5, 3))(image)
    np.testing.assert_allclose(processed.pixel_values, real_tiles(expected["pixel_values"]), rtol=0, atol=1e-6)
    rows, cols = expected["rows"][0][0], expected["cols"][0][0]
    assert processed.prompt_text == image_prompt(rows, cols, 3, "<fake>", "<image>", "<global-img>")
    assert processed.prompt_text.count("<image>") == 3 * len(processed.pixel_values)


# ---- Fuyu patches ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "mode"), [((48, 40), "RGB"), ((200, 90), "RGB"), ((91, 61), "RGB"), ((30, 17), "L"), ((90, 60), "RGB")]
)
def test_fuyu_patches_and_image_ids_match_transformers(tiny_checkpoint, size, mode):
    """Fitting (with downscaling), padding, patch order and the newline-terminated rows of image ids."""
    from transformers import AutoProcessor

    from vlm_export.models.fuyu import FuyuFamily

    folder = tiny_checkpoint("fuyu-persimmon")
    processor = AutoProcessor.from_pretrained(folder)
    image = picture(size[0], size, mode)
    expected = processor(text="What is it?", images=image.convert("RGB"), return_tensors="np")
    family = FuyuFamily.__new__(FuyuFamily)
    family.config = type("C", (), {"patch_size": 6})()
    params = family.preprocessing(processor)
    tokens = family.image_tokens(processor)
    processed = create_preprocessor(params, tokens)(image)
    np.testing.assert_allclose(processed.pixel_values, expected["image_patches"][0], rtol=0, atol=1e-6)
    image_ids = [int(i) for i in expected["input_ids"][0][: len(processed.prompt_ids)]]
    assert processed.prompt_ids == image_ids
    assert expected["input_ids"][0][len(processed.prompt_ids)] == processor.tokenizer.bos_token_id
