"""``bn``: exact for constant scales at every opset and rank, least-squares affine otherwise."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from lrnconv.maths.reference import lrn_onnx

from conftest import max_rel, run
from pass_models import (
    EXACT_REL,
    backward_model,
    chain_model,
    converted,
    feeds_for,
    initializer,
    lstsq_affine,
    ops,
    oracle,
    producer,
    run_exposed,
    stats_of,
)


@pytest.mark.parametrize("opset", [7, 9, 13, 15])
@pytest.mark.parametrize("rank", [3, 4, 5])
def test_bn_exact_when_alpha_zero(opset, rank):
    model = chain_model(rank=rank, opset=opset)
    feeds = feeds_for(model)
    result = converted(model, "bn")
    record = result.sites[0]
    assert record.status == "exact" and record.tensor == "y"
    (bn,) = result.model.graph.node
    assert bn.op_type == "BatchNormalization" and bn.output == ["y"]
    assert ({a.name for a in bn.attribute} - {"epsilon"}) == ({"spatial"} if opset < 9 else set())
    expected = lrn_onnx(feeds["x"].astype(np.float64), 3, 0.0, 0.75, 2.0)
    assert max_rel(run(result.model, feeds)["y"], expected) <= EXACT_REL


def test_bn_exact_in_float16():
    model = chain_model(elem="float16")
    feeds = feeds_for(model)
    result = converted(model, "bn")
    expected = lrn_onnx(feeds["x"].astype(np.float64), 3, 0.0, 0.75, 2.0)
    # only the float16 rounding of x * bias^-beta: one half-ulp of the scale and of the product
    assert max_rel(run(result.model, feeds)["y"], expected) <= 2 ** -10


def test_bn_fitted_affine_is_least_squares():
    model = backward_model(0.05)
    feeds = feeds_for(model, magnitude=10.0)
    _, xs, ys = oracle(model, feeds)
    result = converted(model, "bn", stats_of(model, xs, ys))
    record = result.sites[0]
    assert record.status == "approximate"
    bn = producer(result.model, "n1")
    a, b = lstsq_affine(xs["p1"], ys["n1"])
    np.testing.assert_allclose(initializer(result.model, bn.input[1]), a, rtol=1e-6)
    np.testing.assert_allclose(initializer(result.model, bn.input[2]), b, rtol=1e-5, atol=1e-6)
    got = run_exposed(result.model, feeds, ["n1"])["n1"]
    want = xs["p1"] * a[None, :, None, None] + b[None, :, None, None]
    assert max_rel(got, want) <= 1e-6
    assert ops(result.model) == ops(model) - Counter({"LRN": 1}) + Counter({"BatchNormalization": 1})
    assert 0 < record.details["residual_rms"] < 1
