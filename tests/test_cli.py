"""The command line: each bad input is one stderr line naming the file, exit 2, nothing written."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

import lrnconv
from lrnconv.app.cli import main
from conftest import lrn_model


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_clean_error(result, name: str):
    assert result.exit_code == 2, result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr  # the one error line: no warning before it
    assert lines[0].startswith("lrnconv: error: ") and name in lines[0]
    assert "Traceback" not in result.output + result.stderr


def bad_files(tmp_path):
    """name -> path of every kind of unreadable model the issue lists."""
    files = {}
    files["missing"] = tmp_path / "missing.onnx"
    files["empty"] = tmp_path / "empty.onnx"
    files["empty"].write_bytes(b"")
    for seed in range(3):
        files[f"random{seed}"] = tmp_path / f"random{seed}.onnx"
        files[f"random{seed}"].write_bytes(np.random.default_rng(seed).bytes(4096))
    whole = lrn_model(5)
    whole.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((64, 64), np.float32), "pad"))
    data = whole.SerializeToString()
    files["truncated"] = tmp_path / "truncated.onnx"
    files["truncated"].write_bytes(data[: len(data) // 2])
    return files


@pytest.mark.parametrize("kind", ["missing", "empty", "random0", "random1", "random2", "truncated"])
@pytest.mark.parametrize("command", ["convert", "inspect", "verify"])
def test_unreadable_models(tmp_path, kind, command):
    path = bad_files(tmp_path)[kind]
    out = tmp_path / "out" / "converted.onnx"
    out.parent.mkdir()
    args = {"convert": ["convert", path, "-o", out], "inspect": ["inspect", path],
            "verify": ["verify", path, path]}[command]
    assert_clean_error(invoke(*args), path.name)
    assert os.listdir(out.parent) == []


def bad_lrn(**attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3, 3])
    node = helper.make_node("LRN", ["x"], ["y"], name="norm1", **attrs)
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("attrs,reason", [({}, "'size' is missing"), ({"size": 0}, "size=0"), ({"size": -3}, "size=-3")])
def test_illegal_lrn_size(tmp_path, attrs, reason):
    path = tmp_path / "bad_size.onnx"
    onnx.save(bad_lrn(**attrs), str(path))
    result = invoke("convert", path, "-o", tmp_path / "out.onnx")
    assert_clean_error(result, "bad_size.onnx")
    assert reason in result.stderr and "norm1" in result.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_rank_the_pass_cannot_handle(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])
    model = helper.make_model(helper.make_graph([helper.make_node("LRN", ["x"], ["y"], name="flat", size=3)],
                                                "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "rank1.onnx"
    onnx.save(model, str(path))
    result = invoke("convert", path, "-o", tmp_path / "out.onnx")
    assert_clean_error(result, "rank1.onnx")
    assert "rank 1" in result.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_unwritable_output(tiny_lrn_file, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = invoke("convert", tiny_lrn_file, "-o", blocker / "out.onnx", "--no-verify")
    assert_clean_error(result, "out.onnx")


def test_refuses_to_overwrite_the_input(tiny_lrn_file):
    before = tiny_lrn_file.read_bytes()
    result = invoke("convert", tiny_lrn_file, "-o", tiny_lrn_file)
    assert_clean_error(result, "tiny.onnx")
    assert "--in-place" in result.stderr and tiny_lrn_file.read_bytes() == before
    assert invoke("convert", tiny_lrn_file, "--in-place").exit_code == 0
    assert all(n.op_type != "LRN" for n in onnx.load(str(tiny_lrn_file)).graph.node)


def test_unknown_strategy(tiny_lrn_file, tmp_path):
    result = invoke("convert", tiny_lrn_file, "-o", tmp_path / "o.onnx", "--strategy", "magic")
    assert_clean_error(result, "magic")
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="CUDA is present: tests/test_cuda.py checks the provider for real")
def test_missing_cuda_provider_is_exit_2(tiny_lrn_file, tmp_path):
    result = invoke("convert", tiny_lrn_file, "-o", tmp_path / "o.onnx", "--providers", "cpu,cuda")
    assert_clean_error(result, "CUDAExecutionProvider")
    assert "onnxruntime" in result.stderr and "cuda" in result.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_convert_writes_model_and_report(tiny_lrn_file, tmp_path):
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    result = invoke("convert", tiny_lrn_file, "-o", out, "--report", report)
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.stdout and "random" in result.stderr
    data = json.loads(report.read_text())
    assert data["strategy"] == "decompose" and data["verify"]["passed"] is True
    site = data["sites"][0]
    assert (site["name"], site["status"], site["family"]) == ("norm", "exact", "onnx")
    assert site["drift"]["cpu"]["max_rel"] <= 1e-5
    assert set(data) == {"input", "output", "strategy", "sites", "verify", "notes"}


def test_inspect_json(tiny_lrn_file):
    result = invoke("inspect", tiny_lrn_file, "--json")
    data = json.loads(result.stdout)
    site = data["sites"][0]
    assert (site["size"], site["alpha"], site["beta"], site["bias"], site["channels"]) == (5, 0.01, 0.75, 1.5, 7)
    assert site["strategies"] == {"remove": "approximate", "fold": "approximate", "bn": "approximate",
                                  "l2": "approximate", "decompose": "exact", "keep": "exact"}
    assert list(site["strategies"]) == list(lrnconv.strategies())
    assert site["family"] == "onnx" and site["input"] == "x" and site["output"] == "y"


def test_verify_fails_with_exit_1_on_real_drift(tiny_lrn_file, tmp_path):
    """A candidate with the wrong bias must fail, and the report must show it."""
    wrong = lrn_model(5, bias=1.0)
    path = tmp_path / "wrong.onnx"
    onnx.save(wrong, str(path))
    result = invoke("verify", tiny_lrn_file, path, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["passed"] is False and data["providers"]["cpu"]["outputs"]["y"]["max_rel"] > 1e-2


def test_verify_with_data_file(tiny_lrn_file, tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).uniform(-50, 50, (3, 7, 5, 5)).astype(np.float32))
    result = invoke("verify", tiny_lrn_file, tiny_lrn_file, "--data", data)
    assert result.exit_code == 0 and "3 given samples" in result.stdout
    assert "random" not in result.stderr


def test_verify_missing_cuda_provider_is_exit_2(tiny_lrn_file):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        result = invoke("verify", tiny_lrn_file, tiny_lrn_file, "--providers", "NoSuchExecutionProvider")
        assert_clean_error(result, "NoSuchExecutionProvider")
    else:
        result = invoke("verify", tiny_lrn_file, tiny_lrn_file, "--providers", "cuda")
        assert_clean_error(result, "CUDAExecutionProvider")


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="CUDA is present: ONNX Runtime would not fall back")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_silent_provider_fallback_is_an_error(tiny_lrn_file):
    """Asked for a provider it lacks, ONNX Runtime quietly runs on CPU; lrnconv refuses that."""
    from lrnconv.runtime.sessions import create_session

    with pytest.raises(lrnconv.ProviderUnavailable, match="silently replaced CUDAExecutionProvider"):
        create_session(onnx.load(str(tiny_lrn_file)), "CUDAExecutionProvider")



@pytest.mark.parametrize("size,beta,bias,trt,dla,tflite", [
    (5, 0.75, 1.0, "native", "native", "depth_radius=2"),
    (11, 0.75, 2.0, "native", "window 11 not in", "depth_radius=5"),
    (17, 0.75, 1.0, "must be odd and in [1, 15]", "window 17 not in", "depth_radius=8"),
    (4, 0.75, 1.0, "must be odd", "window 4 not in", "even window 4"),
    (5, 0.005, 0.0, "beta 0.005 < 0.01; bias 0 < 1e-5", "beta 0.005", "alpha=0.0002"),
])
def test_inspect_reports_target_limits(tmp_path, size, beta, bias, trt, dla, tflite):
    path = tmp_path / "m.onnx"
    onnx.save(lrn_model(size, beta=beta, bias=bias, alpha=1e-3), str(path))
    targets = json.loads(invoke("inspect", path, "--json").stdout)["sites"][0]["targets"]
    assert trt in targets["tensorrt"] and dla in targets["tensorrt-dla"] and tflite in targets["tflite"]


@pytest.mark.parametrize("seed", range(40))
def test_corrupted_models_never_crash(tmp_path, seed):
    """Bytes flipped in a valid model: a clean result or one error line, never a traceback."""
    model = lrn_model(5)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((8, 8), np.float32), "extra"))
    data = bytearray(model.SerializeToString())
    rng = np.random.default_rng(seed)
    for _ in range(3):
        data[rng.integers(0, len(data))] = rng.integers(0, 256)
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "out.onnx"), "--samples", "2"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2)
    if result.exit_code == 2:
        assert_clean_error(result, "corrupt.onnx")
        assert not (tmp_path / "out.onnx").exists()
