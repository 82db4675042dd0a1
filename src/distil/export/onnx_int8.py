"""The int8 ONNX graph: output head and embedding table in 8-bit blocks, decoder layers float.

    model = quantise_head(onnx.load("export/onnx/model.onnx"), block_size=32)

The head MatMul (hidden -> vocabulary logits) becomes onnxruntime's `MatMulNBits`: uint8
weights with a float scale and a uint8 zero point per block of `block_size` inputs of each
vocabulary row, run with `accuracy_level` 4, which quantises the activations to int8 per
block of the same length on each call and sums the products in int32. The embedding
`Gather` becomes `GatherBlockQuantized` over the very same bytes when the embedding is tied
to the head (one 8-bit copy in the file, read row by row), over its own 8-bit table when it
is not. Everything else (the decoder layers, norms, attention) stays float32.

Why these choices (docs/export.md, *Which int8*, has the measurements):
- The head and the table are most of a small student's bytes (a 49,152-token vocabulary is
  two thirds of a 4-layer SmolLM2 student) and, at batch 1, bytes read are the time spent.
- Error in the head stays in the logits; error in a decoder layer is carried through every
  later layer. Quantising the decoder layers too (MatMulNBits or dynamic) took the 4-layer
  SmolLM2 student under 95% top-1 agreement, trained or not.
- A scale per block of 32 activations keeps an outlier's coarse steps inside its block;
  dynamic quantisation (`MatMulInteger`) has one scale for the whole activation tensor.
- 8-bit weights with float activations (`accuracy_level` 0/1) have no x86 kernel:
  onnxruntime dequantises the whole matrix on every call, slower than float32.
- The int8 x uint8 sums do not saturate on AVX2 without VNNI (checked against exact sums
  with extreme inputs; benchmarks/bench_int8.py --probe and tests/export/test_onnx_int8.py).
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper

from distil.errors import ExportError

HEAD_OUTPUT, TOKEN_IDS = "logits", "input_ids"
INT8_ACTIVATIONS = 4
"""MatMulNBits accuracy_level: activations quantised to int8 per block, int32 sums."""


def quantise_head(model: onnx.ModelProto, block_size: int) -> onnx.ModelProto:
    """`model` with its head and embedding table in 8-bit blocks (changed in place, returned)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    head, tied = untie_head(model)
    others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n is not head]
    quantiser = MatMulNBitsQuantizer(
        model,
        bits=8,
        block_size=block_size,
        is_symmetric=False,
        accuracy_level=INT8_ACTIVATIONS,
        nodes_to_exclude=others,
    )
    quantiser.process()
    quantised = quantiser.model.model
    for gather in _embedding_gathers(quantised.graph):
        _quantise_gather(quantised, gather, tied, block_size)
    return quantised


def untie_head(model: onnx.ModelProto) -> tuple[onnx.NodeProto, str | None]:
    """The head MatMul, its (K, V) weight made a constant; the tied (V, K) table's name, if any.

    A tied embedding reaches the head as Transpose(table): quantisers need a constant.
    """
    graph = model.graph
    head = _producer(graph, HEAD_OUTPUT)
    if head is None or head.op_type != "MatMul":
        raise ExportError(
            f"the graph's {HEAD_OUTPUT!r} output does not come from a MatMul; "
            "onnx-int8 quantises the output head of a causal language model"
        )
    head.name = head.name or "lm_head"
    name = head.input[1]
    if _initializer(graph, name) is not None:
        return head, None
    transpose = _producer(graph, name)
    table = _initializer(graph, transpose.input[0]) if transpose is not None else None
    perm = [a.ints for a in transpose.attribute if a.name == "perm"] if transpose else []
    if table is None or transpose.op_type != "Transpose" or (perm and list(perm[0]) != [1, 0]):
        raise ExportError(
            "the output head's weight is neither a constant nor a transposed "
            "embedding table; onnx-int8 cannot quantise it"
        )
    weight = numpy_helper.to_array(table).T  # (K, V)
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), name))
    if not any(name in node.input for node in graph.node if node is not head):
        graph.node.remove(transpose)
    return head, table.name


