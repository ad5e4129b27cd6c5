"""``vlm-export to-openvino``: OpenVINO IR beside the ONNX graphs, with optional NNCF weight compression.

Each ONNX graph goes through ``openvino.convert_model`` and, per the ``--quant`` spec, through
``nncf.compress_weights`` (int8: INT8_ASYM; int4: INT4_SYM/ASYM with group size = ``block``) or fp16
weight storage, then ``openvino.save_model`` into ``openvino/<role>.xml/.bin``. The manifest records
the IR next to the ONNX file (``GraphInfo.openvino``), so one folder serves onnxruntime and OpenVINO;
the ``openvino`` backend prefers the IR. NNCF keeps embeddings and the last MatMul in int8 when asked
for int4 (its default), and a group size wider than a layer falls back to the next smaller one: both
are recorded. Options that only mean something to onnxruntime (``target=``, ``accuracy=``) are refused.

OpenVINO 2026.4's ONNX frontend reads opset 23 (``Attention``, ``RotaryEmbedding``) but gives a
grouped-query ``Attention`` (fewer K/V heads than query heads) the K/V head count on its output, so the
decoder of any GQA model fails to compile. Before conversion each such node gets its K and V repeated to
the query head count (what transformers' ``repeat_kv`` does), in a scratch copy: the ONNX file that
onnxruntime runs keeps native GQA.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from vlm_export.errors import VLMExportError
from vlm_export.export.atomic import atomic_folder
from vlm_export.manifest import Manifest, sha256_file
from vlm_export.quantize.spec import BLOCK_SIZES, GraphRecipe, QuantSpec

IR_DIR = "openvino"


def _nncf_settings(role: str, recipe: GraphRecipe) -> dict[str, Any] | None:
    """NNCF compress_weights arguments for a recipe; None for fp32/fp16 (no compression)."""
    if recipe.precision in ("fp32", "fp16"):
        return None
    if recipe.target != "portable":
        raise VLMExportError(
            f"{role}: target={recipe.target} selects onnxruntime int8 kernels; OpenVINO picks its own",
            fix="drop target= from --quant for --target openvino",
        )
    if recipe.precision == "int4" and recipe.accuracy_level != GraphRecipe().accuracy_level:
        raise VLMExportError(
            f"{role}: accuracy= is an onnxruntime MatMulNBits option", fix="drop accuracy= for --target openvino"
        )
    if recipe.precision == "int8":
        return {"mode": "INT8_ASYM"}
    return {"mode": "INT4_SYM" if recipe.symmetric else "INT4_ASYM", "group_size": recipe.block_size, "ratio": 1.0}


def _compress(model, role: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Apply NNCF in place; returns what was really applied (group size after any fallback)."""
    import logging

    import nncf

    nncf.set_log_level(logging.ERROR)  # its per-graph statistics tables; the manifest records the outcome
    mode = getattr(nncf.CompressWeightsMode, settings["mode"])
    if "group_size" not in settings:
        nncf.compress_weights(model, mode=mode)
        return dict(settings)
    sizes = [b for b in sorted(BLOCK_SIZES, reverse=True) if b <= settings["group_size"]]
    last_error = None
    for size in sizes:
        try:
            nncf.compress_weights(model, mode=mode, group_size=size, ratio=settings["ratio"])
        except nncf.errors.InvalidGroupSizeError as exc:  # a layer narrower than the group
            last_error = exc
            continue
        applied = {**settings, "group_size": size, "backup_mode": "INT8_ASYM (NNCF default for embeddings/last layer)"}
        if size != settings["group_size"]:
            applied["fallback"] = f"group size {settings['group_size']} does not divide every layer; used {size}"
        return applied
    raise VLMExportError(f"{role}: no int4 group size fits this graph ({last_error})", fix="use int8 for it")


