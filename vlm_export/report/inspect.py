"""A plain-data description of an exported folder (for ``vlm-export inspect`` and reports)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from vlm_export.manifest import GRAPH_ROLES, Manifest
from vlm_export.report.environment import environment


def describe_folder(folder: str | Path) -> dict:
    folder = Path(folder)
    manifest = Manifest.load(folder)
    manifest.verify_files(folder, check_hashes=False)
    graphs = []
    for role in sorted(manifest.graphs, key=lambda r: GRAPH_ROLES.index(r) if r in GRAPH_ROLES else 99):
        graph = manifest.graphs[role]
        size = sum((folder / name).stat().st_size for name in graph.files)
        graphs.append(
            {
                "role": role,
                "file": graph.file,
                "files": graph.files,
                "mb": size / 1e6,
                "precision": graph.precision,
                "opset": graph.opset,
                "summary": graph.summary,
                "inputs": [asdict(t) for t in graph.inputs],
                "outputs": [asdict(t) for t in graph.outputs],
                "openvino": graph.openvino,
            }
        )
    return {
        "folder": str(folder),
        "format_version": manifest.format_version,
        "family": manifest.family,
        "source": asdict(manifest.source),
        "graphs": graphs,
        "total_mb": sum(g["mb"] for g in graphs),
        "image": asdict(manifest.image) if manifest.image else None,
        "decoder": asdict(manifest.decoder),
        "validation": manifest.validation,
        "host": environment(),
    }
