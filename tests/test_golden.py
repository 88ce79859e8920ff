"""Golden outputs, per-output tolerances and error statistics (Polygraphy's comparator as the anchor),
each checked against numpy computed here."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from lrnconv.app.cli import main
from lrnconv.maths.drift import HISTOGRAM_EDGES
from lrnconv.maths.reference import lrn_onnx
from lrnconv.runtime.inputs import random_inputs

from conftest import lrn_model, lrn_scale_inputs, run


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def two_outputs(scale: float = 1.0) -> onnx.ModelProto:
    """x -> LRN -> y1, and y2 = y1 * scale: a candidate that is off at y2 only."""
    model = lrn_model(5, alpha=1e-3, bias=1.0)
    model.graph.node[0].output[0] = "y1"
    constant = helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])
    model.graph.node.append(helper.make_node("Constant", [], ["s"], name="scale", value=constant))
    model.graph.node.append(helper.make_node("Mul", ["y1", "s"], ["y2"], name="scaled"))
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 7, 5, 5]) for n in ("y1", "y2")])
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture
def pair(tmp_path):
    onnx.save(two_outputs(), str(tmp_path / "ref.onnx"))
    onnx.save(two_outputs(1.0 + 3e-4), str(tmp_path / "cand.onnx"))
    x = lrn_scale_inputs((6, 7, 5, 5), 5, 1e-3, 1.0)
    np.save(tmp_path / "x.npy", x)
    reference, candidate = run(two_outputs(), {"x": x}), run(two_outputs(1.0 + 3e-4), {"x": x})
    return tmp_path, x, reference, candidate


def test_golden_outputs_saved_by_one_process_load_in_another(tmp_path):
    onnx.save(lrn_model(5), str(tmp_path / "ref.onnx"))
    onnx.save(lrn_model(5, alpha=1.01e-2), str(tmp_path / "cand.onnx"))  # a little off: the metrics are not 0
    command = [sys.executable, "-m", "lrnconv", "verify", str(tmp_path / "ref.onnx"), str(tmp_path / "cand.onnx"),
               "--json", "--samples", "6"]
    saved = subprocess.run(command + ["--save-outputs", str(tmp_path / "golden.npz")], capture_output=True, text=True)
    loaded = subprocess.run(command + ["--load-outputs", str(tmp_path / "golden.npz")], capture_output=True, text=True)
    single, again = json.loads(saved.stdout), json.loads(loaded.stdout)
    ours, theirs = single["providers"]["cpu"]["outputs"]["y"], again["providers"]["cpu"]["outputs"]["y"]
    for key in ("shape", "max_abs", "max_rel", "mean_abs", "cosine", "needed_atol", "needed_rtol", "passed"):
        assert theirs[key] == ours[key], key
    golden = np.load(tmp_path / "golden.npz")
    x = random_inputs(onnx.load(str(tmp_path / "ref.onnx")), 6)["x"]
    np.testing.assert_array_equal(golden["input:x"], x)
    np.testing.assert_array_equal(golden["output:y"], run(lrn_model(5), {"x": x})["y"])
    assert json.loads(str(golden["lrnconv:meta"]))["provider"] == "cpu"


def test_outputs_another_framework_produced(tmp_path):
    """An .npz named after the model's input and output, the outputs computed in float64 here."""
    onnx.save(lrn_model(5, channels=16, alpha=1.0, bias=1.0), str(tmp_path / "m.onnx"))
    x = np.random.default_rng(3).standard_normal((8, 16, 5, 5)).astype(np.float32)
    x[:, :3] *= 1e3  # where ONNX Runtime's own LRN kernel is far from the maths
    np.savez(tmp_path / "framework.npz", x=x, y=lrn_onnx(x.astype(np.float64), 5, 1.0, 0.75, 1.0).astype(np.float32))
    native = invoke("verify", tmp_path / "m.onnx", tmp_path / "m.onnx", "--load-outputs", tmp_path / "framework.npz")
    assert native.exit_code == 1, native.output  # the native kernel against the framework's outputs
    decomposed = tmp_path / "d.onnx"
    assert invoke("convert", tmp_path / "m.onnx", "-o", decomposed, "--no-verify").exit_code == 0
    result = invoke("verify", tmp_path / "m.onnx", decomposed, "--load-outputs", tmp_path / "framework.npz")
    assert result.exit_code == 0, result.output
    assert "golden outputs of" in result.stdout


