"""The decoder's onnxruntime in-place-KV variant (export/ort_kv.py) against the portable graph."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from tests.conftest import TINY, picture
from vlm_export.errors import BackendError, ManifestError
from vlm_export.export.ort_kv import NotRewritable, shared_kv_graph
from vlm_export.manifest import Manifest
from vlm_export.runtimes.backends.onnxruntime_backend import OrtGraph, OrtSharedKVGraph
from vlm_export.runtimes.pipeline import VLMPipeline

PROMPT = "Describe the picture in detail."


@pytest.mark.parametrize("name", sorted(TINY))
def test_in_place_kv_decodes_like_the_portable_graph(exported, name):
    """Every family's decoder gets the variant; 24 greedy tokens and the logits match the Concat graph."""
    folder = exported(name)
    variant = Manifest.load(folder).graphs["decoder"].onnxruntime
    assert variant and variant["kv_cache"] == "shared-buffer"
    shared = VLMPipeline.from_pretrained(folder)
    explicit = VLMPipeline.from_pretrained(folder, backend_options={"kv_cache": "explicit"})
    assert isinstance(shared.graphs["decoder"], OrtSharedKVGraph)
    assert isinstance(explicit.graphs["decoder"], OrtGraph)
    images = [picture(7, (70, 50))]
    a = shared.generate(PROMPT, images, max_new_tokens=24, min_new_tokens=24)
    b = explicit.generate(PROMPT, images, max_new_tokens=24, min_new_tokens=24)
    assert a.token_ids == b.token_ids

    prepared = shared.prepare(PROMPT, images)
    embeds = shared.prefill_embeds(prepared)
    from vlm_export.runtimes.pipeline import KVCache

    got, want = [], []
    for pipe, out in ((shared, got), (explicit, want)):
        cache = KVCache.empty(pipe.manifest)
        out.append(pipe.decoder_step(embeds, cache).copy())
        for token in a.token_ids[:5]:
            out.append(pipe.decoder_step(pipe.embed(np.asarray([[token]], dtype=np.int64)), cache).copy())
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-4 * max(1.0, float(np.abs(y).max())))


def test_cache_grows_past_its_first_capacity(exported, monkeypatch):
    """Capacity starts at the prompt rounded up to a block; decoding past it copies into a larger one."""
    monkeypatch.setattr(OrtSharedKVGraph, "BLOCK", 8)
    folder = exported(sorted(TINY)[0])
    shared = VLMPipeline.from_pretrained(folder)
    explicit = VLMPipeline.from_pretrained(folder, backend_options={"kv_cache": "explicit"})
    images = [picture(2, (40, 60))]
    a = shared.generate("Hi", images, max_new_tokens=30, min_new_tokens=30)
    capacity = next(iter(shared.graphs["decoder"].buffers.values())).shape[2]
    assert capacity >= a.prompt_tokens + 29 and capacity % 8 == 0
    assert a.token_ids == explicit.generate("Hi", images, max_new_tokens=30, min_new_tokens=30).token_ids
    # a second request reuses the buffers from position 0
    assert shared.generate("Hi", images, max_new_tokens=30, min_new_tokens=30).token_ids == a.token_ids


def test_graph_without_attention_is_not_rewritten(exported):
    model = onnx.load(str(exported(sorted(TINY)[0]) / "embed_tokens.onnx"))
    with pytest.raises(NotRewritable):
        shared_kv_graph(model, num_heads=4, num_kv_heads=2, head_dim=16)


def test_tampered_variant_is_refused(exported, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(exported(sorted(TINY)[0]), folder)
    with (folder / "decoder.kv.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match="decoder.kv.onnx"):
        VLMPipeline.from_pretrained(folder)


def test_kv_cache_option_is_checked(exported):
    with pytest.raises(BackendError, match="kv_cache"):
        VLMPipeline.from_pretrained(exported(sorted(TINY)[0]), backend_options={"kv_cache": "paged"})
    pipe = VLMPipeline.from_pretrained(exported(sorted(TINY)[0]))
    with pytest.raises(BackendError, match="one sequence"):
        pipe.graphs["decoder"].reset_kv_cache(batch=2)


@pytest.mark.parametrize("spec", ["int8", "int4"])
def test_quantized_decoders_get_their_own_variant(exported, tmp_path, spec):
    from vlm_export.quantize.apply import quantize_folder
    from vlm_export.quantize.spec import parse_quant

    out = tmp_path / spec
    manifest = quantize_folder(exported(sorted(TINY)[0]), out, parse_quant(spec))
    decoder = manifest.graphs["decoder"]
    assert decoder.onnxruntime and decoder.precision == spec
    variant = onnx.load(str(out / decoder.onnxruntime["file"]), load_external_data=False)
    ops = {node.op_type for node in variant.graph.node}
    assert "GroupQueryAttention" in ops
    assert ("MatMulNBits" if spec == "int4" else "DynamicQuantizeLinear") in ops  # rewritten from the quantized graph
    images = [picture(4, (50, 50))]
    shared = VLMPipeline.from_pretrained(out).generate(PROMPT, images, max_new_tokens=16, min_new_tokens=16)
    explicit = VLMPipeline.from_pretrained(out, backend_options={"kv_cache": "explicit"})
    assert shared.token_ids == explicit.generate(PROMPT, images, max_new_tokens=16, min_new_tokens=16).token_ids


def test_interleaved_requests_on_one_in_place_cache_are_refused(exported):
    """The in-place decoder holds one request's cache: a stale request must fail loudly, not mix caches."""
    from vlm_export.errors import PromptError

    pipe = VLMPipeline.from_pretrained(exported(sorted(TINY)[0]))
    images = [picture(6, (40, 40))]
    first = pipe.generate_ids(pipe.prepare("First?", images), max_new_tokens=10, min_new_tokens=10)
    next(first)  # prefill done, first token out
    second = pipe.generate("Second?", images, max_new_tokens=4, min_new_tokens=4)  # starts a new cache
    assert len(second.token_ids) == 4
    with pytest.raises(PromptError, match="one at a time"):
        next(first)
