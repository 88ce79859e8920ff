"""Sites that exist as op chains (Caffe WITHIN_CHANNEL as imported): every pass replaces the
chain as a whole, keeps everything around it, and refuses with the reader's name when an
intermediate tensor of the chain is read outside it."""
from __future__ import annotations

import pytest

import lrnconv
from lrnconv.base.errors import UnsupportedModel
from lrnconv.maths.stats import SiteStats

from conftest import max_rel, run
from pass_models import DECOMPOSITION, EXACT_REL, converted, feeds_for, run_exposed, within_model


@pytest.mark.parametrize("strategy,added", [("remove", []), ("fold", []), ("bn", ["BatchNormalization"]),
                                            ("l2", ["LpNormalization", "Mul"])])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_caffe_within_site_is_replaced_as_a_whole(strategy, added, alpha):
    model = within_model(alpha)
    (site,) = lrnconv.find_lrn(model)
    assert not site.family.is_lrn_node
    feeds = feeds_for(model, magnitude=3.0)
    values = run_exposed(model, feeds, ["r1", "n1", "out"])
    stats = SiteStats(4)
    stats.update(values["r1"], values["n1"])
    result = converted(model, strategy, {"n1": stats})
    record = result.sites[0]
    names = [n.name for n in result.model.graph.node]
    assert set(DECOMPOSITION).isdisjoint(names)
    kept = [n.name for n in model.graph.node if n.name not in DECOMPOSITION]
    assert [n for n in names if n in kept] == kept
    assert len(names) == len(kept) + len(added)
    assert sorted(n.op_type for n in result.model.graph.node if n.name not in kept) == sorted(added)
    assert {"norm1_alpha", "norm1_one", "norm1_neg_beta"}.isdisjoint(t.name for t in result.model.graph.initializer)
    exact = alpha == 0.0 and strategy != "l2"
    assert record.status == ("exact" if exact else "approximate")
    if exact:
        assert max_rel(run(result.model, feeds)["out"], values["out"]) <= EXACT_REL
    if strategy == "fold":
        assert record.details["folded"] == "into Conv conv1 through Relu relu1"


def test_caffe_within_refuses_when_an_intermediate_leaks():
    model = within_model(0.0, leak=True)
    with pytest.raises(UnsupportedModel, match="intermediate tensor 'sq' is also read by Sigmoid node 'leak'"):
        lrnconv.convert(model, "remove")
