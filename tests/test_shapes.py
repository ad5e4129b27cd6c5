"""The shipped model (tiny-shapes): its task, its training recipe, its accuracy through the exported
runtime, agreement with PyTorch, `vlm-export eval` and `vlm-export demo`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import DEFAULT_TINY, cli
from vlm_export.errors import VLMExportError
from vlm_export.shapes import DEFAULT_MODEL, shipped_model, task

BAR_OVERALL, BAR_PER_TYPE = 95.0, 90.0


# ---- the task --------------------------------------------------------------------------------------
def test_samples_are_deterministic_and_splits_differ():
    a, b = task.make_sample("test", 7), task.make_sample("test", 7)
    assert a == b
    assert np.array_equal(np.asarray(a.image()), np.asarray(b.image()))
    train = {(s.shapes, s.noise_seed) for s in task.samples("train", 300)}
    test = {(s.shapes, s.noise_seed) for s in task.samples("test", 300)}
    assert not train & test


def test_answers_follow_from_the_picture_description():
    for sample in task.samples("validation", 200):
        kinds = {s.kind: s for s in sample.shapes}
        colours = {s.colour: s for s in sample.shapes}
        assert len(kinds) == len(sample.shapes) == len(colours)  # unique, so every question is unambiguous
        words = sample.question.rstrip("?").split()
        if sample.question_type == "colour":
            assert kinds[words[-1]].colour == sample.answer
        elif sample.question_type == "shape":
            assert colours[words[-1]].kind == sample.answer
        elif sample.question_type == "count":
            assert task.NUMBERS[len(sample.shapes)] == sample.answer
        else:
            assert kinds[words[-1]].position == sample.answer
        assert set(sample.question.replace("?", " ? ").split() + sample.answer.split()) <= set(task.vocabulary())


def test_every_question_type_is_asked():
    kinds = [s.question_type for s in task.samples("test", 500)]
    assert all(kinds.count(k) > 80 for k in task.QUESTION_TYPES)


# ---- the training recipe ---------------------------------------------------------------------------
def test_training_smoke_saves_a_loadable_checkpoint(tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlm_export.shapes.train import TrainConfig, train

    cfg = TrainConfig(max_steps=4, vision_steps=2, batch_size=8, validation_samples=16, eval_every=2, minutes=2)
    _, _, result = train(cfg, tmp_path / "ckpt")
    assert result.steps == 4 and len(result.history) == 2
    assert json.loads((tmp_path / "ckpt" / "training.json").read_text())["steps"] == 4
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "ckpt")
    processor = AutoProcessor.from_pretrained(tmp_path / "ckpt")
    sample = task.make_sample("test", 0)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sample.question}]}],
        add_generation_prompt=True,
    )
    inputs = processor(text=text, images=sample.image(), return_tensors="pt")
    with torch.no_grad():
        assert model(**inputs).logits.shape[-1] == model.config.text_config.vocab_size


def test_training_pixels_equal_the_saved_image_processor():
    from vlm_export.shapes.train import TrainConfig, build_model_and_processor, pixels

    _, processor = build_model_and_processor(TrainConfig())
    samples = list(task.samples("test", 4))
    expected = processor.image_processor([s.image() for s in samples], return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(pixels(samples).numpy(), expected, rtol=0, atol=1e-6)


# ---- the shipped checkpoint ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory):
    """``vlm-export convert tiny-shapes OUT``: by its short name, parity gate on."""
    out = tmp_path_factory.mktemp("shapes") / "fp32"
    cli("convert", DEFAULT_MODEL, str(out), check=True)
    return out


def test_shipped_checkpoint_is_small_and_complete():
    folder = shipped_model(DEFAULT_MODEL)
    assert folder is not None
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size <= 15e6
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "README.md"):
        assert (folder / name).is_file(), name


def test_shipped_model_meets_the_bar_through_the_runtime(shipped_export):
    """Evaluated here, not read from the model card: 500 held-out questions through the ONNX runtime."""
    from vlm_export.shapes.evaluate import evaluate

    report = evaluate(shipped_export, n=500)
    assert report.exported.accuracy >= BAR_OVERALL, report.exported
    assert min(report.exported.per_type.values()) >= BAR_PER_TYPE, report.exported


def test_fp32_export_answers_like_pytorch(shipped_export):
    from vlm_export.shapes.evaluate import evaluate

    report = evaluate(shipped_export, n=200, reference=DEFAULT_MODEL)
    assert report.agreement == 100.0
    assert report.exported.answers == report.reference.answers


def test_cli_eval_json(shipped_export):
    result = cli("eval", str(shipped_export), "--n", "40", "--json", check=True)
    data = json.loads(result.stdout)
    assert set(data["per_type"]) == set(task.QUESTION_TYPES)
    assert 0 <= data["accuracy"] <= 100 and data["n"] == 40


def test_eval_refuses_a_model_not_trained_on_the_task(exported):
    from vlm_export.shapes.evaluate import evaluate

    with pytest.raises(VLMExportError, match="not exported from a model trained on the shapes task"):
        evaluate(exported(DEFAULT_TINY), n=5)
    result = cli("eval", str(exported(DEFAULT_TINY)), "--n", "5")
    assert result.returncode != 0 and "tiny-shapes" in result.stderr


def test_demo_answers_with_ground_truth(tmp_path):
    result = cli("demo", "--cache", str(tmp_path / "demo"), check=True)
    assert result.stdout.count("Q:") == 3
    assert "truth" in result.stdout and "TTFT" in result.stdout
    assert result.stdout.count("cached") == 4  # questions 2 and 3 reuse the picture's embeddings
    again = cli("demo", "--cache", str(tmp_path / "demo"), check=True)  # cached: no second conversion
    assert "exporting" not in again.stderr


def test_compressed_variants_keep_the_bar(shipped_export, tmp_path):
    """Measured agreement for quantized variants: onnxruntime int8 and int4, OpenVINO NNCF int8."""
    pytest.importorskip("openvino")
    from vlm_export.export.openvino_ir import to_openvino
    from vlm_export.quantize.apply import quantize_folder
    from vlm_export.quantize.spec import PRESETS, parse_quant
    from vlm_export.shapes.evaluate import evaluate

    fp32 = evaluate(shipped_export, n=300).exported.accuracy
    quantize_folder(shipped_export, tmp_path / "int8", PRESETS["int8"])
    quantize_folder(shipped_export, tmp_path / "int4", parse_quant("decoder=int4:block=32,vision=int8,projector=int8"))
    to_openvino(shipped_export, tmp_path / "ov-int8", quant=PRESETS["int8"])
    drops = {
        "int8": fp32 - evaluate(tmp_path / "int8", n=300).exported.accuracy,
        "int4": fp32 - evaluate(tmp_path / "int4", n=300).exported.accuracy,
        "ov-int8": fp32 - evaluate(tmp_path / "ov-int8", n=300, backend="openvino").exported.accuracy,
    }
    assert drops["int8"] <= 1.0 and drops["ov-int8"] <= 1.0 and drops["int4"] <= 3.0, drops
