"""Careless and hostile input: every failure that was found, as a test of the contract.

The contract, for bad input: exit code 2, exactly one line on stderr naming the file and the
reason, and nothing in the folder written or changed (every file is hashed before and after).
No input file is changed without ``--in-place``; no NaN/Inf model is reported PASSED; an
interrupted run leaves nothing half-written behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from lrnconv.app.cli import main
from lrnconv.base.files import OutputGuard, STAGING_PREFIX, remove_stale_staging
from lrnconv.base.errors import OutputError
from lrnconv.formats.caffe import CaffeNetBuilder, write_caffemodel, write_prototxt
from lrnconv.models import build

from conftest import lrn_model, lrn_scale_inputs


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(folder) -> dict:
    """Every file below ``folder`` (hidden ones included) with its content hash and mode."""
    found = {}
    for directory, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                found[os.path.relpath(path, folder)] = "special"
                continue
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mode)
    return found


def assert_refused(result, name: str, before: dict, folder, exit_code: int = 2):
    """Exit 2 (or the given code), one stderr line naming ``name``, the folder untouched."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lrnconv: error: ") and name in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert snapshot(folder) == before


@pytest.fixture
def workdir(tmp_path):
    onnx.save(lrn_model(5), str(tmp_path / "x.onnx"))
    np.save(tmp_path / "calib.npy", lrn_scale_inputs((8, 7, 5, 5), 5, 1e-2, 1.5))
    return tmp_path


def caffe_pair(folder, **lrn):
    net = CaffeNetBuilder("hostile")
    net.input("data", (1, 3, 8, 8))
    rng = np.random.default_rng(0)
    net.layer("conv1", "Convolution", "data", "conv1", convolution_param={"num_output": 4, "kernel_size": 3},
              blobs=[rng.standard_normal((4, 3, 3, 3)).astype(np.float32), np.zeros(4, np.float32)])
    net.layer("norm1", "LRN", "conv1", "norm1", lrn_param={"local_size": 3, "alpha": 1e-2, "beta": 0.75, **lrn})
    write_prototxt(net.net, folder / "net.prototxt")
    write_caffemodel(net.net, folder / "net.caffemodel")
    return folder / "net.prototxt", folder / "net.caffemodel"


# ----------------------------------------------------------------------- it destroyed files

def test_report_equal_to_the_input_model(workdir):
    before = snapshot(workdir)
    result = invoke("convert", workdir / "x.onnx", "-o", workdir / "y.onnx", "--report", workdir / "x.onnx")
    assert_refused(result, "x.onnx", before, workdir)


def test_report_equal_to_the_output(workdir):
    before = snapshot(workdir)
    result = invoke("convert", workdir / "x.onnx", "-o", workdir / "y.onnx", "--report", workdir / "y.onnx")
    assert_refused(result, "y.onnx", before, workdir)


def test_output_equal_to_the_caffe_weights_or_the_data(workdir):
    prototxt, caffemodel = caffe_pair(workdir)
    before = snapshot(workdir)
    assert_refused(invoke("convert", prototxt, "--weights", caffemodel, "-o", caffemodel, "--strategy", "keep"),
                   "net.caffemodel", before, workdir)
    assert_refused(invoke("convert", workdir / "x.onnx", "-o", workdir / "calib.npy", "--calib", workdir / "calib.npy"),
                   "calib.npy", before, workdir)


def test_output_through_a_hard_link_or_a_symlink_to_an_input(workdir):
    os.link(workdir / "x.onnx", workdir / "hard.onnx")
    os.symlink(workdir / "x.onnx", workdir / "soft.onnx")
    before = snapshot(workdir)
    assert_refused(invoke("convert", workdir / "x.onnx", "-o", workdir / "hard.onnx"), "hard.onnx", before, workdir)
    assert_refused(invoke("convert", workdir / "x.onnx", "-o", workdir / "soft.onnx"), "soft.onnx", before, workdir)


def test_in_place_on_a_prototxt_is_refused(workdir):
    prototxt, _ = caffe_pair(workdir)
    before = snapshot(workdir)
    assert_refused(invoke("convert", prototxt, "--in-place"), "net.prototxt", before, workdir)


