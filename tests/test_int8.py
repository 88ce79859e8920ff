"""``--quantize int8``: ONNX Runtime's static quantizer on the converted model, held to our own measurement.

On the trained fixture networks (``fixtures/digits_lrn.onnx``, ``fixtures/digits_wide_lrn.onnx``)
with scikit-learn's digits test split as data (the first half calibrates, the second is held
out): the QDQ file that ``convert --quantize int8`` writes is loaded and run here in a plain
ONNX Runtime session, and its top-1 agreement with the *float original* and its max-rel are
measured with numpy; lrnconv's report must say the same (exact count, 1e-6). Float islands:
``keep`` leaves each LRN in float, ``fold`` leaves none, ``decompose`` leaves its Sqrt/Div
(and all of its nodes with ``--quantize-exclude-decomposition``). ``auto --quantize int8``
must pick per site a strategy whose INT8 model is within tolerance, and list the rejected
ones with their INT8 numbers. An independent quantization with ``onnxruntime.quantization``
called directly (the documented settings) must give the same model behaviour.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import lrnconv
from lrnconv.app.cli import main as cli_main
from lrnconv.maths.drift import Tolerance
from lrnconv.measure.quantization import PROXY_NOTE
from conftest import digits_split

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
DIGITS = os.path.join(FIXTURES, "digits_lrn.onnx")
WIDE = os.path.join(FIXTURES, "digits_wide_lrn.onnx")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    _, _, x_test, _ = digits_split()
    folder = tmp_path_factory.mktemp("int8")
    path = folder / "digits.npy"
    np.save(path, x_test)
    half = (len(x_test) + 1) // 2
    return {"path": str(path), "x": x_test, "fit": x_test[:half], "held": x_test[half:]}


def _prob(model, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"]).run(["prob"], {"data": x})[0]


def _convert(tmp_path, model_path, strategy, data, *extra):
    out, report = tmp_path / f"{strategy}.onnx", tmp_path / f"{strategy}.json"
    run = CliRunner().invoke(cli_main, ["convert", model_path, "-o", str(out), "--strategy", strategy,
                                        "--calib", data["path"], "--quantize", "int8", "--report", str(report),
                                        "--tolerance", "top1=0.9,cosine=0.95", *extra])
    assert run.exit_code in (0, 1), run.output
    return run, out, tmp_path / f"{strategy}.int8.onnx", json.loads(report.read_text())


def _check_reported_against_a_direct_measurement(int8_path, model_path, report, data):
    quantized = onnx.load(str(int8_path))
    onnx.checker.check_model(quantized, full_check=True)
    ops = {n.op_type for n in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    got, reference = _prob(quantized, data["held"]), _prob(lrnconv.load(model_path), data["held"])
    theirs = report["int8"]["verify"]["providers"]["cpu"]["outputs"]["prob"]
    assert theirs["shape"] == list(reference.shape)  # the held-out half, nothing else
    assert theirs["top1"] == float(np.mean(got.argmax(1) == reference.argmax(1)))
    diff = np.abs(got.astype(np.float64) - reference)
    assert theirs["max_rel"] == pytest.approx(float(diff.max() / np.abs(reference).max()), abs=1e-6)
    assert theirs["max_abs"] == pytest.approx(float(diff.max()), abs=1e-6)
    return quantized


@pytest.mark.parametrize("model_path", [DIGITS, WIDE], ids=["digits_lrn", "digits_wide_lrn"])
def test_keep_leaves_each_lrn_in_float(tmp_path, data, model_path):
    run, out, int8, report = _convert(tmp_path, model_path, "keep", data)
    quantized = _check_reported_against_a_direct_measurement(int8, model_path, report, data)
    islands = report["int8"]["float_islands"]
    lrns = [i for i in islands if i["op_type"] == "LRN"]
    assert [(i["node"], i["site"]) for i in lrns] == [("norm1", "norm1"), ("norm2", "norm2")]
    assert all("no quantized LRN" in i["reason"] for i in lrns)
    assert report["int8"]["integer_only"] is False
    assert "norm1 [LRN] (LRN site 'norm1'): ONNX Runtime has no quantized LRN" in run.stdout
    # the LRN really runs on float data: fed by a DequantizeLinear, not by a quantized tensor
    producers = {t: n for n in quantized.graph.node for t in n.output}
    for node in (n for n in quantized.graph.node if n.op_type == "LRN"):
        assert producers[node.input[0]].op_type == "DequantizeLinear"
    assert PROXY_NOTE in report["notes"] and PROXY_NOTE in report["int8"]["notes"]
    assert os.path.exists(out) and run.stdout.rstrip().endswith(f"wrote {out}")


def test_fold_leaves_no_float_island_and_the_settings_are_per_channel_symmetric(tmp_path, data):
    run, out, int8, report = _convert(tmp_path, DIGITS, "fold", data)
    quantized = _check_reported_against_a_direct_measurement(int8, DIGITS, report, data)
    assert report["int8"]["float_islands"] == [] and report["int8"]["integer_only"] is True
    assert "float islands: none" in run.stdout
    initializers = {t.name: numpy_helper.to_array(t) for t in quantized.graph.initializer}
    for node in quantized.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero_point = initializers.get(node.input[2])
            if zero_point is not None:
                assert zero_point.dtype in (np.int8, np.int32) and not zero_point.any(), node.name  # symmetric
    conv_weights = [n for n in quantized.graph.node if n.op_type == "DequantizeLinear"
                    and n.input[0] in initializers and initializers[n.input[0]].ndim == 4]
    assert conv_weights and all(initializers[n.input[1]].size == initializers[n.input[0]].shape[0]
                                for n in conv_weights)  # one scale per output channel
    # side by side: the float drift and the INT8 drift of the same strategy, same samples
    float_drift = report["verify"]["providers"]["cpu"]["outputs"]["prob"]
    assert float_drift["shape"] == report["int8"]["verify"]["providers"]["cpu"]["outputs"]["prob"]["shape"]
    assert re.search(r"prob\s+\S+\s+\S+\s+0\.\d+\s+0\.\d+\s+\d+\.\d+%\s+\d+\.\d+%", run.stdout)


def test_decompose_names_its_float_nodes_and_can_keep_all_of_them_in_float(tmp_path, data):
    run, _, int8, report = _convert(tmp_path, DIGITS, "decompose", data)
    _check_reported_against_a_direct_measurement(int8, DIGITS, report, data)
    islands = report["int8"]["float_islands"]
    by_site = {i["node"]: i for i in islands if i["site"]}
    assert {i["op_type"] for i in by_site.values()} == {"Sqrt", "Div"}
    assert {i["site"] for i in by_site.values()} == {"norm1", "norm2"}
    kept = tmp_path / "kept"
    kept.mkdir()
    run2, _, int8_kept, report2 = _convert(kept, DIGITS, "decompose", data, "--quantize-exclude-decomposition")
    _check_reported_against_a_direct_measurement(int8_kept, DIGITS, report2, data)
    requested = [i for i in report2["int8"]["float_islands"] if i["reason"] == "kept in float on request"]
    decomposition = [n.name for n in lrnconv.load(str(tmp_path / "decompose.onnx")).graph.node
                     if n.name.startswith(("norm1/", "norm2/"))]
    assert sorted(i["node"] for i in requested) == sorted(decomposition)
    assert all(i["site"] in ("norm1", "norm2") for i in requested)
    assert sorted(report2["int8"]["excluded"]) == sorted(decomposition)
    assert any("decompose's nodes were kept in float on request" in n for n in report2["int8"]["notes"])


def test_auto_judges_every_candidate_by_its_int8_model(tmp_path, data):
    tolerance = Tolerance(top1=0.98, cosine=0.99)
    out, report_path = tmp_path / "auto.onnx", tmp_path / "auto.json"
    run = CliRunner().invoke(cli_main, ["convert", DIGITS, "-o", str(out), "--strategy", "auto", "--calib",
                                        data["path"], "--quantize", "int8", "--tolerance", "top1=0.98,cosine=0.99",
                                        "--report", str(report_path)])
    assert run.exit_code == 0, run.output
    report = json.loads(report_path.read_text())
    number = re.compile(r"INT8 (within|outside) tolerance: cosine ([0-9.]+), top-1 ([0-9.]+), max rel")
    for site in report["sites"]:
        tried = site["auto"]
        assert tried[-1]["accepted"] and tried[-1]["strategy"] == site["strategy"]
        for attempt in tried:
            match = number.match(attempt["reason"])
            assert match, attempt  # every candidate was measured as INT8, with its numbers
            within, cosine, top1 = match.group(1) == "within", float(match.group(2)), float(match.group(3))
            assert within == attempt["accepted"] == (cosine >= tolerance.cosine and top1 >= tolerance.top1)
        assert "auto rejected: " + tried[0]["strategy"] in run.stdout or len(tried) == 1
    assert report["sites"][0]["auto"][0] == {**report["sites"][0]["auto"][0], "strategy": "remove", "accepted": False}
    final = _check_reported_against_a_direct_measurement(tmp_path / "auto.int8.onnx", DIGITS, report, data)
    got, reference = _prob(final, data["held"]), _prob(lrnconv.load(DIGITS), data["held"])
    assert np.mean(got.argmax(1) == reference.argmax(1)) >= tolerance.top1
    assert report["int8"]["verify"]["passed"] and "INT8 PASSED" in run.stdout


def test_our_int8_model_is_what_onnx_runtimes_quantizer_makes_with_the_documented_settings(tmp_path, data):
    """An independent quantization of the same float model, calling onnxruntime.quantization directly."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    result = lrnconv.convert(lrnconv.load(WIDE), "fold", calibration={"data": data["x"]}, quantize="int8",
                             verify=lrnconv.VerifyOptions())
    float_path, pre, theirs = (str(tmp_path / n) for n in ("float.onnx", "pre.onnx", "theirs.onnx"))
    onnx.save(result.model, float_path)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(data["fit"][i:i + 16] for i in range(0, len(data["fit"]), 16))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"data": batch}

    quant_pre_process(float_path, pre)
    quantize_static(pre, theirs, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
                    reduce_range="7-bit (reduce_range)" in result.int8.settings)  # what the report says it did
    ours = _prob(result.int8.model, data["held"])
    np.testing.assert_array_equal(ours, _prob(onnx.load(theirs), data["held"]))
    drift = result.int8.outputs()["prob"]
    reference = _prob(lrnconv.load(WIDE), data["held"])
    assert drift.top1 == float(np.mean(ours.argmax(1) == reference.argmax(1)))
    assert result.passed == (result.verify.passed and result.int8.passed)


