"""Small models and an independent oracle for the pass tests (``tests/test_pass_*.py``).

The oracle for an original model is ONNX Runtime for everything but its LRN nodes, which
are cut out and fed with ``lrnconv.maths.reference.lrn_onnx`` in float64 (ONNX Runtime's CPU
kernel refuses alpha = 0). Statistics are built here with ``SiteStats.update`` from the
site inputs and their reference outputs; fitted parameters are checked against numpy least
squares computed here.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Dict, List, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import lrnconv
from lrnconv.graph.metadata import SITES_KEY
from lrnconv.maths.reference import lrn_onnx
from lrnconv.maths.stats import SiteStats

from conftest import run

EXACT_REL = 1e-6


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

    Goes through ``lrnconv.rewrite`` (the engine's plan application, which ``convert`` uses)
    so that the statistics are the ones built here, not ``convert``'s own calibration.
    """
    plan = {site.output: strategy for site in lrnconv.find_lrn(model)}
    model_out, sites = lrnconv.rewrite(model, plan, stats=stats or {})
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


def chain_model(rank=4, alpha=0.0, beta=0.75, bias=2.0, size=3, channels=6, opset=13, elem="float"):
    dims = ", ".join(["2", str(channels)] + ["5"] * (rank - 2))
    return parse(f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        chain ({elem}[{dims}] x) => ({elem}[{dims}] y) {{
            [norm1] y = {lrn(alpha, beta, bias, size)} (x)
        }}""")


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


def without_lrn(model: onnx.ModelProto) -> onnx.ModelProto:
    """The forward model with its LRN output as the graph input."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[0]
    out.graph.input[0].name = "n1"
    return out


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
    model.metadata_props.add(key=SITES_KEY, value=json.dumps([site]))
    onnx.checker.check_model(model, full_check=True)
    return model


DECOMPOSITION = ["norm1_square", "norm1_window_mean", "norm1_scaled", "norm1_shifted", "norm1_factor", "norm1"]


def unknown_rank_model(conv: bool = False) -> onnx.ModelProto:
    """data -> Reshape(data, shape) [-> Conv] -> LRN -> Relu: ``shape`` is an input of unknown length,
    so nothing downstream of the Reshape has a known rank (a graph input must declare one)."""
    data = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3 if conv else 6, 5, 5])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, ["L"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 5, 5])
    nodes = [helper.make_node("Reshape", ["data", "shape"], ["reshaped" if conv else "x"], name="reshape"),
             helper.make_node("LRN", ["x"], ["n"], name="norm", size=3, alpha=0.01, beta=0.75, bias=1.0),
             helper.make_node("Relu", ["n"], ["y"], name="post")]
    weights = []
    if conv:
        nodes.insert(1, helper.make_node("Conv", ["reshaped", "w"], ["x"], name="conv"))
        weights.append(numpy_helper.from_array(np.ones((6, 3, 1, 1), np.float32), "w"))
    model = helper.make_model(helper.make_graph(nodes, "unknown_rank", [data, shape], [y], weights),
                              opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return model