def test_in_place_does_not_replace_the_input_when_verification_fails(workdir):
    """fold with a strict tolerance fails; the original must still be there."""
    before = snapshot(workdir)
    result = invoke("convert", workdir / "x.onnx", "--in-place", "--strategy", "remove", "--calib",
                    workdir / "calib.npy", "--tolerance", "top1=1,cosine=0.9999999")
    assert result.exit_code == 1, result.output
    assert "was NOT replaced" in result.stdout
    assert snapshot(workdir) == before


def test_in_place_keeps_the_mode_of_the_replaced_model(workdir):
    os.chmod(workdir / "x.onnx", 0o600)
    result = invoke("convert", workdir / "x.onnx", "--in-place")
    assert result.exit_code == 0, result.output
    assert os.stat(workdir / "x.onnx").st_mode & 0o777 == 0o600
    assert "LRN" not in {n.op_type for n in onnx.load(str(workdir / "x.onnx")).graph.node}


def test_output_onto_a_fifo_is_refused(workdir):
    os.mkfifo(workdir / "pipe.onnx")
    before = snapshot(workdir)
    result = invoke("convert", workdir / "x.onnx", "-o", workdir / "pipe.onnx", "--no-verify")
    assert_refused(result, "pipe.onnx", before, workdir)
    assert not os.path.isfile(workdir / "pipe.onnx")


def test_the_guard_refuses_a_device_without_touching_it():
    with pytest.raises(OutputError, match="not a regular file"):
        OutputGuard().check("/dev/null")


def test_an_unwritable_report_leaves_no_model(workdir):
    before = snapshot(workdir)
    result = invoke("convert", workdir / "x.onnx", "-o", workdir / "y.onnx", "--report", workdir / "no" / "r.json")
    assert_refused(result, "r.json", before, workdir)


def test_a_killed_runs_staging_folder_is_removed_by_the_next_write(workdir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:32]
    stale = workdir / f"{STAGING_PREFIX}{host}-{dead.pid}-abcd"
    stale.mkdir()
    (stale / "out.onnx").write_bytes(b"half a model")
    live = workdir / f"{STAGING_PREFIX}{host}-{os.getpid()}-live"  # this process: alive, kept
    live.mkdir()
    result = invoke("convert", workdir / "x.onnx", "-o", workdir / "y.onnx", "--no-verify")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and live.exists()
    assert remove_stale_staging(str(workdir)) == []


# ----------------------------------------------------------------------- it passed wrong models

def nan_everywhere(folder) -> str:
    model = lrn_model(5)
    model.graph.node.append(helper.make_node("Sqrt", ["y"], ["root"], name="root"))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("root", TensorProto.FLOAT, ["N", 7, 5, 5]))
    path = folder / "nan.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_nan_in_both_outputs_fails_under_a_task_level_tolerance(workdir):
    path = nan_everywhere(workdir)
    result = invoke("verify", path, path, "--tolerance", "top1=0,cosine=-1", "--json")
    data = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert result.exit_code == 1 and data["passed"] is False
    assert data["providers"]["cpu"]["outputs"]["root"]["nonfinite"] > 0


@pytest.mark.parametrize("name, value, reason", [
    ("alpha", -1.0, "alpha=-1"), ("alpha", float("nan"), "alpha=nan"), ("alpha", float("inf"), "alpha=inf"),
    ("beta", float("nan"), "beta=nan"), ("bias", -1.0, "bias=-1"), ("bias", float("inf"), "bias=inf"),
])
def test_lrn_attributes_out_of_range_are_refused(workdir, name, value, reason):
    params = {"alpha": 1e-2, "beta": 0.75, "bias": 1.5, name: value}
    path = workdir / "bad.onnx"
    onnx.save(lrn_model(5, **params), str(path))
    before = snapshot(workdir)
    for strategy in ("auto", "decompose"):
        result = invoke("convert", path, "-o", workdir / "o.onnx", "--strategy", strategy, "--no-verify")
        assert_refused(result, "bad.onnx", before, workdir)
        assert reason in result.stderr and "norm" in result.stderr


def test_alpha_and_bias_both_zero_is_refused(workdir):
    path = workdir / "zero.onnx"
    onnx.save(lrn_model(5, alpha=0.0, bias=0.0), str(path))
    before = snapshot(workdir)
    assert_refused(invoke("inspect", path), "zero.onnx", before, workdir)


