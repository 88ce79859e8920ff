"""Accuracy, not speed: where the drift comes from, and what each strategy costs a trained net.

1. At every LRN site of the built-in replicas (full size, 8 seeded pixel-like inputs),
   the error of ONNX Runtime's native CPU LRN kernel and of ``decompose`` against the
   float64 reference, on the same site input (max |a - b| / max |ref|).
2. The trained digits network (``tests/fixtures/digits_lrn.onnx``): for every strategy,
   calibrated on the first half of the test split and evaluated on the second, the
   accuracy, the top-1 agreement with the original and the cosine similarity.

    python benchmarks/accuracy.py     (needs the test extra: scikit-learn)
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import onnx
from onnx import TensorProto, helper

from _common import ROOT, machine_lines, md_table, write_result

import lrnconv
from lrnconv.maths.drift import Tolerance
from lrnconv.runtime.inputs import random_inputs
from lrnconv.models import BUILTIN, build
from lrnconv.maths.reference import lrn_onnx
from lrnconv.runtime.sessions import create_session

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TOLERANCE = Tolerance(top1=0.98, cosine=0.99)


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))


def lrn_alone(site, shape) -> onnx.ModelProto:
    """A one-node model of a site's LRN, so decompose can be fed the site's real input."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    node = helper.make_node("LRN", ["x"], ["y"], size=site.size, alpha=site.alpha, beta=site.beta, bias=site.bias)
    return helper.make_model(helper.make_graph([node], "site", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])


def site_errors() -> str:
    rows = []
    for name in BUILTIN:
        model = build(name, variant="full")
        feeds = random_inputs(model, 8, seed=0)
        sites = lrnconv.find_lrn(model)
        wanted = [n for s in sites for n in (s.input, s.output)]
        native = create_session(model, "CPUExecutionProvider", wanted).run(feeds, wanted)
        for site in sites:
            x = native[site.input]
            truth = lrn_onnx(x.astype(np.float64), site.size, site.alpha, site.beta, site.bias)
            decomposed = lrnconv.convert(lrn_alone(site, x.shape), "decompose").model
            ours = create_session(decomposed, "CPUExecutionProvider").run({"x": x})["y"]
            rows.append([name, site.name, f"{max_rel(native[site.output], truth):.2e}", f"{max_rel(ours, truth):.2e}"])
    return md_table(["model", "site", "native LRN vs float64", "decompose vs float64"], rows)


def _load_maker():
    spec = importlib.util.spec_from_file_location("make_digits_lrn", os.path.join(FIXTURES, "make_digits_lrn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trained_network() -> str:
    _, _, x_test, y_test = _load_maker().digits_split()
    model = lrnconv.load(os.path.join(FIXTURES, "digits_lrn.onnx"))
    half = (len(x_test) + 1) // 2  # split_halves: the first half fits, the second is held out
    held = {"data": x_test[half:]}
    held_y = y_test[half:]
    original = create_session(model, "CPUExecutionProvider").run(held)["prob"]
    rows = [["original", "-", f"{np.mean(original.argmax(1) == held_y):.4f}", "-", "-", "-"]]
    for strategy in list(lrnconv.strategies()) + ["auto"]:
        exact = strategy in ("decompose", "keep")
        result = lrnconv.convert(model, strategy, calibration={"data": x_test}, tolerance=TOLERANCE,
                                 verify=lrnconv.VerifyOptions(inputs=held if exact or strategy == "remove" else None))
        got = create_session(result.model, "CPUExecutionProvider").run(held)["prob"]
        drift = result.verify.providers["cpu"].outputs["prob"]
        rows.append([strategy, ", ".join(f"{r.site.name}: {r.strategy}" for r in result.sites),
                     f"{np.mean(got.argmax(1) == held_y):.4f}", f"{drift.top1:.4f}", f"{drift.cosine:.6f}",
                     "yes" if result.passed else "no"])
    return md_table(["strategy", "per site", "accuracy", "top-1 agreement", "cosine",
                     f"within top1 >= {TOLERANCE.top1}, cosine >= {TOLERANCE.cosine}"], rows)


def main() -> None:
    text = "\n".join(["# Accuracy: site-level error vs float64, and strategies on a trained network", ""]
                     + machine_lines()
                     + ["", "## Error at every LRN site of the full replicas (8 seeded inputs)", "", site_errors(),
                        "", "## Trained digits network, 449 held-out samples (calibration: the other 449)", "",
                        trained_network(), ""])
    print(text)
    write_result("accuracy", text)


if __name__ == "__main__":
    main()
