"""``zoo --quantize int8``: the INT8 columns, held to our own run of the INT8 files, and the figure.

The zoo has no data, so every model is calibrated and judged on the documented seeded random
samples (sample i drawn from ``default_rng([0, i])``, uniform [-128, 128); the first half
calibrates, the second is held out). The test draws the held-out half itself, runs the INT8
file the zoo wrote and the float original in plain ONNX Runtime sessions, and measures max-rel
and top-1 agreement with numpy: the report must say the same.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lrnconv.app import zoo_report
from lrnconv.app.plots import ZOO_FIGURE
from lrnconv.runtime.cpu import int8_dot_saturates
from zoo_support import invoke, read_report

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SAMPLES = 64  # what convert draws for quantization without data


@pytest.fixture(scope="module")
def quantized_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo_int8")
    source = root / "src"
    source.mkdir()
    shutil.copy(os.path.join(FIXTURES, "digits_lrn.onnx"), source / "digits.onnx")
    out = root / "out"
    result = invoke("zoo", source, "-o", out, "--strategy", "keep,fold", "--quantize", "int8", "--timing-runs", "2")
    return source, out, result


def _run(path, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _held_out(model: onnx.ModelProto) -> np.ndarray:
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    rows = [np.random.default_rng([0, i]).uniform(-128, 128, size=dims).astype(np.float32)
            for i in range(SAMPLES // 2, SAMPLES)]
    return np.stack(rows)


def test_int8_columns_match_our_own_run_of_the_int8_files(quantized_zoo):
    source, out, result = quantized_zoo
    report = read_report(out)
    by_strategy = {e["strategy"]: e for e in report["entries"]}
    original = source / "digits.onnx"
    x = _held_out(onnx.load(str(original)))
    reference = _run(original, x)
    for strategy in ("keep", "fold"):
        int8 = by_strategy[strategy]["int8"]
        path = out / int8["output"]
        assert int8["output"] == f"digits/{strategy}.int8.onnx" and int8["output_bytes"] == os.path.getsize(path)
        model = onnx.load(str(path))
        assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
        got = _run(path, x)
        max_rel = np.abs(got.astype(np.float64) - reference).max() / np.abs(reference).max()
        top1 = float(np.mean(got.argmax(axis=1) == reference.argmax(axis=1)))
        assert int8["worst"]["max_rel"] == pytest.approx(max_rel, rel=1e-6, abs=1e-9)
        assert int8["worst"]["top1"] == top1
        assert int8["latency"]["ratio"] > 0 and int8["latency"]["runs"] == 2
        assert int8["passed"] == (int8["status"] == "passed")
    # keep leaves both LRNs in float; fold leaves nothing in float
    assert {i.split()[0] for i in by_strategy["keep"]["int8"]["float_islands"]} >= {"LRN"}
    assert not by_strategy["keep"]["int8"]["integer_only"]
    assert by_strategy["fold"]["int8"]["float_islands"] == [] and by_strategy["fold"]["int8"]["integer_only"]
    assert report["int8_failed"] == sum(not e["int8"]["passed"] for e in report["entries"])
    assert result.exit_code == (1 if report["int8_failed"] or report["failed"] else 0), result.output
    assert report["fingerprint"]["options"]["quantize"] == {"int8": {
        "exclude_decomposition": False, "exclude_nodes": [], "per_channel": True, "symmetric_activations": True,
        "reduce_range": int8_dot_saturates()}}  # results on another kind of CPU are not reused


def test_reports_show_the_int8_table_and_link_the_figure(quantized_zoo):
    _, out, result = quantized_zoo
    markdown = (out / "report.md").read_text()
    assert "## INT8" in markdown and "| digits | fold |" in markdown.split("## INT8")[1]
    assert f"]({ZOO_FIGURE})" in markdown
    assert "a proxy for the target's own quantizer" in markdown
    page = (out / "report.html").read_text()
    assert "INT8 max rel" in page and f'src="{ZOO_FIGURE}"' in page
    figure = out / ZOO_FIGURE
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(figure) as image:
        assert image.size[0] > 400 and image.size[1] > 300
    assert "INT8 within tolerance:" in result.output


def test_a_rerun_with_the_int8_files_intact_is_reused_and_a_changed_one_is_redone(quantized_zoo):
    source, out, _ = quantized_zoo
    again = invoke("zoo", source, "-o", out, "--strategy", "keep,fold", "--quantize", "int8", "--timing-runs", "2")
    assert "1 finished before" in again.output
    int8 = out / "digits" / "fold.int8.onnx"
    int8.write_bytes(int8.read_bytes() + b"\x00")
    redo = invoke("zoo", source, "-o", out, "--strategy", "keep,fold", "--quantize", "int8", "--timing-runs", "2")
    assert "0 finished before" in redo.output
    onnx.checker.check_model(onnx.load(str(int8)))


def test_merge_rebases_the_int8_paths(quantized_zoo, tmp_path):
    _, out, _ = quantized_zoo
    merged = tmp_path / "merged"
    result = invoke("zoo", "merge", out, "-o", merged)
    assert result.exit_code in (0, 1), result.output
    for entry in read_report(merged)["entries"]:
        assert os.path.isfile(merged / entry["int8"]["output"])
        assert entry["report"]["int8"]["output"] == entry["int8"]["output"]


def test_without_the_plots_extra_no_figure_and_the_hint(quantized_zoo, tmp_path, monkeypatch):
    source, _, _ = quantized_zoo
    monkeypatch.setattr(zoo_report, "plots_available", lambda: False)
    monkeypatch.setattr("lrnconv.app.cli.plots_available", lambda: False)
    out = tmp_path / "out"
    result = invoke("zoo", source, "-o", out, "--strategy", "fold", "--timing-runs", "1")
    assert not (out / ZOO_FIGURE).exists()
    assert "](drift_latency.png)" not in (out / "report.md").read_text()
    assert 'pip install -e ".[plots]"' in result.output
    assert read_report(out)["entries"][0]["int8"] is None  # not quantized: no INT8 columns either
    assert "## INT8" not in (out / "report.md").read_text()
