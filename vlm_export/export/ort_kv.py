"""The decoder's onnxruntime variant: attention over a preallocated KV cache that is updated in place.

The portable ``decoder.onnx`` (standard opset-23 ``Attention``) takes the past keys/values and returns
``Concat(past, new)`` as the present: every decode step copies the whole cache (53 MB per token at 1165
tokens for SmolVLM-256M), and the generic kernel expands the KV heads for grouped-query attention. Both
cost as much as the weights' matmuls at long prompts. onnxruntime's ``com.microsoft.GroupQueryAttention``
instead appends the new rows into a buffer of fixed capacity when the present output is bound to the
past input's memory, and reads KV heads in groups. This module rewrites each
``Concat -> Attention`` pair of the exported decoder into that op, keeping every weight in the shared
external-data file, so the variant costs a few hundred kilobytes beside the portable graph.

The variant serves batch 1 (GroupQueryAttention derives positions from ``seqlens_k``, which left
padding would break); the runtime's onnxruntime backend uses it for generation and keeps the portable
graph for everything else. It assumes the exported mask is the causal one transformers builds for a
decoder (convert skips sliding-window decoders); the parity gate generates through the variant and the
tests compare its logits with the portable graph's for every family.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vlm_export.errors import VLMExportError
from vlm_export.manifest import GraphInfo, sha256_file

VARIANT_SUFFIX = ".kv.onnx"
MS_DOMAIN = "com.microsoft"


class NotRewritable(VLMExportError):
    """The decoder's attention does not have the Concat -> Attention shape this rewrite expects."""


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def shared_kv_graph(model: onnx.ModelProto, num_heads: int, num_kv_heads: int, head_dim: int) -> onnx.ModelProto:
    """A copy of ``model`` whose attention layers are GroupQueryAttention over in-place KV buffers.

    Inputs and outputs keep their names: ``present.N.key`` is the op's present output, which the runtime
    binds to the same buffer it passes as ``past_key_values.N.key``.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())  # the caller keeps its model
    graph = model.graph
    producers = _producers(graph)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for candidate in graph.node:
        for name in candidate.input:
            consumers.setdefault(name, []).append(candidate)
    past_names = {i.name for i in graph.input if i.name.startswith("past_key_values.")}
    present_names = {o.name for o in graph.output if o.name.startswith("present.")}
    attention = [n for n in graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
    if not attention or 2 * len(attention) != len(past_names):
        raise NotRewritable(f"expected one Attention per layer, found {len(attention)} for {len(past_names)} pasts")

    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*graph.value_info, *graph.input, *graph.output]}
    prelude, (seqlens, total) = _sequence_inputs()
    replaced: dict[int, list[onnx.NodeProto]] = {}
    removed: set[str] = set()
    shape_3d = numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "kv_rewrite_shape_bsh")
    shape_4d = numpy_helper.from_array(np.array([0, 0, num_heads, head_dim], dtype=np.int64), "kv_rewrite_shape_bsnh")
    for index, node in enumerate(attention):
        if len(node.input) < 3 or len(node.output) != 1 or _attr(node, "qk_matmul_output_mode", 0) != 0:
            raise NotRewritable(f"{node.name}: unexpected Attention signature")
        masked = len(node.input) > 3 and bool(node.input[3])
        if not masked and not _attr(node, "is_causal", 0):
            raise NotRewritable(f"{node.name}: attention is not causal (GroupQueryAttention always is)")
        if len(node.input) > 4 and any(node.input[4:]):
            raise NotRewritable(f"{node.name}: Attention takes its own past/present inputs")
        query, key_all, value_all = node.input[:3]
        concats = [producers.get(key_all), producers.get(value_all)]
        if any(c is None or c.op_type != "Concat" or len(c.input) != 2 for c in concats):
            raise NotRewritable(f"{node.name}: key/value do not come from Concat(past, new)")
        if any(c.input[0] not in past_names or c.output[0] not in present_names for c in concats):
            raise NotRewritable(f"{node.name}: the Concat does not join a past input into a present output")
        if any(_attr(c, "axis", None) not in (2, -2) for c in concats):
            raise NotRewritable(f"{node.name}: the cache is not concatenated on the sequence axis")
        k_cat, v_cat = concats
        tag = f"kv_rewrite_{index}"
        new_nodes = []
        packed = []
        for name, source in (("q", query), ("k", k_cat.input[1]), ("v", v_cat.input[1])):
            packed.append(_packed(source, f"{tag}_{name}", producers, ranks, new_nodes, shape_3d.name))
        scale = _attr(node, "scale", 0.0) or 1.0 / math.sqrt(head_dim)
        new_nodes.append(
            helper.make_node(
                "GroupQueryAttention",
                [*packed, k_cat.input[0], v_cat.input[0], seqlens, total],
                [f"{tag}_out_bsh", k_cat.output[0], v_cat.output[0]],
                name=f"{tag}_gqa",
                domain=MS_DOMAIN,
                num_heads=num_heads,
                kv_num_heads=num_kv_heads,
                scale=float(scale),
                softcap=float(_attr(node, "softcap", 0.0)),
            )
        )
        users = consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "Transpose" and list(_attr(users[0], "perm", [])) == [0, 2, 1, 3]:
            # the usual (batch, heads, seq, dim) -> (batch, seq, heads, dim) that follows: GQA's layout
            new_nodes.append(helper.make_node("Reshape", [f"{tag}_out_bsh", shape_4d.name], [users[0].output[0]]))
            removed.add(id(users[0]))
        else:
            new_nodes.append(helper.make_node("Reshape", [f"{tag}_out_bsh", shape_4d.name], [f"{tag}_out_bsnh"]))
            new_nodes.append(helper.make_node("Transpose", [f"{tag}_out_bsnh"], [node.output[0]], perm=[0, 2, 1, 3]))
        replaced[id(node)] = new_nodes
        removed.update(id(c) for c in concats)

    nodes = list(prelude)
    for node in graph.node:
        if id(node) in removed:
            continue
        nodes.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    graph.initializer.extend([shape_3d, shape_4d])
    if not any(op.domain == MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    _drop_unused_initializers(graph)
    return model


def _heads_view(name: str, producers: dict[str, onnx.NodeProto], ranks: dict[str, int]) -> str | None:
    """The (batch, seq, heads*dim) tensor behind ``Transpose(Reshape(x), [0, 2, 1, 3])``, else None."""
    transpose = producers.get(name)
    if transpose is None or transpose.op_type != "Transpose" or list(_attr(transpose, "perm", [])) != [0, 2, 1, 3]:
        return None
    reshape = producers.get(transpose.input[0])
    if reshape is None or reshape.op_type != "Reshape" or ranks.get(reshape.input[0]) != 3:
        return None
    return reshape.input[0]


def _packed(
    name: str,
    tag: str,
    producers: dict[str, onnx.NodeProto],
    ranks: dict[str, int],
    nodes: list[onnx.NodeProto],
    shape_3d: str,
) -> str:
    """``name`` (batch, heads, seq, dim) as (batch, seq, heads*dim), with as few nodes as possible.

    The projections come as ``linear -> Reshape -> Transpose [-> RotaryEmbedding]``: values are the
    linear output itself, and the rotary embedding can run on the packed 3-D layout (it takes
    ``num_heads``); anything else is transposed and reshaped back.
    """
    packed = _heads_view(name, producers, ranks)
    if packed is not None:
        return packed
    rotary = producers.get(name)
    if rotary is not None and rotary.op_type == "RotaryEmbedding" and _attr(rotary, "num_heads", 0):
        packed = _heads_view(rotary.input[0], producers, ranks)
        if packed is not None:
            attributes = {a.name: helper.get_attribute_value(a) for a in rotary.attribute}
            nodes.append(
                helper.make_node(
                    "RotaryEmbedding", [packed, *rotary.input[1:]], [f"{tag}_bsh"], domain=rotary.domain, **attributes
                )
            )
            return f"{tag}_bsh"
    nodes.append(helper.make_node("Transpose", [name], [f"{tag}_bsnh"], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Reshape", [f"{tag}_bsnh", shape_3d], [f"{tag}_bsh"]))
    return f"{tag}_bsh"


def _sequence_inputs() -> tuple[list[onnx.NodeProto], tuple[str, str]]:
    """seqlens_k = sum(attention_mask) - 1 and total_sequence_length, as GroupQueryAttention wants them."""
    one = helper.make_tensor("kv_rewrite_one", TensorProto.INT64, [], [1])
    axis = helper.make_tensor("kv_rewrite_axis", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Constant", [], ["kv_rewrite_one"], value=one),
        helper.make_node("Constant", [], ["kv_rewrite_axis"], value=axis),
        helper.make_node("ReduceSum", ["attention_mask", "kv_rewrite_axis"], ["kv_rewrite_sum"], keepdims=0),
        helper.make_node("Sub", ["kv_rewrite_sum", "kv_rewrite_one"], ["kv_rewrite_seqlens64"]),
        helper.make_node("Cast", ["kv_rewrite_seqlens64"], ["kv_rewrite_seqlens"], to=TensorProto.INT32),
        helper.make_node("Shape", ["attention_mask"], ["kv_rewrite_total_1d"], start=1, end=2),
        helper.make_node("Squeeze", ["kv_rewrite_total_1d"], ["kv_rewrite_total64"]),
        helper.make_node("Cast", ["kv_rewrite_total64"], ["kv_rewrite_total"], to=TensorProto.INT32),
    ]
    return nodes, ("kv_rewrite_seqlens", "kv_rewrite_total")


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes that contribute to ``outputs`` (the old attention masks become dead), in order."""
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
            for attribute in node.attribute:  # subgraphs (If/Loop) read outer names too
                if attribute.type == onnx.AttributeProto.GRAPH:
                    needed.update(i for n in attribute.g.node for i in n.input)
    return list(reversed(keep))


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {i for n in graph.node for i in n.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def add_shared_kv_variant(folder: Path, info: GraphInfo, num_heads: int, num_kv_heads: int, head_dim: int) -> GraphInfo:
    """Write ``decoder.kv.onnx`` beside ``info.file`` and return ``info`` recording both.

    The decoder's weights move to (or stay in) one external-data file that both graphs reference, so the
    variant adds only its graph. A decoder whose attention has another shape gets no variant.
    """
    from dataclasses import replace

    path = folder / info.file
    model = onnx.load(str(path), load_external_data=True)
    data_name = info.file + ".data"
    for name in list(info.sha256):
        if name != info.file:
            (folder / name).unlink(missing_ok=True)
    onnx.save(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_name,
        size_threshold=1024,
    )
    del model
    (folder / data_name).chmod(0o644)  # onnx writes it private; the folder is meant to be copied around
    stored = onnx.load(str(path), load_external_data=False)  # initializers are references into data_name
    files = {info.file: sha256_file(path), data_name: sha256_file(folder / data_name)}
    try:
        variant = shared_kv_graph(stored, num_heads, num_kv_heads, head_dim)
    except NotRewritable:
        return replace(info, sha256=files, onnxruntime=None)
    variant_file = info.file.removesuffix(".onnx") + VARIANT_SUFFIX
    onnx.save(variant, str(folder / variant_file))
    return replace(
        info,
        sha256=files,
        onnxruntime={
            "file": variant_file,
            "sha256": {variant_file: sha256_file(folder / variant_file)},
            "kv_cache": "shared-buffer",
            "attention": f"{MS_DOMAIN}.GroupQueryAttention",
            "batch": 1,
        },
    )
