"""Caffe files through the command line: inspect, convert with every strategy, and the error contract."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import lrnconv
from lrnconv.formats.caffe import CaffeNetBuilder, write_caffemodel, write_prototxt
from lrnconv.app.cli import main
from lrnconv.runtime.sessions import create_session
from lrnconv.maths.reference import lrn_caffe_across, lrn_caffe_within


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def lrn_net(within_k: float = 1.0):
    """conv -> relu -> ACROSS LRN (k = 2) -> WITHIN LRN -> conv: both Caffe LRN modes."""
    rng = np.random.default_rng(0)
    net = CaffeNetBuilder("lrn_pair")
    net.input("data", (2, 3, 12, 12))
    net.layer("conv1", "Convolution", "data", "conv1", convolution_param={"num_output": 8, "kernel_size": 3, "pad": 1},
              blobs=[rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, np.zeros(8, np.float32)])
    net.layer("relu1", "ReLU", "conv1", "conv1")
    net.layer("norm1", "LRN", "conv1", "norm1", lrn_param={"local_size": 5, "alpha": 1e-3, "beta": 0.75, "k": 2.0})
    net.layer("norm2", "LRN", "norm1", "norm2", lrn_param={"local_size": 3, "alpha": 1e-2, "beta": 0.75, "k": within_k,
                                                            "norm_region": "WITHIN_CHANNEL"})
    net.layer("conv2", "Convolution", "norm2", "conv2", convolution_param={"num_output": 4, "kernel_size": 1},
              blobs=[rng.standard_normal((4, 8, 1, 1)).astype(np.float32), np.zeros(4, np.float32)])
    return net


@pytest.fixture
def caffe_files(tmp_path):
    prototxt, caffemodel = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    net = lrn_net()
    write_prototxt(net.net, prototxt)
    write_caffemodel(net.net, caffemodel)
    return prototxt, caffemodel


def test_inspect_reports_caffe_families(caffe_files):
    prototxt, caffemodel = caffe_files
    result = invoke("inspect", prototxt, "--weights", caffemodel, "--json")
    sites = {s["name"]: s for s in json.loads(result.stdout)["sites"]}
    assert sites["norm1"]["family"] == "caffe-across" and sites["norm1"]["bias"] == 2.0
    assert sites["norm2"]["family"] == "caffe-within" and sites["norm2"]["bias"] == 1.0
    assert sites["norm1"]["strategies"]["keep"] == sites["norm2"]["strategies"]["decompose"] == "exact"


def test_keep_is_a_plain_import_matching_caffe_semantics(caffe_files, tmp_path):
    prototxt, caffemodel = caffe_files
    out = tmp_path / "net.onnx"
    result = invoke("convert", prototxt, "--weights", caffemodel, "-o", out, "--strategy", "keep", "--no-verify")
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(1).uniform(-128, 128, (2, 3, 12, 12)).astype(np.float32)
    relu_output = {s.name: s.input for s in lrnconv.find_lrn(model)}["norm1"]  # in-place ReLU, renamed
    wanted = [relu_output, "norm1", "norm2"]
    got = create_session(model, "CPUExecutionProvider", wanted).run({"data": x}, wanted)
    relu = got[relu_output].astype(np.float64)
    assert relu.min() == 0
    across = lrn_caffe_across(relu, 5, 1e-3, 0.75, 2.0)
    np.testing.assert_allclose(got["norm1"], across, rtol=1e-5, atol=1e-5 * np.abs(across).max())
    within = lrn_caffe_within(got["norm1"].astype(np.float64), 3, 1e-2, 0.75)
    np.testing.assert_allclose(got["norm2"], within, rtol=1e-5, atol=1e-5 * np.abs(within).max())


@pytest.mark.parametrize("strategy", ["decompose", "remove", "fold", "bn", "l2", "auto"])
def test_every_strategy_applies_to_caffe_sites(caffe_files, tmp_path, strategy):
    prototxt, caffemodel = caffe_files
    out, report = tmp_path / f"{strategy}.onnx", tmp_path / f"{strategy}.json"
    result = invoke("convert", prototxt, "--weights", caffemodel, "-o", out, "--strategy", strategy,
                    "--report", report, "--samples", "16", "--tolerance", "top1=0,cosine=0")
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert {s["family"] for s in data["sites"]} == {"caffe-across", "caffe-within"}
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert "LRN" not in {n.op_type for n in model.graph.node}
    if strategy == "decompose":
        assert all(s["status"] == "exact" for s in data["sites"])
    if strategy in ("remove", "fold", "bn"):
        within_ops = {n.op_type for n in model.graph.node} & {"AveragePool", "Sqrt", "Div", "Pow"}
        assert not within_ops, "the WITHIN_CHANNEL subgraph should be gone"


def write_text_net(tmp_path, text, name="bad.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", ["unknown_layer", "malformed", "truncated_weights", "shape_mismatch"])
def test_caffe_errors_through_the_cli(tmp_path, case, caffe_files):
    prototxt, caffemodel = caffe_files
    out = tmp_path / "out" / "net.onnx"
    out.parent.mkdir()
    args = ["convert", prototxt, "--weights", caffemodel, "-o", out]
    if case == "unknown_layer":
        bad = write_text_net(tmp_path, 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\n'
                             'layer { name: "mystery" type: "Crop" bottom: "data" top: "m" }\n')
        args = ["convert", bad, "-o", out]
        expected = ["bad.prototxt", "mystery", "Crop"]
    elif case == "malformed":
        bad = write_text_net(tmp_path, 'layer { name: "conv1" type: "Convolution" \n')
        args = ["convert", bad, "-o", out]
        expected = ["bad.prototxt"]
    elif case == "truncated_weights":
        data = caffemodel.read_bytes()
        caffemodel.write_bytes(data[: len(data) // 2])
        expected = ["net.caffemodel"]
    else:
        other = lrn_net()
        conv1 = next(layer for layer in other.net.layer if layer.name == "conv1")
        conv1.blobs[0].shape.ClearField("dim")
        conv1.blobs[0].shape.dim.extend([8, 3, 5, 5])
        conv1.blobs[0].ClearField("data")
        conv1.blobs[0].data.extend(np.zeros(8 * 3 * 25, np.float32))
        write_caffemodel(other.net, caffemodel)
        expected = ["conv1"]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = [l for l in result.stderr.splitlines() if l.startswith("lrnconv: error")]
    assert len(lines) == 1 and all(word in lines[0] for word in expected), result.stderr
    assert "Traceback" not in result.output
    assert os.listdir(out.parent) == []
