"""Documentation generated from code stays in step with the code."""

from __future__ import annotations

from pathlib import Path

from vlm_export.report.support import END, START, render_block

ROOT = Path(__file__).resolve().parents[1]


def test_readme_support_table_is_current():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(START) : readme.index(END) + len(END)]
    assert block == render_block(), "README support table is stale: run python -m vlm_export.report.support"


def test_family_graph_roles_match_their_exports(exported):
    from tests.conftest import TINY
    from vlm_export.manifest import Manifest

    for name, (family, _) in TINY.items():
        assert tuple(Manifest.load(exported(name)).graphs) == family.graph_roles
