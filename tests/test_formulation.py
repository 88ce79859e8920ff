"""decompose's formulation chosen by timing (window/power = auto): bounded, reported, exact."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import lrnconv
from lrnconv.cli import main
from lrnconv.formulation import SHORTLIST, candidates
from lrnconv.passes.decompose import DEFAULT_POWER, DEFAULT_WINDOW
from lrnconv.reference import lrn_onnx
from conftest import lrn_model, lrn_scale_inputs, max_rel, run

DEFAULT = (DEFAULT_WINDOW, DEFAULT_POWER)


def two_site_model():
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[N, 16, 6, 6] x) => (float[N, 16, 6, 6] z) {
        y = LRN<size = 5, alpha = 0.01, beta = 0.75, bias = 1.0>(x)
        r = Relu(y)
        z = LRN<size = 3, alpha = 0.02, beta = 0.75, bias = 2.0>(r)
    }
    """
    return onnx.parser.parse_model(text)


@pytest.mark.parametrize("window,power,expected", [
    ("auto", "auto", list(SHORTLIST)),
    ("auto", "inverse", [("pool", "inverse"), ("conv", "inverse")]),
    ("pool", "auto", [("pool", "roots"), ("pool", "inverse"), ("pool", "blocked")])])
def test_candidates_keep_what_the_user_fixed(window, power, expected):
    found = candidates(window, power, DEFAULT)
    assert sorted(found) == sorted(expected)
    assert found[0] == (DEFAULT if DEFAULT in expected else expected[0])


def test_budget_zero_uses_the_default_without_timing():
    result = lrnconv.convert(two_site_model(), "decompose", options={"window": "auto", "power": "auto",
                                                                     "tune_seconds": 0})
    assert not result.formulation.measured
    assert (result.formulation.window, result.formulation.power) == DEFAULT
    assert {(r.details["window"], r.details["power"]) for r in result.sites} == {DEFAULT}
    assert any("not timed" in n for n in result.notes)


def test_a_budget_too_small_to_decide_keeps_the_default():
    result = lrnconv.convert(two_site_model(), "decompose", options={"window": "auto", "power": "auto",
                                                                     "tune_seconds": 1e-9})
    assert not result.formulation.measured
    assert (result.formulation.window, result.formulation.power) == DEFAULT
    assert "budget" in result.formulation.reason


def test_timed_choice_is_reported_and_applied_to_every_site():
    model = two_site_model()
    result = lrnconv.convert(model, "decompose", options={"window": "auto", "power": "auto",
                                                          "tune_seconds": 3, "tune_batch": 2})
    choice = result.formulation
    assert choice.measured and choice.rounds >= 3 and choice.batch == 2
    assert set(choice.median_ms) == {f"{w}/{p}" for w, p in SHORTLIST}
    assert choice.ratio_to_default[f"{DEFAULT[0]}/{DEFAULT[1]}"] == 1.0
    assert (choice.window, choice.power) in SHORTLIST
    assert {(r.details["window"], r.details["power"]) for r in result.sites} == {(choice.window, choice.power)}
    assert any(n.startswith("decompose formulation: ") for n in result.notes)
    x = lrn_scale_inputs((3, 16, 6, 6), 5, 0.01, 1.0)
    relu = np.maximum(lrn_onnx(x.astype(np.float64), 5, 0.01, 0.75, 1.0), 0)
    expected = lrn_onnx(relu, 3, 0.02, 0.75, 2.0)
    assert max_rel(run(result.model, {"x": x})["z"], expected) <= 1e-5
    assert json.dumps(result.to_dict()["formulation"])


def test_cli_auto_prints_the_pick_and_writes_it_to_the_report(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(lrn_model(5, channels=16), str(path))
    report = tmp_path / "r.json"
    out = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "o.onnx"),
                                                    "--window", "auto", "--tune-seconds", "0",
                                                    "--report", str(report), "--no-verify"])
    assert out.exit_code == 0, out.output
    assert f"decompose formulation: {DEFAULT[0]}/{DEFAULT[1]}" in out.stdout
    assert json.loads(report.read_text())["formulation"]["measured"] is False


def test_cli_warns_when_tuning_options_are_ignored(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(lrn_model(5), str(path))
    out = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "o.onnx"),
                                                    "--tune-seconds", "5", "--no-verify"])
    assert out.exit_code == 0
    assert "only apply with --window auto" in out.stderr
