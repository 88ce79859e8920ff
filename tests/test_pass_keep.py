"""``keep``: nothing changes, every site remains (an imported op chain too), and the model
computes bit for bit what it computed."""
from __future__ import annotations

import numpy as np

import lrnconv

from conftest import run
from pass_models import backward_model, converted, feeds_for, within_model


def test_keep_leaves_an_lrn_node_as_it_is():
    model = backward_model(0.05)
    result = converted(model, "keep")
    (record,) = result.sites
    assert (record.status, record.tensor, record.remains, record.reason) == ("exact", "n1", True, "LRN left unchanged")
    assert [n.SerializeToString() for n in result.model.graph.node] == [n.SerializeToString() for n in model.graph.node]
    feeds = feeds_for(model, magnitude=10.0)
    np.testing.assert_array_equal(run(result.model, feeds)["out"], run(model, feeds)["out"])


def test_keep_leaves_an_imported_chain_and_its_site():
    model = within_model(0.5)
    result = converted(model, "keep")
    (record,) = result.sites
    assert record.remains and record.reason == "the op chain that stands for it is left as it is"
    assert [s.name for s in lrnconv.find_lrn(result.model)] == ["norm1"]
    assert list(result.model.metadata_props) == list(model.metadata_props)
    feeds = feeds_for(model)
    np.testing.assert_array_equal(run(result.model, feeds)["out"], run(model, feeds)["out"])