def expand_gqa_heads(model) -> int:
    """Repeat K/V heads in front of every grouped-query ``Attention`` node (4-D form); returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    nodes, rewritten = [], 0
    for node in model.graph.node:
        q, k, v = (shapes.get(name) for name in [*node.input[:3], "", "", ""][:3])
        known = all(s and len(s) == 4 and None not in (s[1], s[3]) for s in (q, k, v))
        if node.op_type != "Attention" or not known or k[1] != v[1]:
            nodes.append(node)
            continue
        repeat = q[1] // k[1]
        if repeat == 1:
            nodes.append(node)
            continue
        tag = f"{node.name or 'attention'}_{rewritten}_gqa"
        consts = {
            f"{tag}_axes": np.array([2], dtype=np.int64),
            f"{tag}_expand": np.array([1, 1, repeat, 1, 1], dtype=np.int64),
            f"{tag}_shape_1": np.array([0, q[1], -1, k[3]], dtype=np.int64),
            f"{tag}_shape_2": np.array([0, q[1], -1, v[3]], dtype=np.int64),  # V's head size may differ
        }
        model.graph.initializer.extend(numpy_helper.from_array(a, name) for name, a in consts.items())
        inputs = list(node.input)
        for i in (1, 2):  # key, value: (B, Hkv, T, D) -> (B, Hkv, repeat, T, D) -> (B, Hq, T, D)
            source, stem = inputs[i], f"{tag}_{i}"
            nodes += [
                helper.make_node("Unsqueeze", [source, f"{tag}_axes"], [f"{stem}_u"]),
                helper.make_node("Expand", [f"{stem}_u", f"{tag}_expand"], [f"{stem}_e"]),
                helper.make_node("Reshape", [f"{stem}_e", f"{tag}_shape_{i}"], [f"{stem}_r"]),
            ]
            inputs[i] = f"{stem}_r"
        del node.input[:]
        node.input.extend(inputs)
        nodes.append(node)
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return rewritten


def openvino_model(onnx_path: Path, scratch: Path):
    """``openvino.convert_model`` of the graph, through a GQA-expanded copy where one is needed."""
    import onnx
    import openvino as ov

    # the graph only: weights in external data stay on disk (a >2 GB proto cannot even be serialised)
    model = onnx.load(str(onnx_path), load_external_data=False)
    if not expand_gqa_heads(model):
        return ov.convert_model(str(onnx_path)), 0
    copy = scratch / onnx_path.name
    data_files = {
        entry.value for tensor in model.graph.initializer for entry in tensor.external_data if entry.key == "location"
    }
    for name in data_files:  # external-data paths are relative to the model file; OpenVINO reads a link
        _link_or_symlink(onnx_path.parent / name, scratch / name)
    onnx.save(model, str(copy))
    try:
        converted = ov.convert_model(str(copy))
    finally:
        for leftover in [copy, *(scratch / name for name in data_files)]:
            leftover.unlink(missing_ok=True)
    return converted, 1


def check_openvino_spec(quant: QuantSpec | None) -> None:
    """Fail early (before an export) when OpenVINO/NNCF are missing or --quant does not map to NNCF."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as exc:
        raise VLMExportError(
            "--target openvino needs OpenVINO and NNCF", fix='pip install "vlm-export[openvino]"'
        ) from exc
    for role, recipe in (quant.recipes if quant else {}).items():
        _nncf_settings(role, recipe)


def to_openvino(
    source: str | Path,
    out: str | Path | None = None,
    quant: QuantSpec | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Add OpenVINO IR for every graph of the fp32 export ``source``; write to ``out`` (default: in place).

    The result is built in a temporary folder (unchanged ONNX files are hard-linked, or copied across
    file systems) and renamed into place, so a failure leaves ``source`` and ``out`` as they were.
    """
    try:
        import openvino as ov
    except ImportError as exc:
        raise VLMExportError("to-openvino needs OpenVINO and NNCF", fix='pip install "vlm-export[openvino]"') from exc
    step = progress or (lambda _m: None)
    source = Path(source)
    manifest = Manifest.load(source)
    manifest.verify_files(source, check_hashes=False)
    not_fp32 = [r for r, g in manifest.graphs.items() if g.precision != "fp32"]
    if quant is not None and not_fp32:
        raise VLMExportError(
            f"{source} is already quantized ({', '.join(not_fp32)}): NNCF compresses fp32 weights",
            fix="run to-openvino --quant on the fp32 export",
        )
    in_place = out is None or Path(out).absolute() == source.absolute()
    target = source if in_place else Path(out)
    with atomic_folder(target, overwrite=in_place or overwrite) as tmp:
        for item in source.iterdir():
            if item.name == IR_DIR:
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(item, tmp / item.name)
        (tmp / IR_DIR).mkdir()
        for role, graph in manifest.graphs.items():
            recipe = quant.recipe(role) if quant else GraphRecipe("fp32")
            step(f"converting {role} to OpenVINO IR ({recipe.label()})")
            settings = _nncf_settings(role, recipe)
            xml = f"{IR_DIR}/{role}.xml"
            try:
                with tempfile.TemporaryDirectory(dir=tmp) as scratch:
                    model, expanded = openvino_model(source / graph.file, Path(scratch))
                with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bar would pollute --json
                    applied = _compress(model, role, settings) if settings else None
                ov.save_model(model, str(tmp / xml), compress_to_fp16=recipe.precision == "fp16")
            except VLMExportError:
                raise
            except Exception as exc:  # OpenVINO and NNCF raise many types
                first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
                raise VLMExportError(f"OpenVINO conversion of {role} failed: {first[:300]}") from exc
            files = [xml, xml[: -len(".xml")] + ".bin"]
            manifest.graphs[role] = replace(
                graph,
                openvino={
                    "file": xml,
                    "sha256": {name: sha256_file(tmp / name) for name in files},
                    "precision": recipe.precision if applied or recipe.precision == "fp16" else graph.precision,
                    "compression": applied,
                    "openvino_version": ov.get_version(),
                    "gqa_heads_expanded": bool(expanded),
                },
            )
        manifest.save(tmp)
    return manifest


def _link_or_symlink(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        dst.symlink_to(src.resolve())


def _link_or_copy(src: Path, dst: Path) -> None:
    if src.suffix == ".data":  # onnx refuses external data with several hard links (a "hardlink attack")
        shutil.copy2(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
