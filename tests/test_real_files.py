"""Models shaped like the files people bring: fixed batch 1 and N (an IR-3 model whose
initializers are graph inputs and whose weights come from ConstantOfShape included), PyTorch
exports from both exporters at batch 2, control flow fed with conditions and trip counts,
symbolic dims, float16, NaN; each through the command line, the numbers checked against
float64 references computed here."""
from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import lrnconv
from lrnconv.app.cli import main
from lrnconv.maths.reference import lrn_onnx
from lrnconv.runtime.inputs import random_inputs

from conftest import lrn_model, lrn_scale_inputs, max_rel, run

STRATEGIES = ["keep", "decompose", "remove", "fold", "bn", "l2", "auto"]
EXACT = ("keep", "decompose")
LOOSE = ["--tolerance", "top1=0,cosine=-1"]  # approximations are measured, not judged, here


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def convert(tmp_path, model_path, strategy, *extra):
    out, report = tmp_path / f"{strategy}.onnx", tmp_path / f"{strategy}.json"
    result = invoke("convert", model_path, "-o", out, "--strategy", strategy, "--report", report, *extra)
    return result, (json.loads(report.read_text()) if report.exists() else None), out


def legacy_classifier(batch: int) -> onnx.ModelProto:
    """A zoo-style IR-3 classifier with a fixed batch: conv (weights also graph inputs) -> relu -> LRN ->
    conv with a ConstantOfShape bias -> flatten -> softmax."""
    rng = np.random.default_rng(batch)
    w1 = numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.6).astype(np.float32), "conv1_w")
    w2 = numpy_helper.from_array((rng.standard_normal((4, 8, 10, 10)) * 0.05).astype(np.float32), "fc_w")
    shape = numpy_helper.from_array(np.array([4], np.int64), "fc_b_shape")
    nodes = [
        helper.make_node("Conv", ["data", "conv1_w"], ["conv1"], name="conv1"),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("LRN", ["relu1"], ["norm1"], name="norm1", size=5, alpha=1e-3, beta=0.75, bias=1.0),
        helper.make_node("ConstantOfShape", ["fc_b_shape"], ["fc_b"], name="fc_b_fill",
                         value=numpy_helper.from_array(np.array([0.1], np.float32))),
        helper.make_node("Conv", ["norm1", "fc_w", "fc_b"], ["fc"], name="fc"),
        helper.make_node("Flatten", ["fc"], ["flat"], name="flatten", axis=1),
        helper.make_node("Softmax", ["flat"], ["prob"], name="prob", axis=1),
    ]
    inits = [w1, w2, shape]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, 12, 12])] + [
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "legacy", inputs, [helper.make_tensor_value_info("prob", TensorProto.FLOAT,
                                                                                      [batch, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)
    onnx.checker.check_model(model, full_check=True)
    return model


def float64_classifier(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The legacy classifier with its LRN in float64 (everything else by ONNX Runtime), batch by batch."""
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    head = onnx.ModelProto()
    head.CopyFrom(model)
    head.graph.output.append(helper.make_empty_tensor_value_info("relu1"))
    tail = onnx.ModelProto()
    tail.CopyFrom(model)
    kept = [n for n in tail.graph.node if n.name not in ("conv1", "relu1", "norm1")]
    del tail.graph.node[:]
    tail.graph.node.extend(kept)
    tail.graph.input[0].CopyFrom(helper.make_tensor_value_info("norm1", TensorProto.FLOAT, [batch, 8, 10, 10]))
    out = []
    for chunk in np.split(x, len(x) // batch):
        relu = run(head, {"data": chunk}, ["relu1"])["relu1"]
        norm = lrn_onnx(relu.astype(np.float64), 5, 1e-3, 0.75, 1.0).astype(np.float32)
        out.append(run(tail, {"norm1": norm})["prob"])
    return np.concatenate(out)


@pytest.fixture(scope="module", params=[1, 2], ids=["batch1", "batch2"])
def fixed(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"fixed{request.param}")
    model = legacy_classifier(request.param)
    onnx.save(model, str(folder / "legacy.onnx"))
    calib = np.random.default_rng(7).uniform(-128, 128, (20, 3, 12, 12)).astype(np.float32)
    np.save(folder / "calib.npy", calib)
    return request.param, folder, model, calib


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fixed_batch_with_a_calibration_file(fixed, strategy, tmp_path):
    batch, folder, model, calib = fixed
    result, report, out = convert(tmp_path, folder / "legacy.onnx", strategy, "--calib", folder / "calib.npy", *LOOSE)
    assert result.exit_code == 0, result.output
    fitted = strategy in ("fold", "bn", "l2", "auto")
    compared = 10 if fitted else 20  # what was fitted is verified on the held-out half
    assert report["verify"]["samples"] == compared
    assert report["verify"]["providers"]["cpu"]["outputs"]["prob"]["shape"] == [compared, 4]
    converted = onnx.load(str(out))
    onnx.checker.check_model(converted, full_check=True)
    assert converted.graph.input[0].type.tensor_type.shape.dim[0].dim_value == batch
    if strategy in EXACT:
        assert report["verify"]["passed"]
        got = np.concatenate([run(converted, {"data": c})["prob"] for c in np.split(calib, 20 // batch)])
        assert max_rel(got, float64_classifier(model, calib)) <= 1e-5


@pytest.mark.parametrize("strategy", ["decompose", "fold"])
def test_fixed_batch_with_random_samples(fixed, strategy, tmp_path):
    batch, folder, _, _ = fixed
    result, report, _ = convert(tmp_path, folder / "legacy.onnx", strategy, "--samples", 7, *LOOSE)
    assert result.exit_code == 0, result.output
    assert report["verify"]["samples"] == (7 if strategy == "decompose" else 3)  # 7 fitted: 4 fit, 3 held out
    assert f"{report['verify']['samples']} seeded random samples" in report["verify"]["inputs"]


def torch_export(tmp_path, dynamo: bool) -> str:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3), torch.nn.ReLU(),
                              torch.nn.LocalResponseNorm(5, alpha=1e-3, beta=0.75, k=2.0),
                              torch.nn.Conv2d(12, 4, 1)).eval()
    path = tmp_path / f"torch_{'dynamo' if dynamo else 'script'}.onnx"
    x = torch.randn(2, 3, 10, 10) * 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (x,), dynamo=True, opset_version=18, input_names=["x"],
                              output_names=["y"]).save(str(path))
        else:
            torch.onnx.export(net, x, str(path), dynamo=False, opset_version=13, input_names=["x"],
                              output_names=["y"])
    return str(path), net


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pytorch_exports_at_batch_two(tmp_path, dynamo, strategy):
    path, net = torch_export(tmp_path, dynamo)
    model = onnx.load(path)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    (site,) = lrnconv.find_lrn(model)
    assert site.family == "torch-pattern"
    result, report, out = convert(tmp_path, path, strategy, "--samples", 5, *LOOSE)
    assert result.exit_code == 0, result.output
    if strategy in EXACT:
        assert report["verify"]["samples"] == 5 and report["verify"]["passed"]
        x = np.random.default_rng(1).uniform(-128, 128, (2, 3, 10, 10)).astype(np.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        assert max_rel(run(onnx.load(str(out)), {"x": x})["y"], expected) <= 1e-5


def if_model(tmp_path) -> str:
    """y = If(cond, LRN(x), x): a scalar condition the samples do not carry."""
    def branch(name, node):
        return helper.make_graph([node], name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT,
                                                                                  ["N", 5, 4, 4])])
    then = branch("then", helper.make_node("LRN", ["x"], ["then_y"], name="then_norm", size=3, alpha=1e-2,
                                           beta=0.75, bias=1.0))
    other = branch("else", helper.make_node("Identity", ["x"], ["else_y"], name="else_id"))
    graph = helper.make_graph([helper.make_node("If", ["cond"], ["y"], name="choose", then_branch=then,
                                                else_branch=other)], "g",
                              [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                               helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 4, 4])])
    path = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def loop_model(tmp_path) -> str:
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 13]>
    g (int64 trip, bool cond, float[N, 6, 3, 3] x) => (float[N, 6, 3, 3] final) {
        final = Loop(trip, cond, x) <body = step (int64 i, bool c, float[N, 6, 3, 3] acc) => (bool c_out, float[N, 6, 3, 3] next) {
            c_out = Identity(c)
            next = LRN<size = 5, alpha = 0.001, beta = 0.75, bias = 1.0>(acc)
        }>
    }
    """)
    path = tmp_path / "loop.onnx"
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("cond", [True, False])
def test_lrn_in_an_if_branch_with_the_condition_given(tmp_path, cond):
    path = if_model(tmp_path)
    x = lrn_scale_inputs((6, 5, 4, 4), 3, 1e-2, 1.0)
    np.save(tmp_path / "x.npy", x)
    result, report, out = convert(tmp_path, path, "decompose", "--calib", tmp_path / "x.npy",
                                  "--input", f"cond={str(cond).lower()}")
    assert result.exit_code == 0, result.output
    assert report["verify"]["passed"] and report["verify"]["samples"] == 6
    got = run(onnx.load(str(out)), {"cond": np.array(cond), "x": x})["y"]
    expected = lrn_onnx(x.astype(np.float64), 3, 1e-2, 0.75, 1.0) if cond else x
    assert max_rel(got, expected) <= 1e-6


def test_an_if_condition_drawn_at_random_is_true_and_said_so(tmp_path):
    result, report, _ = convert(tmp_path, if_model(tmp_path), "decompose")
    assert result.exit_code == 0, result.output
    assert any("input 'cond' (a condition) was fed True" in n for n in report["notes"])


@pytest.mark.parametrize("trips", [0, 3])
def test_lrn_in_a_loop_body_with_the_trip_count_given(tmp_path, trips):
    path = loop_model(tmp_path)
    result, report, out = convert(tmp_path, path, "decompose", "--samples", 5, "--input", f"trip={trips}",
                                  "--input", "cond=true")
    assert result.exit_code == 0, result.output
    assert report["verify"]["passed"] and report["verify"]["samples"] == 5
    x = lrn_scale_inputs((3, 6, 3, 3), 5, 1e-3, 1.0)
    expected = x.astype(np.float64)
    for _ in range(trips):
        expected = lrn_onnx(expected, 5, 1e-3, 0.75, 1.0)
    got = run(onnx.load(str(out)), {"trip": np.array(trips, np.int64), "cond": np.array(True), "x": x})["final"]
    assert max_rel(got, expected) <= 1e-6


def test_symbolic_spatial_dims_need_input_shapes(tmp_path):
    path = tmp_path / "dynamic.onnx"
    onnx.save(lrn_model(5, dynamic_spatial=True), str(path))
    refused = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "o.onnx")])
    assert refused.exit_code == 2
    (line,) = [l for l in refused.stderr.splitlines() if l.strip()]
    assert line.startswith("lrnconv: error: ") and "dynamic.onnx" in line and "--input-shapes x:" in line
    assert not (tmp_path / "o.onnx").exists()
    result, report, out = convert(tmp_path, path, "decompose", "--input-shapes", "x:3,7,6,9", "--samples", 5)
    assert result.exit_code == 0, result.output
    assert report["verify"]["passed"] and report["verify"]["providers"]["cpu"]["outputs"]["y"]["shape"] == [5, 7, 6, 9]
    assert invoke("convert", path, "-o", tmp_path / "n.onnx", "--no-verify").exit_code == 0


