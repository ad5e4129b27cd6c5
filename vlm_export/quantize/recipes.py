"""Compress one ONNX graph with onnxruntime's own tooling, and say what it really got.

    fp16  onnxruntime.transformers.float16, fp32 inputs and outputs kept
    int8  onnxruntime.quantization.quantize_dynamic: per-channel int8 MatMul weights (7-bit range, so
          x86 without VNNI does not saturate), activations quantized at run time (MatMul only:
          ConvInteger has no CPU kernel)
    int4  MatMulNBitsQuantizer: block-wise weight-only MatMulNBits, and GatherBlockQuantized for
          embedding tables

What a recipe cannot do falls back to the next larger precision, and the result says so: onnxruntime
quantizes Gather (embedding tables) only to 4 bits, so ``embed=int8`` becomes fp16; a MatMul the 4-bit
quantizer leaves alone gets int8; a graph with nothing to quantize stays fp32.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from vlm_export.errors import VLMExportError
from vlm_export.quantize.spec import GraphRecipe

EXTERNAL_DATA_THRESHOLD = 1_800_000_000


@dataclass
class QuantResult:
    precision: str  # what the graph really got, e.g. "int4", "int4+int8", "fp16"
    details: dict = field(default_factory=dict)


def _weight_nodes(model: onnx.ModelProto, op_type: str) -> list[str]:
    """Names of ``op_type`` nodes whose weight (MatMul input 1, Gather input 0) is a float initializer."""
    floats = {
        init.name
        for init in model.graph.initializer
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    index = 1 if op_type == "MatMul" else 0
    return [
        n.name for n in model.graph.node if n.op_type == op_type and len(n.input) > index and n.input[index] in floats
    ]


def _ensure_node_names(model: onnx.ModelProto) -> None:
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def _save(model: onnx.ModelProto, dst: Path) -> None:
    external = sum(len(init.raw_data) for init in model.graph.initializer) > EXTERNAL_DATA_THRESHOLD
    onnx.save(model, str(dst), save_as_external_data=external, location=dst.name + ".data" if external else None)


def _graph_bytes(path: Path) -> int:
    """The graph file plus its external data (a decoder keeps its weights in ``decoder.onnx.data``)."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def _copy(src: Path, dst: Path) -> QuantResult:
    model = onnx.load(str(src))
    _save(model, dst)
    return QuantResult("fp32")


def _fp16(src: Path, dst: Path, reason: str | None = None) -> QuantResult:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, disable_shape_infer=True)
    wrapped = OnnxModel(model)
    wrapped.topological_sort()  # the converter appends its input casts at the end; ONNX wants order
    _save(wrapped.model, dst)
    return QuantResult("fp16", {"fallback": reason} if reason else {})


@contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizers log advice to the root logger and divide by zero scales of empty blocks."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            yield
    finally:
        root.setLevel(level)


def int8_settings(target: str) -> dict:
    """quantize_dynamic arguments for an int8 target CPU.

    ``portable``: int8 weights in a 7-bit range. x86 CPUs without VNNI multiply u8 x s8 with a
    saturating 16-bit add (vpmaddubsw); measured on the tiny LLaVA decoder (AVX2): logits cosine vs fp32
    0.9981 with full-range weights, 0.9999 with reduce_range; ARM NEON gave 0.9999 either way, and x86
    and ARM then agree to 1e-7. Other targets take optimum's AutoQuantizationConfig for that CPU (weight
    type, range, symmetry), applied to MatMul only (ConvInteger has no CPU kernel; int8 Gather would
    dequantize the whole table per call).
    """
    from onnxruntime.quantization import QuantType

    if target == "portable":
        return {"weight_type": QuantType.QInt8, "per_channel": True, "reduce_range": True, "extra_options": {}}
    try:
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
    except ImportError as exc:
        raise VLMExportError(
            f"int8 target {target!r} reads optimum's presets", fix="pip install optimum-onnx, or use target=portable"
        ) from exc
    config = getattr(AutoQuantizationConfig, target)(is_static=False, per_channel=True)
    return {
        "weight_type": config.weights_dtype,
        "per_channel": config.per_channel,
        "reduce_range": config.reduce_range,
        "extra_options": {
            "WeightSymmetric": config.weights_symmetric,
            "ActivationSymmetric": config.activations_symmetric,
        },
    }


