"""End-to-end parity with transformers on every tiny checkpoint of every registered family.

Per graph: the parity gate's figures, recorded in the manifest by convert. End to end: the HF processor
and ``model.generate`` against the runtime's own preprocessing, tokenization and generation, 20 greedy
tokens (EOS suppressed on both sides with min_new_tokens, so all 20 are compared).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, GenerationConfig

from tests.conftest import TINY, hf_processor, picture
from vlm_export.errors import PromptError
from vlm_export.manifest import Manifest
from vlm_export.runtimes.pipeline import KVCache, VLMPipeline
from vlm_export.runtimes.text import user_message

NEW_TOKENS = 20
CASES = [
    ("Describe the image.", [0], False),
    ("What shape is in the top left corner?", [1], False),
    ("How many rectangles are there? Answer with a number.", [2], False),
    ("Which picture is brighter, the first or the second?", [3, 4], False),
    ("USER: <image>\nWhat is this? ASSISTANT:", [5], True),
]


@pytest.fixture(scope="module", params=sorted(TINY))
def setup(request, tiny_checkpoint, exported):
    name = request.param
    folder = tiny_checkpoint(name)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    processor = hf_processor(folder)
    return name, model, processor, VLMPipeline.from_pretrained(exported(name))


def test_graph_parity_recorded_by_convert(setup):
    name, _, _, pipe = setup
    validation = Manifest.load(pipe.folder).validation
    assert validation["passed"], validation
    for graph in validation["graphs"]:
        assert graph["max_abs_diff"] <= 1e-4 * max(1.0, graph["max_abs_ref"]), graph
        assert graph["cosine"] >= 0.99999, graph
    assert validation["generation"]["expected"] == validation["generation"]["got"]


def hf_generate(model, processor, prompt, images, raw):
    if raw or not processor.chat_template:
        inputs = processor(images=images, text=prompt, return_tensors="pt")
    else:
        messages = user_message(prompt, len(images))
        blocks = [b for b in messages[0]["content"] if b["type"] == "image"]
        for block, image in zip(blocks, images):
            block["image"] = image
        inputs = processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
    config = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    config.pad_token_id = model.generation_config.pad_token_id
    config.return_dict_in_generate = True
    config.output_logits = True
    with torch.no_grad():
        out = model.generate(**inputs, generation_config=config)
    return out.sequences[0, inputs["input_ids"].shape[1] :].tolist(), out.logits[0][0].numpy()


@pytest.mark.parametrize(("prompt", "seeds", "raw"), CASES, ids=["describe", "shape", "count", "two-images", "raw"])
def test_greedy_tokens_equal_transformers(setup, prompt, seeds, raw):
    _, model, processor, pipe = setup
    images = [picture(seed, (48 + 16 * seed, 40 + 8 * seed)) for seed in seeds]
    limit = pipe.manifest.image.max_images
    if limit is not None and len(images) > limit:
        with pytest.raises(PromptError, match="at most"):
            pipe.generate(prompt, images)
        return
    if raw and pipe.manifest.text.prompt_layout:
        pytest.skip("the processor of a template-less family has no verbatim-placeholder mode to compare with")
    expected, hf_logits = hf_generate(model, processor, prompt, images, raw)
    result = pipe.generate(prompt, images, max_new_tokens=NEW_TOKENS, raw=raw, min_new_tokens=NEW_TOKENS)
    assert result.token_ids == expected
    assert result.finish_reason == "length"
    # tokens alone are a weak check when a random model repeats itself: the first logits must agree too
    prepared = pipe.prepare(prompt, images, raw=raw)
    logits = pipe.decoder_step(pipe.prefill_embeds(prepared), KVCache.empty(pipe.manifest))
    np.testing.assert_allclose(logits, hf_logits, rtol=0, atol=1e-4 * max(1.0, float(np.abs(hf_logits).max())))


def test_text_only_prompt_tokenizes_like_the_processor(setup):
    """Without images, template-less processors (BLIP-2, Fuyu) just tokenize the text; chat models
    render their template."""
    _, _, processor, pipe = setup
    ids, _ = pipe.tokenize("What is in it?", [])
    if pipe.manifest.text.prompt_layout:
        expected = processor.tokenizer("What is in it?")["input_ids"]
    else:
        expected = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "text", "text": "What is in it?"}]}],
            add_generation_prompt=True,
            tokenize=True,
        )
        expected = expected[0] if expected and isinstance(expected[0], list) else expected
    assert ids[0].tolist() == list(expected)


def test_kv_cache_matches_full_recompute(setup):
    """Greedy with the cache equals greedy that re-runs the whole sequence through the decoder each step."""
    _, _, _, pipe = setup
    prepared = pipe.prepare("Describe the image.", [picture(9)])
    cached = list(pipe.generate_ids(prepared, max_new_tokens=8, min_new_tokens=8))
    prompt_embeds = pipe.prefill_embeds(prepared)
    ids: list[int] = []
    for _ in range(8):
        new = pipe.embed(np.asarray([ids], dtype=np.int64)) if ids else prompt_embeds[:, :0]
        logits = pipe.decoder_step(np.concatenate([prompt_embeds, new], axis=1), KVCache.empty(pipe.manifest))
        logits[pipe.manifest.text.eos_token_ids] = -np.inf  # as min_new_tokens does
        ids.append(int(np.argmax(logits)))
    assert cached == ids


def test_stream_pieces_join_to_generated_text(setup):
    _, _, _, pipe = setup
    images = [picture(3)]
    pieces = list(pipe.stream("Describe the image.", images, max_new_tokens=12))
    result = pipe.generate("Describe the image.", images, max_new_tokens=12)
    assert "".join(pieces) == result.text


def test_stop_string_cuts_text(setup):
    _, _, _, pipe = setup
    images = [picture(3)]
    full = pipe.generate("Describe the image.", images, max_new_tokens=16, min_new_tokens=16)
    visible = full.text.strip()
    if len(visible) < 3:
        pytest.skip("the random model produced too little visible text for a stop string")
    stop = visible[len(visible) // 2 : len(visible) // 2 + 2]
    cut = pipe.generate("Describe the image.", images, max_new_tokens=16, min_new_tokens=16, stop=[stop])
    assert cut.finish_reason == "stop"
    assert stop not in cut.text
    assert full.text.startswith(cut.text)


def test_timings_cover_every_stage(setup):
    _, _, _, pipe = setup
    result = pipe.generate("Describe the image.", [picture(2)], max_new_tokens=5, min_new_tokens=5)
    stages = {"preprocess", "tokenize", "vision_encoder", "projector", "embed", "merge", "prefill", "ttft", "total"}
    assert stages <= set(result.timings)
    assert result.timings["decode_tokens"] == 4  # the first token comes from prefill


def test_vision_batch_does_not_change_features(setup):
    """Tiles encoded one by one (the default) or all at once give the same features."""
    _, _, _, pipe = setup
    images = [picture(1, (96, 64)), picture(2, (40, 90))]
    pixel_values = np.concatenate([pipe.prepare("Describe the image.", [image]).pixel_values for image in images])
    one_by_one = pipe.encode_images(pixel_values)
    pipe.vision_batch = 64
    try:
        together = pipe.encode_images(pixel_values)
    finally:
        pipe.vision_batch = 1
    np.testing.assert_allclose(one_by_one, together, rtol=0, atol=1e-5)
