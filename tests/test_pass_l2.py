"""``l2``: exact when the window covers every channel with bias 0 and beta 0.5, least squares otherwise."""
from __future__ import annotations

import numpy as np
import pytest

from lrnconv.maths.reference import lrn_onnx
from lrnconv.maths.stats import SiteStats

from conftest import max_rel, run
from pass_models import EXACT_REL, chain_model, converted, feeds_for, initializer, producer


@pytest.mark.parametrize("size,channels", [(7, 4), (8, 4), (9, 3)])
def test_l2_exact_when_window_covers_all_channels(size, channels):
    model = chain_model(alpha=0.3, beta=0.5, bias=0.0, size=size, channels=channels)
    feeds = feeds_for(model)
    result = converted(model, "l2")
    record = result.sites[0]
    assert record.status == "exact" and record.details["constant"] == pytest.approx(np.sqrt(size / 0.3))
    assert [n.op_type for n in result.model.graph.node] == ["LpNormalization", "Mul"]
    assert producer(result.model, "y").op_type == "Mul"
    expected = lrn_onnx(feeds["x"].astype(np.float64), size, 0.3, 0.5, 0.0)
    assert max_rel(run(result.model, feeds)["y"], expected) <= EXACT_REL


@pytest.mark.parametrize("size,bias,beta,why", [
    (3, 0.0, 0.5, "does not cover all 6 channels"),
    (11, 1.0, 0.5, "bias = 1 (not 0)"),
    (11, 0.0, 0.75, "beta = 0.75 (not 0.5)"),
])
def test_l2_approximate_constant_is_least_squares(size, bias, beta, why):
    model = chain_model(alpha=0.3, beta=beta, bias=bias, size=size, channels=6)
    feeds = feeds_for(model)
    x = feeds["x"]
    y = lrn_onnx(x.astype(np.float64), size, 0.3, beta, bias)
    stats = SiteStats(6)
    stats.update(x, y)
    result = converted(model, "l2", {"y": stats})
    record = result.sites[0]
    assert record.status == "approximate" and why in record.reason
    u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    k = np.linalg.lstsq(u.reshape(-1, 1), y.reshape(-1), rcond=None)[0][0]
    assert record.details["constant"] == pytest.approx(k, rel=1e-9)
    mul = producer(result.model, "y")
    assert float(initializer(result.model, mul.input[1])) == pytest.approx(k, rel=1e-6)
    assert max_rel(run(result.model, feeds)["y"], u * k) <= 1e-6
