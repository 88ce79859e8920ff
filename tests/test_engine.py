"""The rewrite engine: declared orders, checks that see the graph and answer before any edit,
plan application, and the passes run on an onnx-graphsurgeon graph directly."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

import lrnconv
from lrnconv.base.errors import UnsupportedModel, UsageError
from lrnconv.engine.plan import verdicts
from lrnconv.graph.preserve import EditableModel
from lrnconv.maths.reference import lrn_onnx
from lrnconv.passes import AUTO_FALLBACK, AUTO_ORDER, REGISTRY

from conftest import lrn_model, lrn_scale_inputs, max_rel, run
from pass_models import backward_model, chain_model, refusal_model, unknown_rank_model


def test_registry_and_auto_order_are_declared():
    assert list(REGISTRY) == ["remove", "fold", "bn", "l2", "decompose", "keep"]
    assert [s.name for s in AUTO_ORDER] == ["remove", "fold", "bn", "l2", "decompose"]
    assert AUTO_FALLBACK is REGISTRY["decompose"]
    assert all(REGISTRY[name].name == name for name in REGISTRY)


def test_needs_stats_per_site():
    constant = lrnconv.find_lrn(chain_model(alpha=0.0))[0]
    l2_exact = lrnconv.find_lrn(chain_model(alpha=0.3, beta=0.5, bias=0.0, size=7, channels=4))[0]
    fitted = lrnconv.find_lrn(chain_model(alpha=0.3))[0]
    assert [REGISTRY[n].needs_stats(constant) for n in REGISTRY] == [False, False, False, True, False, False]
    assert [REGISTRY[n].needs_stats(fitted) for n in REGISTRY] == [False, True, True, True, False, False]
    assert not REGISTRY["l2"].needs_stats(l2_exact)


def test_missing_statistics_is_a_usage_error_naming_the_site():
    model = backward_model(0.05)
    for strategy in ("fold", "bn", "l2"):
        with pytest.raises(UsageError, match="calibration data for LRN 'norm1'"):
            lrnconv.rewrite(model, {"n1": strategy})


def test_check_sees_the_graph_and_the_rewrite_says_the_same():
    """fold's check names where the scale goes; the rewrite's record gives the same reason."""
    model = refusal_model("shared_weight")
    site = lrnconv.find_lrn(model)[0]
    verdict = REGISTRY["fold"].check(site, EditableModel(model))
    assert verdict.status == "exact"
    assert verdict.reason == ("alpha = 0: the LRN is the constant scale 0.594604; explicit Mul: Conv weight 'w1' "
                              "of node 'conv1' is shared with Conv node 'conv1b'; cannot fold; LRN output 'n1' is "
                              "read by Relu node 'post', not only by Convs")
    _, (record,) = lrnconv.rewrite(model, {"n1": "fold"})
    assert record.reason == verdict.reason


def test_a_refusal_comes_before_any_edit():
    """bn needs opset 6: the check refuses it and the model (edited in place) is untouched."""
    model = lrn_model(5, opset=5)
    before = model.SerializeToString()
    (site,) = lrnconv.find_lrn(model)
    assert verdicts(EditableModel(model), [site])["y"]["bn"].reason == (
        "the model imports opset 5; BatchNormalization needs 6 or later")
    with pytest.raises(UnsupportedModel, match="strategy 'bn' cannot rewrite LRN 'norm': the model imports opset 5"):
        lrnconv.rewrite(model, {"y": "bn"}, inplace=True)
    assert model.SerializeToString() == before


def test_unknown_rank_makes_fold_not_applicable_only_without_a_conv():
    """An explicit Mul cannot be shaped to an input of unknown rank; a fold into a Conv can."""
    model = unknown_rank_model()
    (site,) = lrnconv.find_lrn(model)
    assert site.rank is None
    found = verdicts(EditableModel(model), [site])["n"]
    assert found["fold"].status == "not-applicable"
    assert found["fold"].reason.startswith("the rank of input 'x' is unknown, so an explicit per-channel Mul "
                                           "cannot be shaped to it")
    assert "Reshape node 'reshape' produces 'x' and does not commute" in found["fold"].reason
    assert [found[n].status for n in ("remove", "bn", "l2", "decompose", "keep")] == \
        ["approximate", "approximate", "approximate", "exact", "exact"]
    with_conv = unknown_rank_model(conv=True)
    (site,) = lrnconv.find_lrn(with_conv)
    fold = verdicts(EditableModel(with_conv), [site])["n"]["fold"]
    assert site.rank is None and fold.status == "approximate" and fold.reason.endswith("; into Conv conv")


def test_rewrite_graph_runs_the_passes_on_a_graphsurgeon_graph():
    model = lrn_model(4, channels=6, alpha=0.02, bias=1.5)
    graph = gs.import_onnx(model)
    (record,) = lrnconv.rewrite_graph(graph, "decompose")
    assert record.status == "exact" and record.tensor == "y"
    exported = gs.export_onnx(graph)
    assert "LRN" not in {n.op_type for n in exported.graph.node}
    onnx.checker.check_model(exported, full_check=True)
    x = lrn_scale_inputs((3, 6, 5, 5), 4, 0.02, 1.5)
    expected = lrn_onnx(x.astype(np.float64), 4, alpha=0.02, beta=0.75, bias=1.5)
    assert max_rel(run(exported, {"x": x})["y"], expected) <= 1e-6


def test_rewrite_graph_takes_a_plan_and_statistics():
    model = backward_model(0.0)
    graph = gs.import_onnx(model)
    (record,) = lrnconv.rewrite_graph(graph, {"n1": "fold"})
    assert record.details["direction"] == "backward"
    assert [n.name for n in graph.nodes] == ["conv1", "relu1", "pool1", "conv2", "dead"]
