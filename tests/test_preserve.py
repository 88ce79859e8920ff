"""Everything no rewrite touched survives a convert, compared field by field."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lrnconv
from lrnconv.maths.reference import lrn_onnx
from conftest import lrn_scale_inputs, max_rel, run

RICH_MODEL = """
<ir_version: 8, opset_import: ["" : 13, "local" : 1], producer_name: "legacy-exporter",
 producer_version: "0.9", domain: "ai.legacy", model_version: 7, doc_string: "an old net">
g (float[N, 3, 8, 8] data) => (float[N, 4, 8, 8] out) <float[4, 3, 3, 3] w, float[4] b, float[4] unused_const> {
    conv = Conv<pads = [1, 1, 1, 1]>(data, w, b)
    act = Relu(conv)
    norm = LRN<size = 3, alpha = 0.001, beta = 0.75, bias = 2.0>(act)
    out = local.Twice(norm)
}
<domain: "local", opset_import: ["" : 13]>
Twice (t) => (u) {
    u = Add(t, t)
}
"""


def rich_model() -> onnx.ModelProto:
    model = onnx.parser.parse_model(RICH_MODEL)
    rng = np.random.default_rng(0)
    model.graph.initializer.extend([
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 3, "w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        numpy_helper.from_array(np.ones(4, np.float32), "unused_const")])
    helper.set_model_props(model, {"author": "someone", "license": "BSD"})
    model.graph.node[0].doc_string = "conv doc"
    model.graph.node[1].doc_string = "relu doc"
    model.graph.doc_string = "graph doc"
    model.graph.value_info.append(helper.make_tensor_value_info("act", TensorProto.FLOAT, ["N", 4, 8, 8]))
    model.graph.value_info.append(helper.make_tensor_value_info("norm", TensorProto.FLOAT, ["N", 4, 8, 8]))
    onnx.checker.check_model(model, full_check=True)
    return model


def test_model_fields_survive():
    original = rich_model()
    converted = lrnconv.convert(original, "decompose").model
    for field in ["ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"]:
        assert getattr(converted, field) == getattr(original, field), field
    assert list(converted.opset_import) == list(original.opset_import)
    assert list(converted.metadata_props) == list(original.metadata_props)
    assert list(converted.functions) == list(original.functions)
    assert converted.graph.doc_string == original.graph.doc_string
    assert list(converted.graph.input) == list(original.graph.input)
    assert list(converted.graph.output) == list(original.graph.output)
    assert list(converted.graph.initializer)[:3] == list(original.graph.initializer)
    onnx.checker.check_model(converted, full_check=True)


def test_untouched_nodes_and_value_info_survive_byte_for_byte():
    original = rich_model()
    converted = lrnconv.convert(original, "decompose").model
    kept = [n for n in original.graph.node if n.op_type != "LRN"]
    for node in kept:
        matches = [n for n in converted.graph.node if n.name == node.name and list(n.output) == list(node.output)]
        assert len(matches) == 1 and matches[0].SerializeToString() == node.SerializeToString()
    # value_info of tensors that still exist (the LRN output name is kept)
    assert list(converted.graph.value_info) == list(original.graph.value_info)


def test_input_model_is_not_modified_unless_inplace():
    original = rich_model()
    before = original.SerializeToString()
    lrnconv.convert(original, "decompose")
    assert original.SerializeToString() == before
    lrnconv.convert(original, "decompose", inplace=True)
    assert all(n.op_type != "LRN" for n in original.graph.node)


def test_numbers_survive():
    original = rich_model()
    converted = lrnconv.convert(original, "decompose").model
    x = np.random.default_rng(1).uniform(-128, 128, (2, 3, 8, 8)).astype(np.float32)
    assert max_rel(run(converted, {"data": x})["out"], run(original, {"data": x})["out"]) <= 1e-5


def ir3_model() -> onnx.ModelProto:
    """IR 3 (opset 9 for ConstantOfShape): initializers are also graph inputs, weights made by constant nodes."""
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * 3, "w")
    scale = helper.make_node("Constant", [], ["scale"], name="scale_const",
                             value=numpy_helper.from_array(np.full((1, 6, 1, 1), 2.0, np.float32)))
    fill = helper.make_node("ConstantOfShape", ["shape"], ["shift"], name="shift_fill",
                            value=numpy_helper.from_array(np.array([0.5], np.float32)))
    shape = numpy_helper.from_array(np.array([1, 6, 1, 1], np.int64), "shape")
    nodes = [scale, fill,
             helper.make_node("Conv", ["data", "w"], ["c"], name="conv1"),
             helper.make_node("Mul", ["c", "scale"], ["s"], name="scale1"),
             helper.make_node("Add", ["s", "shift"], ["a"], name="shift1"),
             helper.make_node("LRN", ["a"], ["n"], name="norm1", size=5, alpha=1e-4, beta=0.75, bias=1.0)]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [2, 3, 9, 9]),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, [6, 3, 3, 3]),
              helper.make_tensor_value_info("shape", TensorProto.INT64, [4])]
    graph = helper.make_graph(nodes, "legacy", inputs, [helper.make_tensor_value_info("n", TensorProto.FLOAT, [2, 6, 7, 7])],
                              initializer=[w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


def test_ir3_initializers_stay_graph_inputs():
    original = ir3_model()
    converted = lrnconv.convert(original, "decompose").model
    assert converted.ir_version == 3
    assert [i.name for i in converted.graph.input][:3] == ["data", "w", "shape"]
    initializer_names = {t.name for t in converted.graph.initializer}
    assert initializer_names <= {i.name for i in converted.graph.input}
    onnx.checker.check_model(converted, full_check=True)
    x = np.random.default_rng(3).uniform(-128, 128, (2, 3, 9, 9)).astype(np.float32)
    assert max_rel(run(converted, {"data": x})["n"], run(original, {"data": x})["n"]) <= 1e-5
    assert [n.name for n in converted.graph.node][:5] == ["scale_const", "shift_fill", "conv1", "scale1", "shift1"]


def _branch(name: str, lrn: bool) -> onnx.GraphProto:
    node = (helper.make_node("LRN", ["x"], [f"{name}_y"], name=f"{name}_norm", size=3, alpha=1e-2, beta=0.75, bias=1.0)
            if lrn else helper.make_node("Identity", ["x"], [f"{name}_y"], name=f"{name}_id"))
    node.doc_string = f"{name} node"
    return helper.make_graph([node], name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, ["N", 5, 4, 4])])


def if_model() -> onnx.ModelProto:
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 4, 4])
    node = helper.make_node("If", ["cond"], ["y"], name="choose",
                            then_branch=_branch("then", True), else_branch=_branch("else", False))
    return helper.make_model(helper.make_graph([node], "g", [cond, x], [y]),
                             opset_imports=[helper.make_opsetid("", 13)])


def test_lrn_inside_if_body():
    model = if_model()
    onnx.checker.check_model(model, full_check=True)
    sites = lrnconv.find_lrn(model)
    assert [(s.name, s.location) for s in sites] == [("then_norm", "y.then_branch")]
    converted = lrnconv.convert(model, "decompose").model
    onnx.checker.check_model(converted, full_check=True)
    branches = {a.name: a.g for a in converted.graph.node[0].attribute}
    original = {a.name: a.g for a in model.graph.node[0].attribute}
    assert "LRN" not in {n.op_type for n in branches["then_branch"].node}
    assert branches["else_branch"] == original["else_branch"]
    assert converted.graph.node[0].doc_string == model.graph.node[0].doc_string
    x = lrn_scale_inputs((2, 5, 4, 4), 3, 1e-2, 1.0)
    got = run(converted, {"cond": np.array(True), "x": x})["y"]
    assert max_rel(got, lrn_onnx(x.astype(np.float64), 3, 1e-2, 0.75, 1.0)) <= 1e-5
    assert np.array_equal(run(converted, {"cond": np.array(False), "x": x})["y"], x)


def test_lrn_inside_loop_body():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (int64 trip, bool cond, float[N, 6, 3, 3] x) => (float[N, 6, 3, 3] final) {
        final = Loop(trip, cond, x) <body = step (int64 i, bool c, float[N, 6, 3, 3] acc) => (bool c_out, float[N, 6, 3, 3] next) {
            c_out = Identity(c)
            next = LRN<size = 5, alpha = 0.001, beta = 0.75, bias = 1.0>(acc)
        }>
    }
    """
    model = onnx.parser.parse_model(text)
    assert len(lrnconv.find_lrn(model)) == 1
    converted = lrnconv.convert(model, "decompose").model
    onnx.checker.check_model(converted, full_check=True)
    x = lrn_scale_inputs((2, 6, 3, 3), 5, 1e-3, 1.0)
    feeds = {"trip": np.array(2, np.int64), "cond": np.array(True), "x": x}
    expected = lrn_onnx(lrn_onnx(x.astype(np.float64), 5, 1e-3, 0.75, 1.0), 5, 1e-3, 0.75, 1.0)
    assert max_rel(run(converted, feeds)["final"], expected) <= 1e-5


