"""PyTorch's LocalResponseNorm, exported by torch.onnx as a chain of primitive ops, is found and rewritten."""
from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

import lrnconv
from lrnconv.app.cli import main
from conftest import max_rel, run


def exported(tmp_path, size: int, alpha=1e-3, beta=0.75, k=2.0, channels=12) -> tuple:
    torch.manual_seed(size)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, channels, 3), torch.nn.ReLU(),
                              torch.nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k),
                              torch.nn.Conv2d(channels, 4, 1)).eval()
    path = tmp_path / f"torch_lrn{size}.onnx"
    x = torch.randn(2, 3, 10, 10) * 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, x, str(path), dynamo=False, opset_version=13, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}})
    return str(path), net


def torch_output(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("size", [3, 4, 5])
def test_found_with_torch_parameters(tmp_path, size):
    path, _ = exported(tmp_path, size, alpha=2e-3, beta=0.5, k=1.5)
    (site,) = lrnconv.find_lrn(lrnconv.load(path))
    assert (site.family, site.size, site.alpha, site.beta, site.bias, site.channels) == \
        ("torch-pattern", size, 2e-3, 0.5, 1.5, 12)
    assert site.window == (size // 2, (size - 1) // 2) and not site.family.is_lrn_node


@pytest.mark.parametrize("size", [3, 4, 5])
def test_decompose_replaces_the_chain_and_matches_pytorch(tmp_path, size):
    path, net = exported(tmp_path, size)
    model = lrnconv.load(path)
    result = lrnconv.convert(model, "decompose", verify=lrnconv.VerifyOptions(samples=4))
    converted = result.model
    onnx.checker.check_model(converted, full_check=True)
    ops = [n.op_type for n in converted.graph.node]
    assert "Pow" not in ops and "If" not in ops and len(ops) < len(model.graph.node)
    assert result.sites[0].status == "exact" and result.passed
    x = np.random.default_rng(size).uniform(-128, 128, (3, 3, 10, 10)).astype(np.float32)
    expected = torch_output(net, x)
    assert max_rel(run(converted, {"x": x})["y"], expected) <= 1e-5
    assert max_rel(run(model, {"x": x})["y"], expected) <= 1e-5


@pytest.mark.parametrize("strategy", ["remove", "fold", "bn", "l2"])
def test_approximating_strategies_delete_the_chain(tmp_path, strategy):
    path, _ = exported(tmp_path, 5)
    model = lrnconv.load(path)
    result = lrnconv.convert(model, strategy, calibration_samples=16)
    onnx.checker.check_model(result.model, full_check=True)
    ops = {n.op_type for n in result.model.graph.node}
    assert not ops & {"Pow", "AveragePool", "If", "Shape"}
    if strategy == "fold":
        assert [n.op_type for n in result.model.graph.node] == ["Conv", "Relu", "Conv"]


def test_inspect_shows_the_family(tmp_path):
    path, _ = exported(tmp_path, 4)
    site = json.loads(CliRunner().invoke(main, ["inspect", path, "--json"]).stdout)["sites"][0]
    assert site["family"] == "torch-pattern" and site["strategies"]["decompose"] == "exact"
    assert "even window" in site["targets"]["tflite"]


@pytest.mark.parametrize("size", [7, 8])
def test_an_lrn_used_as_an_l2_norm_is_judged_as_one(tmp_path, size):
    """bias 0, beta 0.5 and a window over all 4 channels (PyTorch's window: size // 2 back,
    (size - 1) // 2 ahead): l2 is exact, for the L2 reason, not a Caffe WITHIN_CHANNEL one."""
    path, net = exported(tmp_path, size, alpha=0.3, beta=0.5, k=0.0, channels=4)
    model = lrnconv.load(path)
    (site,) = lrnconv.find_lrn(model)
    verdict = lrnconv.inspect(model).verdicts[site.output]["l2"]
    assert verdict.status == "exact"
    assert verdict.reason == "bias = 0, beta = 0.5 and the window covers all 4 channels: y = x * sqrt(size/alpha) / ||x||_2"
    result = lrnconv.convert(model, "l2")
    assert result.sites[0].status == "exact"
    x = np.random.default_rng(size).uniform(-128, 128, (3, 3, 10, 10)).astype(np.float32)
    expected = torch_output(net, x)
    defined = np.isfinite(expected)  # PyTorch's 0 / 0 where the ReLU zeroed every channel of a pixel
    assert defined.mean() > 0.5
    assert max_rel(run(result.model, {"x": x})["y"][defined], expected[defined]) <= 1e-5


def test_l2_says_why_a_narrow_torch_window_is_inexact(tmp_path):
    path, _ = exported(tmp_path, 3, alpha=0.3, beta=0.5, k=0.0, channels=4)
    model = lrnconv.load(path)
    (site,) = lrnconv.find_lrn(model)
    reason = lrnconv.inspect(model).verdicts[site.output]["l2"].reason
    assert reason == ("L2 normalization with a fitted constant; not exact because the window of 3 (reaching 1 back, "
                      "1 ahead) does not cover all 4 channels (needs size >= 7)")


def test_an_elementwise_look_alike_is_not_a_site():
    """x / (k + alpha * x)^beta has the same tail but no channel window of squares."""
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[N, 4, 3, 3] x) => (float[N, 4, 3, 3] y) {
        alpha = Constant<value = float {0.001}>()
        k = Constant<value = float {2.0}>()
        beta = Constant<value = float {0.75}>()
        pooled = AveragePool<kernel_shape = [1, 1]>(x)
        scaled = Mul(pooled, alpha)
        shifted = Add(scaled, k)
        powered = Pow(shifted, beta)
        y = Div(x, powered)
    }
    """)
    assert lrnconv.find_lrn(model) == []