def _weight_range(model: onnx.ModelProto):
    """The smallest and largest int8 value of the QDQ model's quantized weights."""
    values = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    weights = [v for v in values if v.size > 1]  # zero points are scalars or all zeros
    return min(int(v.min()) for v in weights), max(int(v.max()) for v in weights)


@pytest.mark.parametrize("reduce_range", [True, False])
def test_weight_range_is_what_was_asked_and_said(data, reduce_range):
    """reduce_range=True quantizes the weights to 7 bits (|q| <= 64), False to the full 8 (|q| reaches 127)."""
    options = lrnconv.Int8Options(reduce_range=reduce_range)
    result = lrnconv.convert(lrnconv.load(DIGITS), "fold", calibration={"data": data["x"][:64]}, quantize=options)
    low, high = _weight_range(result.int8.model)
    if reduce_range:
        assert -64 <= low and high <= 64 and max(-low, high) >= 60
        assert "7-bit (reduce_range)" in result.int8.settings
    else:
        assert max(-low, high) == 127 and "7-bit" not in result.int8.settings
    assert not any("x86 without VNNI" in n for n in result.int8.notes)  # asked for: no machine note


def test_by_default_weights_are_7_bit_exactly_where_the_cpu_saturates(data):
    """x86 without avx512_vnni / avx_vnni (read here from /proc/cpuinfo): VPMADDUBSW's int16 pair sums clip."""
    with open("/proc/cpuinfo") as cpuinfo:
        flags = next(line for line in cpuinfo if line.startswith("flags")).split()
    saturates = platform.machine() in ("x86_64", "AMD64") and not {"avx512_vnni", "avx_vnni"} & set(flags)
    result = lrnconv.convert(lrnconv.load(DIGITS), "fold", calibration={"data": data["x"][:64]}, quantize="int8")
    low, high = _weight_range(result.int8.model)
    assert (max(-low, high) <= 64) == saturates
    assert any("x86 without VNNI" in n for n in result.int8.notes) == saturates