def test_external_data_round_trip(tmp_path):
    original = rich_model()
    source = tmp_path / "ext.onnx"
    onnx.save_model(rich_model(), str(source), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.weights", size_threshold=0)
    assert os.path.getsize(tmp_path / "ext.weights") > 0
    loaded = lrnconv.load(str(source))
    converted = lrnconv.convert(loaded, "decompose").model
    target = tmp_path / "out.onnx"
    lrnconv.save(converted, str(target))
    x = np.random.default_rng(1).uniform(-128, 128, (2, 3, 8, 8)).astype(np.float32)
    assert max_rel(run(onnx.load(str(target)), {"data": x})["out"], run(original, {"data": x})["out"]) <= 1e-5


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    original = rich_model()
    inner = tmp_path / "models"
    inner.mkdir()
    onnx.save_model(original, str(tmp_path / "m.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="secret.bin", size_threshold=0)
    model = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    onnx.save(model, str(inner / "m.onnx"))
    with pytest.raises(lrnconv.BadInput, match=r"m\.onnx: external data .* outside the model's folder"):
        lrnconv.load(str(inner / "m.onnx"))


def test_save_is_atomic_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.onnx"
    lrnconv.save(rich_model(), str(target))
    assert sorted(os.listdir(tmp_path)) == ["out.onnx"]
    with pytest.raises(lrnconv.OutputError, match="does not exist"):
        lrnconv.save(rich_model(), str(tmp_path / "missing" / "out.onnx"))
