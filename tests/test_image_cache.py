"""The pipeline's image-embedding cache: a follow-up question about the same picture skips the vision graphs."""

from __future__ import annotations

import numpy as np

from tests.conftest import DEFAULT_TINY, picture
from vlm_export.runtimes.pipeline import VLMPipeline


def _ask(pipe, image, prompt="What is it?"):
    return pipe.generate(prompt, [image], max_new_tokens=8, min_new_tokens=8)


def test_same_picture_is_encoded_once(exported):
    pipe = VLMPipeline.from_pretrained(exported(DEFAULT_TINY))
    uncached = VLMPipeline.from_pretrained(exported(DEFAULT_TINY), image_cache=0)
    image = picture(11, (60, 40))
    first = _ask(pipe, image)
    again = _ask(pipe, np.asarray(image).copy(), "And its colour?")  # same pixels, another object
    assert first.timings["cached_images"] == 0 and "vision_encoder" in first.timings
    assert again.timings["cached_images"] == 1 and "vision_encoder" not in again.timings
    assert again.token_ids == _ask(uncached, image, "And its colour?").token_ids
    assert _ask(uncached, image).timings["cached_images"] == 0


def test_cache_is_keyed_by_pixels_and_bounded(exported):
    pipe = VLMPipeline.from_pretrained(exported(DEFAULT_TINY), image_cache=2)
    images = [picture(seed, (50, 50)) for seed in (1, 2, 3)]
    for image in images:
        assert _ask(pipe, image).timings["cached_images"] == 0  # three different pictures: three misses
    assert _ask(pipe, images[2]).timings["cached_images"] == 1
    assert _ask(pipe, images[0]).timings["cached_images"] == 0  # evicted (least recently used)
    changed = np.asarray(images[1]).copy()
    changed[0, 0, 0] ^= 1
    assert _ask(pipe, changed).timings["cached_images"] == 0  # one pixel differs: another picture


def test_two_copies_of_one_picture_in_a_prompt(exported):
    pipe = VLMPipeline.from_pretrained(exported(DEFAULT_TINY))
    uncached = VLMPipeline.from_pretrained(exported(DEFAULT_TINY), image_cache=0)
    image = picture(5, (40, 40))
    result = pipe.generate("Same?", [image, image], max_new_tokens=6, min_new_tokens=6)
    assert result.timings["cached_images"] == 1
    assert result.token_ids == uncached.generate("Same?", [image, image], max_new_tokens=6, min_new_tokens=6).token_ids
