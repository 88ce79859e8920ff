"""Shared builders for tiny test models (ONNX text syntax where it reads best)."""
from __future__ import annotations

import importlib.util
import os
from typing import Dict, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper


def lrn_model(size: int, *, channels: int = 7, rank: int = 4, spatial: int = 5,
              alpha: float = 1e-2, beta: float = 0.75, bias: float = 1.5,
              elem_type: int = TensorProto.FLOAT, opset: int = 13, batch="N",
              dynamic_spatial: bool = False) -> onnx.ModelProto:
    """x -> LRN -> y, with a symbolic batch (and optionally symbolic spatial) dims."""
    dims = [batch, channels] + [("S%d" % i if dynamic_spatial else spatial) for i in range(rank - 2)]
    x = helper.make_tensor_value_info("x", elem_type, dims)
    y = helper.make_tensor_value_info("y", elem_type, dims)
    node = helper.make_node("LRN", ["x"], ["y"], name="norm", size=size, alpha=alpha, beta=beta, bias=bias)
    model = helper.make_model(helper.make_graph([node], "lrn", [x], [y]),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 7 if opset < 15 else model.ir_version)
    return model


def run(model: onnx.ModelProto, feeds: Dict[str, np.ndarray], outputs: Optional[Sequence[str]] = None):
    """Outputs of a model under ONNX Runtime CPU."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(outputs or [o.name for o in session.get_outputs()], session.run(outputs, feeds)))


def max_rel(a, b) -> float:
    """max |a - b| / max |b| in float64, b the reference: the one numeric-equality measure of the
    tests (the project's drift metric, computed here independently of ``lrnconv.maths.drift``)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a64.shape == b64.shape, (a64.shape, b64.shape)
    return float(np.max(np.abs(a64 - b64)) / np.max(np.abs(b64)))


def lrn_scale_inputs(shape, size: int, alpha: float, bias: float, seed: int = 0) -> np.ndarray:
    """Inputs whose LRN term alpha/size * sum(x^2) is comparable to bias (not vacuous)."""
    rng = np.random.default_rng(seed)
    magnitude = np.sqrt(bias / alpha)
    return (rng.standard_normal(shape) * magnitude).astype(np.float32)


@pytest.fixture
def tiny_lrn_file(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(lrn_model(5), str(path))
    return path


def digits_split():
    """``make_digits_lrn.digits_split()`` of the fixture folder (not a package): train and test splits."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "make_digits_lrn.py")
    spec = importlib.util.spec_from_file_location("make_digits_lrn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.digits_split()
