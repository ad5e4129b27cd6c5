"""convert as a library: atomic output and the parity gate's failure path."""

from __future__ import annotations

import pytest

from tests.conftest import DEFAULT_TINY
from vlm_export.errors import ParityError
from vlm_export.export import validate
from vlm_export.export.convert import convert


@pytest.mark.slow
def test_failed_parity_writes_nothing_and_keeps_old_folder(tmp_path, tiny_checkpoint, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous export")
    monkeypatch.setattr(validate, "ABS_TOL", -1.0)  # no difference can pass a negative tolerance
    with pytest.raises(ParityError, match="does not match transformers") as info:
        convert(str(tiny_checkpoint(DEFAULT_TINY)), out, overwrite=True)
    assert not info.value.report.passed
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the temp folder is gone


def test_overwrite_replaces_folder(tmp_path, exported):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(exported(DEFAULT_TINY), out)
    (out / "stale.txt").write_text("x")
    from vlm_export.export.atomic import atomic_folder

    with atomic_folder(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.slow
def test_older_opset_for_other_runtimes(tmp_path, tiny_checkpoint):
    """Opset 18 (no ONNX Attention op) for runtimes that cannot read opset 23; the gate still passes."""
    import onnx

    result = convert(str(tiny_checkpoint("llava-qwen2-full")), tmp_path / "out", opset=18)
    assert result.validation.passed
    model = onnx.load(str(tmp_path / "out" / "decoder.onnx"))
    assert "Attention" not in {node.op_type for node in model.graph.node}
    assert {op.version for op in model.opset_import if op.domain in ("", "ai.onnx")} == {18}
    assert all(graph.opset == 18 for graph in result.manifest.graphs.values())