def test_a_float_size_is_refused_not_truncated(workdir):
    model = lrn_model(5)
    lrn = model.graph.node[0]
    del lrn.attribute[:]
    lrn.attribute.extend([helper.make_attribute("size", 2.5), helper.make_attribute("alpha", 0.01)])
    path = workdir / "float_size.onnx"
    onnx.save(model, str(path))
    before = snapshot(workdir)
    result = invoke("convert", path, "-o", workdir / "o.onnx", "--no-verify", "--no-check")
    assert_refused(result, "float_size.onnx", before, workdir)
    assert "size=2.5 as a FLOAT attribute" in result.stderr


@pytest.mark.parametrize("lrn, reason", [({"alpha": float("nan")}, "alpha=nan"), ({"k": -1.0}, "bias=-1")])
def test_caffe_lrn_parameters_out_of_range(workdir, lrn, reason):
    prototxt, caffemodel = caffe_pair(workdir, **lrn)
    before = snapshot(workdir)
    result = invoke("convert", prototxt, "--weights", caffemodel, "-o", workdir / "o.onnx", "--no-verify")
    assert_refused(result, "net.prototxt", before, workdir)
    assert reason in result.stderr


def test_nan_in_calibration_data_is_refused_or_dropped(workdir):
    x = lrn_scale_inputs((8, 7, 5, 5), 5, 1e-2, 1.5)
    x[2, 0, 0, 0] = np.nan
    np.save(workdir / "nan.npy", x)
    before = snapshot(workdir)
    for strategy in ("bn", "auto"):
        result = invoke("convert", workdir / "x.onnx", "-o", workdir / "o.onnx", "--strategy", strategy,
                        "--calib", workdir / "nan.npy")
        assert_refused(result, "nan.npy", before, workdir)
        assert "sample 2" in result.stderr
    kept = invoke("convert", workdir / "x.onnx", "-o", workdir / "o.onnx", "--strategy", "bn", "--calib",
                  workdir / "nan.npy", "--drop-nonfinite", "--report", workdir / "r.json", "--tolerance",
                  "top1=0,cosine=-1")
    assert kept.exit_code == 0, kept.output
    report = json.loads((workdir / "r.json").read_text())
    assert any("1 sample(s)" in n and "left out" in n for n in report["notes"])
    scale = report["sites"][0]["details"]["shift"]
    assert all(np.isfinite(v) for v in scale.values())


def test_all_nan_data_is_refused_even_with_drop(workdir):
    np.save(workdir / "nan.npy", np.full((4, 7, 5, 5), np.nan, np.float32))
    before = snapshot(workdir)
    result = invoke("convert", workdir / "x.onnx", "-o", workdir / "o.onnx", "--strategy", "auto", "--calib",
                    workdir / "nan.npy", "--drop-nonfinite")
    assert_refused(result, "nan.npy", before, workdir)


