"""Verify every built-in replica on cpu and cuda: noise floor of the original, drift of each strategy.

Run by benchmarks/gpu_check.sh on the GPU machine; prints Markdown.
"""
from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

import lrnconv
from lrnconv.models import BUILTIN, build
from lrnconv.app.render import report_text

PROVIDERS = ("cpu", "cuda")


def float16_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same replica in float16 (weights, input and output), to check the half-precision path."""
    half = onnx.ModelProto()
    half.CopyFrom(model)
    for i, tensor in enumerate(half.graph.initializer):
        if tensor.data_type == TensorProto.FLOAT:
            half.graph.initializer[i].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
    for value in list(half.graph.input) + list(half.graph.output):
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    return half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="full", choices=["full", "small"])
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()
    for name in BUILTIN:
        model = build(name, variant=args.variant)
        for strategy in [s for s in lrnconv.strategies() if s != "keep"]:
            converted = lrnconv.convert(model, strategy).model
            report = lrnconv.verify(model, converted, providers=PROVIDERS, samples=args.samples, per_site=True)
            print(f"## {name} ({args.variant}) — {strategy}\n```\n{report_text(report, name)}\n```\n")
    half = float16_copy(build("alexnet", variant=args.variant))
    converted = lrnconv.convert(half, "decompose").model
    report = lrnconv.verify(half, converted, providers=PROVIDERS, samples=args.samples,
                            atol=1e-3, rtol=1e-2)
    print(f"## alexnet float16 — decompose\n```\n{report_text(report, 'alexnet-fp16')}\n```\n")


if __name__ == "__main__":
    main()
