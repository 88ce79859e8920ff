"""``fold``: exact folds against the oracle, fitted scales against numpy least squares, every refusal with its reason."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lrnconv
from lrnconv.maths.stats import SiteStats
from lrnconv.models import BUILTIN, build
from lrnconv.runtime.inputs import random_inputs
from lrnconv.runtime.sessions import create_session

from conftest import max_rel, run
from pass_models import (
    EXACT_REL,
    REFUSALS,
    backward_model,
    converted,
    feeds_for,
    forward_model,
    initializer,
    lrn,
    lstsq_scale,
    node,
    ops,
    oracle,
    parse,
    producer,
    refusal_model,
    run_exposed,
    stats_of,
    without_lrn,
)


@pytest.mark.parametrize("legacy", [False, True], ids=["ir8-opset13", "ir3-opset7"])
def test_fold_backward_exact_when_alpha_zero(legacy):
    model = backward_model(0.0, opset=7 if legacy else 13, legacy=legacy)
    feeds = feeds_for(model)
    expected, xs, ys = oracle(model, feeds)
    result = converted(model, "fold")
    record = result.sites[0]
    assert record.status == "exact"
    assert record.details["folded"] == "into Conv conv1 through Relu relu1, MaxPool pool1"
    assert record.details["direction"] == "backward" and record.tensor == "p1"
    assert ops(result.model) == ops(model) - Counter({"LRN": 1})
    assert [n.name for n in result.model.graph.node] == ["conv1", "relu1", "pool1", "conv2", "dead"]
    names = {t.name for t in result.model.graph.initializer}
    assert {"w1", "b1"}.isdisjoint(names) and {"w1_scaled", "b1_scaled"} <= names
    if legacy:
        assert names <= {i.name for i in result.model.graph.input}
    got = run_exposed(result.model, feeds, ["out", "p1"])
    assert max_rel(got["out"], expected["out"]) <= EXACT_REL
    assert max_rel(got["p1"], ys["n1"]) <= EXACT_REL


def test_fold_backward_fitted_scale_is_least_squares():
    model = backward_model(0.05)
    feeds = feeds_for(model, magnitude=10.0)
    _, xs, ys = oracle(model, feeds)
    x, y = xs["p1"], ys["n1"]
    result = converted(model, "fold", stats_of(model, xs, ys))
    record = result.sites[0]
    assert record.status == "approximate"
    assert record.details["residual_rms"] > 1e-3  # the LRN is not a constant scale on this data
    expected_scale = lstsq_scale(x, y)
    np.testing.assert_allclose(initializer(result.model, "w1_scaled"),
                               initializer(model, "w1") * expected_scale[:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(initializer(result.model, "b1_scaled"),
                               initializer(model, "b1") * expected_scale, rtol=1e-6)
    assert record.details["scale"]["min"] == pytest.approx(expected_scale.min(), rel=1e-9)
    assert record.details["scale"]["max"] == pytest.approx(expected_scale.max(), rel=1e-9)
    got = run_exposed(result.model, feeds, ["p1"])["p1"]
    np.testing.assert_allclose(got, x * expected_scale[None, :, None, None], rtol=1e-5, atol=1e-5)


def test_fold_forward_into_grouped_and_padded_convs_exact():
    model = forward_model(0.0)
    feeds = feeds_for(model)
    expected, _, _ = oracle(model, feeds)
    result = converted(model, "fold")
    record = result.sites[0]
    assert record.status == "exact" and record.details["direction"] == "forward"
    assert "graph input" in record.details["refused"]["backward"]
    assert record.details["folded"] == "into consumer Convs conv_grouped, conv_padded"
    assert record.tensor is None and record.details["tensor_unscaled"] == "data"
    assert ops(result.model) == Counter({"Conv": 2})
    got = run(result.model, feeds)
    for name in ("grouped", "padded"):
        assert max_rel(got[name], expected[name]) <= EXACT_REL


def test_fold_forward_grouped_weights_match_group_mapping():
    model = forward_model(0.05)
    feeds = feeds_for(model, magnitude=10.0)
    expected, xs, ys = oracle(model, feeds)
    result = converted(model, "fold", stats_of(model, xs, ys))
    assert result.sites[0].status == "approximate"
    s = lstsq_scale(xs["data"], ys["n1"])
    wg = initializer(model, "wg")
    want = np.empty_like(wg, dtype=np.float64)
    per_group_out, per_group_in = 9 // 3, 6 // 3
    for m in range(9):
        for j in range(per_group_in):
            want[m, j] = wg[m, j] * s[(m // per_group_out) * per_group_in + j]
    np.testing.assert_allclose(initializer(result.model, "wg_scaled"), want, rtol=1e-6)
    np.testing.assert_allclose(initializer(result.model, "wp_scaled"),
                               initializer(model, "wp") * s[None, :, None, None], rtol=1e-6)
    np.testing.assert_array_equal(initializer(result.model, "bg"), initializer(model, "bg"))
    # the folded model computes conv(s * x): the original's convs fed with s * x
    scaled = run(without_lrn(model), {"n1": (xs["data"] * s[None, :, None, None]).astype(np.float32)})
    got = run(result.model, feeds)
    for name in ("grouped", "padded"):
        assert max_rel(got[name], scaled[name]) <= 1e-5


@pytest.mark.parametrize("case", list(REFUSALS))
def test_fold_refusals_fall_back_with_reason(case):
    model = refusal_model(case)
    feeds = feeds_for(model)
    expected, _, _ = oracle(model, feeds)
    result = converted(model, "fold")
    record = result.sites[0]
    _, _, _, backward_reason, forward = REFUSALS[case]
    assert record.status == "exact"
    assert backward_reason in record.details["refused"]["backward"]
    if forward:
        assert record.details["direction"] == "forward"
        assert ops(result.model) == ops(model) - Counter({"LRN": 1})
        assert "w2_scaled" in {t.name for t in result.model.graph.initializer}
    else:
        assert record.details["direction"] == "mul"
        assert record.details["refused"]["forward"] == "LRN output 'n1' is read by Relu node 'post', not only by Convs"
        assert record.details["folded"].startswith("explicit Mul: ")
        assert backward_reason in record.reason
        assert ops(result.model) == ops(model) - Counter({"LRN": 1}) + Counter({"Mul": 1})
        assert producer(result.model, "n1").op_type == "Mul" and record.tensor == "n1"
    got = run(result.model, feeds)
    for name in expected:
        assert max_rel(got[name], expected[name]) <= EXACT_REL


def test_fold_refuses_an_initializer_that_is_also_a_graph_input():
    """IR >= 4: an initializer listed as a graph input is a default the caller may override."""
    model = backward_model(0.0)
    model.graph.input.append(helper.make_tensor_value_info("w1", TensorProto.FLOAT, [6, 3, 3, 3]))
    result = converted(model, "fold")
    record = result.sites[0]
    assert record.details["refused"]["backward"] == (
        "Conv weight 'w1' of node 'conv1' is a graph input (an initializer the caller may "
        "override); cannot fold")
    assert record.details["direction"] == "forward" and record.details["folded"] == "into consumer Conv conv2"
    np.testing.assert_array_equal(initializer(result.model, "w1"), initializer(model, "w1"))


def test_fold_keeps_a_graph_output_name():
    model = backward_model(0.0)
    model.graph.output.append(helper.make_tensor_value_info("n1", TensorProto.FLOAT, [2, 6, 4, 4]))
    feeds = feeds_for(model)
    expected, _, ys = oracle(model, feeds)
    result = converted(model, "fold")
    record = result.sites[0]
    assert record.details["direction"] == "backward" and record.tensor == "n1"
    assert producer(result.model, "n1").op_type == "Identity"
    assert [o.name for o in result.model.graph.output] == ["out", "n1"]
    got = run(result.model, feeds)
    assert max_rel(got["n1"], ys["n1"]) <= EXACT_REL
    assert max_rel(got["out"], expected["out"]) <= EXACT_REL


def test_fold_explicit_mul_uses_fitted_per_channel_scale():
    model = refusal_model("relu_two_consumers")
    for a in node(model, "norm1").attribute:
        if a.name == "alpha":
            a.f = 0.05
    feeds = feeds_for(model, magnitude=10.0)
    _, xs, ys = oracle(model, feeds)
    result = converted(model, "fold", stats_of(model, xs, ys))
    assert result.sites[0].status == "approximate" and result.sites[0].details["direction"] == "mul"
    mul = producer(result.model, "n1")
    np.testing.assert_allclose(initializer(result.model, mul.input[1]).ravel(),
                               lstsq_scale(xs["r1"], ys["n1"]), rtol=1e-6)
    assert initializer(result.model, mul.input[1]).shape == (6, 1, 1)


CONSTANT_WEIGHTS = {
    "constant_node": (["[wconst] w1 = Constant <value = float[1] {0.0}> ()"], {}, 1),
    "constant_chain": (["[wshape] wshape = Constant <value = int64[4] {6, 3, 3, 3}> ()",
                        "[wfill] wfill = ConstantOfShape <value = float[1] {0.25}> (wshape)",
                        "[wsum] w1 = Add (wfill, w_delta)"], {"w_delta": (6, 3, 3, 3)}, 3),
}


@pytest.mark.parametrize("case", list(CONSTANT_WEIGHTS))
def test_fold_weight_from_constant_subgraph(case):
    lines, extra, dropped = CONSTANT_WEIGHTS[case]
    body = "\n".join(lines + ["[conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)",
                              "[relu1] r1 = Relu (c1)", f"[norm1] n1 = {lrn(0.0)} (r1)",
                              "[conv2] out = Conv (n1, w2)"])
    model = parse(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        constant (float[2, 3, 9, 9] data) => (float[2, 5, 9, 9] out) {{
            {body}
        }}""", check=False, b1=(6,), w2=(5, 6, 1, 1), **extra)
    if case == "constant_node":
        weight = np.random.default_rng(5).standard_normal((6, 3, 3, 3)).astype(np.float32) * 0.3
        node(model, "wconst").attribute[0].t.CopyFrom(numpy_helper.from_array(weight))
    onnx.checker.check_model(model, full_check=True)
    feeds = feeds_for(model)
    expected, _, _ = oracle(model, feeds)
    result = converted(model, "fold")
    assert result.sites[0].details["direction"] == "backward"
    assert len(result.model.graph.node) == len(model.graph.node) - 1 - dropped
    assert {"Constant", "ConstantOfShape", "LRN"}.isdisjoint(ops(result.model))
    assert {t.name for t in result.model.graph.initializer} == {"w1_scaled", "b1_scaled", "w2"}
    assert max_rel(run(result.model, feeds)["out"], expected["out"]) <= EXACT_REL


