"""Per-graph quantization: the --quant language, every preset, fallbacks, the report, the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import DEFAULT_TINY, TINY, cli
from vlm_export.errors import VLMExportError
from vlm_export.manifest import Manifest, sha256_file
from vlm_export.quantize.apply import quantize_folder
from vlm_export.quantize.report import compare_folders
from vlm_export.quantize.spec import PRESETS, GraphRecipe, QuantSpecError, parse_quant
from vlm_export.runtimes.pipeline import VLMPipeline
from vlm_export.sample_images import sample_image


def test_parse_presets_and_custom():
    assert parse_quant("int8") is PRESETS["int8"]
    spec = parse_quant("decoder=int4:block=32:asym:accuracy=0, vision=int8,embed=fp16")
    assert spec.recipe("decoder") == GraphRecipe("int4", block_size=32, symmetric=False, accuracy_level=0)
    assert spec.recipe("vision_encoder").precision == "int8"
    assert spec.recipe("embed_tokens").precision == "fp16"
    assert spec.recipe("projector").precision == "fp32"  # not named: unchanged


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("lm=int4", "cannot read"),
        ("decoder=int3", "unknown precision"),
        ("decoder=int4:block=48", "unknown option"),
        ("decoder=int8:block=32", "do not apply to int8"),
        ("decoder=fp16:target=arm64", "unknown option"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(QuantSpecError, match=message):
        parse_quant(text)


EXPECTED = {
    "fp16": {"vision_encoder": "fp16", "projector": "fp16", "embed_tokens": "fp16", "decoder": "fp16"},
    # onnxruntime has no int8 embedding-table kernel: embed falls back to fp16
    "int8": {"vision_encoder": "int8", "projector": "int8", "embed_tokens": "fp16", "decoder": "int8"},
    "int4": {"vision_encoder": "int8", "projector": "int8", "embed_tokens": "int4", "decoder": "int4"},
    "int4-all": {"vision_encoder": "int4", "projector": "int4", "embed_tokens": "int4", "decoder": "int4"},
}


@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory):
    root = tmp_path_factory.mktemp("quantized")
    source = exported(DEFAULT_TINY)
    return source, {name: quantize_folder(source, root / name, PRESETS[name]) and root / name for name in EXPECTED}


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_presets_load_generate_and_record_precision(quantized, preset):
    _, folders = quantized
    manifest = Manifest.load(folders[preset])
    assert {role: g.precision for role, g in manifest.graphs.items()} == EXPECTED[preset]
    for graph in manifest.graphs.values():
        onnx.checker.check_model(str(folders[preset] / graph.file))
        assert graph.quantization["recipe"]
    assert manifest.validation is None and manifest.quantization["spec"]
    result = VLMPipeline.from_pretrained(folders[preset]).generate(
        "Describe the image.", [sample_image(64)], max_new_tokens=6, min_new_tokens=6
    )
    assert len(result.token_ids) == 6


@pytest.mark.parametrize("name", sorted(set(TINY) - {DEFAULT_TINY}))
def test_int4_preset_applies_to_every_family(exported, tmp_path, name):
    """Recipes follow the manifest's graphs: families with other splits (no vision graph, a Q-Former
    projector) quantize and generate the same way."""
    source = exported(name)
    quantize_folder(source, tmp_path / "int4", PRESETS["int4"])
    manifest = Manifest.load(tmp_path / "int4")
    assert manifest.graphs.keys() == Manifest.load(source).graphs.keys()
    assert manifest.graphs["decoder"].precision == "int4"
    pipe = VLMPipeline.from_pretrained(tmp_path / "int4")
    image = sample_image(64)
    prompt = "Describe the image."
    result = pipe.generate(prompt, [image], max_new_tokens=6, min_new_tokens=6)
    assert len(result.token_ids) == 6
    report = compare_folders(source, tmp_path / "int4", prompts=(prompt,), new_tokens=6)
    assert all(g.cosine > 0.9 for g in report.graphs), report.graphs


def test_fallbacks_are_recorded(quantized):
    _, folders = quantized
    embed = Manifest.load(folders["int8"]).graphs["embed_tokens"]
    assert "4 bits only" in embed.quantization["fallback"]
    vision = onnx.load(str(folders["int8"] / "vision_encoder.onnx"))
    ops = {node.op_type for node in vision.graph.node}
    assert "Conv" in ops and "ConvInteger" not in ops  # the patch embedding stays float: no CPU kernel


def test_int4_shrinks_decoder(quantized):
    source, folders = quantized

    def decoder_bytes(folder):  # the graph and its external data, as the manifest lists them
        return sum((folder / name).stat().st_size for name in Manifest.load(folder).graphs["decoder"].files)

    assert decoder_bytes(folders["int4"]) < 0.6 * decoder_bytes(source)


def test_report_measures_each_graph(quantized):
    source, folders = quantized
    report = compare_folders(source, folders["fp16"], new_tokens=8)
    assert report.generations == 4 and 0 <= report.token_agreement <= 1
    for graph in report.graphs:
        assert graph.cosine > 0.999, graph  # fp16 barely moves anything
        assert graph.mb < graph.fp32_mb
    assert report.as_dict()["size_ratio"] < 0.7


def test_report_catches_a_broken_graph(quantized, tmp_path):
    """A projector with scrambled weights must show a low cosine, whatever else passes."""
    import shutil

    source, folders = quantized
    broken = shutil.copytree(folders["int8"], tmp_path / "broken")
    model = onnx.load(str(broken / "projector.onnx"))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 16:
            init.CopyFrom(numpy_helper.from_array(rng.standard_normal(array.shape).astype(np.float32), init.name))
    onnx.save(model, str(broken / "projector.onnx"))
    manifest = Manifest.load(broken)
    manifest.graphs["projector"].sha256 = {"projector.onnx": sha256_file(broken / "projector.onnx")}
    manifest.save(broken)
    report = {g.role: g for g in compare_folders(source, broken, new_tokens=4).graphs}
    assert report["projector"].cosine < 0.9
    assert report["decoder"].cosine > report["projector"].cosine


def test_refuses_to_requantize(quantized, tmp_path):
    _, folders = quantized
    with pytest.raises(VLMExportError, match="already quantized"):
        quantize_folder(folders["int8"], tmp_path / "again", PRESETS["int4"])


def test_cli_quantize_json_and_errors(exported, tmp_path):
    source = str(exported(DEFAULT_TINY))
    result = cli("quantize", source, str(tmp_path / "q"), "--quant", "decoder=int4:block=32,embed=int8", "--json")
    assert result.returncode == 0, result.stderr
    graphs = json.loads(result.stdout)["graphs"]
    assert graphs["decoder"]["precision"] == "int4" and graphs["embed_tokens"]["precision"] == "fp16"
    assert graphs["projector"]["precision"] == "fp32"
    bad = cli("quantize", source, str(tmp_path / "q2"), "--quant", "decoder=int3")
    assert bad.returncode != 0 and bad.stderr.strip().startswith("error:") and "unknown precision" in bad.stderr
    assert not (tmp_path / "q2").exists()


@pytest.mark.slow
def test_convert_with_quant_keeps_fp32_gate(tiny_checkpoint, tmp_path):
    from vlm_export.export.convert import convert

    result = convert(str(tiny_checkpoint(DEFAULT_TINY)), tmp_path / "int8", quant=PRESETS["int8"])
    manifest = Manifest.load(tmp_path / "int8")
    assert manifest.graphs["decoder"].precision == "int8"
    assert manifest.validation["passed"] and result.validation.passed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8"]  # the fp32 staging folder is gone


def test_target_cpu_int8_presets(exported, tmp_path):
    """optimum's per-CPU presets drive the int8 weights: avx2 uses uint8 weights, arm64 int8."""
    source = exported(DEFAULT_TINY)
    for target, weight_type in (("avx2", onnx.TensorProto.UINT8), ("arm64", onnx.TensorProto.INT8)):
        out = tmp_path / target
        manifest = quantize_folder(source, out, parse_quant("decoder=int8", target_cpu=target))
        assert manifest.graphs["decoder"].quantization["int8_target"] == target
        model = onnx.load(str(out / "decoder.onnx"))
        quantized = [i for i in model.graph.initializer if i.name.endswith("_quantized")]
        assert quantized and {i.data_type for i in quantized} == {weight_type}
    with pytest.raises(QuantSpecError, match="unknown target"):
        parse_quant("int8", target_cpu="pentium")
    assert parse_quant("vision=int8:target=avx512_vnni").recipe("vision_encoder").target == "avx512_vnni"


def test_auto_picks_bigger_recipe_when_budget_is_tight(exported, tmp_path):
    from vlm_export.quantize.auto import AUTO_ORDER, auto_quantize

    source = exported(DEFAULT_TINY)
    loose = auto_quantize(source, tmp_path / "loose", max_drop=100.0)
    tight = auto_quantize(source, tmp_path / "tight", max_drop=0.0)
    assert loose.chosen == AUTO_ORDER[0] and len(loose.trials) == 1
    assert AUTO_ORDER.index(tight.chosen) > AUTO_ORDER.index(loose.chosen)
    assert all(not t.within_budget for t in tight.trials[:-1]) and tight.trials[-1].within_budget
    assert tight.trials[-1].drop == 0.0
    assert Manifest.load(tmp_path / "tight").quantization["spec"]
