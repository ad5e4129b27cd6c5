"""Prompts and tokens: the runtime's chat template, placeholder expansion and tokenization against the
HF processor of each tiny checkpoint; streaming detokenization; sampling."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TINY, hf_processor, picture, real_tiles
from vlm_export.errors import PromptError
from vlm_export.runtimes.pipeline import VLMPipeline
from vlm_export.runtimes.sampling import Sampler, SamplingParams
from vlm_export.runtimes.text import StreamDecoder, user_message

PROMPTS = ["Describe the image.", "What colour is the square? Answer in one word.", "Ünïcödé ✓ and   spaces"]


@pytest.fixture(scope="module", params=sorted(TINY))
def pair(request, tiny_checkpoint, exported):
    name = request.param
    processor = hf_processor(tiny_checkpoint(name))
    return processor, VLMPipeline.from_pretrained(exported(name))


@pytest.mark.parametrize("num_images", [0, 1, 2])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_chat_prompt_matches_processor(pair, prompt, num_images):
    processor, pipe = pair
    images = [picture(i) for i in range(num_images)]
    if pipe.manifest.text.prompt_layout:  # no chat template: the prompt goes in as the processor's text=
        _check_template_less_prompt(processor, pipe, prompt, images)
        return
    messages = user_message(prompt, num_images)
    assert pipe.text.render_chat(messages) == processor.apply_chat_template(messages, add_generation_prompt=True)
    for message in messages:  # transformers loads the images from the content blocks
        for block, image in zip([b for b in message["content"] if b["type"] == "image"], images):
            block["image"] = image
    expected = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="np"
    )
    prepared = pipe.prepare(prompt, images)
    np.testing.assert_array_equal(prepared.input_ids, expected["input_ids"])
    if num_images:
        np.testing.assert_allclose(prepared.pixel_values, real_tiles(expected["pixel_values"]), atol=1e-6, rtol=0)


def _check_template_less_prompt(processor, pipe, prompt, images):
    limit = pipe.manifest.image.max_images
    if limit is not None and len(images) > limit:
        with pytest.raises(PromptError, match="at most"):
            pipe.prepare(prompt, images)
        return
    expected = processor(images=images or None, text=prompt, return_tensors="np")
    prepared = pipe.prepare(prompt, images)
    np.testing.assert_array_equal(prepared.input_ids, np.asarray(expected["input_ids"]).reshape(1, -1))
    if images:
        pixels = expected["pixel_values"] if "pixel_values" in expected else expected["image_patches"]
        pixels = np.asarray(pixels, dtype=np.float32).reshape(prepared.pixel_values.shape)
        np.testing.assert_allclose(prepared.pixel_values, pixels, atol=1e-6, rtol=0)


@pytest.mark.parametrize("prompt", ["<image>\nUSER: what is this?", "Compare <image> with <image> please"])
def test_raw_prompt_matches_processor(pair, prompt):
    processor, pipe = pair
    if pipe.manifest.text.prompt_layout:
        pytest.skip("template-less processors (BLIP-2, Fuyu) place images themselves; no verbatim mode to compare")
    images = [picture(i + 5) for i in range(prompt.count("<image>"))]
    expected = processor(images=images, text=prompt, return_tensors="np")
    prepared = pipe.prepare(prompt, images, raw=True)
    np.testing.assert_array_equal(prepared.input_ids, expected["input_ids"])


def test_placeholder_count_must_match_images(pair):
    _, pipe = pair
    placeholder = pipe.manifest.image.placeholder
    with pytest.raises(PromptError, match="2 image placeholder"):
        pipe.prepare(f"one {placeholder} and {placeholder}", [picture(1)], raw=True)


def test_stream_decoder_holds_back_partial_utf8(pair):
    _, pipe = pair
    text = "héllo ✓ wörld"
    ids = pipe.text.tokenizer.encode(text, add_special_tokens=False).ids
    decoder = StreamDecoder(pipe.text)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_greedy_is_argmax():
    logits = np.array([0.1, 3.0, -1.0, 2.9], dtype=np.float32)
    assert Sampler(SamplingParams())(logits) == 1


def test_sampling_filters_and_seed():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert {Sampler(SamplingParams(do_sample=True, top_k=1, seed=s))(logits) for s in range(20)} == {0}
    assert {Sampler(SamplingParams(do_sample=True, top_p=0.4, seed=s))(logits) for s in range(20)} == {0}
    two = {Sampler(SamplingParams(do_sample=True, top_p=0.7, seed=s))(logits) for s in range(50)}
    assert two == {0, 1}
    a = Sampler(SamplingParams(do_sample=True, seed=7))
    b = Sampler(SamplingParams(do_sample=True, seed=7))
    assert [a(logits) for _ in range(30)] == [b(logits) for _ in range(30)]


def test_invalid_sampling_params():
    with pytest.raises(ValueError):
        SamplingParams(do_sample=True, temperature=0)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
