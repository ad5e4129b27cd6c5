"""Quantize an exported fp32 folder into a new folder, graph by graph, atomically."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from vlm_export.errors import VLMExportError
from vlm_export.export.atomic import atomic_folder, check_output
from vlm_export.manifest import DECODER, Manifest, sha256_file
from vlm_export.quantize.recipes import quantize_graph
from vlm_export.quantize.spec import QuantSpec


def quantize_folder(
    source: str | Path,
    out: str | Path,
    spec: QuantSpec,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Write ``out``: ``source``'s files with each graph compressed by its recipe; returns the manifest."""
    step = progress or (lambda _m: None)
    source, out = Path(source), Path(out)
    manifest = Manifest.load(source)
    manifest.verify_files(source)
    if source.resolve() == out.resolve():
        raise VLMExportError("the output folder must differ from the input", fix="choose a new OUT")
    not_fp32 = [role for role, g in manifest.graphs.items() if g.precision != "fp32"]
    if not_fp32:
        raise VLMExportError(
            f"{source} is already quantized ({', '.join(not_fp32)})", fix="quantize from the fp32 export"
        )
    check_output(out, overwrite)
    graph_files = {name for g in manifest.graphs.values() for name in g.all_files}
    with atomic_folder(out, overwrite) as tmp:
        for item in source.iterdir():
            if item.is_file() and item.name not in graph_files and item.name != "manifest.json":
                shutil.copyfile(item, tmp / item.name)
        graphs = {}
        for role, graph in manifest.graphs.items():
            recipe = spec.recipe(role)
            step(f"{role}: {recipe.label()}")
            result = quantize_graph(source / graph.file, tmp / graph.file, recipe)
            files = [graph.file] + [p.name for p in tmp.glob(graph.file + ".data")]
            graphs[role] = replace(
                graph,
                sha256={name: sha256_file(tmp / name) for name in files},
                precision=result.precision,
                quantization={"recipe": recipe.label(), **result.details},
                openvino=None,  # the IR (if any) was made from the fp32 graph and is not copied
                onnxruntime=None,
            )
        if DECODER in graphs and manifest.graphs[DECODER].onnxruntime:  # convert decided it applies
            from vlm_export.export.convert import with_ort_variant

            graphs[DECODER] = with_ort_variant(tmp, graphs[DECODER], manifest.decoder)
            if graphs[DECODER].onnxruntime:
                step(f"{DECODER}: onnxruntime in-place KV variant written")
            else:  # fp16 decoders cast the cache around the Concat, which the rewrite does not follow
                step(f"{DECODER}: keeps the explicit KV cache on onnxruntime (no in-place variant for this graph)")
        quantized = replace(
            manifest,
            graphs=graphs,
            validation=None,  # the fp32 parity gate says nothing about a compressed graph
            quantization={"spec": spec.label(), "source": str(source)},
        )
        quantized.save(tmp)
    return quantized
