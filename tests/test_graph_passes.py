"""Export-time graph rewrites: the same function with fewer, wider products."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from vlm_export.export.graph_passes import fuse_sibling_matmuls


def _model(shared_weight: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = {f"w{i}": rng.standard_normal((8, n)).astype(np.float32) for i, n in enumerate((8, 4, 4, 6))}
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["q"]),
        helper.make_node("MatMul", ["x", "w1"], ["k"]),
        helper.make_node("MatMul", ["x", "w2"], ["v"]),
        helper.make_node("Relu", ["x"], ["h"]),
        helper.make_node("MatMul", ["h", "w3"], ["other"]),  # no sibling: untouched
    ]
    outputs = ["q", "k", "v", "other"]
    if shared_weight:  # a weight used twice cannot be folded into a concatenation
        nodes.append(helper.make_node("MatMul", ["h", "w1"], ["reuse"]))
        outputs.append("reuse")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_siblings_become_one_matmul_and_a_split():
    model = _model()
    x = np.random.default_rng(1).standard_normal((2, 3, 8)).astype(np.float32)
    expected = _run(model, x)
    assert fuse_sibling_matmuls(model) == 1
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("MatMul") == 2 and ops.count("Split") == 1
    assert {"w0", "w1", "w2"}.isdisjoint(init.name for init in model.graph.initializer)
    for got, want in zip(_run(model, x), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_weights_used_elsewhere_are_left_alone():
    model = _model(shared_weight=True)
    x = np.ones((1, 2, 8), np.float32)
    expected = _run(model, x)
    assert fuse_sibling_matmuls(model) == 1  # q and v still merge; k's weight is shared
    assert "w1" in {init.name for init in model.graph.initializer}
    for got, want in zip(_run(model, x), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_nothing_to_fuse_changes_nothing():
    model = _model()
    del model.graph.node[1:3]
    del model.graph.output[1:3]
    before = model.SerializeToString()
    assert fuse_sibling_matmuls(model) == 0
    assert model.SerializeToString() == before