@pytest.mark.parametrize("name", list(BUILTIN))
def test_fold_builtin_models_leave_no_lrn_and_no_mul(name):
    model = build(name, variant="small")
    sites = lrnconv.find_lrn(model)
    feeds = random_inputs(model, 8, 0)
    names = [t for s in sites for t in (s.input, s.output)]
    values = create_session(model, "CPUExecutionProvider", expose=names).run(feeds, outputs=names)
    stats = {}
    for site in sites:
        stats[site.output] = SiteStats(site.channels)
        stats[site.output].update(values[site.input], values[site.output])
    result = converted(model, "fold", stats, count=len(sites))
    lrn_names = {s.name for s in sites}
    assert [n.name for n in result.model.graph.node] == [n.name for n in model.graph.node if n.name not in lrn_names]
    assert ops(result.model)["Mul"] == ops(model)["Mul"]
    assert all(r.status == "approximate" and r.details["direction"] == "backward" for r in result.sites)
    for record in result.sites:  # each producing Conv's weight and bias scaled by the lstsq s
        s = lstsq_scale(values[record.site.input], values[record.site.output])
        for new in record.details["weights"]:
            old = initializer(model, new[:-len("_scaled")])
            shaped = s.reshape((-1,) + (1,) * (old.ndim - 1))
            np.testing.assert_allclose(initializer(result.model, new), old * shaped, rtol=1e-6)
    first = result.sites[0]  # the first site sees the original's input, so its tensor is s * x
    s = lstsq_scale(values[first.site.input], values[first.site.output])
    folded = run_exposed(result.model, feeds, [first.tensor])[first.tensor]
    assert max_rel(folded, values[first.site.input] * s[None, :, None, None]) <= 1e-5