def _int8_dynamic(src: Path, dst: Path, nodes: list[str] | None = None, target: str = "portable") -> None:
    from onnxruntime.quantization import quantize_dynamic

    settings = int8_settings(target)
    with _quiet():
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
            weight_type=settings["weight_type"],
            per_channel=settings["per_channel"],
            reduce_range=settings["reduce_range"],
            use_external_data_format=_graph_bytes(src) > EXTERNAL_DATA_THRESHOLD,
            extra_options={"MatMulConstBOnly": True, **settings["extra_options"]},
        )


def _int8(src: Path, dst: Path, target: str = "portable") -> QuantResult:
    model = onnx.load(str(src), load_external_data=False)
    matmuls, gathers = _weight_nodes(model, "MatMul"), _weight_nodes(model, "Gather")
    if not matmuls and gathers:
        return _fp16(src, dst, "onnxruntime quantizes embedding tables (Gather) to 4 bits only")
    if not matmuls:
        result = _copy(src, dst)
        result.details["fallback"] = "no MatMul weights to quantize"
        return result
    _int8_dynamic(src, dst, target=target)
    return QuantResult("int8", {"int8_matmuls": len(matmuls), "int8_target": target})


def _int4(src: Path, dst: Path, recipe: GraphRecipe) -> QuantResult:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    model = onnx.load(str(src))
    _ensure_node_names(model)
    ops = ("MatMul", "Gather")
    axes = (("MatMul", 0), ("Gather", 1))
    config = DefaultWeightOnlyQuantConfig(
        block_size=recipe.block_size,
        is_symmetric=recipe.symmetric,
        accuracy_level=recipe.accuracy_level,
        bits=4,
        op_types_to_quantize=ops,
        quant_axes=axes,
    )
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=recipe.block_size,
        is_symmetric=recipe.symmetric,
        accuracy_level=recipe.accuracy_level,
        op_types_to_quantize=ops,
        quant_axes=axes,
        algo_config=config,
    )
    with _quiet():
        quantizer.process()
    quantized = quantizer.model.model
    counts = {op: sum(n.op_type == op for n in quantized.graph.node) for op in ("MatMulNBits", "GatherBlockQuantized")}
    left = _weight_nodes(quantized, "MatMul")
    details = {"int4_matmuls": counts["MatMulNBits"], "int4_gathers": counts["GatherBlockQuantized"]}
    if not left:
        _save(quantized, dst)
        return QuantResult("int4" if any(counts.values()) else "fp32", details)
    # the 4-bit quantizer skipped some MatMuls: the next precision up, int8, for exactly those
    staging = dst.with_name(dst.stem + ".int4-stage.onnx")
    _save(quantized, staging)
    try:
        _int8_dynamic(staging, dst, nodes=left)
    finally:
        for leftover in staging.parent.glob(staging.name + "*"):
            leftover.unlink()
    details["int8_matmuls_fallback"] = len(left)
    return QuantResult("int4+int8" if any(counts.values()) else "int8", details)


def quantize_graph(src: Path, dst: Path, recipe: GraphRecipe) -> QuantResult:
    """Write the compressed ``src`` to ``dst`` (the same folder layout as the exporter's)."""
    if recipe.precision == "fp32":
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
            data = src.with_name(src.name + ".data")
            if data.exists():
                shutil.copyfile(data, dst.with_name(dst.name + ".data"))
        return QuantResult("fp32")
    if recipe.precision == "fp16":
        return _fp16(src, dst)
    if recipe.precision == "int8":
        return _int8(src, dst, recipe.target)
    return _int4(src, dst, recipe)
