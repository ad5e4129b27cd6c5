"""Export one :class:`GraphExport` to an ONNX file with the torch.export-based (dynamo) exporter.

Why dynamo: at opset 23 it emits ONNX's own Attention, RotaryEmbedding and RMSNormalization ops,
which halves the decoder's node count and is the largest single speed-up measured for decode
(``shared/export-notes.md``). Older opsets stay available for runtimes that cannot read those ops.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import onnx
import torch

from vlm_export.export.graph_passes import fuse_sibling_matmuls
from vlm_export.export.patches import export_patches
from vlm_export.manifest import GraphInfo, TensorInfo, sha256_file
from vlm_export.models.base import GraphExport

DEFAULT_OPSET = 23
MIN_OPSET = 18  # the dynamo exporter's lowest; it cannot write 17
# A single protobuf cannot exceed 2 GiB; stay well below it before switching to external data.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000

_ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}


def _dynamic_shapes(graph: GraphExport) -> tuple:
    dims: dict[str, torch.export.Dim] = {}

    def dim(name: str) -> torch.export.Dim:
        if name not in dims:
            dims[name] = torch.export.Dim(name.replace(" ", "_"))
        return dims[name]

    specs = []
    for name in graph.inputs:
        axes = graph.dynamic_axes.get(name, {})
        specs.append({axis: dim(label) for axis, label in axes.items()} or None)
    # torch.export wants the specs of a *varargs parameter nested in one tuple.
    params = list(inspect.signature(graph.module.forward).parameters.values())
    if params and params[-1].kind is inspect.Parameter.VAR_POSITIONAL:
        fixed = len(params) - 1
        return (*specs[:fixed], tuple(specs[fixed:]))
    return tuple(specs)


def _parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _name_dynamic_axes(model: onnx.ModelProto, graph: GraphExport) -> None:
    """Give every dynamic dimension the name the family declared (the exporter makes up its own)."""
    for value in list(model.graph.input) + list(model.graph.output):
        axes = graph.dynamic_axes.get(value.name, {})
        for axis, label in axes.items():
            dims = value.type.tensor_type.shape.dim
            if axis < len(dims) and not dims[axis].HasField("dim_value"):
                dims[axis].dim_param = label


def _default_domain_opset(model: onnx.ModelProto) -> int:
    return next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def _external_files(model: onnx.ModelProto) -> list[str]:
    names = set()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                names.add(entry.value)
    return sorted(names)


def _tensor_infos(values) -> list[TensorInfo]:
    infos = []
    for value in values:
        tensor = value.type.tensor_type
        shape: list[int | str] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim
        ]
        infos.append(TensorInfo(value.name, _ONNX_DTYPES.get(tensor.elem_type, str(tensor.elem_type)), shape))
    return infos


def export_graph(graph: GraphExport, folder: Path, opset: int = DEFAULT_OPSET) -> GraphInfo:
    """Write ``folder/<role>.onnx`` (plus ``.onnx.data`` for models over the protobuf limit)."""
    if not MIN_OPSET <= opset <= DEFAULT_OPSET:
        raise ValueError(f"opset {opset} is not supported; use {MIN_OPSET}..{DEFAULT_OPSET}")
    path = folder / f"{graph.role}.onnx"
    external = _parameter_bytes(graph.module) > EXTERNAL_DATA_THRESHOLD
    with warnings.catch_warnings(), torch.no_grad(), export_patches(opset):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph.module,
            tuple(graph.inputs.values()),
            input_names=list(graph.inputs),
            output_names=graph.output_names,
            dynamic_shapes=_dynamic_shapes(graph),
            opset_version=opset,
            dynamo=True,
            external_data=external,
            verbose=False,
        )
    program.save(str(path), external_data=external)
    model = onnx.load(str(path), load_external_data=False)
    _name_dynamic_axes(model, graph)
    fuse_sibling_matmuls(model)  # embedded weights only: external-data ones stay as exported
    onnx.save(model, str(path))  # external-data references, if any, are kept as they are
    onnx.checker.check_model(str(path), full_check=False)
    files = [path] + [folder / name for name in _external_files(model)]
    return GraphInfo(
        file=path.name,
        sha256={f.name: sha256_file(f) for f in files},
        inputs=_tensor_infos(model.graph.input),
        outputs=_tensor_infos(model.graph.output),
        precision="fp32",
        opset=_default_domain_opset(model),
        summary=graph.summary,
    )