def test_verify_compares_the_candidates_graph_outputs(workdir):
    """A candidate whose internal tensor bears the reference output's name, its real output 1000x off."""
    candidate = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        sneaky (float[N, 7, 5, 5] x) => (float[N, 7, 5, 5] out) {
            y = LRN <size = 5, alpha = 0.01, beta = 0.75, bias = 1.5> (x)
            thousand = Constant <value = float {1000.0}> ()
            out = Mul (y, thousand)
        }""")
    onnx.save(candidate, str(workdir / "sneaky.onnx"))
    before = snapshot(workdir)
    result = invoke("verify", workdir / "x.onnx", workdir / "sneaky.onnx")
    assert_refused(result, "sneaky.onnx", before, workdir)
    assert "has no output 'y'" in result.stderr


@pytest.mark.parametrize("options, reason", [
    (["--tolerance", "cosine=nan,top1=nan"], "cosine=nan"), (["--tolerance", "cosine=-5"], "cosine=-5"),
    (["--tolerance", "top1=1.5"], "top1=1.5"), (["--atol", "inf"], "--atol"), (["--rtol", "nan"], "--rtol"),
    (["--atol", "-1"], "--atol"),
])
def test_tolerances_out_of_range(workdir, options, reason):
    before = snapshot(workdir)
    result = invoke("verify", workdir / "x.onnx", workdir / "x.onnx", *options)
    assert_refused(result, reason, before, workdir)


def invalid_models():
    base = dict(ir_version=8, opset_imports=[helper.make_opsetid("", 13)])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 7, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7, 5, 5])
    lrn = helper.make_node("LRN", ["x"], ["y"], name="norm", size=5)
    cycle = helper.make_graph([helper.make_node("Relu", ["b"], ["a"], name="r1"),
                               helper.make_node("LRN", ["a"], ["b"], name="norm", size=5),
                               helper.make_node("Identity", ["b"], ["y"], name="id")], "cycle", [x], [y])
    duplicate = helper.make_graph([lrn, helper.make_node("Relu", ["x"], ["y"], name="again")], "dup", [x], [y])
    undefined = helper.make_graph([helper.make_node("LRN", ["ghost"], ["y"], name="norm", size=5)], "undef", [x], [y])
    xi = helper.make_tensor_value_info("x", TensorProto.INT32, ["N", 7, 5, 5])
    yi = helper.make_tensor_value_info("y", TensorProto.INT32, ["N", 7, 5, 5])
    int_lrn = helper.make_graph([lrn], "int", [xi], [yi])
    return {"cycle": helper.make_model(cycle, **base), "duplicate-output": helper.make_model(duplicate, **base),
            "undefined-input": helper.make_model(undefined, **base), "int32-lrn": helper.make_model(int_lrn, **base)}


@pytest.mark.parametrize("case", list(invalid_models()))
def test_models_that_are_not_valid_onnx_are_refused(workdir, case):
    path = workdir / f"{case}.onnx"
    with open(path, "wb") as f:
        f.write(invalid_models()[case].SerializeToString())
    before = snapshot(workdir)
    result = invoke("convert", path, "-o", workdir / "o.onnx", "--no-verify")
    assert_refused(result, f"{case}.onnx", before, workdir)
    assert "not a valid ONNX model" in result.stderr


def test_external_data_shorter_than_its_tensor(workdir):
    model = lrn_model(5)
    weight = numpy_helper.from_array(np.ones((7, 7, 1, 1), np.float32), "w")
    model.graph.initializer.append(weight)
    model.graph.node.append(helper.make_node("Conv", ["y", "w"], ["z"], name="conv"))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 7, 5, 5]))
    onnx.save(model, str(workdir / "ext.onnx"), save_as_external_data=True, location="ext.data", size_threshold=0)
    with open(workdir / "ext.data", "r+b") as f:
        f.truncate(os.path.getsize(workdir / "ext.data") - 8)
    before = snapshot(workdir)
    result = invoke("convert", workdir / "ext.onnx", "-o", workdir / "o.onnx", "--no-verify")
    assert_refused(result, "ext.onnx", before, workdir)


def test_sparse_initializer_external_data_outside_the_folder(workdir):
    model = lrn_model(5)
    values = numpy_helper.from_array(np.ones(2, np.float32), "sparse_values")
    values.data_location = TensorProto.EXTERNAL
    values.ClearField("raw_data")
    values.external_data.add(key="location", value="../../etc/passwd")
    indices = numpy_helper.from_array(np.array([0, 3], np.int64), "sparse_indices")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [7]))
    with open(workdir / "sparse.onnx", "wb") as f:
        f.write(model.SerializeToString())
    before = snapshot(workdir)
    result = invoke("convert", workdir / "sparse.onnx", "-o", workdir / "o.onnx", "--no-verify")
    assert_refused(result, "sparse.onnx", before, workdir)
    assert "outside the model's folder" in result.stderr


def test_a_big_endian_npy_is_read_right(workdir):
    x = lrn_scale_inputs((4, 7, 5, 5), 5, 1e-2, 1.5)
    np.save(workdir / "little.npy", x)
    np.save(workdir / "big.npy", x.astype(">f4"))
    reports = []
    for name in ("little.npy", "big.npy"):
        result = invoke("verify", workdir / "x.onnx", workdir / "x.onnx", "--data", workdir / name, "--per-site",
                        "--json")
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout)["providers"]["cpu"]["kernel_floor"]["y"])
    assert reports[0] == reports[1] and reports[0]["max_rel"] < 1e-5


# ----------------------------------------------------------------------- it answered with tracebacks

def test_data_files_of_every_wrong_kind(workdir):
    cases = {
        "zero_d.npy": np.array(3.0, np.float32), "empty.npy": np.zeros((0, 7, 5, 5), np.float32),
        "strings.npy": np.array([["a"]]), "complex.npy": np.zeros((2, 7, 5, 5), np.complex64),
        "ints.npy": np.zeros((2, 7, 5, 5), np.int32), "rank.npy": np.zeros((2, 7, 5), np.float32),
        "shape.npy": np.zeros((2, 3, 5, 5), np.float32),
    }
    for name, array in cases.items():
        np.save(workdir / name, array)
    (workdir / "text.npy").write_text("not numpy")
    np.savez(workdir / "wrong_key.npz", other=np.zeros((2, 7, 5, 5), np.float32))
    (workdir / "no_images").mkdir()
    before = snapshot(workdir)
    for name in list(cases) + ["text.npy", "wrong_key.npz", "no_images"]:
        result = invoke("convert", workdir / "x.onnx", "-o", workdir / "o.onnx", "--calib", workdir / name)
        assert_refused(result, name, before, workdir)


def test_an_image_folder_for_a_four_channel_model_and_a_wrong_mean(workdir):
    from PIL import Image
    (workdir / "images").mkdir()
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(workdir / "images" / "a.png")
    onnx.save(lrn_model(3, channels=4), str(workdir / "four.onnx"))
    onnx.save(lrn_model(3, channels=3), str(workdir / "three.onnx"))
    before = snapshot(workdir)
    assert_refused(invoke("convert", workdir / "four.onnx", "-o", workdir / "o.onnx", "--calib", workdir / "images"),
                   "images", before, workdir)
    assert_refused(invoke("convert", workdir / "three.onnx", "-o", workdir / "o.onnx", "--calib", workdir / "images",
                          "--mean", "1,2"), "images", before, workdir)


def test_a_string_lrn_size(workdir):
    model = lrn_model(5)
    lrn = model.graph.node[0]
    for a in lrn.attribute:
        if a.name == "size":
            a.CopyFrom(helper.make_attribute("size", "five"))
    with open(workdir / "string.onnx", "wb") as f:
        f.write(model.SerializeToString())
    before = snapshot(workdir)
    for extra in ([], ["--no-check"]):
        result = invoke("convert", workdir / "string.onnx", "-o", workdir / "o.onnx", "--no-verify", *extra)
        assert_refused(result, "string.onnx", before, workdir)


def test_a_broken_reference_is_blamed_on_the_reference(workdir):
    """The reference holds an op ONNX Runtime lacks; the candidate is fine."""
    broken = lrn_model(5)
    broken.graph.node[0].output[0] = "t"
    broken.graph.node.append(helper.make_node("NoSuchOp", ["t"], ["y"], name="custom", domain="test.lrnconv"))
    broken.opset_import.append(helper.make_opsetid("test.lrnconv", 1))
    onnx.save(broken, str(workdir / "ref.onnx"))
    before = snapshot(workdir)
    result = invoke("verify", workdir / "ref.onnx", workdir / "x.onnx", "--no-check")
    assert_refused(result, "ref.onnx", before, workdir)
    assert "x.onnx" not in result.stderr.split("ref.onnx")[0]


def test_a_zero_sized_dim_is_called_zero_sized(workdir):
    onnx.save(lrn_model(5, spatial=0), str(workdir / "zero.onnx"))
    before = snapshot(workdir)
    result = invoke("convert", workdir / "zero.onnx", "-o", workdir / "o.onnx")
    assert_refused(result, "zero.onnx", before, workdir)
    assert "zero-sized" in result.stderr


@pytest.mark.parametrize("args, name", [
    (["convert", "{d}", "-o", "{d}/o.onnx"], "is a directory"),
    (["convert", "{d}/x.onnx", "-o", "{d}"], "is a directory"),
    (["convert", "{d}/x.onnx", "-o", "{d}/o.onnx", "--samples", "0"], "--samples"),
    (["convert", "{d}/x.onnx", "-o", "{d}/o.onnx", "--strategy"], "--strategy"),
])
def test_usage_errors_are_one_line(workdir, args, name):
    before = snapshot(workdir)
    result = invoke(*[a.format(d=workdir) for a in args])
    assert_refused(result, name, before, workdir)


def test_data_with_inf_prints_no_runtime_warning(workdir):
    x = lrn_scale_inputs((4, 7, 5, 5), 5, 1e-2, 1.5)
    x[1, 2] = np.inf
    np.save(workdir / "inf.npy", x)
    result = invoke("verify", workdir / "x.onnx", workdir / "x.onnx", "--data", workdir / "inf.npy")
    assert result.exit_code == 1
    assert "RuntimeWarning" not in result.stderr and "Traceback" not in result.output


def test_json_is_standard_for_non_finite_numbers(workdir):
    path = nan_everywhere(workdir)
    result = invoke("convert", path, "-o", workdir / "o.onnx", "--report", workdir / "r.json")
    assert result.exit_code == 1
    text = (workdir / "r.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    drift = data["verify"]["providers"]["cpu"]["outputs"]["root"]
    assert drift["nonfinite"] > 0 and not drift["passed"]


@settings(max_examples=25, deadline=None)
@given(cut=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_a_truncated_model_at_any_cut(tmp_path_factory, cut):
    folder = tmp_path_factory.mktemp("cut")
    data = build("caffenet", variant="small").SerializeToString()
    path = folder / "cut.onnx"
    path.write_bytes(data[:int(len(data) * cut)])
    before = snapshot(folder)
    result = invoke("convert", path, "-o", folder / "o.onnx", "--no-verify")
    assert_refused(result, "cut.onnx", before, folder)


# ----------------------------------------------------------------------- interruptions

@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """Full-width CaffeNet (244 MB): a write long enough to be interrupted in the middle."""
    folder = tmp_path_factory.mktemp("big")
    onnx.save(build("caffenet", variant="full"), str(folder / "big.onnx"))
    return folder / "big.onnx"


def _run_and_signal(model, out, sig, delay):
    process = subprocess.Popen([sys.executable, "-m", "lrnconv", "convert", str(model), "-o", str(out),
                                "--no-verify"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr.decode()


def _assert_nothing_half_written(folder, out, allow_staging):
    for name in os.listdir(folder):
        if name.startswith(STAGING_PREFIX):
            assert allow_staging, f"left behind: {name}"
            continue
        assert name in ("big.onnx", out.name), f"unexpected file {name}"
    if out.exists():
        onnx.checker.check_model(onnx.load(str(out)))  # complete, or not there at all


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_an_interrupted_convert_leaves_nothing_half_written(big_model, tmp_path, sig):
    folder = big_model.parent
    before = snapshot(folder)["big.onnx"]
    start = time.perf_counter()
    complete, _ = _run_and_signal(big_model, tmp_path / "timing.onnx", 0, 0)  # signal 0: no-op, a full run
    duration = time.perf_counter() - start
    assert complete == 0
    for fraction in (0.35, 0.6, 0.8, 0.95):
        out = folder / "out.onnx"
        if out.exists():
            out.unlink()
        code, stderr = _run_and_signal(big_model, out, sig, duration * fraction)
        handled = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: None}[sig]
        # 0: it finished first; the handled code; or killed by the signal before Python ran lrnconv at all
        assert code in (0, handled, -sig), (fraction, code, stderr)
        if code == handled:
            assert "Traceback" not in stderr and "nothing was" in stderr
        _assert_nothing_half_written(folder, out, allow_staging=sig == signal.SIGKILL)
        assert snapshot(folder)["big.onnx"] == before
    cleanup = invoke("convert", lrn_model_path(folder), "-o", folder / "small_out.onnx", "--no-verify")
    assert cleanup.exit_code == 0
    assert not [n for n in os.listdir(folder) if n.startswith(STAGING_PREFIX)]
    for name in ("out.onnx", "small_out.onnx", "small.onnx"):
        if (folder / name).exists():
            (folder / name).unlink()


class _ModuleInterruptedWhileLoading:
    """What ``from .cli import main`` meets when Ctrl-C lands inside ONNX Runtime's pybind11 init."""

    def __getattr__(self, name):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as stop:
            raise ImportError("initialization failed") from stop


def test_ctrl_c_inside_a_compiled_modules_start_up_is_an_interrupt(monkeypatch, capsys):
    from lrnconv.app import entry

    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the test process keeps its own SIGTERM
    monkeypatch.setitem(sys.modules, "lrnconv.app.cli", _ModuleInterruptedWhileLoading())
    with pytest.raises(SystemExit) as stopped:
        entry.main()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "lrnconv: interrupted; nothing was written\n"


def test_an_import_error_of_its_own_still_surfaces(monkeypatch):
    from lrnconv.app import entry

    class Broken:
        def __getattr__(self, name):
            raise ImportError("a real missing library")

    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setitem(sys.modules, "lrnconv.app.cli", Broken())
    with pytest.raises(ImportError, match="a real missing library"):
        entry.main()


def lrn_model_path(folder):
    path = folder / "small.onnx"
    onnx.save(lrn_model(5), str(path))
    return path
