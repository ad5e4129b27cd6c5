"""Graph rewrites applied to every exported graph, with standard ops only (any runtime reads the result).

Why: at decode time a transformer layer multiplies one row of activations by several weight matrices
that share that row (query, key and value projections; gate and up projections). As separate MatMuls,
each small product (SmolVLM-256M's key/value projections are 576x192) is split across threads and
scheduled on its own; concatenated along the output axis they become one wider product followed by a
Split, which CPUs run closer to memory bandwidth, and quantizers treat per output column exactly as before.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _constant_matrix(name: str, initializers: dict[str, onnx.TensorProto]) -> np.ndarray | None:
    tensor = initializers.get(name)
    if tensor is None or len(tensor.dims) != 2 or tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
        return None
    return numpy_helper.to_array(tensor)


def fuse_sibling_matmuls(model: onnx.ModelProto) -> int:
    """Merge MatMuls that read the same input and multiply it by constant matrices; returns how many
    groups were merged. Initializers stored outside the protobuf are left alone."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = defaultdict(int)
    for node in graph.node:
        for name in node.input:
            uses[name] += 1
    groups: dict[str, list[tuple[onnx.NodeProto, np.ndarray]]] = defaultdict(list)
    for node in graph.node:
        if node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and uses[node.input[1]] == 1:
            weight = _constant_matrix(node.input[1], initializers)
            if weight is not None:
                groups[node.input[0]].append((node, weight))

    replaced: dict[int, list[onnx.NodeProto]] = {}
    dropped: set[int] = set()
    unused: set[str] = set()
    fused = 0
    for source, members in groups.items():
        if len(members) < 2 or len({w.shape[0] for _, w in members}) != 1 or len({w.dtype for _, w in members}) != 1:
            continue
        fused += 1
        weight_name = f"fused_matmul_{fused}_weight"
        graph.initializer.append(numpy_helper.from_array(np.concatenate([w for _, w in members], axis=1), weight_name))
        widths = np.array([w.shape[1] for _, w in members], dtype=np.int64)
        sizes = numpy_helper.from_array(widths, f"{weight_name}_split")
        graph.initializer.append(sizes)
        product = f"fused_matmul_{fused}_out"
        first, *rest = (node for node, _ in members)
        replaced[id(first)] = [
            helper.make_node("MatMul", [source, weight_name], [product], name=f"fused_matmul_{fused}"),
            helper.make_node(
                "Split",
                [product, sizes.name],
                [node.output[0] for node, _ in members],
                axis=-1,
                name=f"fused_matmul_{fused}_split",
            ),
        ]
        dropped.update(id(node) for node in rest)
        unused.update(node.input[1] for node, _ in members)
    if not fused:
        return 0
    nodes = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        nodes.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [init for init in graph.initializer if init.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return fused
