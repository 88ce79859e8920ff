"""decompose: exact against ONNX Runtime's LRN kernel where it runs, lrnconv.reference elsewhere."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto

import lrnconv
from lrnconv.passes.decompose import POWERS, QUARTER_POWERS, WINDOWS, inverse_root_power, root_power_ops
from lrnconv.reference import lrn_onnx
from conftest import lrn_model, lrn_scale_inputs, max_rel, run


def decomposed(model, **options):
    result = lrnconv.convert(model, "decompose", options=options)
    ops = {n.op_type for n in result.model.graph.node}
    assert "LRN" not in ops
    onnx.checker.check_model(result.model, full_check=True)
    assert [o.name for o in result.model.graph.output] == ["y"]
    return result


def term_fraction(x, size, alpha, bias):
    """Median of alpha/size * window sum over bias: the test is vacuous if this is tiny."""
    sq = x.astype(np.float64) ** 2
    lo, hi = (size - 1) // 2, size // 2
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    window = sum(padded[:, i:i + x.shape[1]] for i in range(size))
    return float(np.median(alpha / size * window / bias))


lrn_params = dict(
    size=st.integers(1, 9),
    channels=st.integers(1, 64),
    batch=st.integers(2, 4),
    alpha=st.floats(1e-5, 1e-2),
    beta=st.one_of(st.sampled_from([0.5, 0.75, 1.0]), st.floats(0.1, 2.0)),
    bias=st.floats(0.5, 3.0),
    window=st.sampled_from(WINDOWS),
    power=st.sampled_from(POWERS),
)


@settings(max_examples=40, deadline=None)
@given(**lrn_params)
def test_matches_onnxruntime_native_lrn(size, channels, batch, alpha, beta, bias, window, power):
    """float32, rank 4, odd size: ONNX Runtime's own CPU kernel is the oracle."""
    size = size | 1
    if batch == channels:
        batch += 1
    model = lrn_model(size, channels=channels, alpha=alpha, beta=beta, bias=bias, spatial=3)
    x = lrn_scale_inputs((batch, channels, 3, 3), size, alpha, bias)
    assert term_fraction(x, size, alpha, bias) > 0.05 or channels < size
    expected = run(model, {"x": x})["y"]
    got = run(decomposed(model, window=window, power=power).model, {"x": x})["y"]
    assert max_rel(got, expected) <= 1e-5


@settings(max_examples=40, deadline=None)
@given(rank=st.sampled_from([3, 4, 5]), **lrn_params)
def test_matches_reference_where_onnxruntime_refuses(rank, size, channels, batch, alpha, beta, bias, window, power):
    """Even sizes and ranks 3 and 5 (ONNX Runtime's CPU kernel refuses them): numpy reference."""
    if size % 2 and rank == 4:
        size += 1
    if batch == channels:
        batch += 1
    model = lrn_model(size, channels=channels, rank=rank, alpha=alpha, beta=beta, bias=bias, spatial=3)
    x = lrn_scale_inputs((batch, channels) + (3,) * (rank - 2), size, alpha, bias, seed=size)
    expected = lrn_onnx(x.astype(np.float64), size, alpha, beta, bias)
    got = run(decomposed(model, window=window, power=power).model, {"x": x})["y"]
    assert max_rel(got, expected) <= 1e-5


@pytest.mark.parametrize("size", [2, 3, 4, 5])
@pytest.mark.parametrize("elem_type", [TensorProto.FLOAT16], ids=["float16"])
def test_float16_within_float16_rounding(size, elem_type):
    model = lrn_model(size, channels=12, elem_type=elem_type, alpha=1e-3, bias=2.0)
    x = lrn_scale_inputs((3, 12, 5, 5), size, 1e-3, 2.0, seed=1)
    x16 = x.astype(np.float16)
    expected = lrn_onnx(x16.astype(np.float64), size, 1e-3, 0.75, 2.0)
    result = decomposed(model)
    got = run(result.model, {"x": x16})["y"]
    assert got.dtype == np.float16
    # one float16 rounding of the result: relative 2^-11
    assert max_rel(got, expected) <= 2 ** -10
    assert [n.op_type for n in result.model.graph.node][0] == "Cast"


@pytest.mark.parametrize("opset", [7, 9, 10, 11, 12, 13, 17, 21])
@pytest.mark.parametrize("window", WINDOWS)
def test_ops_valid_for_the_model_opset(opset, window):
    model = lrn_model(5, opset=opset)
    result = decomposed(model, window=window)
    assert [(o.domain, o.version) for o in result.model.opset_import] == [("", opset)]
    x = lrn_scale_inputs((2, 7, 5, 5), 5, 1e-2, 1.5)
    assert max_rel(run(result.model, {"x": x})["y"], run(model, {"x": x})["y"]) <= 1e-5
    used = result.sites[0].details["window"]
    assert used == ("pool" if window == "cumsum" and opset < 11 else window)


