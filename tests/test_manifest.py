"""The manifest contract: round trip, version gate, malformed input, file integrity."""

from __future__ import annotations

import json

import pytest

from vlm_export.errors import ManifestError
from vlm_export.manifest import (
    FORMAT_VERSION,
    DecoderInfo,
    GraphInfo,
    ImageTokens,
    Manifest,
    SourceInfo,
    TensorInfo,
    TextInfo,
    sha256_file,
)


def make_manifest(folder):
    (folder / "decoder.onnx").write_bytes(b"graph bytes")
    (folder / "embed_tokens.onnx").write_bytes(b"embedding bytes")
    graphs = {
        role: GraphInfo(
            file=f"{role}.onnx",
            sha256={f"{role}.onnx": sha256_file(folder / f"{role}.onnx")},
            inputs=[TensorInfo("x", "float32", ["batch", 3])],
            outputs=[TensorInfo("y", "float32", ["batch", 3])],
        )
        for role in ("embed_tokens", "decoder")
    }
    return Manifest(
        family="llava",
        graphs=graphs,
        image=ImageTokens("<image>", "<image>", 4, 25),
        preprocessing={"kind": "clip"},
        decoder=DecoderInfo(num_layers=2, num_kv_heads=2, head_dim=16, hidden_size=64, vocab_size=261),
        text=TextInfo("tokenizer.json", {"bos_token": "<s>"}, "<s>", [2], 3, None),
        source=SourceInfo("model", "LlavaForConditionalGeneration", "llava"),
    )


def test_round_trip(tmp_path):
    manifest = make_manifest(tmp_path)
    manifest.save(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded == manifest
    loaded.verify_files(tmp_path)


def test_missing_manifest_names_the_fix(tmp_path):
    with pytest.raises(ManifestError, match="no manifest.json") as info:
        Manifest.load(tmp_path)
    assert "vlm-export convert" in info.value.fix


def test_not_a_folder(tmp_path):
    with pytest.raises(ManifestError, match="is not a folder"):
        Manifest.load(tmp_path / "nope")


def test_newer_format_is_refused(tmp_path):
    make_manifest(tmp_path).save(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="newer than this vlm-export") as info:
        Manifest.load(tmp_path)
    assert "upgrade" in info.value.fix


@pytest.mark.parametrize("mutation", ["drop_graphs", "bad_json", "not_object", "bad_version"])
def test_malformed_manifest(tmp_path, mutation):
    make_manifest(tmp_path).save(tmp_path)
    path = tmp_path / "manifest.json"
    data = json.loads(path.read_text())
    if mutation == "drop_graphs":
        del data["graphs"]
        path.write_text(json.dumps(data))
    elif mutation == "bad_json":
        path.write_text(path.read_text()[:50])
    elif mutation == "not_object":
        path.write_text("[1, 2]")
    else:
        data["format_version"] = "two"
        path.write_text(json.dumps(data))
    with pytest.raises(ManifestError):
        Manifest.load(tmp_path)


def test_tampered_graph_fails_hash(tmp_path):
    manifest = make_manifest(tmp_path)
    with open(tmp_path / "decoder.onnx", "ab") as handle:
        handle.write(b"!")
    with pytest.raises(ManifestError, match="decoder.onnx does not match the sha256"):
        manifest.verify_files(tmp_path)
    manifest.verify_files(tmp_path, check_hashes=False)  # the fast check looks at presence only


def test_missing_graph_file(tmp_path):
    manifest = make_manifest(tmp_path)
    (tmp_path / "embed_tokens.onnx").unlink()
    with pytest.raises(ManifestError, match="embed_tokens graph file embed_tokens.onnx is missing"):
        manifest.verify_files(tmp_path, check_hashes=False)


def test_keys_added_by_a_newer_version_are_ignored(tmp_path):
    """Optional keys need no format bump: a manifest with unknown decoder and graph keys still loads."""
    manifest = make_manifest(tmp_path)
    manifest.save(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["decoder"]["some_future_field"] = 1
    data["graphs"]["decoder"]["another_future_field"] = {"x": 1}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    assert Manifest.load(tmp_path) == manifest