def test_per_output_tolerances(pair):
    folder, x, reference, candidate = pair
    result = invoke("verify", folder / "ref.onnx", folder / "cand.onnx", "--data", folder / "x.npy", "--json",
                    "--rtol", "y2:1e-3", "--rtol", "1e-6", "--atol", "0")
    data = json.loads(result.stdout)
    outputs = data["providers"]["cpu"]["outputs"]
    assert data["tolerances"] == {"y1": {"atol": 0.0, "rtol": 1e-6}, "y2": {"atol": 0.0, "rtol": 1e-3}}
    for name, rtol in (("y1", 1e-6), ("y2", 1e-3)):
        assert outputs[name]["passed"] == bool(np.allclose(candidate[name], reference[name], rtol=rtol, atol=0))
    assert outputs["y2"]["passed"] and not json.loads(invoke(
        "verify", folder / "ref.onnx", folder / "cand.onnx", "--data", folder / "x.npy", "--json", "--rtol", "1e-6",
        "--atol", "0").stdout)["providers"]["cpu"]["outputs"]["y2"]["passed"]


def test_a_tolerance_for_an_output_the_model_lacks(pair):
    folder = pair[0]
    result = invoke("verify", folder / "ref.onnx", folder / "cand.onnx", "--atol", "logits:1e-3")
    assert result.exit_code == 2 and "'logits'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("stat", ["max", "mean", "median"])
@pytest.mark.parametrize("atol, rtol", [(1e-3, 1e-5), (1e-9, 1e-5), (1e-9, 5e-4), (1e-9, 2e-4)])
def test_error_statistics_against_numpy(pair, stat, atol, rtol):
    folder, x, reference, candidate = pair
    result = invoke("verify", folder / "ref.onnx", folder / "cand.onnx", "--data", folder / "x.npy", "--json",
                    "--check-error-stat", stat, "--atol", atol, "--rtol", rtol)
    drift = json.loads(result.stdout)["providers"]["cpu"]["outputs"]["y2"]
    a, b = candidate["y2"].astype(np.float64), reference["y2"].astype(np.float64)
    absolute = np.abs(a - b)
    relative = absolute / np.where(b == 0, 2.220446049250313e-16, np.abs(b))
    statistic = {"max": np.max, "mean": np.mean, "median": np.median}[stat]
    assert drift["max_reldiff"] == pytest.approx(relative.max(), rel=1e-12)
    assert drift["mean_reldiff"] == pytest.approx(relative.mean(), rel=1e-9)
    if stat == "median":
        assert drift["median_absdiff"] == pytest.approx(np.median(absolute), rel=1e-6)
        assert drift["median_reldiff"] == pytest.approx(np.median(relative), rel=1e-6)
    expected = not (statistic(absolute) > atol and statistic(relative) > rtol)
    assert drift["passed"] == expected and drift["error_stat"] == stat


def test_the_error_histogram_counts_every_element(pair):
    folder, x, reference, candidate = pair
    result = invoke("verify", folder / "ref.onnx", folder / "cand.onnx", "--data", folder / "x.npy", "--json")
    drift = json.loads(result.stdout)["providers"]["cpu"]["outputs"]["y2"]
    counts, _ = np.histogram(np.abs(candidate["y2"].astype(np.float64) - reference["y2"]), bins=HISTOGRAM_EDGES)
    upper = ["inf" if e == float("inf") else e for e in HISTOGRAM_EDGES[1:]]
    assert drift["histogram"] == [[edge, int(n)] for edge, n in zip(upper, counts) if n]
    text = invoke("verify", folder / "ref.onnx", folder / "cand.onnx", "--data", folder / "x.npy").stdout
    assert "y2: absolute error |a-b|" in text


def test_save_outputs_onto_an_input_is_refused(pair):
    folder = pair[0]
    before = (folder / "x.npy").read_bytes()
    result = invoke("verify", folder / "ref.onnx", folder / "cand.onnx", "--data", folder / "x.npy",
                    "--save-outputs", folder / "x.npy")
    assert result.exit_code == 2 and (folder / "x.npy").read_bytes() == before
