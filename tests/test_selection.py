"""``auto``'s selection: the declared order, every rejection recorded with its reason, and the
walk going on past a strategy that cannot apply on this graph or that ONNX Runtime refuses."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from click.testing import CliRunner

import lrnconv
from lrnconv.app.cli import main
from lrnconv.engine.protocol import APPROXIMATE, SiteRecord, Verdict
from lrnconv.maths.drift import compare
from lrnconv.maths.reference import lrn_onnx
from lrnconv.measure import selection
from lrnconv.passes import AUTO_ORDER, REGISTRY

from conftest import lrn_model, lrn_scale_inputs, run
from pass_models import unknown_rank_model


def test_auto_records_folds_refusal_on_an_unknown_rank_and_goes_on(tmp_path):
    """The LRN's input has no shape: fold could only be an explicit Mul, which cannot be shaped."""
    model, data = tmp_path / "unknown_rank.onnx", tmp_path / "calib.npy"
    onnx.save(unknown_rank_model(), str(model))
    x = lrn_scale_inputs((20, 6, 5, 5), 3, 0.01, 1.0)
    np.save(data, x)
    out, report = tmp_path / "out.onnx", tmp_path / "report.json"
    result = CliRunner().invoke(main, ["convert", str(model), "-o", str(out), "--strategy", "auto", "--calib",
                                       str(data), "--input", "shape=0,6,5,5", "--tolerance", "cosine=0.975",
                                       "--report", str(report)])
    assert result.exit_code == 0, result.output
    (site,) = json.loads(report.read_text())["sites"]
    tried = site["auto"]
    assert [t["strategy"] for t in tried] == [s.name for s in AUTO_ORDER][:len(tried)]
    assert tried[1] == {"strategy": "fold", "accepted": False, "reason": (
        "the rank of input 'x' is unknown, so an explicit per-channel Mul cannot be shaped to it, and the "
        "scale cannot be folded: Reshape node 'reshape' produces 'x' and does not commute with a per-channel "
        "scale (only Relu, LeakyRelu, PRelu, MaxPool, AveragePool, Dropout, Identity are passed through); LRN "
        "output 'n' is read by Relu node 'post', not only by Convs")}
    assert [t["accepted"] for t in tried] == [False] * (len(tried) - 1) + [True]
    assert site["strategy"] == tried[-1]["strategy"] != "fold"
    held = x[10:]  # the evaluation half the choice was judged on
    expected = np.maximum(lrn_onnx(held.astype(np.float64), 3, alpha=0.01, beta=0.75, bias=1.0), 0)
    drift = compare(run(onnx.load(str(out)), {"data": held, "shape": np.array([0, 6, 5, 5])})["y"], expected)
    assert drift.cosine >= 0.975
    rejected = [t for t in tried[:-1] if t["strategy"] != "fold"]
    assert all(t["reason"].startswith("outside tolerance: cosine ") for t in rejected)


class OpOnnxRuntimeLacks:
    """A candidate whose rewrite ONNX Runtime cannot run: the LRN becomes an op of an unknown domain."""

    name = "unknown_op"

    def check(self, site, graphs):
        return Verdict(APPROXIMATE, "an op no runtime has")

    def needs_stats(self, site):
        return False

    def rewrite(self, ctx, site):
        span = ctx.span(site)
        position = span.detach()
        node = gs.Node(op="NoSuchOp", name=ctx.names("unknown"), domain="test.lrnconv", inputs=[span.x], outputs=[span.y])
        span.insert(position, [node])
        return SiteRecord(site, self.name, APPROXIMATE, "an op no runtime has", tensor=span.y.name)


def test_auto_goes_on_past_a_candidate_onnx_runtime_refuses(monkeypatch):
    candidate = OpOnnxRuntimeLacks()
    monkeypatch.setitem(REGISTRY, candidate.name, candidate)
    monkeypatch.setattr(selection, "AUTO_ORDER", (candidate, REGISTRY["decompose"]))
    model = lrn_model(5, alpha=0.02, bias=1.5)
    data = {"x": lrn_scale_inputs((8, 7, 5, 5), 5, 0.02, 1.5)}
    result = lrnconv.convert(model, "auto", calibration=data)
    (record,) = result.sites
    assert record.strategy == "decompose"
    refused, taken = record.attempts
    assert refused.strategy == "unknown_op" and not refused.accepted
    assert refused.reason.startswith("ONNX Runtime refused the trial model: ") and "NoSuchOp" in refused.reason
    assert taken.accepted and taken.strategy == "decompose"