def test_opset_is_raised_for_per_channel_quantization_and_said(data):
    model = lrnconv.load(DIGITS)
    model.opset_import[0].version = 11  # every op of this network means the same at opset 11
    onnx.checker.check_model(model, full_check=True)
    result = lrnconv.convert(model, "remove", calibration={"data": data["x"][:64]}, quantize="int8")
    assert result.int8.opset_from == 11 and result.int8.opset_to == 13
    assert any("opset raised from 11 to 13" in n for n in result.int8.notes)
    assert [o.version for o in result.model.opset_import if o.domain == ""] == [11]  # the float model keeps it
    assert [o.version for o in result.int8.model.opset_import if o.domain == ""] == [13]
    assert {o.domain for o in result.int8.model.opset_import} <= {"", "ai.onnx"}  # no optimizer leftovers


def test_verify_quantize_matches_a_direct_measurement(tmp_path, data):
    converted = tmp_path / "remove.onnx"
    lrnconv.save(lrnconv.convert(lrnconv.load(WIDE), "remove").model, str(converted))
    saved = tmp_path / "remove.int8.onnx"
    run = CliRunner().invoke(cli_main, ["verify", WIDE, str(converted), "--data", data["path"], "--quantize", "int8",
                                        "--tolerance", "top1=0.5,cosine=0.5", "--save-int8", str(saved), "--json"])
    assert run.exit_code == 0, run.output
    document = json.loads(run.stdout)
    _check_reported_against_a_direct_measurement(saved, WIDE, document, data)
    float_prob = document["providers"]["cpu"]["outputs"]["prob"]
    reference = _prob(lrnconv.load(WIDE), data["held"])
    mine = _prob(lrnconv.load(str(converted)), data["held"])
    assert float_prob["top1"] == float(np.mean(mine.argmax(1) == reference.argmax(1)))
    assert document["int8"]["float_islands"] == [] and document["passed"] is True


