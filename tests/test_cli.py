"""The command line through its real entry point: happy paths and every kind of bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import BertConfig

from tests.conftest import DEFAULT_TINY, cli, picture


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "picture.png"
    picture(4, (80, 60)).save(path)
    return path


@pytest.mark.slow
def test_convert_prints_parity_table_and_writes_folder(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    result = cli("convert", str(tiny_checkpoint(DEFAULT_TINY)), str(out), check=True)
    assert "Parity with transformers" in result.stdout
    assert "greedy generation" in result.stdout
    names = {p.name for p in out.iterdir()}
    expected = {"manifest.json", "tokenizer.json", "config.json"}
    expected |= {f"{g}.onnx" for g in ("vision_encoder", "projector", "embed_tokens", "decoder")}
    assert expected <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_run_json(exported, image_file):
    result = cli("run", str(exported(DEFAULT_TINY)), "--image", str(image_file), "--prompt", "Hi", "-n", "6", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) >= {"text", "token_ids", "timings"}
    assert 1 <= len(payload["token_ids"]) <= 6
    assert payload["timings"]["vision_encoder"] > 0


def test_run_streams_text(exported, image_file):
    folder = str(exported(DEFAULT_TINY))
    streamed = cli("run", folder, "-i", str(image_file), "-p", "Hi", "-n", "6", check=True).stdout
    as_json = json.loads(cli("run", folder, "-i", str(image_file), "-p", "Hi", "-n", "6", "--json", check=True).stdout)
    assert streamed == as_json["text"] + "\n"


def test_run_raw_with_two_images(exported, image_file):
    folder = str(exported(DEFAULT_TINY))
    args = ["run", folder, "-i", str(image_file), "-i", str(image_file), "--raw", "--json", "-n", "3"]
    ok = cli(*args, "-p", "<image> and <image>: same?")
    assert ok.returncode == 0, ok.stderr
    bad = cli(*args, "-p", "only <image> here")
    assert bad.returncode != 0
    assert "1 image placeholder" in bad.stderr


def test_inspect_json(exported):
    info = json.loads(cli("inspect", str(exported(DEFAULT_TINY)), "--json", check=True).stdout)
    roles = [g["role"] for g in info["graphs"]]
    assert roles == ["vision_encoder", "projector", "embed_tokens", "decoder"]
    decoder = info["graphs"][-1]
    assert decoder["inputs"][0]["name"] == "inputs_embeds"
    assert "past_key_values.0.key" in [t["name"] for t in decoder["inputs"]]
    assert "present.0.value" in [t["name"] for t in decoder["outputs"]]
    assert all(g["precision"] == "fp32" for g in info["graphs"])
    assert info["host"]["cpu"]["architecture"] and info["host"]["onnxruntime"]["version"]


def test_inspect_table(exported):
    result = cli("inspect", str(exported(DEFAULT_TINY)), check=True)
    assert "decoder" in result.stdout and "fp32" in result.stdout


# ---- bad input: one clear line, non-zero exit, nothing lost -------------------------------------------


def assert_one_line_error(result, *needles):
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_unknown_architecture_names_supported(tmp_path):
    model = tmp_path / "bert"
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    config.architectures = ["BertModel"]
    config.save_pretrained(model)
    result = cli("convert", str(model), str(tmp_path / "out"))
    assert_one_line_error(result, "unsupported architecture BertModel", "LlavaForConditionalGeneration")
    assert not (tmp_path / "out").exists()


def test_not_a_model_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("convert", str(tmp_path / "empty"), str(tmp_path / "o")), "no config.json")
    assert_one_line_error(cli("convert", str(tmp_path / "missing"), str(tmp_path / "o")), "does not exist")


def test_existing_output_is_kept_without_overwrite(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = cli("convert", str(tiny_checkpoint(DEFAULT_TINY)), str(out))
    assert_one_line_error(result, "exists and is not empty", "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("kind", ["truncated", "not-an-image", "missing"])
def test_bad_image(exported, tmp_path, image_file, kind):
    bad = tmp_path / "bad.png"
    if kind == "truncated":
        bad.write_bytes(image_file.read_bytes()[:200])
    elif kind == "not-an-image":
        bad.write_text("hello")
    result = cli("run", str(exported(DEFAULT_TINY)), "-i", str(bad), "-p", "Hi")
    assert_one_line_error(result, "bad.png")


def test_folder_without_manifest(tmp_path):
    assert_one_line_error(cli("run", str(tmp_path), "-p", "Hi"), "no manifest.json")
    assert_one_line_error(cli("inspect", str(tmp_path)), "no manifest.json")


def test_newer_manifest_version(exported, tmp_path):
    copy = shutil.copytree(exported(DEFAULT_TINY), tmp_path / "copy")
    data = json.loads((copy / "manifest.json").read_text())
    data["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(data))
    assert_one_line_error(cli("run", str(copy), "-p", "Hi"), "manifest format 99 is newer", "upgrade")


def test_tampered_graph(exported, tmp_path, image_file):
    copy = shutil.copytree(exported(DEFAULT_TINY), tmp_path / "copy")
    with open(copy / "projector.onnx", "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    result = cli("run", str(copy), "-i", str(image_file), "-p", "Hi")
    assert_one_line_error(result, "projector.onnx does not match the sha256")


def test_prompt_too_long_for_model(exported, image_file):
    result = cli("run", str(exported(DEFAULT_TINY)), "-i", str(image_file), "-p", "Hi", "-n", "100000")
    assert_one_line_error(result, "exceeds the model's")
