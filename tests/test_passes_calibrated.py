"""remove / fold / bn / l2: exact cases against an independent oracle, fitted parameters
against numpy least squares computed here, refusals with their reasons.

The oracle for an original model is ONNX Runtime for everything but its LRN nodes, which
are cut out and fed with ``lrnconv.reference.lrn_onnx`` in float64 (ONNX Runtime's CPU
kernel refuses alpha = 0). Statistics are built here with ``SiteStats.update`` from the
site inputs and their reference outputs.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Dict, List, Tuple

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lrnconv
from lrnconv.convert import rewrite
from lrnconv.errors import UnsupportedModel, UsageError
from lrnconv.inputs import random_inputs
from lrnconv.models import BUILTIN, build
from lrnconv.passes import REGISTRY
from lrnconv.reference import lrn_onnx
from lrnconv.runtime import create_session
from lrnconv.sites import SITES_METADATA_KEY
from lrnconv.stats import SiteStats
from conftest import max_rel, run

EXACT_REL = 1e-6


# ----------------------------------------------------------------------------- helpers

def parse(text: str, seed: int = 0, legacy: bool = False, check: bool = True,
          **weights: Tuple[int, ...]) -> onnx.ModelProto:
    """A model in ONNX text syntax plus random float32 initializers of the given shapes."""
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(seed)
    for name, shape in weights.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        values = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        model.graph.initializer.append(numpy_helper.from_array(values.astype(np.float32), name))
        if legacy:
            model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
    if legacy:
        model.ir_version = 3
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def feeds_for(model: onnx.ModelProto, seed: int = 1, magnitude: float = 3.0) -> Dict[str, np.ndarray]:
    """Random normal feeds for every real graph input (fixed shapes)."""
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        feeds[vi.name] = (rng.standard_normal(shape) * magnitude).astype(dtype)
    return feeds


def _lrn_params(node: onnx.NodeProto) -> dict:
    params = {"alpha": 1e-4, "beta": 0.75, "bias": 1.0}
    for a in node.attribute:
        params[a.name] = a.i if a.type == onnx.AttributeProto.INT else a.f
    return params


def oracle(model: onnx.ModelProto, feeds: Dict[str, np.ndarray]):
    """(outputs, {LRN input: x}, {LRN output: y}) of the original model.

    Every LRN node is cut out: its output becomes a graph input fed with lrn_onnx of its
    input in float64, its input a graph output. Chained LRNs settle after one round each.
    """
    lrns = [n for n in model.graph.node if n.op_type == "LRN"]
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.node[:]
    cut.graph.node.extend(n for n in model.graph.node if n.op_type != "LRN")
    outputs = [o.name for o in model.graph.output]
    lrn_outputs = {n.output[0] for n in lrns}
    kept = [o for o in cut.graph.output if o.name not in lrn_outputs]
    del cut.graph.output[:]
    cut.graph.output.extend(kept)
    dtype = next(iter(feeds.values())).dtype
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    for n in lrns:
        cut.graph.input.append(helper.make_tensor_value_info(n.output[0], elem, None))
        if n.input[0] not in feeds:
            cut.graph.output.append(helper.make_tensor_value_info(n.input[0], elem, None))
    ys = {n.output[0]: np.zeros((1,), dtype) for n in lrns}
    shapes_known = False
    for _ in range(len(lrns) + 1):
        if not shapes_known:  # first round: run with the LRNs as Identity to learn shapes
            probe = onnx.ModelProto()
            probe.CopyFrom(model)
            for node in probe.graph.node:
                if node.op_type == "LRN":
                    node.op_type = "Identity"
                    del node.attribute[:]
            got = run_exposed(probe, feeds, [n.input[0] for n in lrns] + outputs)
            shapes_known = True
        else:
            got = {**feeds, **run(cut, {**feeds, **{k: v.astype(dtype) for k, v in ys.items()}})}
        xs = {n.input[0]: got[n.input[0]] for n in lrns}
        ys = {n.output[0]: lrn_onnx(xs[n.input[0]].astype(np.float64), **_lrn_params(n)) for n in lrns}
    result = {}
    for name in outputs:
        result[name] = ys[name] if name in ys else got[name]
    return result, xs, ys


def run_exposed(model: onnx.ModelProto, feeds, names: List[str]) -> Dict[str, np.ndarray]:
    """Intermediate tensors (and outputs) by name; graph inputs come back from the feeds."""
    inner = [n for n in names if n not in feeds]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in model.graph.output}
    exposed.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in inner if n not in present)
    got = run(exposed, feeds, inner)
    return {n: feeds[n] if n in feeds else got[n] for n in names}


def stats_of(model: onnx.ModelProto, xs, ys) -> Dict[str, SiteStats]:
    """SiteStats per site output from site inputs and outputs (one update each)."""
    stats = {}
    for site in lrnconv.find_lrn(model):
        x, y = xs[site.input], ys[site.output]
        entry = SiteStats(x.shape[1])
        entry.update(x, y)
        stats[site.output] = entry
    return stats


class Converted:
    def __init__(self, model, sites):
        self.model, self.sites = model, sites


def converted(model, strategy, stats=None, count=1):
    """Every site rewritten with ``strategy`` given these statistics, checker-valid.

    Goes through ``lrnconv.convert.rewrite`` (where ``convert`` runs the passes) so that
    the statistics are the ones built here, not ``convert``'s own calibration.
    """
    plan = {site.output: strategy for site in lrnconv.find_lrn(model)}
    model_out, sites = rewrite(model, plan, options={"stats": stats or {}})
    assert len(sites) == count
    onnx.checker.check_model(model_out, full_check=True)
    return Converted(model_out, sites)


def ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.output)


def per_channel(x: np.ndarray, c: int) -> np.ndarray:
    return np.moveaxis(x.astype(np.float64), 1, 0)[c].ravel()


def lstsq_scale(x, y) -> np.ndarray:
    """y_c ~ s_c x_c, no intercept, one numpy least-squares solve per channel."""
    return np.array([np.linalg.lstsq(per_channel(x, c)[:, None], per_channel(y, c), rcond=None)[0][0]
                     for c in range(x.shape[1])])


def lstsq_affine(x, y):
    """y_c ~ a_c x_c + b_c per channel."""
    fits = []
    for c in range(x.shape[1]):
        xc = per_channel(x, c)
        design = np.stack([xc, np.ones_like(xc)], axis=1)
        fits.append(np.linalg.lstsq(design, per_channel(y, c), rcond=None)[0])
    fits = np.array(fits)
    return fits[:, 0], fits[:, 1]


def lrn(alpha, beta=0.75, bias=2.0, size=3) -> str:
    return f"LRN <size = {size}, alpha = {float(alpha)!r}, beta = {float(beta)!r}, bias = {float(bias)!r}>"


# ----------------------------------------------------------------------------- models

def backward_model(alpha, bias=2.0, opset=13, legacy=False):
    """conv1 -> relu1 -> pool1 -> LRN -> conv2, plus a dead node of the user's."""
    ir = 3 if legacy else 8
    return parse(f"""
        <ir_version: {ir}, opset_import: ["" : {opset}]>
        backward (float[2, 3, 9, 9] data) => (float[2, 5, 4, 4] out) {{
            [conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)
            [relu1] r1 = Relu (c1)
            [pool1] p1 = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r1)
            [norm1] n1 = {lrn(alpha, bias=bias)} (p1)
            [conv2] out = Conv (n1, w2, b2)
            [dead] unused = Neg (data)
        }}""", legacy=legacy, w1=(6, 3, 3, 3), b1=(6,), w2=(5, 6, 1, 1), b2=(5,))