def test_dynamic_batch_and_spatial_dims():
    model = lrn_model(5, channels=16, dynamic_spatial=True)
    result = decomposed(model)
    for shape in [(1, 16, 4, 9), (5, 16, 13, 2)]:
        x = lrn_scale_inputs(shape, 5, 1e-2, 1.5, seed=shape[0])
        assert max_rel(run(result.model, {"x": x})["y"], run(model, {"x": x})["y"]) <= 1e-5


def test_unknown_channels_and_rank_use_the_flattening_pool():
    """No shape information at all: the pool formulation still works for any rank."""
    x_info = onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y_info = onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = onnx.helper.make_node("LRN", ["x"], ["y"], name="norm", size=3, alpha=1e-2, beta=0.75, bias=1.0)
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "g", [x_info], [y_info]),
                                   opset_imports=[onnx.helper.make_opsetid("", 13)])
    result = lrnconv.convert(model, "decompose", options={"window": "conv"})
    assert result.sites[0].details["window"] == "pool"
    for shape in [(2, 5, 3), (2, 5, 3, 4), (3, 5, 2, 3, 4)]:
        x = lrn_scale_inputs(shape, 3, 1e-2, 1.0)
        assert max_rel(run(result.model, {"x": x})["y"], lrn_onnx(x.astype(np.float64), 3, 1e-2, 0.75, 1.0)) <= 1e-5


@pytest.mark.parametrize("beta,power,power_used,ops", [
    (0.75, "roots", "roots", {"Sqrt", "Div"}), (0.5, "roots", "roots", {"Sqrt", "Div"}),
    (1.0, "roots", "roots", {"Div"}), (0.6, "roots", "explog", {"Exp", "Log"}),
    (0.0, "roots", "identity", {"Identity"}),
    (0.75, "inverse", "inverse", {"Sqrt", "Div", "Mul"}), (0.5, "inverse", "inverse", {"Sqrt", "Reciprocal"}),
    (0.75, "blocked", "blocked", {"Sqrt", "Div", "MaxPool", "Mul"}), (0.6, "blocked", "explog", {"Exp", "Log"})])
def test_power_forms(beta, power, power_used, ops):
    model = lrn_model(3, beta=beta)
    result = decomposed(model, power=power)
    emitted = {n.op_type for n in result.model.graph.node}
    assert result.sites[0].details["power"] == power_used
    assert ops <= emitted and "Pow" not in emitted
    x = lrn_scale_inputs((2, 7, 5, 5), 3, 1e-2, 1.5)
    assert max_rel(run(result.model, {"x": x})["y"], lrn_onnx(x.astype(np.float64), 3, 1e-2, beta, 1.5)) <= 1e-5


@pytest.mark.parametrize("q", range(1, 9))
@pytest.mark.parametrize("power", QUARTER_POWERS)
def test_every_quarter_step_beta(q, power):
    """beta = q/4 up to 2: built from Sqrt, Mul and one division, float32-exact."""
    beta = q / 4
    model = lrn_model(5, channels=11, beta=beta, bias=2.0, alpha=1e-3, spatial=4)
    result = decomposed(model, power=power)
    emitted = [n.op_type for n in result.model.graph.node]
    assert not {"Pow", "Exp", "Log"} & set(emitted)
    x = lrn_scale_inputs((3, 11, 4, 4), 5, 1e-3, 2.0, seed=q)
    expected = lrn_onnx(x.astype(np.float64), 5, 1e-3, beta, 2.0)
    assert max_rel(run(result.model, {"x": x})["y"], expected) <= 1e-6


@pytest.mark.parametrize("q,ops", [(1, 3), (2, 2), (3, 3), (4, 1), (5, 4), (6, 3), (7, 4), (8, 2)])
def test_inverse_power_takes_the_fewer_ops(q, ops):
    """d^-q/4 as 1/d^(q/4) or as d^(r/4)/d^k, whichever is shorter (beta = 0.75: sqrt(sqrt(d))/d)."""
    from lrnconv.nodes import OpBuilder
    from lrnconv.strategy import NameAllocator
    import onnx_graphsurgeon as gs

    b = OpBuilder(NameAllocator(set()), "site", 13, np.float32)
    inverse_root_power(b, gs.Variable("d"), q)
    assert len(b.nodes) == ops == min(root_power_ops(q) + 1, ops)
    if q == 3:
        assert [n.op for n in b.nodes] == ["Sqrt", "Sqrt", "Div"]