def test_the_int8_file_never_replaces_an_input(tmp_path, data):
    model = tmp_path / "net.onnx"
    model.write_bytes(open(DIGITS, "rb").read())
    os.link(model, tmp_path / "out.int8.onnx")  # the INT8 target is the input itself, by a hard link
    run = CliRunner().invoke(cli_main, ["convert", str(model), "-o", str(tmp_path / "out.onnx"), "--calib",
                                        data["path"], "--quantize", "int8"])
    assert run.exit_code == 2 and "refusing to overwrite" in run.output
    assert not (tmp_path / "out.onnx").exists() and model.read_bytes() == open(DIGITS, "rb").read()


def test_inspect_plot_writes_figures_or_says_how_to_get_them(tmp_path, data):
    pytest.importorskip("matplotlib")
    figures = tmp_path / "figures"
    figures.mkdir()
    run = CliRunner().invoke(cli_main, ["inspect", WIDE, "--data", data["path"], "--quantize", "int8",
                                        "--strategies", "remove,fold,decompose", "--plot", str(figures)])
    assert run.exit_code == 0, run.output
    for site in ("norm1", "norm2"):
        png = figures / f"{site}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert f"wrote {png}" in run.stdout
    assert "INT8 top-1" in run.stdout and "original" in run.stdout
    # without matplotlib (the plots extra): everything else still works, and the command says how to get figures
    empty = tmp_path / "empty"
    empty.mkdir()
    script = ("import sys; sys.modules['matplotlib'] = None\n"
              "from lrnconv.app.cli import main\n"
              f"main(['inspect', {WIDE!r}, '--data', {data['path']!r}, '--plot', {str(empty)!r}])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "plots extra" in done.stderr and "pip install" in done.stderr
    assert "negligible" in done.stdout and os.listdir(empty) == []
