"""CUDA checks: run for real by benchmarks/gpu_check.sh on a GPU machine (skipped without one).

On a machine without CUDA the same contract is checked the other way round:
``tests/test_cli.py::test_missing_cuda_provider_is_exit_2``.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto

import lrnconv
from lrnconv.app.cli import main
from lrnconv.models import BUILTIN, build
from lrnconv.maths.reference import lrn_onnx
from lrnconv.runtime.sessions import create_session
from conftest import lrn_model, lrn_scale_inputs, max_rel

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                       reason="no CUDAExecutionProvider here; benchmarks/gpu_check.sh runs these on the GPU machine"),
]
CUDA = "CUDAExecutionProvider"


@pytest.mark.parametrize("size", [1, 3, 5, 7, 9])
def test_decompose_matches_cudnn_lrn(size):
    model = lrn_model(size, channels=24, alpha=1e-3, bias=2.0)
    x = lrn_scale_inputs((3, 24, 6, 6), size, 1e-3, 2.0)
    native = create_session(model, CUDA).run({"x": x})["y"]
    decomposed = create_session(lrnconv.convert(model, "decompose").model, CUDA).run({"x": x})["y"]
    truth = lrn_onnx(x.astype(np.float64), size, 1e-3, 0.75, 2.0)
    assert max_rel(decomposed, native) <= 1e-5
    assert max_rel(decomposed, truth) <= 1e-6


@pytest.mark.parametrize("size", [3, 5])
def test_float16_on_cuda(size):
    model = lrn_model(size, channels=16, alpha=1e-3, bias=2.0, elem_type=TensorProto.FLOAT16)
    x = lrn_scale_inputs((2, 16, 5, 5), size, 1e-3, 2.0).astype(np.float16)
    truth = lrn_onnx(x.astype(np.float64), size, 1e-3, 0.75, 2.0)
    decomposed = create_session(lrnconv.convert(model, "decompose").model, CUDA).run({"x": x})["y"]
    native = create_session(model, CUDA).run({"x": x})["y"]
    assert decomposed.dtype == np.float16
    assert max_rel(decomposed, truth) <= 2 ** -10
    assert max_rel(native, truth) <= 2 ** -9


@pytest.mark.parametrize("name", list(BUILTIN))
def test_verify_cpu_and_cuda_with_noise_floor(name):
    model = build(name, variant="small")
    converted = lrnconv.convert(model, "decompose").model
    report = lrnconv.verify(model, converted, providers=("cpu", "cuda"), samples=16, per_site=True)
    assert set(report.providers) == {"cpu", "cuda"}
    assert report.passed, report.to_dict()
    assert report.providers["cuda"].outputs["prob"].top1 == 1.0
    assert "cuda" in report.noise_floor and report.noise_floor["cuda"]["prob"].max_rel > 0


def test_cli_verify_cuda(tmp_path):
    source, target = tmp_path / "m.onnx", tmp_path / "c.onnx"
    lrnconv.save(build("alexnet", variant="small"), str(source))
    runner = CliRunner()
    assert runner.invoke(main, ["convert", str(source), "-o", str(target), "--no-verify"]).exit_code == 0
    result = runner.invoke(main, ["verify", str(source), str(target), "--providers", "cpu,cuda"])
    assert result.exit_code == 0, result.output
    assert "[cuda] outputs" in result.stdout and "[noise floor]" in result.stdout
