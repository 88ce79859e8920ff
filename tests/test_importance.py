"""``inspect --data``: each site's importance, held to a direct computation on two trained networks.

The networks (``fixtures/digits_lrn.onnx``: two LRNs that both matter; ``fixtures/
digits_wide_lrn.onnx``: a wide, strong LRN and a nearly idle one) are run here in their own
ONNX Runtime sessions on the held-out half of scikit-learn's digits test split (the half
``inspect`` measures on). For each site, the test removes it alone with the ``remove`` pass
(``lrnconv.rewrite``) and folds it alone with a scale it fits itself by numpy on the first
half, runs both, and measures top-1 agreement, cosine and max-rel by hand; the per-channel
residual is numpy least squares on the site tensors; the divisor percentiles come from the
LRN maths written out here. ``inspect``'s numbers, verdicts and ranking must agree.
"""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import lrnconv
from lrnconv.app.cli import main as cli_main
from lrnconv.app.inspection import NEEDS_DATA
from lrnconv.maths.drift import Tolerance
from lrnconv.maths.stats import SiteStats
from conftest import digits_split

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
NETWORKS = {"digits_lrn": os.path.join(FIXTURES, "digits_lrn.onnx"),
            "digits_wide_lrn": os.path.join(FIXTURES, "digits_wide_lrn.onnx")}



@pytest.fixture(scope="module")
def split():
    _, _, x_test, y_test = digits_split()
    half = (len(x_test) + 1) // 2  # the first half fits, the second is held out
    return {"x": x_test, "fit": x_test[:half], "held": x_test[half:]}


def _session(model: onnx.ModelProto, extra=()):
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in extra)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(copy.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run(model, x, names=("prob",)):
    session = _session(model, [n for n in names if n != "prob"])
    return dict(zip(names, session.run(list(names), {"data": x})))


def _measure(candidate: np.ndarray, reference: np.ndarray):
    a, b = candidate.astype(np.float64), reference.astype(np.float64)
    return {"top1": float(np.mean(a.argmax(1) == b.argmax(1))),
            "cosine": float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b))),
            "max_rel": float(np.abs(a - b).max() / np.abs(b).max())}


def _divisor(site, x):
    sq = x.astype(np.float64) ** 2
    lo, hi = (site.size - 1) // 2, site.size // 2
    padded = np.pad(sq, ((0, 0), (lo, hi), (0, 0), (0, 0)))
    window = sum(padded[:, i:i + sq.shape[1]] for i in range(site.size))
    return (site.bias + site.alpha / site.size * window) ** site.beta


def _unexplained(x, y, shift: bool) -> float:
    """Share of sum y^2 left by the best per-channel y ~ s x (+ b), by numpy least squares."""
    residual = 0.0
    for c in range(x.shape[1]):
        xc, yc = x[:, c].astype(np.float64).ravel(), y[:, c].astype(np.float64).ravel()
        design = np.stack([xc, np.ones_like(xc)], axis=1) if shift else xc[:, None]
        if not xc.any():  # a dead channel: y is 0 there too
            continue
        coefficients = np.linalg.lstsq(design, yc, rcond=None)[0]
        residual += float(np.sum((yc - design @ coefficients) ** 2))
    return residual / float(np.sum(y.astype(np.float64) ** 2))


@pytest.fixture(scope="module", params=list(NETWORKS))
def measured(request, split):
    """inspect --data through the API, and every number it reports computed here by hand."""
    model = lrnconv.load(NETWORKS[request.param])
    sites = lrnconv.find_lrn(model)
    inspection = lrnconv.inspect(model, {"data": split["x"]})
    names = ["prob"] + [t for s in sites for t in (s.input, s.output)]
    held = _run(model, split["held"], names)
    fit = _run(model, split["fit"], names)
    direct = {}
    for site in sites:
        plan = {s.output: "keep" for s in sites}
        plan[site.output] = "remove"
        removed, _ = lrnconv.rewrite(model, plan)
        stats = SiteStats(site.channels)  # fold's scale: sum xy / sum xx per channel on the first half, by numpy
        x_fit, y_fit = fit[site.input].astype(np.float64), fit[site.output].astype(np.float64)
        xy, xx = (x_fit * y_fit).sum(axis=(0, 2, 3)), (x_fit * x_fit).sum(axis=(0, 2, 3))
        scale = np.divide(xy, xx, out=np.ones_like(xx), where=xx > 0)  # a channel never seen non-zero: 1
        stats.update(fit[site.input], fit[site.output])
        np.testing.assert_allclose(stats.scale(), scale, rtol=1e-9)
        plan[site.output] = "fold"
        folded, _ = lrnconv.rewrite(model, plan, stats={site.output: stats})
        x, y = held[site.input], held[site.output]
        direct[site.name] = {
            "remove": _measure(_run(removed, split["held"])["prob"], held["prob"]),
            "fold": _measure(_run(folded, split["held"])["prob"], held["prob"]),
            "unexplained": _unexplained(x, y, shift=False), "unexplained_affine": _unexplained(x, y, shift=True),
            "divisor": _divisor(site, x)}
    return {"name": request.param, "model": model, "inspection": inspection, "direct": direct, "sites": sites}


