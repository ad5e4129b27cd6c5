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
