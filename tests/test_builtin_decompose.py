"""Every built-in replica: LRN-free after decompose, valid, and numerically the same model."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import itertools

import lrnconv
from lrnconv.inputs import random_inputs
from lrnconv.models import BUILTIN, build
from lrnconv.passes.decompose import POWERS, WINDOWS
from conftest import max_rel, run

END_TO_END_MAX_REL = 1e-4
"""Drift against ONNX Runtime's *native* LRN, after ~10 more layers. The native kernel is
itself off float64 by up to ~7e-6 at these sites (running-sum cancellation) and decompose
by < 1e-6 (tests/test_lrn_accuracy.py); the network amplifies the native kernel's error to
5e-6..4.5e-5 at 'prob' on the full replicas, so 1e-5 would test the native kernel, not us."""


def check_decomposed(model: onnx.ModelProto, samples: int = 32, **options):
    result = lrnconv.convert(model, "decompose", options=options)
    converted = result.model
    assert "LRN" not in {n.op_type for n in converted.graph.node}
    assert len(result.sites) == sum(n.op_type == "LRN" for n in model.graph.node) >= 2
    assert all(r.status == "exact" for r in result.sites)
    onnx.checker.check_model(converted, full_check=True)
    feeds = random_inputs(model, samples, seed=0)
    expected = run(model, feeds)["prob"]
    got = run(converted, feeds)["prob"]
    assert max_rel(got, expected) <= END_TO_END_MAX_REL
    assert np.mean(np.argmax(got, 1) == np.argmax(expected, 1)) == 1.0
    # the check is not vacuous: the outputs are not a constant class
    assert len(set(np.argmax(expected, 1))) > 1
    return result


@pytest.mark.parametrize("name", list(BUILTIN))
def test_small_variant(name):
    check_decomposed(build(name, variant="small"))


FORMULATIONS = list(itertools.product(WINDOWS, POWERS))


@pytest.mark.parametrize("window,power", FORMULATIONS, ids=[f"{w}-{p}" for w, p in FORMULATIONS])
@pytest.mark.parametrize("name", ["alexnet", "googlenet"])
def test_every_formulation_in_place(name, window, power):
    """Inside the networks, where ONNX Runtime runs the site in its blocked layout."""
    result = check_decomposed(build(name, variant="small"), samples=8, window=window, power=power)
    assert {(r.details["window"], r.details["power"]) for r in result.sites} == {(window, power)}


@pytest.mark.parametrize("name", ["alexnet", "googlenet"])
def test_full_variant(name):
    check_decomposed(build(name, variant="full"), samples=8)


@pytest.mark.parametrize("name", list(BUILTIN))
def test_verify_agrees(name):
    """The API's verification reports the same pass, with top-1 agreement for 'prob'."""
    model = build(name, variant="small")
    result = lrnconv.convert(model, "decompose", verify=lrnconv.VerifyOptions(samples=32))
    assert result.verify and result.passed
    drift = result.verify.providers["cpu"].outputs["prob"]
    assert drift.top1 == 1.0 and drift.top5 == 1.0 and drift.max_rel <= END_TO_END_MAX_REL
    assert set(result.verify.providers["cpu"].sites) == {s.output for s in lrnconv.find_lrn(model)}