def forward_model(alpha):
    """LRN on a graph input, read by a grouped Conv and a padded Conv."""
    return parse(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        forward (float[2, 6, 7, 7] data) => (float[2, 9, 7, 7] grouped, float[2, 4, 7, 7] padded) {{
            [norm1] n1 = {lrn(alpha, bias=2.0)} (data)
            [conv_grouped] grouped = Conv <group = 3> (n1, wg, bg)
            [conv_padded] padded = Conv <pads = [1, 1, 1, 1]> (n1, wp)
        }}""", wg=(9, 2, 1, 1), bg=(9,), wp=(4, 6, 3, 3))


# ----------------------------------------------------------------------------- registry

def test_registry_order_and_calibration_flags():
    assert list(REGISTRY) == ["remove", "fold", "bn", "l2", "decompose", "keep"]
    assert [REGISTRY[n].cost for n in REGISTRY] == sorted(REGISTRY[n].cost for n in REGISTRY)
    assert {n: REGISTRY[n].needs_calibration for n in ("remove", "fold", "bn", "l2")} == \
        {"remove": False, "fold": True, "bn": True, "l2": True}
    constant = lrnconv.find_lrn(chain_model(alpha=0.0))[0]
    l2_exact = lrnconv.find_lrn(chain_model(alpha=0.3, beta=0.5, bias=0.0, size=7, channels=4))[0]
    fitted = lrnconv.find_lrn(chain_model(alpha=0.3))[0]
    assert [REGISTRY[n].needs_stats(constant) for n in ("remove", "fold", "bn")] == [False] * 3
    assert [REGISTRY[n].needs_stats(fitted) for n in ("remove", "fold", "bn", "l2")] == [False, True, True, True]
    assert not REGISTRY["l2"].needs_stats(l2_exact)


# ----------------------------------------------------------------------------- fold

@pytest.mark.parametrize("legacy", [False, True], ids=["ir8-opset13", "ir3-opset7"])
def test_fold_backward_exact_when_alpha_zero(legacy):
    model = backward_model(0.0, opset=7 if legacy else 13, legacy=legacy)
    feeds = feeds_for(model)
    expected, xs, ys = oracle(model, feeds)
    result = converted(model, "fold")
    record = result.sites[0]
    assert record.status == "exact"
    assert record.details["folded"] == "into Conv conv1 through Relu relu1, MaxPool pool1"
    assert record.details["direction"] == "backward" and record.details["tensor"] == "p1"
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
    assert record.details["tensor"] is None and record.details["tensor_unscaled"] == "data"
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
    scaled = run(_without_lrn(model), {"n1": (xs["data"] * s[None, :, None, None]).astype(np.float32)})
    got = run(result.model, feeds)
    for name in ("grouped", "padded"):
        assert max_rel(got[name], scaled[name]) <= 1e-5


def _without_lrn(model: onnx.ModelProto) -> onnx.ModelProto:
    """The forward model with its LRN output as the graph input."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[0]
    out.graph.input[0].name = "n1"
    return out


REFUSALS = {
    # name: (graph body lines, extra inputs, extra outputs, backward reason, forward reason or None)
    "shared_weight": (
        ["[conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)", "[relu1] r1 = Relu (c1)",
         "[conv1b] side = Conv <pads = [1, 1, 1, 1]> (other, w1)"],
        ", float[2, 3, 9, 9] other", ", float[2, 6, 9, 9] side",
        "Conv weight 'w1' of node 'conv1' is shared with Conv node 'conv1b'; cannot fold", None),
    "weight_graph_input": (
        ["[conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)", "[relu1] r1 = Relu (c1)"],
        ", float[6, 3, 3, 3] w1", "",
        "Conv weight 'w1' of node 'conv1' is a graph input (not a constant); cannot fold", None),
    "relu_two_consumers": (
        ["[conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)", "[relu1] r1 = Relu (c1)",
         "[sig] side = Sigmoid (r1)"],
        "", ", float[2, 6, 9, 9] side",
        "tensor 'r1' is also read by Sigmoid node 'sig'", None),
    "conv_two_consumers": (
        ["[conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)", "[relu1] r1 = Relu (c1)",
         "[sig] side = Sigmoid (c1)"],
        "", ", float[2, 6, 9, 9] side",
        "tensor 'c1' is also read by Sigmoid node 'sig'", None),
    "weight_from_graph_input": (
        ["[wmul] w1 = Mul (w1_base, gain)", "[conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)",
         "[relu1] r1 = Relu (c1)"],
        ", float[1] gain", "",
        "Conv weight 'w1' of node 'conv1' is computed from graph input 'gain'; cannot fold", None),
    "not_commuting": (
        ["[conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)", "[sig1] r1 = Sigmoid (c1)"],
        "", "", "Sigmoid node 'sig1' produces 'r1' and does not commute", None),
    "shared_then_forward": (
        ["[conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)", "[relu1] r1 = Relu (c1)",
         "[conv1b] side = Conv <pads = [1, 1, 1, 1]> (other, w1)"],
        ", float[2, 3, 9, 9] other", ", float[2, 6, 9, 9] side",
        "Conv weight 'w1' of node 'conv1' is shared with Conv node 'conv1b'", "forward"),
}


def refusal_model(case: str) -> onnx.ModelProto:
    body, inputs, outputs, _, forward = REFUSALS[case]
    tail = ("[conv2] out = Conv (n1, w2)" if forward else "[post] out = Relu (n1)")
    out_shape = "float[2, 5, 9, 9] out" if forward else "float[2, 6, 9, 9] out"
    lines = "\n".join(body + [f"[norm1] n1 = {lrn(0.0)} (r1)", tail])
    weights = dict(b1=(6,), w2=(5, 6, 1, 1))
    if "w1" not in inputs:
        weights["w1_base" if "w1_base" in lines else "w1"] = (6, 3, 3, 3)
    return parse(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        refusal (float[2, 3, 9, 9] data{inputs}) => ({out_shape}{outputs}) {{
            {lines}
        }}""", **weights)


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
        assert producer(result.model, "n1").op_type == "Mul" and record.details["tensor"] == "n1"
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
    assert record.details["direction"] == "backward" and record.details["tensor"] == "n1"
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
    folded = run_exposed(result.model, feeds, [first.details["tensor"]])[first.details["tensor"]]
    assert max_rel(folded, values[first.site.input] * s[None, :, None, None]) <= 1e-5


def test_missing_statistics_is_a_usage_error_naming_the_site():
    model = backward_model(0.05)
    for strategy in ("fold", "bn", "l2"):
        with pytest.raises(UsageError, match="calibration data for LRN 'norm1'"):
            rewrite(model, {"n1": strategy})


# ----------------------------------------------------------------------------- bn

def chain_model(rank=4, alpha=0.0, beta=0.75, bias=2.0, size=3, channels=6, opset=13, elem="float"):
    dims = ", ".join(["2", str(channels)] + ["5"] * (rank - 2))
    return parse(f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        chain ({elem}[{dims}] x) => ({elem}[{dims}] y) {{
            [norm1] y = {lrn(alpha, beta, bias, size)} (x)
        }}""")


@pytest.mark.parametrize("opset", [7, 9, 13, 15])
@pytest.mark.parametrize("rank", [3, 4, 5])
def test_bn_exact_when_alpha_zero(opset, rank):
    model = chain_model(rank=rank, opset=opset)
    feeds = feeds_for(model)
    result = converted(model, "bn")
    record = result.sites[0]
    assert record.status == "exact" and record.details["tensor"] == "y"
    (bn,) = result.model.graph.node
    assert bn.op_type == "BatchNormalization" and bn.output == ["y"]
    assert ({a.name for a in bn.attribute} - {"epsilon"}) == ({"spatial"} if opset < 9 else set())
    expected = lrn_onnx(feeds["x"].astype(np.float64), 3, 0.0, 0.75, 2.0)
    assert max_rel(run(result.model, feeds)["y"], expected) <= EXACT_REL


def test_bn_exact_in_float16():
    model = chain_model(elem="float16")
    feeds = feeds_for(model)
    result = converted(model, "bn")
    expected = lrn_onnx(feeds["x"].astype(np.float64), 3, 0.0, 0.75, 2.0)
    # only the float16 rounding of x * bias^-beta: one half-ulp of the scale and of the product
    assert max_rel(run(result.model, feeds)["y"], expected) <= 2 ** -10


def test_bn_fitted_affine_is_least_squares():
    model = backward_model(0.05)
    feeds = feeds_for(model, magnitude=10.0)
    _, xs, ys = oracle(model, feeds)
    result = converted(model, "bn", stats_of(model, xs, ys))
    record = result.sites[0]
    assert record.status == "approximate"
    bn = producer(result.model, "n1")
    a, b = lstsq_affine(xs["p1"], ys["n1"])
    np.testing.assert_allclose(initializer(result.model, bn.input[1]), a, rtol=1e-6)
    np.testing.assert_allclose(initializer(result.model, bn.input[2]), b, rtol=1e-5, atol=1e-6)
    got = run_exposed(result.model, feeds, ["n1"])["n1"]
    want = xs["p1"] * a[None, :, None, None] + b[None, :, None, None]
    assert max_rel(got, want) <= 1e-6
    assert ops(result.model) == ops(model) - Counter({"LRN": 1}) + Counter({"BatchNormalization": 1})
    assert 0 < record.details["residual_rms"] < 1


# ----------------------------------------------------------------------------- remove

@pytest.mark.parametrize("alpha,beta,bias,status", [
    (0.0, 0.75, 1.0, "exact"),
    (0.05, 0.0, 2.0, "exact"),
    (0.0, 0.75, 2.0, "approximate"),
    (0.05, 0.75, 1.0, "approximate"),
], ids=["alpha0-bias1", "beta0", "alpha0-bias2", "alpha-positive"])
def test_remove(alpha, beta, bias, status):
    model = refusal_model("shared_then_forward")
    for a in node(model, "norm1").attribute:
        if a.name != "size":
            a.f = {"alpha": alpha, "beta": beta, "bias": bias}[a.name]
    result = converted(model, "remove")
    record = result.sites[0]
    assert record.status == status and record.details["tensor"] == "r1"
    assert ops(result.model) == ops(model) - Counter({"LRN": 1})
    assert list(node(result.model, "conv2").input) == ["r1", "w2"]
    if status == "exact":
        feeds = feeds_for(model)
        expected, _, _ = oracle(model, feeds)
        assert max_rel(run(result.model, feeds)["out"], expected["out"]) <= EXACT_REL


def test_remove_keeps_a_graph_output_name_with_identity():
    model = chain_model(bias=1.0)
    result = converted(model, "remove")
    (identity,) = result.model.graph.node
    assert identity.op_type == "Identity" and list(identity.output) == ["y"]
    assert result.sites[0].status == "exact" and result.sites[0].details["tensor"] == "y"
    feeds = feeds_for(model)
    np.testing.assert_array_equal(run(result.model, feeds)["y"], feeds["x"])


# ----------------------------------------------------------------------------- l2

@pytest.mark.parametrize("size,channels", [(7, 4), (8, 4), (9, 3)])
def test_l2_exact_when_window_covers_all_channels(size, channels):
    model = chain_model(alpha=0.3, beta=0.5, bias=0.0, size=size, channels=channels)
    feeds = feeds_for(model)
    result = converted(model, "l2")
    record = result.sites[0]
    assert record.status == "exact" and record.details["constant"] == pytest.approx(np.sqrt(size / 0.3))
    assert [n.op_type for n in result.model.graph.node] == ["LpNormalization", "Mul"]
    assert producer(result.model, "y").op_type == "Mul"
    expected = lrn_onnx(feeds["x"].astype(np.float64), size, 0.3, 0.5, 0.0)
    assert max_rel(run(result.model, feeds)["y"], expected) <= EXACT_REL


@pytest.mark.parametrize("size,bias,beta,why", [
    (3, 0.0, 0.5, "does not cover all 6 channels"),
    (11, 1.0, 0.5, "bias = 1 (not 0)"),
    (11, 0.0, 0.75, "beta = 0.75 (not 0.5)"),
])
def test_l2_approximate_constant_is_least_squares(size, bias, beta, why):
    model = chain_model(alpha=0.3, beta=beta, bias=bias, size=size, channels=6)
    feeds = feeds_for(model)
    x = feeds["x"]
    y = lrn_onnx(x.astype(np.float64), size, 0.3, beta, bias)
    stats = SiteStats(6)
    stats.update(x, y)
    result = converted(model, "l2", {"y": stats})
    record = result.sites[0]
    assert record.status == "approximate" and why in record.reason
    u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    k = np.linalg.lstsq(u.reshape(-1, 1), y.reshape(-1), rcond=None)[0][0]
    assert record.details["constant"] == pytest.approx(k, rel=1e-9)
    mul = producer(result.model, "y")
    assert float(initializer(result.model, mul.input[1])) == pytest.approx(k, rel=1e-6)
    assert max_rel(run(result.model, feeds)["y"], u * k) <= 1e-6


# ----------------------------------------------------------------------------- caffe WITHIN_CHANNEL

def within_model(alpha: float, leak: bool = False) -> onnx.ModelProto:
    """conv1 -> relu1 -> Caffe WITHIN_CHANNEL decomposition -> conv2, with its site metadata."""
    extra = "\n[leak] side = Sigmoid (sq)" if leak else ""
    outputs = ", float[2, 4, 6, 6] side" if leak else ""
    model = parse(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        within (float[2, 3, 6, 6] data) => (float[2, 5, 6, 6] out{outputs}) {{
            [conv1] c1 = Conv <pads = [1, 1, 1, 1]> (data, w1, b1)
            [relu1] r1 = Relu (c1)
            [norm1_square] sq = Mul (r1, r1)
            [norm1_window_mean] mean = AveragePool <kernel_shape = [3, 3], pads = [1, 1, 1, 1], count_include_pad = 1> (sq)
            [norm1_scaled] scaled = Mul (mean, norm1_alpha)
            [norm1_shifted] shifted = Add (scaled, norm1_one)
            [norm1_factor] factor = Pow (shifted, norm1_neg_beta)
            [norm1] n1 = Mul (r1, factor){extra}
            [conv2] out = Conv (n1, w2)
        }}""", check=False, w1=(4, 3, 3, 3), b1=(4,), w2=(5, 4, 1, 1))
    for name, value in (("norm1_alpha", alpha), ("norm1_one", 1.0), ("norm1_neg_beta", -0.75)):
        model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
    site = {"name": "norm1", "family": "caffe-within", "size": 3, "alpha": alpha, "beta": 0.75,
            "bias": 1.0, "input": "r1", "output": "n1"}
    model.metadata_props.add(key=SITES_METADATA_KEY, value=json.dumps([site]))
    onnx.checker.check_model(model, full_check=True)
    return model


DECOMPOSITION = ["norm1_square", "norm1_window_mean", "norm1_scaled", "norm1_shifted", "norm1_factor", "norm1"]


@pytest.mark.parametrize("strategy,added", [("remove", []), ("fold", []), ("bn", ["BatchNormalization"]),
                                            ("l2", ["LpNormalization", "Mul"])])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_caffe_within_site_is_replaced_as_a_whole(strategy, added, alpha):
    model = within_model(alpha)
    (site,) = lrnconv.find_lrn(model)
    assert not site.is_node
    feeds = feeds_for(model, magnitude=3.0)
    values = run_exposed(model, feeds, ["r1", "n1", "out"])
    stats = SiteStats(4)
    stats.update(values["r1"], values["n1"])
    result = converted(model, strategy, {"n1": stats})
    record = result.sites[0]
    names = [n.name for n in result.model.graph.node]
    assert set(DECOMPOSITION).isdisjoint(names)
    kept = [n.name for n in model.graph.node if n.name not in DECOMPOSITION]
    assert [n for n in names if n in kept] == kept
    assert len(names) == len(kept) + len(added)
    assert sorted(n.op_type for n in result.model.graph.node if n.name not in kept) == sorted(added)
    assert {"norm1_alpha", "norm1_one", "norm1_neg_beta"}.isdisjoint(t.name for t in result.model.graph.initializer)
    exact = alpha == 0.0 and strategy != "l2"
    assert record.status == ("exact" if exact else "approximate")
    if exact:
        assert max_rel(run(result.model, feeds)["out"], values["out"]) <= EXACT_REL
    if strategy == "fold":
        assert record.details["folded"] == "into Conv conv1 through Relu relu1"


def test_caffe_within_refuses_when_an_intermediate_leaks():
    model = within_model(0.0, leak=True)
    with pytest.raises(UnsupportedModel, match="intermediate tensor 'sq' is also read by Sigmoid node 'leak'"):
        lrnconv.convert(model, "remove")