def test_float16_decompose_passes_with_the_float16_tolerance(tmp_path):
    path = tmp_path / "half.onnx"
    onnx.save(lrn_model(5, elem_type=TensorProto.FLOAT16, alpha=1e-3, bias=1.0), str(path))
    x = lrn_scale_inputs((16, 7, 5, 5), 5, 1e-3, 1.0).astype(np.float16)
    np.save(tmp_path / "x.npy", x)
    result, report, out = convert(tmp_path, path, "decompose", "--calib", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    assert report["verify"]["tolerances"] == {"y": {"atol": 1e-3, "rtol": 1e-2}}
    drift = report["verify"]["providers"]["cpu"]["outputs"]["y"]
    assert drift["passed"] and drift["max_rel"] > 1e-4  # a float16 ulp apart: outside float32's tolerance
    exact = lrn_onnx(x.astype(np.float64), 5, 1e-3, 0.75, 1.0)
    assert max_rel(run(onnx.load(str(out)), {"x": x})["y"], exact) <= 2 ** -11  # half an ulp: rounded once
    # with float32's tolerance the native float16 kernel is what falls short, not the rewrite
    strict, strict_report, _ = convert(tmp_path, path, "decompose", "--calib", tmp_path / "x.npy",
                                       "--atol", 1e-5, "--rtol", 1e-4)
    cpu = strict_report["verify"]["providers"]["cpu"]
    assert strict.exit_code == 0 and not cpu["outputs"]["y"]["passed"] and cpu["explained_by_reference"]


def nan_model(tmp_path) -> str:
    """LRN -> Log: the log of negative activations is NaN in the reference and the candidate alike."""
    model = lrn_model(5)
    model.graph.node.append(helper.make_node("Log", ["y"], ["log"], name="log"))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("log", TensorProto.FLOAT, ["N", 7, 5, 5]))
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_a_model_that_outputs_nan_never_passes(tmp_path):
    result, report, _ = convert(tmp_path, nan_model(tmp_path), "decompose", "--samples", 4)
    assert result.exit_code == 1
    drift = report["verify"]["providers"]["cpu"]["outputs"]["log"]
    x = random_inputs(onnx.load(str(tmp_path / "nan.onnx")), 4)["x"]
    negative = int(np.sum(x < 0))  # log of the LRN output is NaN exactly where x < 0 (and -inf at 0)
    assert drift["nonfinite"] == negative + int(np.sum(x == 0)) and not drift["passed"]
    assert drift["first_nonfinite"] == list(np.unravel_index(int(np.argmax(x <= 0)), x.shape))
    assert "FAILED" in result.stdout and "NaN/Inf elements, the first at index" in result.stdout
    assert any("made the reference itself non-finite at 'log'" in n for n in report["verify"]["notes"])


