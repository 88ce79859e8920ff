"""``remove``: exact exactly when the LRN is the identity; the consumers read the site input."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from conftest import max_rel, run
from pass_models import EXACT_REL, chain_model, converted, feeds_for, node, ops, oracle, refusal_model


@pytest.mark.parametrize("alpha,beta,bias,status", [
    (0.0, 0.75, 1.0, "exact"),
    (0.05, 0.0, 2.0, "exact"),
    (0.0, 0.75, 2.0, "approximate"),
    (0.05, 0.75, 1.0, "approximate"),
], ids=["alpha0-bias1", "beta0", "alpha0-bias2", "alpha-positive"])
def test_remove(alpha, beta, bias, status):
    model = refusal_model("shared_then_forward")
    for a in node(model, "norm1").attribute:
        if a.name != "size":
            a.f = {"alpha": alpha, "beta": beta, "bias": bias}[a.name]
    result = converted(model, "remove")
    record = result.sites[0]
    assert record.status == status and record.tensor == "r1"
    assert ops(result.model) == ops(model) - Counter({"LRN": 1})
    assert list(node(result.model, "conv2").input) == ["r1", "w2"]
    if status == "exact":
        feeds = feeds_for(model)
        expected, _, _ = oracle(model, feeds)
        assert max_rel(run(result.model, feeds)["out"], expected["out"]) <= EXACT_REL


def test_remove_keeps_a_graph_output_name_with_identity():
    model = chain_model(bias=1.0)
    result = converted(model, "remove")
    (identity,) = result.model.graph.node
    assert identity.op_type == "Identity" and list(identity.output) == ["y"]
    assert result.sites[0].status == "exact" and result.sites[0].tensor == "y"
    feeds = feeds_for(model)
    np.testing.assert_array_equal(run(result.model, feeds)["y"], feeds["x"])
