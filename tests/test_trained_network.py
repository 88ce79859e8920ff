"""Every strategy on a real trained network, checked against our own ONNX Runtime runs.

The fixture ``fixtures/digits_lrn.onnx`` is a small AlexNet-style CNN with two real LRN
layers, trained on scikit-learn's bundled ``digits`` by ``fixtures/make_digits_lrn.py``
(which also rebuilds the exact data split, without torch). Its LRN parameters make the
LRN term ``alpha/size * sum(x^2)`` of the order of ``bias`` on real activations (median
about 0.7 * bias at both sites), so approximations drift measurably.

For each strategy, ``lrnconv.convert`` is given the test set as calibration data: the
calibrating strategies fit on its first half and verify on the second; the others are
handed the second half to verify on. The test computes accuracy, top-1 agreement and
the drift metrics on that held-out half with its own ONNX Runtime sessions and holds
lrnconv's report to them. Finally, the drift that ``convert`` reports must equal what
``lrnconv verify`` measures on the same data.
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
from lrnconv.app.conversion import needs_calibration
from lrnconv.maths.reference import lrn_onnx
from lrnconv.passes import AUTO_ORDER
from lrnconv.runtime.inputs import random_inputs

from conftest import digits_split, max_rel
from lrnconv.maths.drift import Tolerance


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MODEL_PATH = os.path.join(FIXTURES, "digits_lrn.onnx")
TOLERANCE = Tolerance(top1=0.98, cosine=0.99)
EXACT_STRATEGIES = ("decompose", "keep")
FITTED_STRATEGIES = ("fold", "bn", "l2")
ALL_STRATEGIES = ("remove", "fold", "bn", "l2", "decompose", "keep", "auto")



def _calibrates(name: str, model: onnx.ModelProto) -> bool:
    """Whether convert fits this strategy on the first half and verifies on the second by itself."""
    return needs_calibration(name, lrnconv.find_lrn(model))


def _prob(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["prob"], {"data": x})[0]


def _metrics(candidate: np.ndarray, reference: np.ndarray):
    a, b = candidate.astype(np.float64), reference.astype(np.float64)
    diff = np.abs(a - b)
    return {"max_abs": float(diff.max()), "max_rel": float(diff.max() / np.abs(b).max()),
            "mean_abs": float(diff.mean()),
            "cosine": float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))}


@pytest.fixture(scope="module")
def digits():
    """The fixture model, the test set, and the held-out half that verification runs on."""
    _, _, x_test, y_test = digits_split()
    model = lrnconv.load(MODEL_PATH)
    half = (len(x_test) + 1) // 2  # lrnconv.measure.calibration.split_halves: the first half fits
    held_x, held_y = x_test[half:], y_test[half:]
    reference = _prob(model, held_x)
    return {"model": model, "x_test": x_test, "y_test": y_test, "held_x": held_x, "held_y": held_y,
            "reference": reference}


def _convert(digits, name: str) -> lrnconv.ConversionResult:
    verify = lrnconv.VerifyOptions() if _calibrates(name, digits["model"]) else lrnconv.VerifyOptions(inputs={"data": digits["held_x"]})
    return lrnconv.convert(digits["model"], name, calibration={"data": digits["x_test"]},
                           verify=verify, tolerance=TOLERANCE)


def test_fixture_is_a_trained_lrn_network(digits):
    model = digits["model"]
    sites = lrnconv.find_lrn(model)
    assert [s.name for s in sites] == ["norm1", "norm2"]
    assert all(s.family == "onnx" and s.size == 5 and s.alpha > 0 and s.bias > 0 for s in sites)
    assert os.path.getsize(MODEL_PATH) < 200_000
    assert len(digits["x_test"]) == 899 and len(digits["held_x"]) == 449
    # it learned the task: accuracy on the test set and on the held-out half
    full = _prob(model, digits["x_test"])
    assert np.mean(full.argmax(1) == digits["y_test"]) >= 0.95
    assert np.mean(digits["reference"].argmax(1) == digits["held_y"]) >= 0.95


def test_lrn_term_is_not_negligible_on_real_activations(digits):
    """The median LRN term alpha/size * sum(x^2) is at least 0.3 * bias at both sites."""
    model = digits["model"]
    sites = lrnconv.find_lrn(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    for site in sites:
        exposed.graph.output.append(onnx.ValueInfoProto(name=site.input))
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run([s.input for s in sites], {"data": digits["x_test"]})
    for site, x in zip(sites, values):
        sq = x.astype(np.float64) ** 2
        pad = np.pad(sq, ((0, 0), ((site.size - 1) // 2, site.size // 2), (0, 0), (0, 0)))
        term = site.alpha / site.size * sum(pad[:, i:i + sq.shape[1]] for i in range(site.size))
        assert np.median(term) >= 0.3 * site.bias, site.name


@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_strategy_accuracy_and_agreement(digits, name):
    result = _convert(digits, name)
    held_y, reference = digits["held_y"], digits["reference"]
    converted = _prob(result.model, digits["held_x"])

    report = result.verify
    assert report is not None and list(report.providers) == ["cpu"]
    drift = report.providers["cpu"].outputs["prob"]
    assert drift.shape == reference.shape  # verified on exactly the held-out half
    agreement = float(np.mean(converted.argmax(1) == reference.argmax(1)))
    original_accuracy = float(np.mean(reference.argmax(1) == held_y))
    accuracy = float(np.mean(converted.argmax(1) == held_y))
    assert drift.top1 == agreement
    for key, value in _metrics(converted, reference).items():
        assert getattr(drift, key) == pytest.approx(value, abs=1e-6), key

    statuses = {r.site.name: r.status for r in result.sites}
    assert set(statuses) == {"norm1", "norm2"}
    assert all(r.drift and "cpu" in r.drift for r in result.sites), "per-site drift is reported"

    if name in EXACT_STRATEGIES:
        assert set(statuses.values()) == {"exact"}
        assert agreement == 1.0 and accuracy == original_accuracy
        assert drift.max_rel < 1e-5
        assert report.tolerance is None and result.passed
    elif name == "auto":
        order = [s.name for s in AUTO_ORDER]
        for record in result.sites:
            tried = record.attempts
            assert [t.accepted for t in tried] == [False] * (len(tried) - 1) + [True], record.site.name
            assert tried[-1].strategy == record.strategy
            assert all(t.reason for t in tried)
            assert [t.strategy for t in tried] == order[:len(tried)], "auto walks the declared order"
        # the LRN term matters: auto may not simply drop the first LRN of this network
        first = result.sites[0].attempts[0]
        assert first.strategy == "remove" and not first.accepted
        assert TOLERANCE.accepts(drift) and result.passed
        assert accuracy >= original_accuracy - 0.02
    else:
        assert set(statuses.values()) == {"approximate"}
        assert report.tolerance == TOLERANCE
        assert result.passed == TOLERANCE.accepts(drift)
        assert drift.cosine < 0.99999, "the LRN term is not negligible on this network"
        if name == "remove":
            assert agreement < 1.0 and drift.cosine < 0.99
        elif name in FITTED_STRATEGIES:
            # a fitted approximation keeps most answers on this network
            assert agreement >= 0.85 and accuracy >= 0.85
            assert drift.cosine >= 0.9


@pytest.mark.parametrize("name", ["decompose", "bn", "remove"])
def test_cli_verify_matches_a_direct_measurement(digits, name, tmp_path):
    """``lrnconv verify`` on the converted file: its numbers and verdict against both models run
    here in their own ONNX Runtime sessions and measured with numpy."""
    result = _convert(digits, name)
    converted_path = str(tmp_path / f"{name}.onnx")
    lrnconv.save(result.model, converted_path)
    held_path = str(tmp_path / "held.npy")
    np.save(held_path, digits["held_x"])
    args = ["verify", MODEL_PATH, converted_path, "--data", held_path, "--json"]
    approximate = name != "decompose"
    if approximate:
        args += ["--tolerance", f"top1={TOLERANCE.top1},cosine={TOLERANCE.cosine}"]
    run = CliRunner().invoke(cli_main, args)
    cli = json.loads(run.stdout)
    theirs = cli["providers"]["cpu"]["outputs"]["prob"]

    candidate = _prob(lrnconv.load(converted_path), digits["held_x"])
    reference = digits["reference"]
    expected = _metrics(candidate, reference)
    agreement = float(np.mean(candidate.argmax(1) == reference.argmax(1)))
    assert theirs["shape"] == list(reference.shape)
    for key, value in expected.items():
        assert theirs[key] == pytest.approx(value, abs=1e-6), key
    assert theirs["top1"] == agreement
    if approximate:
        passed = expected["cosine"] >= TOLERANCE.cosine and agreement >= TOLERANCE.top1
    else:
        passed = bool(np.all(np.abs(candidate.astype(np.float64) - reference) <= 1e-5 + 1e-4 * np.abs(reference)))
    assert cli["passed"] is passed and run.exit_code == (0 if passed else 1)


def test_cli_verify_uses_all_of_the_data_by_default(digits, tmp_path):
    held_path = str(tmp_path / "held.npy")
    np.save(held_path, digits["held_x"])
    run = CliRunner().invoke(cli_main, ["verify", MODEL_PATH, MODEL_PATH, "--data", held_path, "--json"])
    assert run.exit_code == 0, run.output
    shape = json.loads(run.stdout)["providers"]["cpu"]["outputs"]["prob"]["shape"]
    assert shape == list(digits["reference"].shape)


def test_cli_auto_report_explains_every_choice(digits, tmp_path):
    """convert --strategy auto --calib: per site the choice, exact or not, fit, drift, rejections."""
    calib = tmp_path / "calib.npy"
    np.save(calib, digits["x_test"])
    out, report = tmp_path / "auto.onnx", tmp_path / "auto.json"
    result = CliRunner().invoke(cli_main, ["convert", MODEL_PATH, "-o", str(out), "--strategy", "auto", "--calib", str(calib),
                    "--tolerance", "top1=0.98,cosine=0.99", "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "auto rejected: remove" in result.stdout
    data = json.loads(report.read_text())
    assert data["strategy"] == "auto" and data["verify"]["tolerance"] == {"top1": 0.98, "cosine": 0.99}
    for site in data["sites"]:
        assert site["status"] in ("exact", "approximate") and site["reason"]
        tried = site["auto"]
        assert tried[-1]["accepted"] and tried[-1]["strategy"] == site["strategy"]
        assert all(not t["accepted"] and "tolerance" in t["reason"] for t in tried[:-1])
        assert site["drift"]["cpu"]["cosine"] > 0
    outputs = data["verify"]["providers"]["cpu"]["outputs"]["prob"]
    assert outputs["shape"][0] == len(np.load(calib)) // 2 and outputs["top1"] >= 0.98


def test_decompose_on_random_pixels_passes_with_the_kernel_floor_reported(digits, tmp_path):
    """Seeded random pixel-scale samples: each site's kernel floor is the native kernel's error against
    float64 on the same site inputs, computed here from ONNX Runtime's own site tensors."""
    out, report = tmp_path / "d.onnx", tmp_path / "d.json"
    result = CliRunner().invoke(cli_main, ["convert", MODEL_PATH, "-o", str(out), "--samples", "32",
                                           "--report", str(report)])
    assert result.exit_code == 0, result.output
    verified = json.loads(report.read_text())["verify"]
    assert verified["passed"] and verified["samples"] == 32
    floor = verified["providers"]["cpu"]["kernel_floor"]
    model = digits["model"]
    x = random_inputs(model, 32)["data"]
    sites = lrnconv.find_lrn(model)
    names = [n for s in sites for n in (s.input, s.output)]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip(names, session.run(names, {"data": x})))
    for site in sites:
        exact = lrn_onnx(got[site.input].astype(np.float64), site.size, site.alpha, site.beta, site.bias)
        assert floor[site.output]["max_rel"] == pytest.approx(max_rel(got[site.output], exact), rel=1e-9)
        assert floor[site.output]["max_rel"] > 0
    against_exact = CliRunner().invoke(cli_main, ["verify", MODEL_PATH, str(out), "--samples", "32", "--reference",
                                                  "exact", "--json"])
    assert against_exact.exit_code == 0, against_exact.output
    exact_drift = json.loads(against_exact.stdout)
    assert exact_drift["reference"] == "exact" and exact_drift["providers"]["cpu"]["outputs"]["prob"]["max_rel"] <= 1e-6