def test_a_candidate_with_nan_where_the_reference_is_finite_fails(tmp_path):
    model = lrn_model(5)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    broken = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        broken (float[N, 7, 5, 5] x) => (float[N, 7, 5, 5] y) {
            zero = Sub(x, x)
            y = Div(zero, zero)
        }""")  # 0 / 0: NaN wherever the reference is finite
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    result = invoke("verify", path, tmp_path / "broken.onnx", "--json", "--tolerance", "top1=0,cosine=-1")
    data = json.loads(result.stdout)
    assert result.exit_code == 1 and not data["passed"]
    assert data["providers"]["cpu"]["outputs"]["y"]["nonfinite"] > 0


def cancellation_model(tmp_path) -> tuple:
    """One LRN whose input mixes huge and unit channels: ONNX Runtime's running window sum cancels."""
    path = tmp_path / "cancel.onnx"
    onnx.save(lrn_model(5, channels=16, alpha=1.0, beta=0.75, bias=1.0), str(path))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 16, 5, 5)).astype(np.float32)
    x[:, :3] *= 1e3
    np.save(tmp_path / "x.npy", x)
    return str(path), x


def test_the_native_kernels_own_error_is_not_blamed_on_an_exact_rewrite(tmp_path):
    path, x = cancellation_model(tmp_path)
    result, report, out = convert(tmp_path, path, "decompose", "--calib", tmp_path / "x.npy")
    cpu = report["verify"]["providers"]["cpu"]
    assert not cpu["outputs"]["y"]["passed"], "the native kernel is off: allclose against it fails"
    assert cpu["explained_by_reference"] and cpu["exact_outputs"]["y"]["passed"] and report["verify"]["passed"]
    assert result.exit_code == 0 and "its LRN kernel's own error" in result.stdout
    native = run(onnx.load(path), {"x": x})["y"]
    exact = lrn_onnx(x.astype(np.float64), 5, alpha=1.0, beta=0.75, bias=1.0)
    assert np.isfinite(native).all() and max_rel(native, exact) > 1e-4
    assert cpu["kernel_floor"]["y"]["max_rel"] == pytest.approx(max_rel(native, exact), rel=1e-6)
    assert max_rel(run(onnx.load(str(out)), {"x": x})["y"], exact) <= 1e-6
    direct, exact_report, _ = convert(tmp_path, path, "decompose", "--calib", tmp_path / "x.npy",
                                      "--reference", "exact")
    assert direct.exit_code == 0 and exact_report["verify"]["reference"] == "exact"
    assert exact_report["verify"]["providers"]["cpu"]["outputs"]["y"]["max_rel"] <= 1e-6


def test_keep_on_a_model_onnx_runtime_refuses_is_written_and_not_verifiable(tmp_path):
    path = tmp_path / "even.onnx"
    onnx.save(lrn_model(4), str(path))
    result, report, out = convert(tmp_path, path, "keep")
    assert result.exit_code == 3 and out.exists()
    assert report["verify"]["status"] == "not verifiable" and "cpu" in report["verify"]["unverifiable"]
    assert "NOT VERIFIABLE on cpu: " in result.stdout
    decomposed, decomposed_report, _ = convert(tmp_path, path, "decompose")
    assert decomposed.exit_code == 0 and decomposed_report["verify"]["passed"]
    assert any("evaluated exactly in float64" in n for n in decomposed_report["verify"]["notes"])


def test_bad_data_is_one_line_naming_the_data_file(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(lrn_model(5), str(path))
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 5, 5), np.float32))
    result = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "o.onnx"), "--calib",
                                       str(tmp_path / "wrong.npy")])
    assert result.exit_code == 2
    (line,) = [l for l in result.stderr.splitlines() if l.strip()]
    assert line.startswith("lrnconv: error: ") and "wrong.npy" in line and "[7, 5, 5]" in line
