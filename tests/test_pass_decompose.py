"""decompose: exact against ONNX Runtime's LRN kernel where it runs, lrnconv.maths.reference elsewhere."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto

import lrnconv
from lrnconv.maths.reference import lrn_onnx
from conftest import lrn_model, lrn_scale_inputs, max_rel, run

WINDOWS = ["pool", "conv", "cumsum"]
POWERS = ["roots", "pow", "explog"]


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


@pytest.mark.parametrize("beta,power_used,ops", [
    (0.75, "roots", {"Sqrt", "Div"}), (0.5, "roots", {"Sqrt", "Div"}), (1.0, "roots", {"Div"}),
    (0.6, "explog", {"Exp", "Log"}), (0.0, "identity", {"Identity"})])
def test_power_forms(beta, power_used, ops):
    model = lrn_model(3, beta=beta)
    result = decomposed(model)
    emitted = {n.op_type for n in result.model.graph.node}
    assert result.sites[0].details["power"] == power_used
    assert ops <= emitted and "Pow" not in emitted
    x = lrn_scale_inputs((2, 7, 5, 5), 3, 1e-2, 1.5)
    assert max_rel(run(result.model, {"x": x})["y"], lrn_onnx(x.astype(np.float64), 3, 1e-2, beta, 1.5)) <= 1e-5


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


def decomposed_any(model):
    result = lrnconv.convert(model, "decompose")
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
