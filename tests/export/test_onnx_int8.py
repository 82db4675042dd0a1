"""int8 ONNX: which ops are quantised (head and table in 8-bit blocks, decoder layers float),
a tied table stored once, and int8 sums that do not clip on the CPU running the tests."""

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from distil.errors import ExportError
from distil.export.onnx import export_onnx, quantize_int8
from distil.export.onnx_int8 import quantise_head
from distil.onnx_runtime import OnnxGenerator
from tests.export.conftest import PROMPTS


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    """A tiny student whose head is its embedding table, exported float32 and int8."""
    from distil.models import LoadedModel, build_tiny

    model, tokenizer = build_tiny("tiny-student")
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    root = tmp_path_factory.mktemp("tied")
    fp32 = export_onnx(LoadedModel(model.float().eval(), tokenizer, "tiny-tied"), root / "onnx")
    return fp32, quantize_int8(fp32, root / "onnx-int8")


def producer(graph: onnx.GraphProto, name: str) -> onnx.NodeProto:
    return next(node for node in graph.node if name in node.output)


def attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def test_head_and_table_are_8bit_blocks_and_the_layers_stay_float(tied):
    fp32_graph = onnx.load(str(tied[0] / "model.onnx")).graph
    graph = onnx.load(str(tied[1] / "model.onnx")).graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    head = producer(graph, "logits")
    assert head.op_type == "MatMulNBits"
    assert attributes(head) | {"K": 0, "N": 0} == {
        "K": 0,
        "N": 0,
        "bits": 8,
        "block_size": 32,
        "accuracy_level": 4,
    }  # int8 activations
    assert initializers[head.input[1]].data_type == TensorProto.UINT8
    ops, before = Counter(n.op_type for n in graph.node), Counter(n.op_type for n in fp32_graph.node)
    assert ops["GatherBlockQuantized"] == 1 and ops["Gather"] == before["Gather"] - 1
    assert ops["MatMul"] == before["MatMul"] - 1  # every decoder MatMul is still float
    assert not {"MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear"} & set(ops)
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in initializers:
            assert initializers[node.input[1]].data_type == TensorProto.FLOAT


def test_a_tied_table_is_stored_once_in_8_bits(tied):
    graph = onnx.load(str(tied[1] / "model.onnx")).graph
    lookup = next(node for node in graph.node if node.op_type == "GatherBlockQuantized")
    assert lookup.input[0] == producer(graph, "logits").input[1]  # the head's own bytes
    tables = [t for t in graph.initializer if np.prod(t.dims) >= 261 * 32]  # vocab x hidden
    assert [t.data_type for t in tables] == [TensorProto.UINT8]


def test_tied_int8_logits_agree_with_float(tied):
    fp32, int8 = OnnxGenerator(tied[0]), OnnxGenerator(tied[1])
    agree, differ = [], []
    for prompt in PROMPTS:
        ids = fp32.encode(prompt) + [40, 41, 42, 43]
        expected, got = (g.continuation_logits(ids[:2], ids[2:]) for g in (fp32, int8))
        agree.append((expected.argmax(-1) == got.argmax(-1)).mean())
        differ.append(np.abs(expected - got).max())
    assert np.mean(agree) >= 0.95 and 1e-4 < max(differ) < 0.1


def head_graph(hidden: int, tied: bool, vocab: int = 64) -> onnx.ModelProto:
    """input_ids -> Gather(table) -> MatMul(table^T, or a weight of its own) -> logits."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(vocab, hidden)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["embedding"], name="embed")]
    weights = [numpy_helper.from_array(table, "table")]
    if tied:
        nodes.append(helper.make_node("Transpose", ["table"], ["head_weight"], perm=[1, 0]))
    else:
        weights.append(
            numpy_helper.from_array(rng.normal(size=(hidden, vocab)).astype(np.float32), "head_weight")
        )
    nodes.append(helper.make_node("MatMul", ["embedding", "head_weight"], ["logits"], name="head"))
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "T"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", "T", vocab])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(model: onnx.ModelProto, ids: np.ndarray) -> np.ndarray:
    from onnxruntime import InferenceSession

    session = InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids})[0]


@pytest.mark.parametrize("tied_table", [True, False])
def test_the_lookup_returns_the_8bit_rows_the_head_multiplies_by(tied_table):
    ids = np.array([[0, 5, 63], [7, 7, 1]])
    model = head_graph(64, tied_table)
    expected = run(model, ids)  # (B, T, V)
    quantised = quantise_head(head_graph(64, tied_table), block_size=32)
    ops = [node.op_type for node in quantised.graph.node]
    assert ops == ["GatherBlockQuantized", "Reshape", "MatMulNBits"]
    blocks = [
        t for t in quantised.graph.initializer if t.data_type == TensorProto.UINT8 and t.dims[-1:] == [32]
    ]  # (V, K/32, 32) weight bytes, not zero points
    assert len(blocks) == (1 if tied_table else 2)
    assert not any(t.dims == [64, 64] for t in quantised.graph.initializer)  # no float table
    got = run(quantised, ids)
    scale = np.abs(expected).max()
    assert 1e-5 < np.abs(got - expected).max() / scale < 2e-2


def test_a_hidden_size_off_the_block_drops_the_padding_of_its_last_block():
    ids = np.array([[0, 5, 63]])
    expected = run(head_graph(48, tied=True), ids)
    quantised = quantise_head(head_graph(48, tied=True), block_size=32)
    ops = [node.op_type for node in quantised.graph.node]
    assert ops == ["GatherBlockQuantized", "Reshape", "Slice", "MatMulNBits"]
    assert not any(t.name == "table" for t in quantised.graph.initializer)
    got = run(quantised, ids)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 2e-2


def test_a_graph_whose_logits_are_not_a_matmul_is_refused():
    model = head_graph(64, tied=False)
    model.graph.node[-1].op_type = "Gemm"
    with pytest.raises(ExportError, match="does not come from a MatMul"):
        quantise_head(model, block_size=32)


def test_int8_sums_do_not_clip_on_this_cpu():
    """1 x 1 products at the top of both 8-bit ranges: a kernel that adds pairs of u8 x s8
    products into int16 (vpmaddubsw, x86 without VNNI) would clip them; exact sums do not."""
    k, vocab = 256, 64
    rng = np.random.default_rng(0)
    ones, random = np.ones(k), rng.integers(0, 2, k).astype(float)
    weight = np.stack([ones, -ones, random, -random] * (vocab // 4), axis=1)  # (K, V)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["logits"], name="head")],
        "sums",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["M", vocab])],
        [numpy_helper.from_array(weight.astype(np.float32), "weight")],
    )
    model = quantise_head(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), block_size=32
    )
    from onnxruntime import InferenceSession

    session = InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for x in (np.stack([ones, random, 1 - random]), -np.stack([ones, random])):  # (M, K)
        for rows in (x, x[:1]):  # the prefill and the decoding kernels
            exact = rows @ weight
            got = session.run(None, {"x": rows.astype(np.float32)})[0]
            assert np.abs(got - exact).max() <= 1e-5 * np.abs(exact).max()