def _producer(graph: onnx.GraphProto, name: str) -> onnx.NodeProto | None:
    return next((node for node in graph.node if name in node.output), None)


def _initializer(graph: onnx.GraphProto, name: str) -> onnx.TensorProto | None:
    return next((tensor for tensor in graph.initializer if tensor.name == name), None)


def _embedding_gathers(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Gather nodes that look the input token ids up in a constant float table."""
    return [
        node
        for node in graph.node
        if node.op_type == "Gather"
        and node.input[1] == TOKEN_IDS
        and (table := _initializer(graph, node.input[0])) is not None
        and table.data_type == onnx.TensorProto.FLOAT
        and len(table.dims) == 2
    ]


def _quantise_gather(
    model: onnx.ModelProto, gather: onnx.NodeProto, tied: str | None, block_size: int
) -> None:
    """Replace a table Gather by GatherBlockQuantized over 8-bit rows, in place.

    Tied: the head's MatMulNBits bytes (V, K/block, block) are the table's own rows in
    blocks, so the lookup reads them and the float table leaves the file.
    """
    graph = model.graph
    table = _initializer(graph, gather.input[0])
    vocab, hidden = table.dims
    if gather.input[0] == tied:
        head = _producer(graph, HEAD_OUTPUT)
        data_name = head.input[1]
        scales, zero_points = (numpy_helper.to_array(_initializer(graph, name)) for name in head.input[2:4])
    else:
        data, scales, zero_points = _block_quantise(numpy_helper.to_array(table), block_size)
        data_name = f"{table.name}_Q8"
        graph.initializer.append(numpy_helper.from_array(data, data_name))
    prefix = f"{table.name}_gather"
    padded = scales.size // vocab * block_size  # K rounded up to whole blocks
    graph.initializer.extend(
        [  # (V, K/block, 1): the op wants the data's rank
            numpy_helper.from_array(scales.reshape(vocab, -1, 1), f"{prefix}_scales"),
            numpy_helper.from_array(zero_points.reshape(vocab, -1, 1), f"{prefix}_zero_points"),
            numpy_helper.from_array(np.array([0, 0, padded], dtype=np.int64), f"{prefix}_shape"),
        ]
    )
    rows = f"{prefix}_rows" if padded != hidden else gather.output[0]  # (B, T, padded)
    nodes = [
        helper.make_node(
            "GatherBlockQuantized",
            [data_name, gather.input[1], f"{prefix}_scales", f"{prefix}_zero_points"],
            [f"{prefix}_blocks"],
            name=f"{gather.name}_Q8",
            domain="com.microsoft",
            gather_axis=0,
            quantize_axis=2,
            block_size=block_size,
            bits=8,
        ),  # (B, T, K/block, block)
        helper.make_node("Reshape", [f"{prefix}_blocks", f"{prefix}_shape"], [rows]),
    ]
    if padded != hidden:  # drop the last block's padding
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([v], dtype=np.int64), f"{prefix}_{n}")
                for n, v in (("start", 0), ("end", hidden), ("axis", -1))
            ]
        )
        nodes.append(
            helper.make_node(
                "Slice", [rows, f"{prefix}_start", f"{prefix}_end", f"{prefix}_axis"], [gather.output[0]]
            )
        )
    position = list(graph.node).index(gather)
    graph.node.remove(gather)
    for node in reversed(nodes):
        graph.node.insert(position, node)
    if not any(table.name in node.input for node in graph.node):
        graph.initializer.remove(table)


def _block_quantise(table: np.ndarray, block_size: int) -> tuple[np.ndarray, ...]:
    """(V, K) float32 -> uint8 (V, K/block, block), scales and zero points (V, K/block), by
    the quantiser MatMulNBits weights go through."""
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        DefaultWeightOnlyQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=False, bits=8, accuracy_level=INT8_ACTIVATIONS
    )
    return DefaultWeightOnlyQuantizer(config).qbits_block_quant(np.ascontiguousarray(table.T))
