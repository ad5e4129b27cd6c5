"""The OpenVINO backend on the same exported folders: parity with onnxruntime and transformers, IR
conversion with NNCF weight compression, and the errors where the two stacks do not map."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import DEFAULT_TINY, TINY, cli, hf_processor, picture
from vlm_export.errors import ManifestError, VLMExportError
from vlm_export.export.openvino_ir import to_openvino
from vlm_export.manifest import Manifest
from vlm_export.quantize.spec import PRESETS, parse_quant
from vlm_export.runtimes.pipeline import KVCache, VLMPipeline

pytest.importorskip("openvino")
NEW_TOKENS = 20
PROMPT = "Describe the image."


def _tokens_and_logits(pipe: VLMPipeline, images) -> tuple[list[int], np.ndarray]:
    result = pipe.generate(PROMPT, images, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    prepared = pipe.prepare(PROMPT, images)
    logits = pipe.decoder_step(pipe.prefill_embeds(prepared), KVCache.empty(pipe.manifest))
    return result.token_ids, logits


@pytest.mark.parametrize("name", sorted(TINY))
def test_fp32_openvino_equals_onnxruntime(exported, name):
    folder = exported(name)
    images = [picture(7, (72, 56))]
    ort_tokens, ort_logits = _tokens_and_logits(VLMPipeline.from_pretrained(folder), images)
    ov = VLMPipeline.from_pretrained(folder, backend="openvino", threads=2)
    assert ov.backend_info["backend"] == "openvino" and ov.backend_info["inference_precision"] == "f32"
    ov_tokens, ov_logits = _tokens_and_logits(ov, images)
    assert ov_tokens == ort_tokens
    np.testing.assert_allclose(ov_logits, ort_logits, rtol=0, atol=1e-4 * max(1.0, float(np.abs(ort_logits).max())))


@pytest.mark.parametrize("name", sorted(n for n in TINY if n.startswith("llava")))
def test_fp32_openvino_equals_transformers_on_llava(exported, tiny_checkpoint, name):
    import torch
    from transformers import AutoModelForImageTextToText

    from tests.test_parity import hf_generate

    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint(name), dtype=torch.float32).eval()
    processor = hf_processor(tiny_checkpoint(name))
    images = [picture(3, (80, 64))]
    expected, _ = hf_generate(model, processor, PROMPT, images, raw=False)
    pipe = VLMPipeline.from_pretrained(exported(name), backend="openvino")
    assert pipe.generate(PROMPT, images, max_new_tokens=20, min_new_tokens=20).token_ids == expected


@pytest.fixture(scope="module")
def ir_folders(exported, tmp_path_factory):
    root = tmp_path_factory.mktemp("openvino")
    source = exported(DEFAULT_TINY)
    folders = {"fp32": root / "fp32", "int8": root / "int8", "int4": root / "int4"}
    to_openvino(source, folders["fp32"])
    to_openvino(source, folders["int8"], quant=PRESETS["int8"])
    to_openvino(source, folders["int4"], quant=parse_quant("decoder=int4:block=128,vision=int8,projector=int8"))
    return source, folders


def test_ir_is_recorded_beside_onnx_and_runs_like_onnx(ir_folders):
    source, folders = ir_folders
    manifest = Manifest.load(folders["fp32"])
    for role, graph in manifest.graphs.items():
        assert graph.openvino["file"] == f"openvino/{role}.xml"
        assert set(graph.openvino["sha256"]) == {f"openvino/{role}.xml", f"openvino/{role}.bin"}
        assert (folders["fp32"] / graph.file).is_file()  # the ONNX graph stays: onnxruntime still works
    images = [picture(5)]
    expected, _ = _tokens_and_logits(VLMPipeline.from_pretrained(source), images)
    got, _ = _tokens_and_logits(VLMPipeline.from_pretrained(folders["fp32"], backend="openvino"), images)
    assert got == expected
    assert not (source / "openvino").exists()  # a copy was written; the source is untouched


def test_compressed_ir_records_what_nncf_did_and_generates(ir_folders):
    _, folders = ir_folders
    int8 = Manifest.load(folders["int8"])
    assert {g.openvino["compression"]["mode"] for g in int8.graphs.values()} == {"INT8_ASYM"}
    int4 = Manifest.load(folders["int4"]).graphs
    assert int4["decoder"].openvino["compression"]["mode"] == "INT4_SYM"
    # the tiny decoder is 64 wide: group size 128 cannot fit and falls back, on the record
    assert int4["decoder"].openvino["compression"]["group_size"] == 64
    assert "fallback" in int4["decoder"].openvino["compression"]
    assert int4["embed_tokens"].openvino["compression"] is None and int4["embed_tokens"].openvino["precision"] == "fp32"
    fp32_bin = (folders["fp32"] / "openvino" / "decoder.bin").stat().st_size
    assert (folders["int4"] / "openvino" / "decoder.bin").stat().st_size < 0.5 * fp32_bin
    for folder in (folders["int8"], folders["int4"]):
        result = VLMPipeline.from_pretrained(folder, backend="openvino").generate(
            PROMPT, [picture(2)], max_new_tokens=6, min_new_tokens=6
        )
        assert len(result.token_ids) == 6


def test_quantizing_an_ir_folder_drops_the_stale_ir_record(ir_folders, tmp_path):
    from vlm_export.quantize.apply import quantize_folder

    _, folders = ir_folders
    quantize_folder(folders["fp32"], tmp_path / "int8", PRESETS["int8"])
    assert all(g.openvino is None for g in Manifest.load(tmp_path / "int8").graphs.values())
    VLMPipeline.from_pretrained(tmp_path / "int8")  # every recorded file is there and hashes match


def test_tampered_ir_is_refused(ir_folders, tmp_path):
    _, folders = ir_folders
    copy = shutil.copytree(folders["fp32"], tmp_path / "copy")
    with open(copy / "openvino" / "decoder.bin", "r+b") as handle:
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ManifestError, match="sha256"):
        VLMPipeline.from_pretrained(copy, backend="openvino")


def test_in_place_conversion_keeps_the_folder_whole(exported, tmp_path):
    folder = shutil.copytree(exported(DEFAULT_TINY), tmp_path / "export")
    to_openvino(folder)
    assert Manifest.load(folder).graphs["decoder"].openvino
    VLMPipeline.from_pretrained(folder, backend="openvino")  # every hash (ONNX and IR) still matches


@pytest.mark.parametrize(
    ("spec", "message"),
    [("decoder=int8:target=avx2", "picks its own"), ("decoder=int4:accuracy=0", "onnxruntime MatMulNBits")],
)
def test_options_without_an_openvino_meaning_are_refused(exported, tmp_path, spec, message):
    with pytest.raises(VLMExportError, match=message):
        to_openvino(exported(DEFAULT_TINY), tmp_path / "out", quant=parse_quant(spec))
    assert not (tmp_path / "out").exists()


def test_unknown_device_and_precision_are_clear_errors(exported):
    with pytest.raises(VLMExportError, match="not available"):
        VLMPipeline.from_pretrained(exported(DEFAULT_TINY), backend="openvino", device="NOPE")
    with pytest.raises(VLMExportError, match="precision"):
        VLMPipeline.from_pretrained(exported(DEFAULT_TINY), backend="openvino", backend_options={"precision": "x"})


def test_cli_to_openvino_and_run(exported, tmp_path):
    out = tmp_path / "ov"
    result = cli("to-openvino", str(exported(DEFAULT_TINY)), str(out), "--quant", "int8", "--json", check=True)
    assert json.loads(result.stdout)["decoder"]["compression"]["mode"] == "INT8_ASYM"
    run = cli("run", str(out), "--backend", "openvino", "-i", "x.png", "-p", "Hi", "--json")
    assert run.returncode != 0 and "x.png" in run.stderr  # a missing image is one clear line
    picture(1).save(tmp_path / "p.png")
    run = cli("run", str(out), "--backend", "openvino", "-i", str(tmp_path / "p.png"), "-p", "Hi", "-n", "4", "--json")
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)["token_ids"]) <= 4


def test_stateful_and_explicit_kv_cache_agree(exported):
    """The decoder keeps its KV cache as OpenVINO state by default; explicit inputs/outputs stay available."""
    folder = exported(DEFAULT_TINY)
    images = [picture(4)]
    stateful = VLMPipeline.from_pretrained(folder, backend="openvino")
    explicit = VLMPipeline.from_pretrained(folder, backend="openvino", backend_options={"stateful": False})
    assert stateful.graphs["decoder"].holds_kv_cache and not explicit.graphs["decoder"].holds_kv_cache
    assert stateful.backend_info["kv_cache"] == "stateful"
    first, _ = _tokens_and_logits(stateful, images)
    second, _ = _tokens_and_logits(explicit, images)
    assert first == second
    assert _tokens_and_logits(stateful, images)[0] == first  # a new request starts from an empty state