def test_effects_of_removing_and_folding_each_site_alone(measured, split):
    importance = measured["inspection"].importance
    assert importance.evaluation_samples == len(split["held"])
    assert importance.calibration_samples == len(split["fit"])
    for name, direct in measured["direct"].items():
        site = importance.site(name)
        for strategy in ("remove", "fold"):
            effect = site.alone[strategy].float
            assert effect.top1 == direct[strategy]["top1"], (name, strategy)  # exact count
            assert effect.cosine == pytest.approx(direct[strategy]["cosine"], abs=1e-6), (name, strategy)
            assert effect.max_rel == pytest.approx(direct[strategy]["max_rel"], abs=1e-6), (name, strategy)


def test_unexplained_energy_matches_numpy_least_squares(measured):
    importance = measured["inspection"].importance
    for name, direct in measured["direct"].items():
        site = importance.site(name)
        assert site.unexplained == pytest.approx(direct["unexplained"], rel=1e-6, abs=1e-12), name
        assert site.unexplained_affine == pytest.approx(direct["unexplained_affine"], rel=1e-6, abs=1e-12), name
        assert site.unexplained_affine <= site.unexplained + 1e-12


def test_divisor_percentiles_match_the_lrn_maths(measured):
    importance = measured["inspection"].importance
    for name, direct in measured["direct"].items():
        summary = importance.site(name).divisor.summary()
        d = direct["divisor"]
        assert summary["count"] == d.size
        assert summary["min"] == pytest.approx(d.min(), rel=1e-12)
        assert summary["max"] == pytest.approx(d.max(), rel=1e-12)
        assert summary["mean"] == pytest.approx(d.mean(), rel=1e-9)
        for q in (1, 5, 25, 50, 75, 95, 99):
            assert summary[f"p{q}"] == pytest.approx(np.percentile(d, q), rel=3e-3), (name, q)


def test_verdicts_follow_their_rule_and_the_ranking_agrees(measured):
    importance = measured["inspection"].importance
    tolerance = Tolerance()
    direct = measured["direct"]

    def ok(numbers):
        return numbers["top1"] >= tolerance.top1 and numbers["cosine"] >= tolerance.cosine

    for name, numbers in direct.items():
        expected = "negligible" if ok(numbers["remove"]) else "foldable" if ok(numbers["fold"]) else "important"
        site = importance.site(name)
        assert site.verdict == expected, (name, site.rule)
        assert f"{numbers['remove']['top1']:.2%}" in site.rule and "held-out" in site.rule
    order = sorted(direct, key=lambda n: (direct[n]["remove"]["top1"], direct[n]["remove"]["cosine"]))
    assert [s.site.name for s in importance.ranking] == order
    assert [s.rank for s in importance.ranking] == list(range(1, len(order) + 1))
    if measured["name"] == "digits_wide_lrn":  # the fixture was trained for this
        assert importance.site("norm1").verdict == "important" and importance.site("norm2").verdict == "negligible"
        assert direct["norm1"]["remove"]["top1"] < 0.9 and direct["norm1"]["unexplained"] > 0.1
        assert direct["norm2"]["unexplained"] < 1e-4


def test_a_tolerance_that_folding_meets_gives_foldable(split):
    """digits_lrn's norm2: removing it alone keeps cosine ~0.991, folding it ~0.994."""
    model = lrnconv.load(NETWORKS["digits_lrn"])
    tolerance = Tolerance(top1=0.98, cosine=0.992)
    importance = lrnconv.inspect(model, {"data": split["x"]}, tolerance=tolerance).importance
    site = importance.site("norm2")
    remove, fold = site.alone["remove"].float, site.alone["fold"].float
    assert not tolerance.accepts(remove.outputs["prob"]) and tolerance.accepts(fold.outputs["prob"])
    assert site.verdict == "foldable" and site.rule.startswith("removing it alone does not")


def test_without_data_inspect_stays_static_and_says_importance_needs_data(tmp_path):
    model = lrnconv.load(NETWORKS["digits_lrn"])
    inspection = lrnconv.inspect(model)
    assert inspection.importance is None and NEEDS_DATA in inspection.notes
    run = CliRunner().invoke(cli_main, ["inspect", NETWORKS["digits_lrn"]])
    assert run.exit_code == 0 and "importance needs data" in run.stdout
    document = json.loads(CliRunner().invoke(cli_main, ["inspect", NETWORKS["digits_lrn"], "--json"]).stdout)
    assert document["importance"] is None and all(s["importance"] is None for s in document["sites"])


def test_cli_json_carries_the_same_numbers(measured, split, tmp_path):
    data = tmp_path / "digits.npy"
    np.save(data, split["x"])
    run = CliRunner().invoke(cli_main, ["inspect", NETWORKS[measured["name"]], "--data", str(data), "--json"])
    assert run.exit_code == 0, run.output
    document = json.loads(run.stdout)
    importance = measured["inspection"].importance
    assert document["importance"]["ranking"] == [s.site.name for s in importance.ranking]
    for entry in document["sites"]:
        mine = importance.site(entry["name"])
        theirs = entry["importance"]
        assert theirs["verdict"] == mine.verdict and theirs["rank"] == mine.rank and theirs["rule"] == mine.rule
        assert theirs["alone"]["remove"]["float"]["top1"] == measured["direct"][entry["name"]]["remove"]["top1"]
        assert theirs["unexplained_energy"] == pytest.approx(measured["direct"][entry["name"]]["unexplained"], rel=1e-6)
        assert set(theirs["divisor"]) >= {"p5", "p50", "p95", "min", "max"}