@pytest.mark.parametrize("rank,elem_type,used", [
    (4, TensorProto.FLOAT, "blocked"), (3, TensorProto.FLOAT, "inverse"), (5, TensorProto.FLOAT, "inverse"),
    (4, TensorProto.FLOAT16, "inverse")], ids=["rank4", "rank3", "rank5", "float16"])
def test_blocked_power_only_where_onnxruntime_blocks(rank, elem_type, used):
    """The 1x1 MaxPool that carries d^-beta into the NCHWc layout exists only on rank-4 float32 sites."""
    model = lrn_model(3, rank=rank, elem_type=elem_type)
    result = decomposed(model, power="blocked")
    details = result.sites[0].details
    assert details["power"] == used
    assert ("MaxPool" in details["ops"]) == (used == "blocked")
    if used != "blocked":
        assert details["power_requested"] == "blocked"


def onnxruntime_layout_ops(model):
    """Op types of the graph ONNX Runtime runs (after its NCHWc transformer), in order."""
    import os
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


CONV_LRN_POOL = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 32, 9, 9] x) => (float[N, 32, 4, 4] z) {
    c = Conv<kernel_shape = [1, 1]>(x, w)
    r = Relu(c)
    y = LRN<size = 5, alpha = 0.01, beta = 0.75, bias = 1.0>(r)
    z = MaxPool<kernel_shape = [3, 3], strides = [2, 2]>(y)
}
"""


@pytest.mark.parametrize("window,power,reorders_out,reorders_in", [
    ("pool", "roots", 1, 1), ("conv", "roots", 2, 1), ("conv", "blocked", 1, 1)])
def test_onnxruntime_reorders_around_the_site(window, power, reorders_out, reorders_in):
    """What the formulations are built for: the NCHWc layout changes ONNX Runtime inserts.

    Conv(32 channels) -> Relu -> LRN -> MaxPool. With the LRN deleted, ONNX Runtime keeps
    everything in its blocked layout, reordering the graph input in and the output out.
    ``pool`` squares after lifting x out of the blocked layout (one ReorderOutput, of x;
    squaring first would reorder x^2 as well); ``conv/roots`` reorders x and the
    denominator d out, and y in; ``conv/blocked`` keeps x blocked: d goes out, d^-beta
    comes back in.
    """
    model = onnx.parser.parse_model(CONV_LRN_POOL)
    weight = np.random.default_rng(0).standard_normal((32, 32, 1, 1)).astype(np.float32)
    model.graph.initializer.append(onnx.numpy_helper.from_array(weight, "w"))
    result = decomposed_any(model, window=window, power=power)
    ops = onnxruntime_layout_ops(result.model)
    assert ops[-1] == "ReorderOutput"  # the graph output's own
    assert ops[:-1].count("ReorderOutput") == reorders_out
    assert ops[1:].count("ReorderInput") == reorders_in  # ops[0]: the graph input's own
    x = np.random.default_rng(1).standard_normal((2, 32, 9, 9)).astype(np.float32) * 5
    assert max_rel(run(result.model, {"x": x})["z"], run(model, {"x": x})["z"]) <= 1e-5


def test_keeps_the_output_name_and_consumers():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[N, 6, 4, 4] x) => (float[N, 6, 4, 4] z) {
        r = Relu(x)
        y = LRN<size = 3, alpha = 0.01, beta = 0.75, bias = 1.0>(r)
        z = Relu(y)
    }
    """
    model = onnx.parser.parse_model(text)
    result = decomposed_any(model)
    last = result.model.graph.node[-1]
    assert last.op_type == "Relu" and list(last.input) == ["y"]
    assert any(list(n.output) == ["y"] for n in result.model.graph.node[:-1])


def decomposed_any(model, **options):
    result = lrnconv.convert(model, "decompose", options=options)
    onnx.checker.check_model(result.model, full_check=True)
    return result


def test_rank_one_is_refused_with_the_reason():
    x = onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [7])
    y = onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [7])
    node = onnx.helper.make_node("LRN", ["x"], ["y"], name="norm", size=3)
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "g", [x], [y]),
                                   opset_imports=[onnx.helper.make_opsetid("", 13)])
    with pytest.raises(lrnconv.UnsupportedModel, match="norm.*rank 1"):
        lrnconv.convert(model, "decompose")
